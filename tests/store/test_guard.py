"""Output guards: existing files, unwritable places, the directory lock, changed settings."""

import pytest
from filelock import FileLock, Timeout

from nlakit.errors import NLAKitError
from nlakit.store.guard import (
    LOCK_FILE,
    changed_settings,
    check_output_dir,
    check_output_file,
    locked,
)


def test_an_existing_file_needs_force(tmp_path):
    path = tmp_path / "rows.jsonl"
    assert check_output_file(path) == path  # new: fine
    path.write_text("x")
    with pytest.raises(NLAKitError, match=r"--out .*rows.jsonl: exists already; pass --force"):
        check_output_file(path)
    assert check_output_file(path, force=True) == path
    with pytest.raises(NLAKitError, match="is a directory"):
        check_output_file(tmp_path)


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NLAKitError, match="is a file, not a directory"):
        check_output_dir(tmp_path / "f")
    with pytest.raises(NLAKitError, match="is a file, not a directory"):
        check_output_dir(tmp_path / "f" / "run")
    with pytest.raises(NLAKitError, match="is a file, not a directory"):
        check_output_file(tmp_path / "f" / "rows.jsonl", option="--export")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_the_lock_refuses_a_second_writer_and_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with locked(out):
        assert (out / LOCK_FILE).exists()
        with pytest.raises(NLAKitError, match="another nlakit command is writing"), locked(out):
            pass
        other = FileLock(out / LOCK_FILE, timeout=0)  # another holder sees it taken too
        with pytest.raises(Timeout):
            other.acquire()
    assert not out.exists()  # made for the block and left empty: removed again
    with locked(out):
        (out / "config.json").write_text("{}")
    assert (out / "config.json").is_file()
    with locked(out):  # released: the next writer gets it
        pass


def test_changed_settings_names_old_and_new():
    old = {"lr": 0.1, "steps": 10, "progress": True, "only_old": 1}
    new = {"lr": 0.5, "steps": 20, "progress": False, "only_new": 2}
    assert changed_settings(old, new) == [
        "lr: 0.1 → 0.5",
        "steps: 10 → 20",
        "progress: True → False",
    ]
    assert changed_settings(old, new, allowed=["steps"], ignore=["progress"]) == ["lr: 0.1 → 0.5"]
