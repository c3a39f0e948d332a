"""Data parallelism: `torchrun` with 2 ranks (gloo, CPU) gives the 1-rank result."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file


def launch(ranks: int, argv: list[str], cwd) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={ranks}",
        "-m",
        "nlakit",
        *argv,
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]


def weights(model_dir) -> dict[str, torch.Tensor]:
    return load_file(str(next(model_dir.glob("*.safetensors"))))


def losses(run_dir) -> list[float]:
    return [
        json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow  # two torchrun launches per role: about 50 s
@pytest.mark.parametrize("role", ["av", "ar"])
def test_sft_two_ranks_equal_one(role, small_tables, tmp_path):
    args = [
        "sft",
        role,
        "--data",
        str(small_tables),
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--warmup",
        "1",
        "--eval-every",
        "0",
        "--save-every",
        "0",
        "--progress",
        "false",
    ]
    launch(1, [*args, "--out", str(tmp_path / "one")], tmp_path)
    launch(2, [*args, "--out", str(tmp_path / "two")], tmp_path)
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), rel=1e-4)
    one, two = weights(tmp_path / "one" / role), weights(tmp_path / "two" / role)
    assert one.keys() == two.keys()
    for name in one:
        assert torch.allclose(one[name], two[name], atol=2e-5, rtol=1e-4), name


@pytest.mark.slow
def test_rl_runs_on_two_ranks(small_tables, trained_pair, tmp_path):
    av, ar = trained_pair
    launch(
        2,
        [
            "rl",
            "--data",
            str(small_tables),
            "--av",
            str(av),
            "--ar",
            str(ar),
            "--out",
            str(tmp_path / "rl"),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--group-size",
            "4",
            "--max-new-tokens",
            "16",
            "--eval-rows",
            "8",
            "--progress",
            "false",
        ],
        tmp_path,
    )
    records = [json.loads(x) for x in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert (tmp_path / "rl" / "av" / "nla_meta.yaml").is_file()


@pytest.mark.slow
def test_rl_on_two_ranks_resumes_each_ranks_sampling(small_tables, trained_pair, tmp_path):
    """Two ranks, 4 steps; then the step-4 checkpoint is removed and the run resumed from
    step 2: steps 3 and 4 come out the same, because each rank's sampling generator is
    checkpointed and restored (not rank 0's for every rank)."""
    import shutil

    av, ar = trained_pair
    argv = ["rl", "--data", str(small_tables), "--av", str(av), "--ar", str(ar)]
    argv += ["--out", str(tmp_path / "rl"), "--steps", "4", "--batch-size", "2"]
    argv += ["--group-size", "4", "--max-new-tokens", "12", "--eval-rows", "8"]
    argv += ["--save-every", "2", "--progress", "false", "--kl-coef", "0"]

    def rewards() -> list[float]:
        lines = (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["reward"] for x in lines]

    launch(2, argv, tmp_path)
    straight = rewards()
    shutil.rmtree(tmp_path / "rl" / "step_000004")
    launch(2, [*argv, "--resume", "true"], tmp_path)
    assert len(straight) == 4 and rewards() == straight
