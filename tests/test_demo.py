import json

import pytest

from nlakit.cli import main

KEYS = {
    "fve_ar_on_teacher",
    "fve_sft",
    "fve_rl",
    "fve_shuffled",
    "baseline_variance",
    "n_eval",
    "genre_recovery",
    "mean_tokens_sft",
    "mean_tokens_rl",
    "wall_seconds",
}


def test_demo_runs_end_to_end_on_a_small_world(capsys, tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--size", "small"]) == 0
    out = capsys.readouterr().out
    for stage in range(1, 9):
        assert f"[{stage}/8]" in out
    assert "five tokens" in out and "run directory" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) >= KEYS
    assert summary["n_eval"] > 0 and 0 <= summary["genre_recovery"] <= 1
    for name in ("av", "ar"):
        assert (tmp_path / "rl" / name / "nla_meta.yaml").is_file()


@pytest.mark.slow
def test_make_demo_acceptance(tmp_path):
    """`nlakit demo` from scratch: ≤ 10 minutes on 2 cores, RL beats SFT, SFT beats the
    shuffled control by 0.2, and the RL AV states the true genre ≥ 90% of the time."""
    assert main(["demo", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["wall_seconds"] <= 600
    assert s["fve_rl"] > s["fve_sft"]
    assert s["fve_sft"] > s["fve_shuffled"] + 0.2
    assert s["genre_recovery"] >= 0.9
