"""`nlakit analyze token_types`: the token classifier (pure), the error buckets, the
analysis's outputs on the small eval run, and a toy-world fact on the demo run (slow)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.token_types import (
    TokenTypesConfig,
    _plot,
    token_types,
    type_stats,
)
from nlakit.token_types import TOKEN_TYPES, error_buckets, token_type


@pytest.mark.parametrize(
    "token, expected",
    [
        (" the", "word-start"),
        ("▁the", "word-start"),
        ("Ġthe", "word-start"),
        ("\tfoo", "word-start"),
        (" High", "word-start"),
        (" (he", "word-start"),
        ("the", "word-piece"),
        ("ing", "word-piece"),
        ("MILLBROOK", "word-piece"),
        ("C", "word-piece"),
        ("1st", "word-piece"),
        ("é", "word-piece"),
        ("(he", "word-piece"),
        ("2", "number"),
        (" 2", "number"),
        ("▁12", "number"),
        ("3.5", "number"),
        ("10%", "number"),
        (".", "punctuation"),
        (",", "punctuation"),
        (" (", "punctuation"),
        ('"))', "punctuation"),
        ("Ġ-", "punctuation"),
        ("�", "punctuation"),
        ("\n", "newline"),
        ("\n   ", "newline"),
        ("\r\n", "newline"),
        ("Ċ", "newline"),
        ("ĊĠĠ", "newline"),
        ("<0x0A>", "newline"),
        (" ", "whitespace"),
        ("   ", "whitespace"),
        ("\t", "whitespace"),
        ("▁", "whitespace"),
        ("Ġ", "whitespace"),
        ("<0x20>", "whitespace"),
        ("", "whitespace"),
        ("<|end|>", "special"),
        ("<|endoftext|>", "special"),
        ("<|im_start|>", "special"),
        ("<s>", "special"),
        ("</s>", "special"),
        ("<pad>", "special"),
        ("[CLS]", "special"),
    ],
)
def test_token_type(token, expected):
    assert token_type(token) == expected


def test_token_type_is_special_flag_wins():
    assert token_type("hello", is_special=True) == "special"
    assert token_type("\n", is_special=True) == "special"
    assert token_type("hello", is_special=False) == "word-piece"


def test_token_type_is_always_a_known_type():
    for token in ["", " ", "a", "1", "!", "\n", "<x>", "Ġ", "▁▁", "a b", "<|", "|>", "<>"]:
        assert token_type(token) in TOKEN_TYPES


def test_text_that_only_looks_like_markup_is_not_special():
    assert token_type("<") == "punctuation"
    assert token_type("<|") == "punctuation"
    assert token_type(" <b") == "word-start"


def test_error_buckets_are_rank_quintiles():
    errors = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 1.0])
    buckets = error_buckets(errors, 5)
    assert buckets.tolist() == [4, 0, 2, 1, 3, 0, 3, 1, 2, 4]
    # ties are split by row order, so sizes stay equal
    tied = error_buckets(np.zeros(10), 5)
    assert np.bincount(tied).tolist() == [2] * 5
    assert tied.tolist() == sorted(tied.tolist())
    uneven = error_buckets(np.arange(7.0), 5)
    assert sorted(np.bincount(uneven).tolist()) == [1, 1, 1, 2, 2]
    assert uneven.tolist() == sorted(uneven.tolist())


def test_type_stats():
    types = ["newline", "word-start", "newline", "number"]
    errors = np.array([0.2, 1.0, 0.4, 0.5])
    stats = type_stats(types, errors, variance=2.0)
    assert list(stats) == ["word-start", "number", "newline"]  # in TOKEN_TYPES order
    assert stats["newline"]["count"] == 2
    assert stats["newline"]["share"] == pytest.approx(0.5)
    assert stats["newline"]["mean_mse_nrm"] == pytest.approx(0.3)
    assert stats["newline"]["fve"] == pytest.approx(1 - 0.3 / 2.0)
    assert stats["word-start"]["fve"] == pytest.approx(0.5)


def test_plot_has_a_panel_per_grouping_with_legends():
    buckets = {"Q1": {"shares": {"newline": 1.0}}, "Q2": {"shares": {"word-start": 1.0}}}
    one = {"text": {"n": 1, "types": {"newline": {"share": 1.0}}}}
    fig = _plot(buckets, one, "mse_nrm")
    assert len(fig.axes) == 1
    assert fig.axes[0].get_legend() is not None and fig.axes[0].get_title()
    two = {**one, "chat": {"n": 1, "types": {"word-start": {"share": 1.0}}}}
    fig = _plot(buckets, two, "mse_nrm")
    assert len(fig.axes) == 2
    assert all(ax.get_legend() is not None and ax.get_xlabel() for ax in fig.axes)


def test_token_types_outputs(eval_run):
    summary = token_types(TokenTypesConfig(run=str(eval_run), error_column="teacher_mse_nrm"))
    out = eval_run / "eval" / "token_types"
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    n = summary["n"]
    assert n == 48 and summary["baseline_variance"] > 0
    types = summary["types"]
    assert sum(t["count"] for t in types.values()) == n
    # the overall FVE is the count-weighted mean of the per-type FVEs
    weighted = sum(t["count"] * t["fve"] for t in types.values()) / n
    assert weighted == pytest.approx(summary["fve"], abs=1e-6)  # fve() is float32
    assert list(summary["buckets"]) == ["Q1", "Q2", "Q3", "Q4", "Q5"]
    highs = [b["mse_high"] for b in summary["buckets"].values()]
    lows = [b["mse_low"] for b in summary["buckets"].values()]
    assert all(h <= lo for h, lo in zip(highs, lows[1:], strict=False))
    for bucket in summary["buckets"].values():
        assert sum(bucket["shares"].values()) == pytest.approx(1.0)
    assert sum(b["n"] for b in summary["buckets"].values()) == n
    assert sum(s["n"] for s in summary["sources"].values()) == n
    with open(out / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert {r["group_kind"] for r in table} == {"all", "bucket", "source"}
    assert sum(int(r["count"]) for r in table if r["group_kind"] == "bucket") == n
    assert sum(int(r["count"]) for r in table if r["group_kind"] == "source") == n


def test_token_types_rejects_unknown_column(eval_run):
    with pytest.raises(NLAKitError, match="no column 'nope' for --error-column"):
        token_types(TokenTypesConfig(run=str(eval_run), error_column="nope"))
    with pytest.raises(NLAKitError, match="n-buckets"):
        token_types(TokenTypesConfig(run=str(eval_run), n_buckets=0))


@pytest.mark.slow
def test_structural_tokens_are_reconstructed_better_than_words(demo_eval_run):
    """On the toy world, the AV's explanations of newline and punctuation tokens are
    reconstructed far better than those of word tokens (measured on the demo run: mean
    mse_nrm ≈ 0.55 for newline/punctuation vs ≈ 1.0 for word-start/word-piece; Q1 holds
    about half structural tokens, Q5 about a seventh). A structural token's activation is
    mostly its role in the document's layout (end of a line, of a sentence, of a list
    item) and what must follow, which is what the explanation's last line states; a
    word's activation also carries which of many words it is and its topic details, which
    the explanation names less reliably."""
    summary = token_types(TokenTypesConfig(run=str(demo_eval_run)))
    types = summary["types"]

    def mean(kinds):
        kinds = [k for k in kinds if k in types]
        count = sum(types[k]["count"] for k in kinds)
        return sum(types[k]["count"] * types[k]["mean_mse_nrm"] for k in kinds) / count

    structural = mean(["newline", "punctuation"])
    words = mean(["word-start", "word-piece"])
    assert structural < words - 0.2, (structural, words)
    buckets = summary["buckets"]

    def structural_share(q):
        return sum(buckets[q]["shares"].get(k, 0.0) for k in ("newline", "punctuation"))

    assert structural_share("Q1") > 2 * structural_share("Q5")
