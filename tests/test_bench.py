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
    ],
)
def test_bench_script_runs(script, args, expect, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(BENCH / script), run_name="__main__")
    assert expect in capsys.readouterr().out
