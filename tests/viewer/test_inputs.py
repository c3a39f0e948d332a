"""Reading the viewer's inputs: run directories and parquet files, with clear errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from viewer_tables import rows_columns, write_run

from nlakit.errors import NLAKitError
from nlakit.viewer.inputs import read_input, read_inputs


def test_a_run_directory(tmp_path):
    run = write_run(tmp_path / "demo", rows_columns(n_docs=2, per_doc=2))
    item = read_input(run)
    assert item.name == "demo" and len(item) == 4 and item.variance == 0.95
    assert "activation_vector" not in item.columns


def test_the_rows_file_of_a_run_is_named_after_the_run(tmp_path):
    run = write_run(tmp_path / "demo", rows_columns(n_docs=1, per_doc=2), variance=None)
    item = read_input(run / "eval" / "rows.parquet")
    assert item.name == "demo" and item.variance is None


def test_a_run_not_yet_evaluated(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(NLAKitError, match=r"no per-row eval table yet; run `nlakit eval --run"):
        read_input(tmp_path / "run")


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"doc_id": [1], "position": [0], "text": ["x"]}), path)
    with pytest.raises(NLAKitError, match=r"missing column\(s\) \['explanation', 'mse_nrm'\]"):
        read_input(path)


def test_other_bad_inputs(tmp_path):
    with pytest.raises(NLAKitError, match="no such run directory or parquet file"):
        read_input(tmp_path / "nowhere")
    (tmp_path / "rows.csv").write_text("a,b\n")
    with pytest.raises(NLAKitError, match=r"expected a run directory or a \.parquet file"):
        read_input(tmp_path / "rows.csv")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(NLAKitError, match="not a readable parquet file"):
        read_input(tmp_path / "broken.parquet")
    empty = {k: v[:0] for k, v in rows_columns(n_docs=1, per_doc=1).items()}
    with pytest.raises(NLAKitError, match="has no rows"):
        read_input(write_run(tmp_path / "empty", empty, vectors=False))
    unscored = rows_columns(n_docs=1, per_doc=2)
    unscored["mse_nrm"] = [None, None]
    with pytest.raises(NLAKitError, match="every mse_nrm is null"):
        read_input(write_run(tmp_path / "unscored", unscored))
    with pytest.raises(NLAKitError, match="nothing to view"):
        read_inputs([])


def test_doc_ids_are_strings_and_old_int64_ones_are_read_as_strings(tmp_path):
    """The released datasets' string doc ids load as they are; tables written before
    doc ids were strings load too, with their ids as text."""
    cols = rows_columns(n_docs=2, per_doc=2, doc_id_format="fineweb:train:{}")
    item = read_input(write_run(tmp_path / "run", cols))
    assert item.columns["doc_id"] == ["fineweb:train:0"] * 2 + ["fineweb:train:1"] * 2
    run = write_run(tmp_path / "old", rows_columns(n_docs=2, per_doc=2))
    assert pq.read_schema(run / "eval" / "rows.parquet").field("doc_id").type == pa.int64()
    assert read_input(run).columns["doc_id"] == ["0", "0", "1", "1"]
