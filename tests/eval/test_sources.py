"""Picking the source: the oracle's rules on hand-written explanations, the sources and
the prompt, the analysis on a small run with the oracle and with a judge model (the
local fake LLM server), and (slow) on the demo run the headline: a judge reading the
AV's explanations picks the explained text well above chance and above shuffled ones."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.choice import Question, judge_picks, read_claims
from nlakit.eval.rows import load_rows
from nlakit.eval.sources import (
    SourcesConfig,
    ends_with_token,
    pick_sources,
    quotes_in,
    source_points,
    source_texts,
    sources_prompt,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))  # the fake LLM server
from fake_llm import FakeLLM

POEM = (
    "Verse: a formal poem on love, written by Owen Pike.\n"
    'In the verses, the text reads "The Standard Love / by Owen Pike / I".\n'
    'The last token, "I", is a word in a verse line. What follows is a further word.'
)
SOURCE = "The Standard Love\nby Owen Pike\nI"


def test_source_texts_keep_the_end_of_each_context():
    assert source_texts(["abcdef", None, "xy"], 4) == ["…cdef", "", "xy"]


def test_ends_with_token_and_quotes():
    assert ends_with_token(SOURCE, "I") and ends_with_token("a b\n", "\n")
    assert ends_with_token("Hello there", " there") and not ends_with_token("Hello", "hi")
    assert not ends_with_token("Hello", None) and not ends_with_token("Hello ", " ")
    assert quotes_in(["by owen pike / I"], SOURCE)
    assert not quotes_in(["Pike"], SOURCE)  # one word is no quote of the context
    assert not quotes_in(["The Grey Rain / by"], SOURCE)


def test_the_true_source_scores_highest():
    claims = read_claims(POEM)
    assert source_points(claims, SOURCE, "poem") == 5  # token, genre, topic, entity, quote
    assert source_points(claims, "The Grey Rain\nby Elsa Grey\nThe rain is", "poem") == 1
    assert source_points(claims, "Forecast for Galway\nSaturday:", "weather") == 0
    assert source_points(read_claims(""), SOURCE, "poem") == 0


def test_sources_prompt_shows_the_explanation_and_numbered_quoted_options():
    prompt = sources_prompt(POEM, [SOURCE, "…for Galway"])
    assert POEM in prompt and '1. "The Standard Love\\nby Owen Pike\\nI"' in prompt
    assert '2. "…for Galway"' in prompt and "Answer: N" in prompt


def test_judge_picks_count_unparsed_replies(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    options = ["a", "b", "c", "d"]
    questions = [Question(k, [0, 1, 2, 3], options, k) for k in range(4)]
    explanations = {"av": ["w", "x", "y", "z"], "shuffled": ["x", "y", "z", "w"]}
    with FakeLLM() as fake:
        fake.reply("The text is number 2.\nAnswer: 2", times=7)
        fake.reply("Either 1 or 3")  # two numbers, no Answer: line
        config = SourcesConfig(run="unused", judge=f"openai:judge@{fake.openai_url}")
        picks, report = judge_picks(
            config, questions, explanations, sources_prompt, tmp_path / "judge.sqlite"
        )
        assert sorted(r.prompt for r in fake.requests) == sorted(
            sources_prompt(e[q.row], options) for e in explanations.values() for q in questions
        )
    assert report["requests"] == 8
    assert sorted(p for ps in picks.values() for p in ps if p is not None) == [1] * 7
    assert sum(p is None for ps in picks.values() for p in ps) == 1


def test_sources_with_the_oracle(eval_run):
    """Mechanics on a small run: every question holds its truth once among options from
    other documents; the teacher's true claims beat shuffled ones; files land."""
    summary = pick_sources(SourcesConfig(run=str(eval_run), bootstrap=200))
    rows = load_rows(eval_run)
    assert summary["n"] == len(rows) and summary["n_left_out"] == 0
    assert summary["chance"] == 0.25 and summary["options"] == 4
    assert summary["accuracy_teacher"] >= 0.6 > 0.45 >= summary["accuracy_shuffled"], summary
    assert summary["av_minus_shuffled"] == pytest.approx(
        summary["accuracy_av"] - summary["accuracy_shuffled"]
    )
    out = eval_run / "eval" / "sources"
    assert {p.name for p in out.iterdir()} >= {
        "table.csv", "summary.json", "plot.png", "questions.csv"
    }  # fmt: skip
    with open(out / "questions.csv", newline="") as handle:
        questions = list(csv.DictReader(handle))
    docs = rows.columns["doc_id"]
    by_text = {}
    for i, context in enumerate(rows.columns["context"]):
        by_text.setdefault(source_texts([context], 240)[0], set()).add(docs[i])
    for q in questions:
        options = json.loads(q["options"])
        assert len(options) == 4 and options.count(q["truth"]) == 1
        # every distractor is the source of a row of another document
        assert all(by_text[o] - {q["doc_id"]} for o in options if o != q["truth"])


def test_the_oracle_needs_the_toy_world(eval_run, tmp_path):
    with pytest.raises(NLAKitError, match="--judge nobody: expected oracle"):
        pick_sources(SourcesConfig(run=str(eval_run), judge="nobody"))


@pytest.mark.slow
def test_av_explanations_pick_their_source(demo_eval_run):
    """Headline: the oracle judge reading the AV's explanations picks the explained text
    well above chance (0.25) and above explanations of shuffled vectors."""
    summary = pick_sources(SourcesConfig(run=str(demo_eval_run)))
    # measured on the demo run (2026-12-01): n 512, AV 0.89 [0.86, 0.92], shuffled 0.27,
    # AV − shuffled +0.63 [+0.58, +0.67]
    assert summary["n"] == 512, summary
    assert summary["accuracy_av_ci"][0] >= 0.7, summary
    assert summary["av_minus_shuffled_ci"][0] >= 0.45, summary
    assert abs(summary["accuracy_shuffled"] - 0.25) <= 0.07, summary
