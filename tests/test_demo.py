import json

from nlakit.cli import main


def test_demo_runs_end_to_end_on_a_small_world(capsys, tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--size", "small"]) == 0
    out = capsys.readouterr().out
    for stage in ("[1/4]", "[2/4]", "[3/4]", "[4/4]", "run directory"):
        assert stage in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["layer"] == 1 and summary["lm_loss"] < summary["unigram_loss"]
    assert summary["probe"]["genre_acc"] > summary["probe"]["genre_majority"]
