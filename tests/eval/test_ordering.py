"""The ordering sweep: method settings, the target check, and the sweep's mechanics on
the small eval run (each method one RL step)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pyarrow.parquet as pq
import pytest

from nlakit.config import ConfigError
from nlakit.errors import NLAKitError
from nlakit.eval import sweep
from nlakit.eval.ordering import (
    OrderingConfig,
    curriculum_stages,
    method_fields,
    ordering_sweep,
    parse_methods,
    target,
    truth_share,
)


def test_parse_methods_and_stages():
    assert parse_methods("plain matryoshka") == ["plain", "matryoshka"]
    for bad in ("", "plain sorted", "plain plain"):
        with pytest.raises(ConfigError, match="methods"):
            parse_methods(bad)
    assert curriculum_stages("0 0.04 0.01") == [0.04, 0.01, 0.0]
    with pytest.raises(ConfigError, match="curriculum_lambdas"):
        curriculum_stages("0.04 x")
    with pytest.raises(ConfigError, match="one step per stage"):
        OrderingConfig(run="r", steps=2, curriculum_lambdas="0.04 0.02 0")


def test_each_method_is_a_set_of_rl_fields():
    config = OrderingConfig(run="r", length_penalty=0.02, prefix_lengths="4 0", k_min=3)
    assert method_fields("plain", config, 64) == {"reward": "plain", "length_penalty": 0.0}
    assert method_fields("length", config, 64)["length_penalty"] == 0.02
    assert method_fields("matryoshka", config, 64)["prefix_lengths"] == "4 0"
    assert method_fields("separators", config, 64) == {
        "reward": "separators",
        "length_penalty": 0.02,
    }
    assert method_fields("random-k", config, 64) == {
        "reward": "random-k", "length_penalty": 0.0, "k_min": 3, "k_max": 64,
    }  # fmt: skip


def test_target_needs_the_share_and_the_full_fve():
    rows = [
        {"method": "plain", "fve_full": 0.40, "share_k16": 0.5},
        {"method": "matryoshka", "fve_full": 0.38, "share_k16": 0.8},  # meets both
        {"method": "random-k", "fve_full": 0.30, "share_k16": 0.9},  # full FVE too low
        {"method": "length", "fve_full": 0.41, "share_k16": 0.7},  # share too low
    ]
    assert target(rows) == {"plain_fve_full": 0.40, "methods_meeting": ["matryoshka"], "met": True}
    assert target(rows[1:])["met"] is None


def test_truth_share_off_the_toy_world_is_none():
    assert truth_share(["Genre: poem."], None) == (None, {})


@pytest.fixture(scope="module")
def ordering_run(eval_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("ordering") / "run"
    shutil.copytree(eval_run, run)
    return run


def _config(run, **overrides) -> OrderingConfig:
    base = OrderingConfig(
        run=str(run), methods="plain matryoshka random-k", steps=2, batch_size=2,
        group_size=2, n_eval=8, device="cpu", progress=False,
    )  # fmt: skip
    return dataclasses.replace(base, **overrides)


def test_ordering_sweep_writes_outputs_and_resumes_per_method(ordering_run, monkeypatch):
    calls = []
    real_rl = sweep.rl_module.rl  # the sweeps' one way to RL
    monkeypatch.setattr(sweep.rl_module, "rl", lambda c: calls.append(c) or real_rl(c))
    summary = ordering_sweep(_config(ordering_run))
    out = ordering_run / "eval" / "ordering"
    assert [c.reward for c in calls] == ["plain", "matryoshka", "random-k"]
    assert calls[2].k_max == summary["max_new_tokens"]  # random-k up to the cap by default
    assert json.loads((out / "summary.json").read_text()) == summary
    assert {"table.csv", "plot.png", "rows_start.parquet", "rows_plain.parquet"} <= {
        p.name for p in out.iterdir()
    }
    assert [m["method"] for m in summary["methods"]] == ["plain", "matryoshka", "random-k"]
    for row in [summary["warm_start"], *summary["methods"]]:
        assert {"fve_full", "fve_k8", "fve_k16", "mean_tokens", "truth_k8", "truth_k16"} <= set(row)
        assert row["n"] == 8 and 0 <= row["truth_k8"] <= 1
    assert summary["target"]["plain_fve_full"] == summary["methods"][0]["fve_full"]
    plain, matryoshka = summary["methods"][:2]
    assert "delta_k16_vs_plain" not in plain
    gain = matryoshka["fve_k16"] - plain["fve_k16"]  # the paired gain is the difference
    assert matryoshka["delta_k16_vs_plain"] == pytest.approx(gain, abs=1e-5)
    assert (
        matryoshka["delta_k16_vs_plain_ci_low"] <= gain <= matryoshka["delta_k16_vs_plain_ci_high"]
    )
    rows = pq.read_table(out / "rows_matryoshka.parquet").to_pydict()
    assert {"doc_id", "position", "explanation", "prefix_k8", "mse_nrm_k8", "mse_nrm_k16"} <= set(
        rows
    )
    assert rows["mse_nrm_common_ar"] == rows["mse_nrm"]  # one scorer: the common AR

    calls.clear()
    methods = "plain matryoshka random-k length curriculum"
    again = ordering_sweep(_config(ordering_run, methods=methods, curriculum_lambdas="0 0.05"))
    # only the new methods train: the length penalty, then the curriculum's two stages
    assert [(c.reward, c.length_penalty, c.steps) for c in calls] == [
        ("plain", 0.01, 2), ("plain", 0.05, 1), ("plain", 0.0, 1),
    ]  # fmt: skip
    curriculum = ordering_run / "eval" / "ordering" / "curriculum"
    assert calls[2].av == str(curriculum / "stage0_lambda_0.05" / "av")
    assert again["methods"][:3] == summary["methods"]
    agreement = again["methods"][4]["prefix_agreement"]  # None: no stage-0 text (weak AV)
    assert agreement is None or 0 <= agreement <= 1
    with pytest.raises(NLAKitError, match="prefix_lengths: '8 16 0' then, '4 0' now"):
        ordering_sweep(_config(ordering_run, methods="matryoshka", prefix_lengths="4 0"))


def test_the_separators_method_first_teaches_the_av_separators(ordering_run, tmp_path, monkeypatch):
    calls = []
    real_rl = sweep.rl_module.rl
    monkeypatch.setattr(sweep.rl_module, "rl", lambda c: calls.append(c) or real_rl(c))
    out = tmp_path / "elsewhere"
    config = _config(ordering_run, methods="separators", separator_steps=3, out=str(out))
    summary = ordering_sweep(config)
    warm = out / "separators_warm_start"
    assert [(c.reward, c.av) for c in calls] == [("separators", str(warm / "av_sft" / "av"))]
    assert calls[0].length_penalty == config.length_penalty
    assert (out / "summary.json").is_file() and (out / "rows_separators.parquet").is_file()
    assert not (ordering_run / "eval" / "ordering" / "separators").exists()
    taught = summary["separators_warm_start"]
    assert taught["method"] == "separators warm start (no RL)" and taught["mean_separators"] >= 0
    assert summary["methods"][0]["method"] == "separators"
    assert summary["warm_start"]["mean_separators"] == 0  # the plain SFT AV has none
    calls.clear()
    assert ordering_sweep(config)["methods"] == summary["methods"]  # all reused
    assert calls == []
    with pytest.raises(NLAKitError, match="steps: 3 then, 4 now"):
        ordering_sweep(dataclasses.replace(config, separator_steps=4))


def test_a_prefix_trained_common_ar_scores_and_trains_every_method(
    ordering_run, tmp_path, monkeypatch
):
    calls = []
    real_rl = sweep.rl_module.rl
    monkeypatch.setattr(sweep.rl_module, "rl", lambda c: calls.append(c) or real_rl(c))
    out = tmp_path / "prefix"
    summary = ordering_sweep(
        _config(ordering_run, methods="plain", prefix_ar_steps=3, out=str(out))
    )
    ar = out / "prefix_ar" / "ar"
    assert summary["common_ar"] == str(ar) and calls[0].ar == str(ar)
    assert summary["rl_scorer"] == str(ar)
    config = json.loads((out / "prefix_ar" / "config.json").read_text())
    assert config["prefix_augment"] == 0.5 and config["steps"] == 3
    assert config["model"] == str(ordering_run / "ar_sft" / "ar")
    calls.clear()  # the same RL runs, judged by the warm start's AR instead
    judged = ordering_sweep(
        _config(ordering_run, methods="plain", prefix_ar_steps=3, out=str(out),
                judge=str(ordering_run / "ar_sft" / "ar"))
    )  # fmt: skip
    assert calls == [] and judged["common_ar"] == str(ordering_run / "ar_sft" / "ar")
    assert judged["methods"][0]["fve_full"] != summary["methods"][0]["fve_full"]


@pytest.mark.slow  # two RL runs of 200 steps on the demo run: about 9 minutes
def test_matryoshka_puts_the_token_first_at_no_cost_to_the_whole(demo_eval_run):
    config = OrderingConfig(
        run=str(demo_eval_run), methods="plain matryoshka", device="cpu", progress=False
    )
    summary = ordering_sweep(config)
    plain, matryoshka = summary["methods"]
    # docs/ordering.md: +0.335 [+0.283, +0.383] from the first 16 tokens, +0.012 whole
    assert matryoshka["fve_k16"] >= plain["fve_k16"] + 0.2
    assert matryoshka["fve_full"] >= plain["fve_full"] - 0.05
    rows = pq.read_table(demo_eval_run / "eval" / "ordering" / "rows_matryoshka.parquet")
    texts = rows.column("explanation").to_pylist()
    assert sum('\n"' in t for t in texts) / len(texts) >= 0.8  # the token line opens with it


def _demo_ordering(run, methods: str) -> dict:
    """The ordering comparison on the demo run at its defaults (plain RL is trained once
    and reused by every slow test below)."""
    config = OrderingConfig(run=str(run), methods=methods, device="cpu", progress=False)
    summary = ordering_sweep(config)
    return {m["method"]: m for m in summary["methods"]} | {"_summary": summary}


@pytest.mark.slow  # one RL run of 200 steps on the demo run (plain reused): about 5 minutes
def test_random_k_orders_a_little(demo_eval_run):
    rows = _demo_ordering(demo_eval_run, "plain random-k")
    random_k = rows["random-k"]
    # docs/ordering.md: +0.059 [+0.021, +0.100] from 16 tokens, −0.028 whole
    assert random_k["delta_k16_vs_plain_ci_low"] > 0
    assert random_k["delta_full_vs_plain"] > -0.08


@pytest.mark.slow  # separator SFT (300 steps) and one RL run: about 6 minutes
def test_separators_are_kept_and_the_opening_carries_more(demo_eval_run):
    rows = _demo_ordering(demo_eval_run, "plain separators")
    taught = rows["_summary"]["separators_warm_start"]
    separators = rows["separators"]
    # docs/ordering.md: 1.99 separators per explanation taught, 1.98 after RL, placed
    # between the oracle's statements; +0.145 from 16 tokens, whole −0.022
    assert taught["mean_separators"] >= 1.5 and separators["mean_separators"] >= 1.5
    assert separators["delta_k16_vs_plain_ci_low"] > 0
    assert separators["delta_full_vs_plain"] > -0.08


@pytest.mark.slow  # three RL stages of 66 steps: about 4 minutes
def test_curriculum_stages_do_not_extend_each_other(demo_eval_run):
    rows = _demo_ordering(demo_eval_run, "plain curriculum")
    curriculum = rows["curriculum"]
    # docs/ordering.md: the last stage keeps 0.107 of the stage before as its opening,
    # as much as independent runs share (0.05–0.06): the seeds' hypothesis fails here
    assert curriculum["prefix_agreement"] < 0.25
    assert curriculum["delta_k16_vs_plain_ci_low"] > 0  # +0.111 [+0.068, +0.157]
