import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nlakit.atomic import write_atomic, write_json, write_parquet, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "old")

    def dies(p):
        p.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(path, dies)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_writers(tmp_path):
    assert write_json(tmp_path / "a" / "b.json", {"x": 1}).read_text().strip().startswith("{")
    write_parquet(tmp_path / "t.parquet", pa.table({"x": [1, 2]}))
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 2


def test_written_files_are_readable_by_others(tmp_path):
    import os
    import stat

    from nlakit.atomic import write_text

    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "report.html", "<p>hi</p>")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
