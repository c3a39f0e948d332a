"""The multiple-choice machinery of the suffix and sources analyses: drawing questions,
reading claims, the oracle's picks and ties, the judge check, the toy-world check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.choice import (
    Claims,
    Question,
    best,
    check_judge,
    draw_questions,
    mentions,
    oracle_picks,
    read_claims,
    toy_world,
)
from nlakit.eval.runs import RunPaths
from nlakit.eval.stats import derangement

PLAIN = (
    "Verse: a formal poem on love, written by Owen Pike.\n"
    'In the verses, the text reads "The Standard Love / by Owen Pike".\n'
    'The last token, "I", is a word in a verse line. What follows is a further word.'
)
STRUCTURED = (
    "Genre: Weather report\n"
    "Topic: rainy weather for Galway\n"
    'Context: the day-by-day forecast; the text reads "Forecast for Galway / Saturday"\n'
    'Token: ":", a punctuation mark\n'
    "Next: a number"
)
MANY_SHORT = (
    "Python code.\n"
    "Counting function named count_words.\n"
    'Final token "\\n".\n'
    "The end of a line.\n"
    "Next comes a speaker tag."
)


def test_read_claims_in_every_layout():
    plain = read_claims(PLAIN)
    assert plain.genres == {"poem"} and plain.topic_words == ("love",)
    assert plain.entities == ("Owen Pike",) and plain.next_kinds == {"word"}
    assert plain.token == "I" and plain.quotes == ("The Standard Love / by Owen Pike",)
    structured = read_claims(STRUCTURED)
    assert structured.genres == {"weather"} and set(structured.topic_words) == {"rain", "rainy"}
    assert structured.entities == ("Galway",) and structured.next_kinds == {"number"}
    assert structured.token == ":"
    short = read_claims(MANY_SHORT)
    assert short.genres == {"code"} and short.entities == ("count_words",)
    assert short.token == "\n" and short.next_kinds == {"tag"}
    # A quoted quotation mark is the token, not the end of a quote.
    assert read_claims('Short story.\nThe final token """ is a quotation mark.').token == '"'
    assert read_claims("") == Claims()


def test_claims_without_a_genre_look_in_every_genre():
    claims = read_claims("Something about Galway and soup.\nNo token here.")
    assert claims.genres == frozenset() and "Galway" in claims.entities
    assert "soup" in claims.topic_words


def test_mentions_on_word_boundaries():
    assert mentions("Forecast for Galway\nSaturday", ("galway",))
    assert not mentions("Galwayish", ("Galway",)) and not mentions("anything", ())


def test_questions_hold_the_truth_once_and_distractors_from_other_documents():
    texts = [f"text {i}" for i in range(40)]
    texts[5] = texts[0]  # another document with the same text: never a distractor of 0
    docs = [str(i // 4) for i in range(40)]
    questions = draw_questions(texts, docs, 10, seed=3)
    assert [q.row for q in questions] == list(range(40))
    for q in questions:
        assert len(q.options) == 10 and len(set(q.options)) == 10
        assert q.options.count(texts[q.row]) == 1 and q.rows[q.answer] == q.row
        assert all(docs[r] != docs[q.row] for r in q.rows if r != q.row)
        assert [texts[r] for r in q.rows] == q.options
    assert 5 not in questions[0].rows
    assert draw_questions(texts, docs, 10, seed=3) == questions
    assert draw_questions(texts, docs, 10, seed=4) != questions
    # the true option sits anywhere
    assert len({q.answer for q in questions}) >= 6


def test_same_genre_distractors_come_first_and_others_fill_in():
    texts = [f"text {i}" for i in range(30)]
    docs = [str(i) for i in range(30)]
    groups = ["a"] * 20 + ["b"] * 8 + ["c"] * 2
    questions = draw_questions(texts, docs, 4, seed=0, groups=groups)
    for q in questions[:28]:
        assert all(groups[r] == groups[q.row] for r in q.rows)
    lonely = questions[28]  # group c has one other row: two distractors from elsewhere
    assert sum(groups[r] == "c" for r in lonely.rows) == 2


def test_too_few_texts_is_a_clear_error():
    with pytest.raises(NLAKitError, match="--options 10: row 0 has only 2 distinct"):
        draw_questions(["a", "b", "c", "c"], ["0", "1", "2", "3"], 10, seed=0)


def test_best_breaks_ties_at_random():
    rng = np.random.default_rng(0)
    assert best([0, 3, 1], rng) == 1
    picks = [best([1, 1, 0, 1], rng) for _ in range(300)]
    assert set(picks) == {0, 1, 3}


def _synthetic(n: int = 400):
    """Rows each in its own document: a story about one of 8 characters."""
    names = ("Mara", "Tobin", "Elsie", "Ravi", "Nell", "Oskar", "Ines", "Pip")
    rng = np.random.default_rng(0)
    who = [names[k] for k in rng.integers(len(names), size=n)]
    texts = [f"and {w} walked on, row {i}" for i, w in enumerate(who)]
    explanations = [
        f'Short story: a calm tale about {w}, set in the forest.\nThe final token "on" '
        "is a narration word. Next must come another word."
        for w in who
    ]
    questions = draw_questions(texts, [str(i) for i in range(n)], 10, seed=0)
    return texts, explanations, questions


def test_oracle_reads_true_claims_above_chance_and_shuffled_ones_at_chance():
    texts, explanations, questions = _synthetic()

    def points(claims, j):
        return mentions(texts[j], claims.entities)

    def accuracy(expl):
        picks = oracle_picks(questions, expl, points, seed=0)
        return np.mean([p == q.answer for p, q in zip(picks, questions, strict=True)])

    shuffled = [explanations[j] for j in derangement(len(explanations), 0)]
    assert accuracy(explanations) >= 0.4  # ties among options naming the same character
    assert 0.04 <= accuracy(shuffled) <= 0.17  # chance is 0.1
    assert 0.04 <= accuracy([""] * len(texts)) <= 0.17  # no claims: ties everywhere


def test_oracle_picks_the_only_option_a_perfect_explanation_fits():
    texts = ["and Mara ran", "and Tobin ran", "and Pip ran"]
    question = Question(row=1, rows=[0, 1, 2], options=texts, answer=1)
    picks = oracle_picks(
        [question] * 5,
        ["", "Short story: a tale about Tobin.\nThe last token is a word.", ""],
        lambda claims, j: mentions(texts[j], claims.entities),
        seed=0,
    )
    assert picks == [1] * 5


def test_judge_specs_and_the_toy_world_are_checked(tmp_path: Path):
    check_judge("oracle")
    check_judge("openai:gpt-4.1-mini@http://localhost:1/v1")
    check_judge("hf:/models/judge")
    with pytest.raises(NLAKitError, match="--judge gpt-4: expected oracle or a backend"):
        check_judge("gpt-4")
    with pytest.raises(NLAKitError, match=r"not a toy-world run .* --judge oracle"):
        toy_world(RunPaths(tmp_path, None, None, None, None), "--judge oracle needs it.")
