"""The AR-variants sweep: its settings and its mechanics on the small eval run (each
variant's AR briefly trained, one RL run of two steps)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pyarrow.parquet as pq
import pytest
import torch

from nlakit.ar_context import context_spec
from nlakit.config import ConfigError
from nlakit.eval import sweep
from nlakit.eval.variants import (
    VariantsConfig,
    parse_variants,
    quote_rate,
    smaller_blocks,
    variants_sweep,
)
from nlakit.linear_ar import is_linear_ar, load_reconstructor


def test_parse_variants():
    assert parse_variants("plain, linear context") == ["plain", "linear", "context"]
    for bad in ("", "plain plain", "bigger"):
        with pytest.raises(ConfigError, match="distinct names among plain control"):
            parse_variants(bad)


def test_smaller_blocks_default_to_half_the_depth():
    config = VariantsConfig(run="r")
    assert [smaller_blocks(config, k) for k in (0, 1, 3, 6)] == [1, 1, 2, 3]
    assert smaller_blocks(dataclasses.replace(config, ar_blocks=2), 3) == 2


def test_quote_rate_counts_quotes_of_the_input():
    texts = ['It quotes "the moon".', "No quote.", 'It quotes "the sun".']
    assert quote_rate(texts, ["over the moon", "over the moon", "over the moon"]) == 1 / 3


@pytest.fixture(scope="module")
def variants_run(eval_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("variants") / "run"
    shutil.copytree(eval_run, run)
    return run


def test_variants_sweep_trains_each_reader_and_judges_four_ways(variants_run, monkeypatch):
    calls = []
    real_rl = sweep.rl_module.rl
    monkeypatch.setattr(sweep.rl_module, "rl", lambda c: calls.append(c) or real_rl(c))
    config = VariantsConfig(
        run=str(variants_run), variants="plain linear smaller context", steps=2, batch_size=2,
        group_size=2, n_eval=8, ar_steps=2, context=16, device="cpu",
        progress=False,
    )  # fmt: skip
    summary = variants_sweep(config)
    out = variants_run / "eval" / "variants"
    assert json.loads((out / "summary.json").read_text()) == summary
    scorers = [c.ar for c in calls]
    assert scorers[0] == str(variants_run / "ar_sft" / "ar") and all(c.freeze_ar for c in calls)
    assert is_linear_ar(scorers[1])
    smaller = load_reconstructor(scorers[2])
    assert smaller.blocks == 1 and smaller.layer == 1  # the eval run reads block 1
    assert context_spec(load_reconstructor(scorers[3]).meta).tokens == 16
    text_only = load_reconstructor(out / "ar_text_only" / "ar")
    assert context_spec(text_only.meta).text_only
    assert [r["variant"] for r in summary["variants"]] == ["plain", "linear", "smaller", "context"]
    for row in [summary["warm_start"], *summary["variants"]]:
        assert row["n"] == 8 and 0 <= row["quote_rate"] <= 1
        low, high = row["gain_over_text_ci_low"], row["gain_over_text_ci_high"]
        assert low <= row["gain_over_text"] <= high
        assert "true_genre" in row  # the toy world's truth per field
    plain, linear = summary["variants"][:2]
    assert plain["fve_own_ar"] == plain["fve_common_ar"]  # the plain variant's AR is the common
    assert "delta_common_vs_plain" not in plain
    gain = linear["fve_common_ar"] - plain["fve_common_ar"]  # the paired gain is the difference
    assert linear["delta_common_vs_plain"] == pytest.approx(gain, abs=1e-5)
    assert linear["delta_common_vs_plain_ci_low"] <= gain <= linear["delta_common_vs_plain_ci_high"]
    rows = pq.read_table(out / "rows_context.parquet").to_pydict()
    # the gain is the context AR's FVE less the text-only AR's, on the same rows
    ctx, text = torch.tensor(rows["mse_nrm_context"]), torch.tensor(rows["mse_nrm_text_only"])
    gain = float((text - ctx).mean()) / summary["baseline_variance"]
    assert summary["variants"][3]["gain_over_text"] == pytest.approx(gain, abs=1e-5)
    calls.clear()
    assert variants_sweep(config) == {**summary, "wall_seconds": pytest.approx(0, abs=1e9)}
    assert calls == []  # every AR and RL run is reused


def _more_steps(run, out, **changes) -> float:
    """The held-out FVE (teacher's explanations) of the demo's AR after the variants
    sweep's 700 more SFT steps with `changes`."""
    from nlakit.train.sft import SFTConfig, sft

    config = SFTConfig(
        role="ar", data=str(run / "tables"), model=str(run / "ar_sft" / "ar"), out=str(out),
        steps=700, batch_size=32, lr=5e-4, warmup=20, eval_every=0, save_every=0,
        device="cpu", progress=False, **changes,
    )  # fmt: skip
    return sft(config)["eval_fve"]


@pytest.mark.slow  # four AR SFT runs of 700 steps on the demo run: about 8 minutes
def test_the_text_alone_rebuilds_the_activation_unless_it_is_cut_short(demo_eval_run, tmp_path):
    fve = {
        (n, text_only): _more_steps(
            demo_eval_run, tmp_path / f"{n}_{text_only}", context=n, text_only=text_only
        )
        for n in (4, 64)
        for text_only in (False, True)
    }
    # docs/variants.md: 64 tokens of text 0.782, + the oracle's explanation 0.783;
    # 4 tokens 0.740, + the explanation 0.783
    assert fve[64, True] >= 0.72
    assert fve[64, False] - fve[64, True] < 0.02
    assert fve[4, False] - fve[4, True] >= 0.02


@pytest.mark.slow  # three AR SFT runs of 700 steps and a linear fit: about 7 minutes
def test_weaker_readers_read_the_teachers_words_less_well(demo_eval_run, tmp_path):
    from nlakit.train.sft import SFTConfig, sft

    control = _more_steps(demo_eval_run, tmp_path / "control")
    regularised = _more_steps(demo_eval_run, tmp_path / "reg", token_dropout=0.15, input_noise=0.1)
    smaller = _more_steps(demo_eval_run, tmp_path / "small", ar_blocks=1)
    linear = sft(SFTConfig(role="ar", data=str(demo_eval_run / "tables"), out=str(tmp_path / "lin"),
                           reconstructor="linear", progress=False))["eval_fve"]  # fmt: skip
    # docs/variants.md: control 0.768, regularised 0.723, linear 0.680, 1 block of 2 0.494
    assert regularised < control - 0.02
    assert smaller < regularised - 0.1
    assert 0.6 <= linear < control
