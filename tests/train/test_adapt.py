import dataclasses
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.runs import resolve_run
from nlakit.train.adapt import adapt_av, run_data_dir


def test_adapting_to_the_target_itself_rebuilds_the_runs_rows(eval_run, tmp_path):
    """Adapted to the model it was trained on, the AV's new tables are the run's: the
    same rows, explanations and activations (the teacher is not asked again)."""
    paths = resolve_run(str(eval_run), need_ar=False, need_av=True)
    av = adapt_av(paths, paths.world / "model", tmp_path / "self", steps=2, device="cpu")
    assert (av / "nla_meta.yaml").is_file()
    mine = pq.read_table(tmp_path / "self" / "tables" / "av_sft.parquet").to_pydict()
    run = pq.read_table(paths.tables / "av_sft.parquet").to_pydict()
    assert mine["explanation"] == run["explanation"]
    assert mine["doc_id"] == run["doc_id"] and mine["position"] == run["position"]
    np.testing.assert_allclose(
        np.array(mine["activation_vector"]), np.array(run["activation_vector"]), atol=1e-4
    )
    assert json.loads((tmp_path / "self" / "av" / "config.json").read_text())["steps"] == 2
    assert adapt_av(paths, paths.world / "model", tmp_path / "self", steps=2) == av  # cached


def test_a_run_without_its_extraction_is_named(eval_run, tmp_path):
    paths = resolve_run(str(eval_run), need_ar=False, need_av=True)
    moved = dataclasses.replace(paths, tables=tmp_path / "tables", root=tmp_path)
    with pytest.raises(NLAKitError, match="cannot find the extraction"):
        run_data_dir(moved)
