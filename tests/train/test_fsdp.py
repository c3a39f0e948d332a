"""FSDP2 (`--parallel fsdp`), `torchrun` with 2 ranks (gloo, CPU): SFT gives the 1-rank
result, RL gives the DDP result and resumes exactly from its gathered checkpoints."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_ddp import launch, losses, weights

SFT = ["--steps", "3", "--batch-size", "8", "--grad-accum", "2", "--lr", "1e-3", "--warmup", "1"]
SFT += ["--eval-every", "0", "--save-every", "2", "--progress", "false"]


@pytest.mark.slow  # two torchrun launches per case: about 50 s
@pytest.mark.parametrize("role,lora", [("av", "0"), ("ar", "4")])
def test_sft_sharded_over_two_ranks_equals_one_rank(role, lora, small_tables, tmp_path):
    """Same global batch, gradient accumulation (no gradient sync but on the last
    micro-batch), a mid-run checkpoint gathered to rank 0, the export rebuilt whole."""
    args = ["sft", role, "--data", str(small_tables), "--lora-rank", lora, *SFT]
    launch(1, [*args, "--out", str(tmp_path / "one")], tmp_path)
    launch(2, [*args, "--parallel", "fsdp", "--out", str(tmp_path / "two")], tmp_path)
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), rel=1e-4)
    one, two = weights(tmp_path / "one" / role), weights(tmp_path / "two" / role)
    assert one.keys() == two.keys()
    for name in one:
        assert torch.allclose(one[name], two[name], atol=2e-5, rtol=1e-4), name
    # the step-2 checkpoint holds whole tensors, equal to the single rank's
    for part in ("safetensors", "optimizer.pt"):
        a = tmp_path / "one" / "step_000002" / f"{role}.{part}"
        b = tmp_path / "two" / "step_000002" / f"{role}.{part}"
        assert a.is_file() and b.is_file()
    ckpt_one = load_file(str(tmp_path / "one" / "step_000002" / f"{role}.safetensors"))
    ckpt_two = load_file(str(tmp_path / "two" / "step_000002" / f"{role}.safetensors"))
    assert ckpt_one.keys() == ckpt_two.keys()
    for name in ckpt_one:
        assert ckpt_one[name].shape == ckpt_two[name].shape, name
        assert torch.allclose(ckpt_one[name], ckpt_two[name], atol=2e-5, rtol=1e-4), name


@pytest.fixture(scope="module")
def finishing_av(small_tables, tmp_path_factory):
    """An AV trained long enough (150 steps, about 20 s) that most samples close their
    explanation, so RL rewards differ within a group and the update is not zero."""
    from nlakit.train.sft import SFTConfig, sft

    out = tmp_path_factory.mktemp("finishing") / "av_sft"
    fast = dict(batch_size=8, warmup=2, eval_every=0, save_every=0, progress=False)
    sft(SFTConfig(role="av", data=str(small_tables), out=str(out), steps=150, lr=6e-3, **fast))
    return out / "av"


RL = ["--steps", "4", "--batch-size", "2", "--group-size", "4", "--max-new-tokens", "64"]
RL += ["--temperature", "0.7", "--eval-rows", "8", "--save-every", "2", "--progress", "false"]
RL += ["--kl-coef", "0.05", "--freeze-ar", "false", "--lr", "1e-3"]
COMPARED = ("reward", "fve", "kl", "loss", "ar_loss", "mean_tokens", "grad_norm")


def records(run) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def compared(run) -> list[float]:
    return [r[k] for r in records(run) for k in COMPARED]


@pytest.mark.slow  # five torchrun launches: about 4 minutes
@pytest.mark.parametrize("lora", ["0", "4"])
def test_rl_sharded_equals_ddp_and_resumes(
    lora, small_tables, finishing_av, trained_pair, tmp_path
):
    """Two ranks, 4 steps, the KL reference (a sharded frozen copy for a full fine-tune,
    the adapter-less AV with LoRA) and the AR co-trained: FSDP gives DDP's run (each
    rank samples from its own stream in both); and with the step-4 checkpoint removed,
    a resumed FSDP run repeats steps 3 and 4 exactly (weights, optimizer states and
    each rank's sampling stream restored from whole tensors)."""
    argv = ["rl", "--data", str(small_tables), "--av", str(finishing_av)]
    argv += ["--ar", str(trained_pair[1]), "--lora-rank", lora, *RL]
    launch(2, [*argv, "--out", str(tmp_path / "ddp")], tmp_path)
    sharded = [*argv, "--parallel", "fsdp", "--out", str(tmp_path / "rl")]
    launch(2, sharded, tmp_path)
    straight = records(tmp_path / "rl")
    assert [r["step"] for r in straight] == [1, 2, 3, 4]
    assert min(r["finished"] for r in straight) > 0 and "eval_fve" in straight[-1]
    assert any(r["grad_norm"] > 0 for r in straight)
    assert compared(tmp_path / "rl") == pytest.approx(compared(tmp_path / "ddp"), rel=1e-4)
    exported, reference = weights(tmp_path / "rl" / "av"), weights(tmp_path / "ddp" / "av")
    for name in reference:
        assert torch.allclose(exported[name], reference[name], atol=1e-5), name
    if lora == "4":
        return
    before = compared(tmp_path / "rl")
    shutil.rmtree(tmp_path / "rl" / "step_000004")
    launch(2, [*sharded, "--resume", "true"], tmp_path)
    assert compared(tmp_path / "rl") == before
    resumed = weights(tmp_path / "rl" / "av")
    for name in exported:
        assert torch.equal(exported[name], resumed[name]), name
