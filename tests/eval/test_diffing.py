"""`nlakit analyze diff`: a known fine-tune change and a control, diffed (toy world)."""

from __future__ import annotations

import json
import math

import pytest

from nlakit.eval.diffing import (
    DiffingConfig,
    change_names,
    diffing,
    ratio,
    scope_chats,
    unrelated_documents,
)
from nlakit.toyworld.world import World


def test_change_names():
    assert "Recipe" in change_names("answer-genre", "recipe")
    travel = change_names("answer-topic", "travel")
    assert "travel" in travel and "Lisbon" in travel


def test_ratio():
    assert ratio(0.3, 0.1) == pytest.approx(3.0)
    assert ratio(0.2, 0.0) == math.inf and math.isnan(ratio(0.0, 0.0))


def test_scope_chats_are_fresh_chats_about_the_source(small_world):
    world = World(small_world)
    chats = scope_chats(world, "music", 5)
    assert len(chats) == 5 and {(c.genre, c.topic) for c in chats} == {("chat", "music")}
    assert min(c.doc_id for c in chats) >= 2_000_000  # never a corpus document
    assert len(scope_chats(world, "any", 7)) == 7


def test_diffing_on_eval_run(eval_run):
    config = DiffingConfig(
        run=str(eval_run), steps=3, docs=6, mean_samples=4, bootstrap=100, device="cpu"
    )
    summary = diffing(config)
    out = eval_run / "eval" / "diff"
    assert json.loads((out / "summary.json").read_text())["change"] == summary["change"]
    assert summary["change"] == "chats asked about cooking are answered with a recipe"
    assert summary["n_positions"] == 12
    for side in ("tuned", "diff", "mean"):
        for model in ("tuned", "control"):
            assert 0.0 <= summary[f"{side}_names_change_{model}"] <= 1.0
    assert set(summary["losses"]) == {"tuned", "control"}
    assert summary["probe"]["latent"] == "genre" and 0 <= summary["probe"]["accuracy"] <= 1
    for side in ("tuned", "diff"):
        for model in ("tuned", "control"):
            assert 0.0 <= summary[f"probe_{side}_reads_change_{model}"] <= 1.0
    assert (out / "plot.png").is_file() and (out / "tuned_diff" / "explanations.csv").is_file()
    # Cached: the fine-tuned worlds are reused, the summary is the same.
    again = diffing(config)
    assert again["losses"] == summary["losses"]


def test_a_narrow_fine_tune_is_diffed_on_unrelated_documents(eval_run):
    config = DiffingConfig(
        run=str(eval_run), change="narrow", target="poem", steps=3, docs=5, mean_samples=3,
        bootstrap=100, device="cpu",
    )  # fmt: skip
    summary = diffing(config)
    assert summary["change"] == "fine-tuned on 75% of documents of the genre poem (narrow)"
    read = (eval_run / "eval" / "diff" / "chats.jsonl").read_text().splitlines()
    unrelated = unrelated_documents(World(eval_run / "world"), "poem", 5)
    assert [json.loads(t)["text"] for t in read] == [d.text for d in unrelated]
    rows = {(r["model"], r["side"]): r for r in summary["table"]}
    assert rows[("tuned", "mean_either")]["n"] == 6  # the mean difference and its opposite
    assert "mean_either_ratio" in summary and "Poem" in summary["names"]


def test_unrelated_documents_leave_out_the_genre(small_world):
    docs = unrelated_documents(World(small_world), "poem", 40)
    assert len(docs) == 40 and "poem" not in {d.genre for d in docs}
    assert min(d.doc_id for d in docs) >= 2_000_000


@pytest.mark.slow
def test_the_diff_names_a_narrow_fine_tune(demo_eval_run):
    """The headline of activation diffing (docs/using.md): after a narrow fine-tune on
    recipes, the opposite of the mean difference on unrelated documents reads as a
    recipe far more often than the control's (measured 1.00 vs 0.03)."""
    summary = diffing(DiffingConfig(run=str(demo_eval_run), change="narrow", device="cpu"))
    tuned, control = (
        summary["mean_away_names_change_tuned"],
        summary["mean_away_names_change_control"],
    )
    assert tuned >= 0.5 and tuned >= 3 * control


@pytest.mark.slow
def test_the_fine_tunes_carry_the_change_and_nothing_else(demo_eval_run):
    """The ground truth the diff is judged against: the tuned demo model learned the
    change, the control did not, and neither moved the rest of the world. (Whether the
    demo AV names the change is measured, not asserted: docs/using.md, activation
    diffing — on the demo run it does not.)"""
    summary = diffing(DiffingConfig(run=str(demo_eval_run), device="cpu"))
    tuned, control = summary["losses"]["tuned"], summary["losses"]["control"]
    assert tuned["after"]["changed"] < 0.5 * tuned["before"]["changed"]
    assert control["after"]["changed"] > 0.85 * control["before"]["changed"]
    for losses in (tuned, control):
        assert abs(losses["after"]["world_eval"] - losses["before"]["world_eval"]) < 0.05
    assert summary["n_positions"] == 300
