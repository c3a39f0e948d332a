"""The analyses as `nlakit analyze NAME`, `nlakit report RUN` and `nlakit analyze all`."""

import shutil
import time

import pytest

from nlakit.cli import main
from nlakit.eval.cli import ANALYSES


@pytest.fixture
def run(eval_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(eval_run, copy)
    return copy


def test_analyze_verbs_write_their_outputs(run, capsys):
    for name in ("tokens", "format", "truth"):
        assert main(["analyze", name, "--run", str(run)]) == 0, name
        out_dir = run / "eval" / ANALYSES[name][3]
        for file in ("table.csv", "summary.json", "plot.png"):
            assert (out_dir / file).is_file(), (name, file)
    assert main(["analyze", "format", "--run", str(run), "--column", "teacher_explanation"]) == 0
    assert main(["report", str(run)]) == 0
    html = (run / "eval" / "report" / "report.html").read_text()
    assert "Explanation format" in html and "Truth on the toy world" in html
    assert "wrote" in capsys.readouterr().out


def test_analyze_errors_are_clean(tmp_path, capsys):
    assert main(["analyze", "tokens", "--run", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "bare").mkdir()
    assert main(["report", str(tmp_path / "bare")]) == 2


FINE_TUNING = {"diff": 900, "audit": 900}  # seconds: these fine-tune world models


@pytest.mark.slow
def test_every_analysis_runs_on_the_demo_run_within_two_minutes(demo_eval_run):
    """`nlakit analyze NAME` for each analysis on the full demo run, each ≤ 2 minutes
    on 2 cores (those that fine-tune world models, ≤ 15), then `nlakit report`."""
    times = {}
    for name in ANALYSES:
        start = time.perf_counter()
        assert main(["analyze", name, "--run", str(demo_eval_run)]) == 0, name
        times[name] = time.perf_counter() - start
    assert main(["report", str(demo_eval_run)]) == 0
    print(times)
    budget = {name: FINE_TUNING.get(name, 120) for name in times}
    assert all(times[name] < budget[name] for name in times), times
