"""Paragraph ablation: the pure text functions, the paired drop, and the analysis on
the small eval run (mechanics) and on the demo run (which paragraph the AR reads)."""

from __future__ import annotations

import json

import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.ablation import (
    AblationConfig,
    ablated_texts,
    join_paragraphs,
    paragraph_ablation,
    paragraph_counts,
    split_paragraphs,
)
from nlakit.eval.stats import derangement

TWO = "Genre: a poem.\nThe final token is a word. Next comes a word."
THREE = "Genre: a recipe.\nIn the steps.\nThe final token is a unit."
BLOCKS = "Genre: news,\nabout politics.\n\nThe final token\nis a word."
ONE = "Just one paragraph here."


def test_split_and_join():
    assert split_paragraphs(TWO) == (
        ["Genre: a poem.", "The final token is a word. Next comes a word."],
        "\n",
    )
    # Blank lines separate blocks; a block keeps its own line breaks.
    assert split_paragraphs(BLOCKS) == (
        ["Genre: news,\nabout politics.", "The final token\nis a word."],
        "\n\n",
    )
    assert split_paragraphs("  \n") == ([], "\n")
    assert split_paragraphs(ONE) == ([ONE], "\n")
    for text in (TWO, THREE, BLOCKS, ONE):
        assert join_paragraphs(*split_paragraphs(text)) == text


def test_condition_texts():
    texts = [TWO, THREE, BLOCKS, ONE, ""]
    out = ablated_texts(texts, seed=3)
    assert list(out) == [
        "full",
        "without_last",
        "last_only",
        "replaced_last",
        "without_p0",
        "without_p1",
    ]
    assert out["full"] == texts
    assert out["without_last"] == [
        "Genre: a poem.",
        "Genre: a recipe.\nIn the steps.",
        "Genre: news,\nabout politics.",
        "",  # a single paragraph: nothing is left
        "",
    ]
    assert out["last_only"] == [
        "The final token is a word. Next comes a word.",
        "The final token is a unit.",
        "The final token\nis a word.",
        ONE,
        "",
    ]
    # Paragraph 0 is an earlier paragraph of the first three rows only.
    assert out["without_p0"] == [
        "The final token is a word. Next comes a word.",
        "In the steps.\nThe final token is a unit.",
        "The final token\nis a word.",
        ONE,
        "",
    ]
    # Paragraph 1 is an earlier paragraph of THREE only; the others keep their text.
    assert out["without_p1"] == [
        TWO,
        "Genre: a recipe.\nThe final token is a unit.",
        BLOCKS,
        ONE,
        "",
    ]
    # The last paragraph comes from the donor row's last paragraph (a derangement).
    lasts = [split_paragraphs(t)[0][-1] if t else "" for t in texts]
    for i, donor in enumerate(derangement(len(texts), seed=3)):
        paragraphs, separator = split_paragraphs(texts[i])
        expected = (
            join_paragraphs([*paragraphs[:-1], lasts[donor]], separator) if paragraphs else ""
        )
        assert out["replaced_last"][i] == expected
    assert ablated_texts(texts, seed=3) == out  # seeded
    assert ablated_texts(texts, seed=4)["replaced_last"] != out["replaced_last"]
    with pytest.raises(NLAKitError, match="at least 2 rows"):
        ablated_texts([TWO])


def test_paragraph_counts():
    counts = paragraph_counts([TWO, THREE, ONE, ONE, ""])
    assert counts == {
        "rows_by_count": {"0": 1, "1": 2, "2": 1, "3": 1},
        "max": 3,
        "single_paragraph_rows": 2,
        "empty_rows": 1,
    }


def test_ablation_on_eval_run(eval_run):
    """Mechanics: the full condition is the AR's score of the texts themselves, every
    condition is there with the rows it changed, and the files are written."""
    from nlakit.eval.rows import load_rows

    summary = paragraph_ablation(
        AblationConfig(
            run=str(eval_run), column="teacher_explanation", bootstrap=50, progress=False
        )
    )
    rows = load_rows(eval_run)
    texts = rows.columns["teacher_explanation"]
    n = len(rows)
    full = summary["conditions"]["full"]
    expected = rows.score(texts)
    assert full["mse_nrm"] == pytest.approx(float(expected.mean()), rel=1e-5)
    assert full["mse_nrm"] == pytest.approx(
        sum(rows.columns["teacher_mse_nrm"]) / n, rel=1e-4
    )  # as `nlakit eval` scored them
    assert full["fve"] == pytest.approx(rows.fve(expected), abs=1e-6)
    n_max = summary["paragraphs"]["max"]
    assert set(summary["conditions"]) == {
        "full",
        "without_last",
        "last_only",
        "replaced_last",
        *(f"without_p{i}" for i in range(n_max - 1)),
    }
    assert sum(summary["paragraphs"]["rows_by_count"].values()) == n
    changed = {k: v["n_changed"] for k, v in summary["conditions"].items()}
    assert changed["full"] == 0
    assert changed["without_last"] == sum(bool(t.strip()) for t in texts)
    for name, stats in summary["conditions"].items():
        assert stats["n"] == n and stats["baseline_variance"] == rows.baseline.variance
        assert stats["ci_low"] <= stats["fve"] <= stats["ci_high"], name
        assert stats["drop"]["fve_drop"] == pytest.approx(full["fve"] - stats["fve"], abs=1e-5)
    out = eval_run / "eval" / "ablation"
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "plot.png").stat().st_size > 0
    table = (out / "table.csv").read_text().splitlines()
    assert len(table) == 1 + len(summary["conditions"])
    with pytest.raises(NLAKitError, match="no column 'nope'"):
        paragraph_ablation(AblationConfig(run=str(eval_run), column="nope", progress=False))


@pytest.mark.slow
def test_ablation_on_demo_run(demo_eval_run):
    """What the demo run's AR reads, measured (n = 512, AV explanations, all of them two
    lines "Genre: …" / final token and what follows):

        full 0.11, without_last -0.59, last_only = without_p0 -0.16, replaced_last -0.73

    What must hold, and why:
    - Removing the final-token line costs more than removing the genre line (drop 0.70
      vs 0.27, CIs disjoint): the activation is read at block 2 of a small LM, where
      the current token and its role dominate the residual stream; the genre is a
      smaller share of its variance.
    - Each paragraph carries information: removing either one costs FVE (CI above 0).
    - The full explanation beats every ablation that changes most rows.
    - A wrong final-token line is worse than none (drop 0.84 vs 0.70): the AR then
      reconstructs another token's features instead of staying near the mean.
    """
    summary = paragraph_ablation(AblationConfig(run=str(demo_eval_run), progress=False))
    stats, found = summary["conditions"], summary["findings"]
    assert found["largest_earlier_condition"] == "without_p0"
    assert found["last_costs_more"]
    assert stats["without_last"]["drop"]["ci_low"] > 0
    assert stats["without_p0"]["drop"]["ci_low"] > 0
    assert found["full_is_best"]
    assert found["drop_replaced_last"] > found["drop_without_last"]
