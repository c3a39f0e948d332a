"""The steering analysis: its files and summary on a small run, a clear error off the
toy world, and (slow) on the demo run the headline fact: the AR's vector for a genre
moves the world model's continuations toward it far more than a random direction."""

from __future__ import annotations

import json

import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.steering import SteeringConfig, genre_text, steering


def test_steering_writes_a_row_per_genre(eval_run):
    summary = steering(
        SteeringConfig(run=str(eval_run), samples=2, max_new_tokens=8, bootstrap=200)
    )
    assert len(summary["genres"]) == 9 and summary["n_pairs"] == 18
    assert summary["gain_ci"][0] <= summary["gain"] <= summary["gain_ci"][1]
    out = eval_run / "eval" / "steering"
    assert {p.name for p in out.iterdir()} >= {
        "table.csv",
        "summary.json",
        "plot.png",
        "samples.csv",
    }
    assert json.loads((out / "summary.json").read_text())["reader_accuracy"] > 0.5


def test_steering_needs_a_toy_world_run(eval_run, monkeypatch):
    import dataclasses

    from nlakit.eval import steering as module

    real = module.resolve_run
    monkeypatch.setattr(
        module, "resolve_run", lambda *a, **k: dataclasses.replace(real(*a, **k), world=None)
    )
    with pytest.raises(NLAKitError, match="not a toy-world run"):
        steering(SteeringConfig(run=str(eval_run)))


def test_genre_texts_name_the_genre():
    assert genre_text("poem").startswith("Rhyming poem: a poem about")


@pytest.mark.slow
def test_ar_steering_moves_genre_share(demo_eval_run):
    """Issue acceptance: the steered genre's share ≥ 0.3 above the random control."""
    summary = steering(SteeringConfig(run=str(demo_eval_run)))
    assert summary["gain"] >= 0.3 and summary["gain_ci"][0] > 0.2, summary
    assert summary["reader_accuracy"] >= 0.95
