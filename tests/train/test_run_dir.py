"""A run directory is continued only with --resume, by the same kind of run, with the
same settings unless --allow-changes names them; nothing is written while checking."""

import json

import pytest

from nlakit.errors import NLAKitError
from nlakit.train.rl import RLConfig
from nlakit.train.run_dir import prepare_run, run_kind
from nlakit.train.sft import SFTConfig


def _sft(tmp_path, **kw) -> SFTConfig:
    return SFTConfig(role="av", data="tables", out=str(tmp_path / "run"), **kw)


def _started(config) -> None:
    import dataclasses

    run = config.out
    (tmp := __import__("pathlib").Path(run)).mkdir()
    (tmp / "config.json").write_text(json.dumps(dataclasses.asdict(config)))


def test_a_new_directory_starts(tmp_path):
    assert prepare_run(_sft(tmp_path)) is None
    assert not (tmp_path / "run").exists()


def test_a_held_directory_needs_resume(tmp_path):
    _started(_sft(tmp_path))
    before = (tmp_path / "run" / "config.json").read_bytes()
    with pytest.raises(NLAKitError, match=r"holds a run already .*--resume"):
        prepare_run(_sft(tmp_path, lr=0.5))
    assert (tmp_path / "run" / "config.json").read_bytes() == before


def test_resume_refuses_changed_settings_unless_allowed(tmp_path):
    _started(_sft(tmp_path))
    assert prepare_run(_sft(tmp_path, resume=True, progress=False)) is None  # runtime only
    with pytest.raises(NLAKitError, match=r"lr: 0.0001 → 0.5.*--allow-changes lr"):
        prepare_run(_sft(tmp_path, resume=True, lr=0.5))
    assert prepare_run(_sft(tmp_path, resume=True, lr=0.5, allow_changes="lr")) is None
    with pytest.raises(NLAKitError, match="no setting named lrr"):
        prepare_run(_sft(tmp_path, resume=True, allow_changes="lrr"))


def test_resume_refuses_another_kind_of_run(tmp_path):
    _started(_sft(tmp_path))
    rl = RLConfig(data="tables", av="av", ar="ar", out=str(tmp_path / "run"), resume=True)
    with pytest.raises(NLAKitError, match="holds an `nlakit sft av` run, not an `nlakit rl`"):
        prepare_run(rl)
    assert run_kind({"role": "ar"}) == "sft ar" and run_kind({"av": "x"}) == "rl"
