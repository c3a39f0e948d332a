import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from nlakit import NLA
from nlakit.config import ConfigError
from nlakit.store.runs import read_metrics
from nlakit.store.tables import load_table
from nlakit.train import modules as M
from nlakit.train import rewards as rewards_module
from nlakit.train.data import pad_responses, response_ids, response_logprobs
from nlakit.train.rl import RLConfig, _reference, rl

FAST = dict(
    batch_size=2,
    group_size=4,
    max_new_tokens=24,
    warmup=1,
    eval_every=0,
    save_every=0,
    eval_rows=8,
    progress=False,
)
COMPARED = ("reward", "mse_nrm", "fve", "mean_tokens", "finished", "kl", "loss", "ar_loss")


def config(small_tables, pair, out, **kw):
    av, ar = pair
    return RLConfig(data=str(small_tables), av=str(av), ar=str(ar), out=str(out), **{**FAST, **kw})


def test_rl_runs_logs_and_exports(small_tables, trained_pair, tmp_path):
    result = rl(config(small_tables, trained_pair, tmp_path / "rl", steps=3, lr=1e-4))
    records = read_metrics(tmp_path / "rl")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[0]["kl"] == 0.0  # policy = reference before the first update
    for key in (
        "reward",
        "fve",
        "mean_tokens",
        "finished",
        "seconds_generate",
        "seconds_score",
        "seconds_update",
        "skipped_steps",
        "reward_avg",
        "train_seconds",
    ):
        assert key in records[0]
    assert records[0]["reward_avg"] == pytest.approx(records[0]["reward"])
    assert {"eval_fve", "eval_mean_tokens", "eval_extraction_rate", "eval_marker_leak"} <= set(
        result
    )
    nla = NLA.from_pretrained(av=tmp_path / "rl" / "av", ar=tmp_path / "rl" / "ar", device="cpu")
    assert len(nla.explain(torch.randn(2, 64), max_new_tokens=4)) == 2
    for role in ("av", "ar"):  # both cards carry the pair's held-out round-trip FVE
        card = (tmp_path / "rl" / role / "README.md").read_text(encoding="utf-8")
        assert f"**FVE {result['eval_fve']:.4f}** on n = 8 held-out activations" in card
        assert "baseline variance" in card and "end of RL (step 3)" in card


@pytest.mark.parametrize("lora", [0, 4])
def test_policy_moves_but_the_reference_never_changes(small_tables, trained_pair, lora):
    table = load_table(small_tables / "rl.parquet")
    av = M.start_av(str(trained_pair[0]), table.meta, "cpu", None)
    M.add_lora_av(av, M.LoraSettings(rank=lora))
    mode, reference = _reference(av)
    text = "<explanation>\nRecipe: soup.\nx\n</explanation>"
    responses, mask = pad_responses(response_ids(av, [text] * 2), av.tokenizer.pad_token_id)
    vectors = table.vectors[:2]

    def ref_logp():
        with torch.no_grad(), mode():
            return response_logprobs(reference, vectors, responses, mask)

    before = ref_logp()
    policy_before = response_logprobs(av, vectors, responses, mask).detach()
    assert torch.equal(before, policy_before)  # KL is 0 at step 0
    opt = torch.optim.SGD([p for p in av.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):
        (-response_logprobs(av, vectors, responses, mask).sum()).backward()
        opt.step()
        opt.zero_grad()
    assert torch.equal(ref_logp(), before), "the reference policy changed"
    assert not torch.allclose(response_logprobs(av, vectors, responses, mask), policy_before)


def test_a_time_budget_stops_the_run_early_and_exports_it(small_tables, trained_pair, tmp_path):
    rl(config(small_tables, trained_pair, tmp_path / "rl", steps=50, max_seconds=1e-3))
    records = read_metrics(tmp_path / "rl")
    assert [r["step"] for r in records] == [1]  # the first step already spends the budget
    assert records[0]["train_seconds"] >= 1e-3
    assert (tmp_path / "rl" / "av" / "nla_meta.yaml").is_file()


def test_updates_per_batch_steps_the_optimizer_on_reused_samples(
    small_tables, trained_pair, tmp_path, monkeypatch
):
    # the small pair's samples never close their tag (the same reward for all: no
    # gradient); seeded random rewards make every update move the policy
    noise = torch.Generator().manual_seed(0)
    monkeypatch.setattr(
        rewards_module, "rewards", lambda mse, *_: torch.randn(len(mse), generator=noise)
    )
    runs = {}
    for mu in (1, 3):
        out = tmp_path / f"mu{mu}"
        rl(config(small_tables, trained_pair, out, steps=2, lr=3e-2, updates_per_batch=mu))
        state = torch.load(out / "step_000002" / "av.optimizer.pt", weights_only=True)
        adam_steps = {float(s["step"]) for s in state["state"].values()}
        runs[mu] = (adam_steps, read_metrics(out))
    assert runs[1][0] == {2.0} and runs[3][0] == {6.0}  # μ optimizer steps per batch
    # one update: the ratio is 1, nothing clipped; later updates move off the samples' policy
    assert all(r["clip_frac"] == 0 for r in runs[1][1])
    assert any(r["clip_frac"] > 0 for r in runs[3][1])
    # the first batch is drawn by the same policy either way
    assert runs[1][1][0]["mse_nrm"] == pytest.approx(runs[3][1][0]["mse_nrm"])


@pytest.mark.parametrize(
    "shaping", [dict(reward="matryoshka", prefix_lengths="2 0"), dict(reward="random-k", k_max=6)]
)
def test_rl_trains_with_a_prefix_reward(small_tables, trained_pair, tmp_path, shaping):
    rl(config(small_tables, trained_pair, tmp_path / "rl", steps=2, **shaping))
    assert [r["step"] for r in read_metrics(tmp_path / "rl")] == [1, 2]
    assert (tmp_path / "rl" / "av" / "nla_meta.yaml").is_file()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(prefix_lengths="8 x"), "prefix_lengths '8 x'"),
        (dict(reward="matryoshka", prefix_weights="1 2"), "one per prefix length"),
        (dict(k_min=9, k_max=8), "k_min ≤ k_max"),
    ],
)
def test_bad_prefix_settings_are_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        RLConfig(data="t", av="a", ar="r", out="o", **fields)


def test_frozen_ar_does_not_change(small_tables, trained_pair, tmp_path):
    rl(config(small_tables, trained_pair, tmp_path / "rl", steps=2, freeze_ar=True))
    before = NLA.from_pretrained(ar=trained_pair[1], device="cpu").reconstruct(["a poem", "code"])
    after = NLA.from_pretrained(ar=tmp_path / "rl" / "ar", device="cpu").reconstruct(
        ["a poem", "code"]
    )
    assert torch.allclose(before, after)
    assert all(r["ar_loss"] is None for r in read_metrics(tmp_path / "rl"))


def _cli(small_tables, pair, out, steps, resume=False):
    av, ar = pair
    argv = [
        sys.executable,
        "-m",
        "nlakit",
        "rl",
        "--data",
        str(small_tables),
        "--av",
        str(av),
        "--ar",
        str(ar),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--batch-size",
        "2",
        "--group-size",
        "4",
        "--max-new-tokens",
        "24",
        "--warmup",
        "1",
        "--eval-every",
        "0",
        "--save-every",
        "1",
        "--keep-checkpoints",
        "2",
        "--lr",
        "1e-4",
        "--progress",
        "false",
    ]
    return argv + (["--resume", "true"] if resume else [])


@pytest.mark.slow  # three RL processes: about 50 s
def test_sigkill_mid_run_then_resume_reproduces_the_run(small_tables, trained_pair, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(
        _cli(small_tables, trained_pair, whole, 6), check=True, env=env, capture_output=True
    )
    proc = subprocess.Popen(
        _cli(small_tables, trained_pair, killed, 6),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (killed / "step_000003").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "av").exists(), "the run finished before it could be killed"
    done = len(read_metrics(killed))
    assert 3 <= done < 6
    subprocess.run(
        _cli(small_tables, trained_pair, killed, 6, resume=True),
        check=True,
        env=env,
        capture_output=True,
    )
    a, b = read_metrics(whole), read_metrics(killed)
    assert [r["step"] for r in b] == list(range(1, 7))
    for x, y in zip(a, b, strict=True):
        for key in COMPARED:
            if x[key] is None:
                assert y[key] is None
            else:
                assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-6), (x["step"], key)


def test_qlora_rl_runs_over_4bit_bases_and_exports_full_precision(
    small_tables, trained_pair, tmp_path
):
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (nlakit[qlora])")
    from bitsandbytes.nn import Linear4bit

    kw = dict(steps=2, lora_rank=4, load_in_4bit=True, freeze_ar=False)
    rl(config(small_tables, trained_pair, tmp_path / "rl", **kw))
    assert [r["step"] for r in read_metrics(tmp_path / "rl")] == [1, 2]
    nla = NLA.from_pretrained(av=tmp_path / "rl" / "av", ar=tmp_path / "rl" / "ar", device="cpu")
    for module in (nla.av.model, nla.ar.backbone):
        assert not any(isinstance(m, Linear4bit) for m in module.modules())
    assert len(nla.explain(torch.randn(2, 64), max_new_tokens=4)) == 2


def test_rl_trains_with_the_separators_reward(small_tables, trained_pair, tmp_path):
    from nlakit.data.tables import separator_tables
    from nlakit.errors import NLAKitError
    from nlakit.models import ActivationVerbalizer
    from nlakit.separators import SEPARATOR, separator_of
    from nlakit.train.sft import SFTConfig, sft

    with pytest.raises(NLAKitError, match="no separator token"):  # the plain SFT AV
        rl(config(small_tables, trained_pair, tmp_path / "x", steps=1, reward="separators"))
    assert not (tmp_path / "x").exists()
    tables = separator_tables(small_tables, tmp_path / "tables")
    sft(SFTConfig(role="av", data=str(tables), out=str(tmp_path / "av_sft"), model=str(trained_pair[0]),
                  steps=6, lr=3e-3, batch_size=8, warmup=0, eval_every=0, save_every=0,
                  separator=True, progress=False))  # fmt: skip
    pair = (tmp_path / "av_sft" / "av", trained_pair[1])
    rl(config(tables, pair, tmp_path / "rl", steps=2, reward="separators", length_penalty=0.01))
    assert [r["step"] for r in read_metrics(tmp_path / "rl")] == [1, 2]
    assert (
        separator_of(ActivationVerbalizer.from_pretrained(tmp_path / "rl" / "av").meta) == SEPARATOR
    )


def test_rl_scores_with_a_context_ar_given_each_rows_text(small_tables, trained_pair, tmp_path):
    from nlakit.ar_context import needs_context
    from nlakit.models import ActivationReconstructor
    from nlakit.train.sft import SFTConfig, sft

    sft(SFTConfig(role="ar", data=str(small_tables), out=str(tmp_path / "ctx"), steps=2,
                  context=16, batch_size=4, warmup=0, eval_every=0, save_every=0,
                  progress=False))  # fmt: skip
    pair = (trained_pair[0], tmp_path / "ctx" / "ar")
    rl(config(small_tables, pair, tmp_path / "rl", steps=2, freeze_ar=False))
    records = read_metrics(tmp_path / "rl")
    assert [r["step"] for r in records] == [1, 2]
    # a context AR refuses to score without the contexts: scoring and evaluation had them
    assert all(r["reward"] is not None for r in records) and "eval_fve" in records[-1]
    assert needs_context(ActivationReconstructor.from_pretrained(tmp_path / "rl" / "ar"))
