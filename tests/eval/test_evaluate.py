import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from nlakit.cli import main
from nlakit.errors import NLAKitError
from nlakit.eval.cross import check_same_rows, cross_table
from nlakit.eval.evaluate import EvalConfig, evaluate, world_records
from nlakit.eval.rows import load_rows
from nlakit.eval.runs import resolve_run

CONDITIONS = {
    "av", "common_ar", "shuffled", "mean_vector", "zero_vector", "no_injection", "teacher"
}  # fmt: skip


def test_eval_writes_rows_summary_table_and_plot(eval_run):
    out = eval_run / "eval"
    for name in ("rows.parquet", "summary.json", "table.csv", "plot.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["conditions"]) == CONDITIONS
    assert summary["n"] == 48 and summary["baseline_n"] > 0
    for stats in summary["conditions"].values():
        assert stats["ci_low"] <= stats["fve"] <= stats["ci_high"]
        assert stats["n"] == 48 and stats["baseline_variance"] == summary["baseline_variance"]
    columns = pq.read_schema(out / "rows.parquet").names
    for name in ("doc_id", "position", "token", "context", "explanation", "mse_nrm", "cos"):
        assert name in columns
    for name in ("n_tokens", "source", "teacher_explanation", "record", "activation_vector"):
        assert name in columns
    assert "mse_nrm_common_ar" in columns


def test_eval_scores_the_av_with_the_common_ar_too(eval_run, tmp_path):
    """The run's SFT AR scores the AV beside its own AR: with --common-ar pointing at
    the run's own AR the two agree; by default it is RUN/ar_sft/ar."""
    summary = json.loads((eval_run / "eval" / "summary.json").read_text())
    assert summary["common_ar"] == str(eval_run / "ar_sft" / "ar")
    common = summary["conditions"]["common_ar"]
    assert summary["fve_common_ar"] == common["fve"]
    assert summary["fve_common_ar_ci"] == [common["ci_low"], common["ci_high"]]
    run = tmp_path / "own"
    shutil.copytree(eval_run, run, ignore=shutil.ignore_patterns("eval"))
    again = evaluate(
        EvalConfig(
            run=str(run), n=8, controls=False, bootstrap=20, common_ar=str(run / "rl" / "ar")
        )
    )
    assert again["fve_common_ar"] == pytest.approx(again["fve"], abs=1e-6)


def test_rows_scores_agree_with_the_ar(eval_run):
    rows = load_rows(eval_run, device="cpu")
    again = rows.score(rows.columns["teacher_explanation"])
    assert torch.allclose(again, torch.tensor(rows.columns["teacher_mse_nrm"]), atol=1e-5)
    summary = rows.summary
    assert rows.fve(again) == pytest.approx(summary["conditions"]["teacher"]["fve"], abs=1e-5)
    assert {r["genre"] for r in rows.records()} <= {
        "chat", "recipe", "sports", "weather", "code", "list", "story", "poem", "news"
    }  # fmt: skip
    assert set(rows.columns["source"]) <= {"text", "chat"}


def test_world_records_take_string_and_old_int64_doc_ids(small_world):
    from nlakit.toyworld.world import World

    world = World(small_world)
    doc = world.documents(limit=1)[0]
    new, old = world_records(small_world, [doc.table_id, doc.doc_id], [world.min_pos] * 2)
    assert new == old and new["genre"] == doc.genre
    with pytest.raises(NLAKitError, match="fineweb:train:3"):
        world_records(small_world, ["fineweb:train:3"], [world.min_pos])


def test_rows_of_a_run_evaluated_before_string_doc_ids_still_load(eval_run, tmp_path):
    assert pq.read_schema(eval_run / "eval" / "rows.parquet").field("doc_id").type == pa.string()
    old = tmp_path / "old"
    shutil.copytree(eval_run, old)
    path = old / "eval" / "rows.parquet"
    table = pq.read_table(path)
    doc_ids = table["doc_id"].cast(pa.int64())  # as nlakit wrote them before
    pq.write_table(table.set_column(table.column_names.index("doc_id"), "doc_id", doc_ids), path)
    new_rows, old_rows = load_rows(eval_run), load_rows(old)
    assert old_rows.columns["doc_id"] == new_rows.columns["doc_id"]
    check_same_rows(new_rows, old_rows)  # the cross table sees the same rows


def test_cross_table_diagonal_is_each_runs_own_fve(eval_run, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(eval_run, twin)
    summary = cross_table([eval_run, twin], bootstrap=50)
    own = json.loads((eval_run / "eval" / "summary.json").read_text())["fve"]
    assert summary["fve"][0][0] == pytest.approx(own, abs=1e-5)
    assert summary["fve"][0][1] == pytest.approx(own, abs=1e-5)  # same weights
    assert (eval_run / "eval" / "cross" / "plot.png").is_file()


def test_cross_table_refuses_runs_evaluated_on_other_rows(eval_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(eval_run, other)
    evaluate(EvalConfig(run=str(other), n=8, controls=False, bootstrap=20, device="cpu"))
    with pytest.raises(NLAKitError, match="different rows"):
        cross_table([eval_run, other])


def test_run_without_an_ar_is_a_clear_error(eval_run, tmp_path):
    run = tmp_path / "no_ar"
    shutil.copytree(eval_run, run, ignore=shutil.ignore_patterns("ar", "eval"))
    with pytest.raises(NLAKitError, match="has no AR"):
        evaluate(EvalConfig(run=str(run)))
    with pytest.raises(NLAKitError, match="has no AR"):
        load_rows(run)


def test_eval_table_from_another_layer_is_refused(eval_run, tmp_path):
    tables = tmp_path / "tables"
    shutil.copytree(eval_run / "tables", tables)
    sidecar = tables / "eval.parquet.nla_meta.yaml"
    text = sidecar.read_text()
    sidecar.write_text(text.replace("layer_index: 1", "layer_index: 0"))
    with pytest.raises(NLAKitError, match="layer"):
        evaluate(EvalConfig(run=str(eval_run), data=str(tables / "eval.parquet"), n=4))


def test_empty_eval_table_is_refused(eval_run, tmp_path):
    tables = tmp_path / "tables"
    shutil.copytree(eval_run / "tables", tables)
    path = tables / "eval.parquet"
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    sidecar = tables / "eval.parquet.nla_meta.yaml"
    text = sidecar.read_text()
    count = next(line for line in text.splitlines() if line.startswith("row_count:"))
    sidecar.write_text(text.replace(count, "row_count: 0"))
    with pytest.raises(NLAKitError, match="empty"):
        evaluate(EvalConfig(run=str(eval_run), data=str(path)))


def test_analyses_need_an_evaluated_run(eval_run, tmp_path):
    run = tmp_path / "fresh"
    shutil.copytree(eval_run, run, ignore=shutil.ignore_patterns("eval"))
    with pytest.raises(NLAKitError, match="nlakit eval --run"):
        load_rows(run)
    assert resolve_run(run).world is not None


def test_eval_cli(eval_run, tmp_path, capsys):
    run = tmp_path / "cli"
    shutil.copytree(eval_run, run, ignore=shutil.ignore_patterns("eval"))
    code = main(["eval", "--run", str(run), "--n", "6", "--controls", "false", "--bootstrap", "20"])
    assert code == 0
    out = capsys.readouterr().out
    assert "FVE on 6 rows" in out and "baseline variance" in out
    assert main(["eval", "--run", str(tmp_path / "missing")]) == 2


@pytest.mark.slow
def test_demo_av_beats_its_controls(demo_eval_run):
    """On the demo run the AV's explanations carry the vector: its FVE's whole CI lies far
    above the shuffled control's, and the AV given no activation (or a zero one) does no
    better than chance pairing."""
    s = json.loads((demo_eval_run / "eval" / "summary.json").read_text())["conditions"]
    assert s["av"]["ci_low"] > s["shuffled"]["ci_high"] + 0.5
    assert s["av"]["fve"] > 0.05
    for control in ("no_injection", "zero_vector", "mean_vector"):
        assert s[control]["fve"] < s["av"]["ci_low"] - 0.5
    assert s["teacher"]["fve"] > s["av"]["fve"]
