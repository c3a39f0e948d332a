"""Suffix prediction: the oracle's rules on hand-written explanations, the prompt, the
analysis on a small run with the oracle and with a judge model (the local fake LLM
server), and (slow) on the demo run the headline: a judge reading the AV's
explanations picks the true continuation well above chance and above shuffled ones."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.choice import read_claims
from nlakit.eval.rows import load_rows
from nlakit.eval.suffix import (
    SuffixConfig,
    first_piece,
    suffix_points,
    suffix_prediction,
    suffix_prompt,
    visible_kinds,
)
from nlakit.eval.suffix import continuations as continuations_of

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))  # the fake LLM server
from fake_llm import FakeLLM

POEM = (
    "Verse: a formal poem on love, written by Owen Pike.\n"
    'The last token, "I", is a word in a verse line. What follows is a further word.'
)
FORECAST = (
    "Weather report: rainy weather for Galway.\n"
    'The final token ":" is a punctuation mark. Next must come a number.'
)


@pytest.mark.parametrize(
    ("text", "piece", "kinds"),
    [
        (" watched the love", " watched", {"word"}),
        (" Owen Pike", " Owen", {"word", "name"}),
        ("\n* 12 blankets", "\n", {"newline"}),
        ("<|end|>\n<|assistant|>", "<|end|>", {"end"}),
        ("<|user|>\nHi", "<|user|>", {"tag"}),
        (' """Return the', ' """', {"quote"}),
        (" 12 cups of", " 12", {"number"}),
        (", and then", ",", {"punctuation"}),
    ],
)
def test_first_piece_and_what_a_reader_sees_of_it(text, piece, kinds):
    assert first_piece(text) == piece
    assert visible_kinds(piece) == kinds


def test_the_true_continuation_scores_highest():
    poem = read_claims(POEM)
    true = " watched the love of Owen Pike"
    assert suffix_points(poem, true, "poem") == 4  # kind, genre, topic, entity
    assert suffix_points(poem, "\n* 12 blankets", "list") == 0
    assert suffix_points(poem, " stir the soup", "recipe") == 1  # a word comes next: only that
    forecast = read_claims(FORECAST)
    assert suffix_points(forecast, " 14 degrees, rain in Galway", "weather") == 4
    assert suffix_points(forecast, " Galway", "weather") == 2  # a word, not a number
    assert suffix_points(read_claims(""), true, "poem") == 0  # no claims, no points


def test_suffix_prompt_shows_the_explanation_and_numbered_quoted_options():
    prompt = suffix_prompt(POEM, [" watched the", "\n* 12"])
    assert POEM in prompt and '1. " watched the"' in prompt and '2. "\\n* 12"' in prompt
    assert prompt.endswith('Reply with only "Answer: N", N the number of the continuation.')
    assert "(empty)" in suffix_prompt("  ", ["a", "b"])


def test_continuations_are_the_tokens_after_each_row(eval_run):
    from nlakit.toyworld.world import World

    rows = load_rows(eval_run)
    world = World(rows.paths.world)
    doc_ids, positions = rows.columns["doc_id"][:6], rows.columns["position"][:6]
    tokens = rows.columns["token"][:6]
    after = continuations_of(world, doc_ids, positions, tokens, 3)
    contexts = rows.columns["context"][:6]
    for doc, text, context in zip(world.documents_for(doc_ids), after, contexts, strict=True):
        assert text and context + text in doc.text
    with pytest.raises(NLAKitError, match="not the row's token"):
        continuations_of(world, doc_ids[:1], positions[:1], ["not a token"], 3)


def test_suffix_with_the_oracle(eval_run):
    """Mechanics on a small run: every question holds its truth once among options from
    other documents; the teacher's true claims beat shuffled ones; files land."""
    summary = suffix_prediction(SuffixConfig(run=str(eval_run), bootstrap=200))
    rows = load_rows(eval_run)
    assert summary["n"] + summary["n_left_out"] == len(rows) and summary["n"] >= 40
    assert summary["chance"] == 0.1 and summary["judge"] == "oracle"
    assert summary["unparsed"] == {"av": 0, "teacher": 0, "shuffled": 0}
    for key in ("accuracy_av", "accuracy_teacher", "accuracy_shuffled", "av_minus_shuffled"):
        low, high = summary[f"{key}_ci"]
        assert low <= summary[key] <= high
    assert summary["accuracy_teacher"] >= 0.3 >= summary["accuracy_shuffled"], summary
    out = eval_run / "eval" / "suffix"
    assert {p.name for p in out.iterdir()} >= {
        "table.csv", "summary.json", "plot.png", "questions.csv"
    }  # fmt: skip
    with open(out / "questions.csv", newline="") as handle:
        questions = list(csv.DictReader(handle))
    assert len(questions) == summary["n"]
    docs = rows.columns["doc_id"]
    for q in questions:
        options = json.loads(q["options"])
        assert len(options) == 10 and options.count(q["truth"]) == 1
        assert options[int(q["answer"]) - 1] == q["truth"] and docs[int(q["row"])] == q["doc_id"]
    same = suffix_prediction(
        SuffixConfig(run=str(eval_run), bootstrap=200, distractors="same_genre", options=4)
    )
    assert same["distractors"] == "same_genre" and "distractors_of_another_genre" in same


def test_suffix_with_a_judge_model_through_the_fake_server(eval_run, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeLLM() as fake:
        spec = f"openai:judge@{fake.openai_url}"
        config = SuffixConfig(run=str(eval_run), judge=spec, bootstrap=200)
        fake.reply("I cannot tell.", times=2)  # the first two replies name no option
        fake.reply("Answer: 1", times=1000)
        summary = suffix_prediction(config)
        prompts = [r.prompt for r in fake.requests]
        again = suffix_prediction(config)  # every reply comes from the cache
        assert len(fake.requests) == len(prompts)
    n = summary["n"]
    assert summary["judge_report"]["requests"] == 3 * n and summary["judge"] == spec
    # Questions that share a prompt mostly share one request (the small run's weak AV
    # writes the same explanation for many rows, so its shuffled prompts repeat its own;
    # the cache answers a repeat unless both were in flight at once).
    assert len(prompts) <= 3 * n
    assert 2 <= sum(summary["unparsed"].values()) <= 6
    assert again["judge_report"]["cache_hits"] == 3 * n
    assert {**again, "judge_report": None} == {**summary, "judge_report": None}
    assert all(p.endswith('"Answer: N", N the number of the continuation.') for p in prompts)
    assert (eval_run / "eval" / "suffix" / "judge.sqlite").is_file()
    # "Answer: 1" is right where the truth is option 1: about a tenth of the questions
    assert 0.0 <= summary["accuracy_av"] <= 0.3


@pytest.mark.slow
def test_av_explanations_predict_the_suffix(demo_eval_run):
    """Headline: the oracle judge reading the AV's explanations picks the true
    continuation well above chance (0.1) and above explanations of shuffled vectors."""
    summary = suffix_prediction(SuffixConfig(run=str(demo_eval_run)))
    # measured on the demo run (2026-12-01): n 498, AV 0.60 [0.56, 0.65], shuffled 0.10,
    # AV − shuffled +0.50 [+0.45, +0.55]
    assert summary["n"] >= 450, summary
    assert summary["accuracy_av_ci"][0] >= 0.4, summary
    assert summary["av_minus_shuffled_ci"][0] >= 0.3, summary
    assert abs(summary["accuracy_shuffled"] - 0.1) <= 0.05, summary
