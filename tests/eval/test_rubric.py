"""Judged quality: the reply parser, the oracle's rules on hand-made explanations, the
analysis with the oracle and with an LLM judge (the local fake server), and (slow) on
the demo run the headline fact: by the oracle's rules the AV's explanations are far
more faithful to their rows than shuffled explanations are."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.rubric import (
    RUBRIC,
    RubricConfig,
    criteria_of,
    judge_prompt,
    oracle_coherence,
    oracle_faithfulness,
    oracle_repetitiveness,
    oracle_specificity,
    parse_scores,
    repeated_share,
    rubric,
    sample_indices,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))  # the fake LLM server
from fake_llm import FakeLLM

NAMES = [c.name for c in RUBRIC]
RECORD = {"genre": "poem", "topic": "love", "entity": "Owen Pike", "role": "verse",
          "next_kind": "word"}  # fmt: skip
TRUE = (
    "Verse: a formal poem on love, written by Owen Pike.\n"
    'The last token, " love", is a word in a verse line. What follows is another word.'
)
# The same shape, every claim about another row (a recipe), as a shuffled one would be.
OTHER = (
    "Recipe: how to make honey bread.\n"
    'The final token " the" is an instruction word. Next must come a new line.'
)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("specificity: 4\ncoherence: 3\nrepetitiveness: 5\nfaithfulness: 2", [4, 3, 5, 2]),
        ("Here are my scores.\n**Specificity:** 4/5\n- Coherence = 2\n", [4, 2, None, None]),
        ("specificity: 7\ncoherence: 4/10\nrepetitiveness: 0", [None, None, None, None]),
        ("specificity: 2\nspecificity: 5", [2, None, None, None]),  # the first line wins
        ("The specificity: 3 is fine", [None] * 4),  # not a line of its own
        ("faithfulness: 4.5", [None, None, None, 4.5]),
        ("", [None] * 4),
        (None, [None] * 4),
    ],
)
def test_parse_scores(reply, expected):
    scores = parse_scores(reply, NAMES)
    assert list(scores) == NAMES
    got = [None if math.isnan(v) else v for v in scores.values()]
    assert got == expected


def test_the_prompt_shows_the_source_text_the_explanation_and_every_criterion():
    prompt = judge_prompt("I watched the love", " love", TRUE)
    assert "I watched the love" in prompt and TRUE in prompt and "' love'" in prompt
    assert all(f"\n{name}: N" in prompt for name in NAMES)
    assert "(empty)" in judge_prompt("text", "t", "  ")


def test_repeated_share_counts_repeated_ngrams_and_lines():
    assert repeated_share("one two three four") == 0.0
    assert repeated_share("a b c a b c a b c") == pytest.approx(4 / 7)  # 7 trigrams, 3 new
    assert repeated_share("Same line.\nsame line.\nOther.") == pytest.approx(1 / 3)
    assert repeated_share("") == 0.0 and repeated_share("two words") == 0.0


def test_oracle_rules_read_the_ground_truth():
    assert oracle_specificity(TRUE, RECORD) == 5.0  # all five fields stated
    assert oracle_faithfulness(TRUE, RECORD) == 5.0  # and every one true
    assert oracle_coherence(TRUE, RECORD) == 5.0
    assert oracle_repetitiveness(TRUE, RECORD) == 5.0
    # Another row's explanation states as much, but (nearly) nothing true of this row.
    assert oracle_specificity(OTHER, RECORD) == 5.0
    assert oracle_faithfulness(OTHER, RECORD) == pytest.approx(1.0)
    only_genre = "Verse: something."
    assert oracle_specificity(only_genre, RECORD) == pytest.approx(1 + 4 / 5)
    assert oracle_faithfulness(only_genre, RECORD) == 5.0
    assert oracle_coherence(only_genre, RECORD) < 4.0  # no final-token line
    salad = "moon moon moon moon moon moon"
    assert oracle_repetitiveness(salad, RECORD) == pytest.approx(1 + 4 * (1 - 3 / 4))
    assert oracle_coherence(salad, RECORD) <= 2.6
    assert math.isnan(oracle_faithfulness("", RECORD))  # nothing stated: nothing to judge
    assert oracle_specificity("", RECORD) == oracle_coherence("", RECORD) == 1.0
    assert [c.name for c in criteria_of("oracle")] == NAMES == [c.name for c in criteria_of("x")]


def test_sample_indices():
    assert sample_indices(5, 0, 0) == sample_indices(5, 9, 0) == [0, 1, 2, 3, 4]
    picked = sample_indices(100, 10, 3)
    assert len(set(picked)) == 10 and picked == sorted(picked) == sample_indices(100, 10, 3)


def test_oracle_rubric_on_eval_run(eval_run):
    """The teacher is the oracle: true by construction, so faithful 5.0 to its own rows;
    the same explanations shuffled across rows are not. (The fixture's AV is too weak to
    state claims, so its faithfulness may have no scored row: None, counted unparsed.)
    Files land; the per-row table has every source."""
    summary = rubric(RubricConfig(run=str(eval_run), n=40, bootstrap=200, progress=False))
    assert summary["judge"] == "oracle" and summary["n"] == 40
    assert summary["sources"] == ["av", "teacher", "shuffled"]
    for c in NAMES:
        for s in summary["sources"]:
            if summary[f"{c}_{s}"] is None:
                assert c == "faithfulness" and s != "teacher" and summary["unparsed"] >= 40
                continue
            lo, hi = summary[f"{c}_{s}_ci"]
            assert 1.0 <= lo <= summary[f"{c}_{s}"] <= hi <= 5.0
    assert summary["faithfulness_teacher"] == 5.0 and summary["specificity_teacher"] == 5.0
    out = eval_run / "eval" / "rubric"
    assert {p.name for p in out.iterdir()} >= {"table.csv", "summary.json", "plot.png", "rows.csv"}
    assert json.loads((out / "summary.json").read_text()) == summary
    with (out / "rows.csv").open(newline="") as handle:
        per_row = list(csv.DictReader(handle))
    assert len(per_row) == 3 * 40 and list(per_row[0])[:4] == [
        "doc_id",
        "position",
        "source",
        NAMES[0],
    ]
    teacher = rubric(
        RubricConfig(run=str(eval_run), column="teacher_explanation", n=40, bootstrap=200,
                     progress=False)
    )  # fmt: skip
    assert teacher["sources"] == ["av", "shuffled"] and teacher["unparsed"] == 0
    assert teacher["faithfulness_av"] == 5.0 and teacher["faithfulness_shuffled"] < 3.0
    assert teacher["specificity_shuffled"] == 5.0  # as specific, about another row
    lo, hi = teacher["faithfulness_av_minus_shuffled_ci"]
    assert 2.0 <= lo <= teacher["faithfulness_av_minus_shuffled"] <= hi


def test_llm_judge_through_the_fake_server(eval_run, monkeypatch):
    """Every (row, source) question is asked once, with its row's source text; replies are
    cached; a reply without scores is NaN and counted, not scored."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    rows = pq.read_table(eval_run / "eval" / "rows.parquet", columns=["context"])
    n = 4
    with FakeLLM() as fake:
        fake.reply("I cannot judge this.")
        fake.reply("specificity: 4\ncoherence: 3\nrepetitiveness: 5\nfaithfulness: 2", 3 * n)
        config = RubricConfig(
            run=str(eval_run), judge=f"openai:judge@{fake.openai_url}", n=n, bootstrap=200,
            progress=False,
        )  # fmt: skip
        summary = rubric(config)
        asked = len(fake.requests)
        again = rubric(config)
        assert len(fake.requests) == asked  # the second time, every reply came from the cache
        prompts = [r.prompt for r in fake.requests]
    # The fixture's weak AV may write the same (empty) text for two rows: asked once.
    assert asked == summary["judge_report"]["requests"] == len(set(prompts)) <= 3 * n
    assert again["judge_report"]["cache_hits"] == asked
    assert {**again, "judge_report": None} == {**summary, "judge_report": None}
    unscored = summary["unparsed"] // len(NAMES)  # questions answered "I cannot judge this."
    assert summary["unparsed"] % len(NAMES) == 0 and 1 <= unscored <= 3
    assert sum(summary["stats"][s]["specificity"]["n"] for s in summary["sources"]) == (
        3 * n - unscored
    )
    for s in ("av", "teacher", "shuffled"):
        assert summary[f"specificity_{s}"] == 4.0 and summary[f"faithfulness_{s}"] == 2.0
    contexts = rows["context"].to_pylist()
    picked = [contexts[i] for i in sample_indices(len(contexts), n, 0)]
    assert all(any(c in p for p in prompts) for c in picked)
    assert (eval_run / "eval" / "rubric" / "judge.sqlite").is_file()


def test_oracle_needs_a_toy_world_run(eval_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(eval_run, run, ignore=shutil.ignore_patterns("step_*", "world"))
    table = pq.read_table(run / "eval" / "rows.parquet")
    pq.write_table(table.drop_columns(["record"]), run / "eval" / "rows.parquet")
    with pytest.raises(NLAKitError, match=r"--judge oracle: .* no latent records"):
        rubric(RubricConfig(run=str(run), progress=False))


@pytest.mark.slow
def test_av_explanations_are_faithful_by_the_oracle(demo_eval_run):
    """Measured on the demo run (n = 200 rows, oracle judge, 11 s):

        faithfulness  AV 3.48 [3.39, 3.57]   shuffled 1.52 [1.42, 1.61]
                      AV − shuffled 1.96 [1.84, 2.08] (paired)
        specificity   AV 4.91 [4.87, 4.95]   shuffled 4.90

    The AV states nearly every field (so does a shuffled explanation: it is another row's
    AV explanation) and most of what it states is true of its row (genre, continuation,
    role; the topic and entity mostly not); a shuffled explanation's claims are true of
    this row only by chance. Thresholds sit below the CIs' lower ends."""
    summary = rubric(RubricConfig(run=str(demo_eval_run)))
    assert summary["n"] == 200 and summary["unparsed"] <= 10, summary
    assert summary["faithfulness_av"] >= 3.0 and summary["faithfulness_shuffled"] <= 2.0, summary
    assert summary["specificity_av"] >= summary["faithfulness_shuffled"] + 2.5, summary
    lo, _ = summary["faithfulness_av_minus_shuffled_ci"]
    assert lo >= 1.5, summary
