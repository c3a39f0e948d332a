"""The benchmark scripts stay runnable (tiny sizes; the figures come from `make bench`)."""

import runpy
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        (
            "early_exit.py",
            ["--layers", "4", "--hidden", "64", "--vocab", "500", "--seq", "16", "--repeats", "1"],
            "speed-up of early exit",
        ),
        (
            "generation.py",
            ["--n", "3", "--tokens", "4", "--hidden", "64", "--layers", "2"],
            "3/3 outputs identical",
        ),
        (
            "sft_packing.py",
            ["--steps", "1", "--batch", "4", "--hidden", "64", "--layers", "2", "--max-len", "30"],
            "largest loss difference packed vs padded: ",
        ),
        (
            "gpu.py",
            [
                "--shape",
                "tiny",
                "--device",
                "cpu",
                "--decode-batch",
                "16",
                "--tokens",
                "8",
                "--sft-batch",
                "4",
                "--update-batch",
                "8",
                "--no-write",
            ],
            "| RL step, LoRA r16 | – | – | – | ",
        ),
    ],
)
def test_bench_script_runs(script, args, expect, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(BENCH / script), run_name="__main__")
    assert expect in capsys.readouterr().out


def test_rl_step_bench_splits_the_step(small_tables, trained_pair, monkeypatch, capsys):
    av, ar = trained_pair
    args = ["--tables", str(small_tables), "--av", str(av), "--ar", str(ar), "--steps", "2"]
    args += ["--batch", "2", "--group", "2", "--max-new-tokens", "4"]
    monkeypatch.setattr(sys, "argv", ["rl_step.py", *args])
    runpy.run_path(str(BENCH / "rl_step.py"), run_name="__main__")
    out = capsys.readouterr().out
    for phase in ("generate", "score", "update", "generation / update ratio"):
        assert phase in out
