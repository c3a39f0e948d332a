import dataclasses
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from nlakit.cli import main
from nlakit.errors import NLAKitError
from nlakit.eval.runs import resolve_run
from nlakit.train.adapt import AdaptConfig, adapt, data_dir_of


def _config(run, out, **fields) -> AdaptConfig:
    paths = resolve_run(str(run), need_ar=False, need_av=True)
    return AdaptConfig(
        av=str(paths.av), tables=str(paths.tables), model=str(paths.world / "model"),
        out=str(out), steps=2, corpus=f"toyworld:{paths.world}", device="cpu", **fields,
    )  # fmt: skip


def test_adapting_to_the_target_itself_rebuilds_the_runs_rows(eval_run, tmp_path):
    """Adapted to the model it was trained on, the AV's new tables are the run's: the
    same rows, explanations and activations (the teacher is not asked again)."""
    config = _config(eval_run, tmp_path / "self")
    av = adapt(config)
    assert (av / "nla_meta.yaml").is_file()
    mine = pq.read_table(tmp_path / "self" / "tables" / "av_sft.parquet").to_pydict()
    run = pq.read_table(f"{config.tables}/av_sft.parquet").to_pydict()
    assert mine["explanation"] == run["explanation"]
    assert mine["doc_id"] == run["doc_id"] and mine["position"] == run["position"]
    np.testing.assert_allclose(
        np.array(mine["activation_vector"]), np.array(run["activation_vector"]), atol=1e-4
    )
    assert json.loads((tmp_path / "self" / "av" / "config.json").read_text())["steps"] == 2
    assert adapt(config) == av  # cached


def test_the_verb(eval_run, tmp_path, capsys):
    config = _config(eval_run, tmp_path / "cli")
    main(["adapt", "--av", config.av, "--tables", config.tables, "--model", config.model,
          "--out", config.out, "--steps", "1", "--corpus", config.corpus, "--device", "cpu"])  # fmt: skip
    assert "adapted AV at" in capsys.readouterr().out
    assert (tmp_path / "cli" / "av" / "av" / "nla_meta.yaml").is_file()


def test_tables_without_their_extraction_are_named_before_any_write(eval_run, tmp_path):
    config = _config(eval_run, tmp_path / "out")
    moved = tmp_path / "tables"
    shutil.copytree(config.tables, moved)
    record = json.loads((moved / "build.json").read_text())
    record["config"]["data"] = str(tmp_path / "gone")
    (moved / "build.json").write_text(json.dumps(record))
    with pytest.raises(NLAKitError, match="cannot find the extraction"):
        data_dir_of(moved)
    with pytest.raises(NLAKitError, match="cannot find the extraction"):
        adapt(dataclasses.replace(config, tables=str(moved)))
    assert not (tmp_path / "out").exists()


def test_an_av_that_is_not_one_is_named(eval_run, tmp_path):
    config = dataclasses.replace(_config(eval_run, tmp_path / "out"), av=str(tmp_path))
    with pytest.raises(NLAKitError, match="not an AV directory"):
        adapt(config)
    assert not (tmp_path / "out").exists()
