"""Length sweep: λ parsing, the resumable per-λ RL runs and their outputs on the small
eval run (mechanics), and on the demo run that a large λ shortens the explanations."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pyarrow.parquet as pq
import pytest

from nlakit.errors import NLAKitError
from nlakit.eval import sweep
from nlakit.eval.sweep import LengthSweepConfig, lambda_name, length_sweep, parse_lambdas


def test_parse_lambdas():
    assert parse_lambdas("0 0.001 0.03") == [0.0, 0.001, 0.03]
    assert parse_lambdas(" 0.5,1e-3  2 ") == [0.5, 0.001, 2.0]
    assert parse_lambdas(sweep.DEFAULT_LAMBDAS) == [0, 0.01, 0.02, 0.04]
    for bad, says in (
        ("", "no values"),
        ("0 abc", "'abc' is not a number"),
        ("-0.1", "≥ 0"),
        ("nan", "finite"),
        ("0.001 1e-3", "twice"),
    ):
        with pytest.raises(NLAKitError, match=says):
            parse_lambdas(bad)


def test_lambda_name():
    assert lambda_name(0.0) == "lambda_0"
    assert lambda_name(0.001) == "lambda_0.001"
    assert lambda_name(0.03) == "lambda_0.03"


@pytest.fixture(scope="module")
def sweep_run(eval_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("sweep") / "run"
    shutil.copytree(eval_run, run)
    return run


def _config(run, **overrides) -> LengthSweepConfig:
    base = LengthSweepConfig(
        run=str(run),
        lambdas="0 0.05",
        steps=1,
        batch_size=2,
        group_size=2,
        n_eval=8,
        device="cpu",
        progress=False,
    )
    return dataclasses.replace(base, **overrides)


def test_sweep_writes_outputs_and_skips_finished_lambdas(sweep_run, monkeypatch):
    calls = []
    real_rl = sweep.rl_module.rl
    monkeypatch.setattr(sweep.rl_module, "rl", lambda c: calls.append(c) or real_rl(c))
    summary = length_sweep(_config(sweep_run))
    out = sweep_run / "eval" / "length_sweep"
    assert [c.length_penalty for c in calls] == [0.0, 0.05]
    assert {p.name for p in out.iterdir()} >= {
        "lambda_0",
        "lambda_0.05",
        "rows_start.parquet",
        "rows_lambda_0.parquet",
        "rows_lambda_0.05.parquet",
        "table.csv",
        "summary.json",
        "plot.png",
    }
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["n"] == 8 and summary["baseline_variance"] > 0
    assert [r["lambda"] for r in summary["table"]] == [0.0, 0.05]
    for row in [summary["warm_start"], *summary["table"]]:
        assert row["n"] == 8 and 0 <= row["extraction_rate"] <= 1 and row["mean_tokens"] > 0
    # The warm start is scored by one AR, the common one.
    assert summary["warm_start"]["fve_own_ar"] == summary["warm_start"]["fve_common_ar"]
    rows = pq.read_table(out / "rows_lambda_0.05.parquet").to_pydict()
    assert {"explanation", "doc_id", "position", "record", "mse_nrm", "n_tokens"} <= set(rows)
    assert len(rows["explanation"]) == 8
    table = (out / "table.csv").read_text().splitlines()
    assert table[0].startswith("lambda,pair,fve_own_ar") and len(table) == 4

    # Finished λs are never trained again; a new λ is.
    model = out / "lambda_0" / "av" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    calls.clear()
    again = length_sweep(_config(sweep_run, lambdas="0 0.05 0.01"))
    assert [c.length_penalty for c in calls] == [0.01]
    assert model.stat().st_mtime_ns == stamp
    assert again["table"][:2] == summary["table"]  # same pairs, same eval rows, same seed


def test_equal_time_gives_every_lambda_the_first_ones_training_time(sweep_run, monkeypatch):
    calls = []
    real_rl = sweep.rl_module.rl
    monkeypatch.setattr(sweep.rl_module, "rl", lambda c: calls.append(c) or real_rl(c))
    run = sweep_run.parent / "equal_time"
    shutil.copytree(sweep_run, run)
    shutil.rmtree(run / "eval" / "length_sweep", ignore_errors=True)
    summary = length_sweep(_config(run, lambdas="0 0.05", steps=2, budget="equal-time"))
    first, second = calls
    assert (first.steps, first.max_seconds) == (2, 0.0)
    spent = summary["table"][0]["rl_seconds"]
    assert spent > 0 and second.max_seconds == pytest.approx(spent, abs=0.05)
    assert second.steps == 40  # capped at 20 × steps
    assert summary["budget"] == "equal-time" and summary["seconds_per_lambda"] == second.max_seconds
    with pytest.raises(NLAKitError, match="budget"):
        length_sweep(_config(run, budget="equal-wallclock"))


def test_curriculum_chains_the_lambdas_largest_first(sweep_run, monkeypatch):
    calls = []
    real_rl = sweep.rl_module.rl
    monkeypatch.setattr(sweep.rl_module, "rl", lambda c: calls.append(c) or real_rl(c))
    summary = length_sweep(_config(sweep_run, lambdas="0 0.05", curriculum=True))
    out = sweep_run / "eval" / "length_sweep" / "curriculum"
    assert [c.length_penalty for c in calls] == [0.05, 0.0]
    assert calls[0].av.endswith("av_sft/av")  # the first stage starts at the warm start
    assert calls[1].av == str(out / "lambda_0.05" / "av")  # the next from the stage before
    assert summary["curriculum"] is True and [r["lambda"] for r in summary["table"]] == [0.05, 0]
    assert json.loads((out / "summary.json").read_text()) == summary
    for row in summary["table"]:
        assert row["prefix_agreement"] is None or 0 <= row["prefix_agreement"] <= 1
    assert (out / "rows_lambda_0.parquet").is_file()


def test_truth_columns_say_which_claims_are_stated(sweep_run):
    from nlakit.eval.rows import load_rows

    rows = load_rows(sweep_run, device="cpu")
    records, teacher = rows.records()[:2], list(rows.columns["teacher_explanation"][:2])
    assert sweep.truth_columns(teacher, None) == {}
    silent = sweep.truth_columns(["", ""], records)
    assert silent["absent_genre"] == 1.0 and silent["true_genre"] == 0.0
    told = sweep.truth_columns(teacher, records)  # the oracle's own words: true
    assert told["true_genre"] == 1.0 and told["absent_genre"] == 0.0


def test_sweep_refuses_a_lambda_trained_otherwise(sweep_run):
    length_sweep(_config(sweep_run, lambdas="0"))
    with pytest.raises(NLAKitError, match="steps: 1 then, 2 now"):
        length_sweep(_config(sweep_run, lambdas="0", steps=2))


def test_sweep_needs_a_warm_start(sweep_run, tmp_path):
    with pytest.raises(NLAKitError, match="--av"):
        length_sweep(_config(sweep_run, av=str(tmp_path / "nowhere")))


@pytest.mark.slow
def test_large_lambda_shortens_explanations(demo_eval_run):
    """60 steps of 8 × 8 at the sweep's learning rate: λ = 0.04 shortens the demo AV's
    explanations (measured: 43.5 → 40.6 tokens) and none fails. λ · 43 tokens stays
    below 2 − mse_nrm, so an unclosed tag (reward −2) never pays; at λ = 0.1 and a
    rate of 2e-3 the AV learns to fail within 16 steps (extraction 0.375)."""
    config = LengthSweepConfig(
        run=str(demo_eval_run),
        lambdas="0 0.04",
        steps=60,
        n_eval=128,
        device="cpu",
        progress=False,
    )
    summary = length_sweep(config)
    free, penalised = summary["table"]
    assert penalised["mean_tokens"] < free["mean_tokens"] - 1.0
    assert penalised["extraction_rate"] > 0.9
    out = demo_eval_run / "eval" / "length_sweep"
    finished_lengths = []
    for name in ("rows_lambda_0.parquet", "rows_lambda_0.04.parquet"):
        rows = pq.read_table(out / name).to_pydict()
        lengths = [n for n, ok in zip(rows["n_tokens"], rows["finished"], strict=True) if ok]
        finished_lengths.append(sum(lengths) / len(lengths))
    assert finished_lengths[1] < finished_lengths[0] - 1.0


def test_the_cli_sweeps_the_default_lambdas_when_none_are_given(monkeypatch, tmp_path, capsys):
    from nlakit.cli import main

    seen = []
    monkeypatch.setattr(sweep, "length_sweep", lambda c: seen.append(c) or {"n": 0})
    assert main(["sweep", "length", "--run", str(tmp_path), "--budget", "equal-time"]) == 0
    assert seen[0].lambdas == sweep.DEFAULT_LAMBDAS and seen[0].budget == "equal-time"
    assert main(["sweep", "length", "--run", str(tmp_path), "--lambdas", "0", "0.5"]) == 0
    assert seen[1].lambdas == "0 0.5"
