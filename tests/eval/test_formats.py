"""`nlakit analyze format`: the pure format checks, the analysis on the small eval run's
teacher explanations, and the RL AV's format on the demo run (slow)."""

from __future__ import annotations

import csv
import json

import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.formats import (
    FormatsConfig,
    _plot,
    explanation_format,
    format_stats,
    has_genre_line,
    layout_stats,
    paragraphs,
    quoted_spans,
    quotes_input,
    starts_with_word,
)

ORACLE = (
    "Recipe: how to make honey bread.\n"
    'The final token " the" is part of a step. It must be followed by a further word.'
)


def test_paragraphs_one_per_line_without_blank_lines():
    assert paragraphs(ORACLE) == ORACLE.splitlines()
    assert len(paragraphs("a\n\nb\nc")) == 2  # a blank line makes blocks the paragraphs
    assert paragraphs("first\nstill first\n  \t\nsecond\n\n\nthird") == [
        "first\nstill first",
        "second",
        "third",
    ]
    assert paragraphs("one line") == ["one line"]
    assert paragraphs("a\n\n\nb\n") == ["a", "b"]
    assert paragraphs("  \n\n") == [] and paragraphs("") == []
    assert paragraphs("\n a \n\n") == ["a"]


@pytest.mark.parametrize(
    "text",
    [
        ORACLE,
        "Genre: description",
        "To-do list: camping gear for Tom.",
        "Python function: save_notes, a small helper.",
        "Chat with an assistant: music.",
        "  News: leading whitespace is fine",
    ],
)
def test_genre_line(text):
    assert has_genre_line(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "No colon on this line.\nGenre: on the second line",
        "A label of far too many words: text",
        "Recipe:",
        "Recipe:   ",
        "Recipe:\nhow to make bread",
        "http://example.com is a link",
        "12: a number is not a label",
        ": no label",
        "Then the recipe says that: add salt",  # five words before the colon
    ],
)
def test_not_genre_line(text):
    assert not has_genre_line(text)


def test_quoted_spans():
    assert quoted_spans('a "b c" d “e” "f') == ["b c", "e"]
    assert quoted_spans('"" ends the text') == []
    assert quoted_spans('"one\ntwo"') == []


def test_quotes_input():
    context = "The Standard Love\nby Owen Pike\nI watched the"
    assert quotes_input('The final token " the" is a word.', context)
    assert quotes_input('Just before: "by Owen Pike / I watched".', context)
    assert quotes_input('the text reads "owen pike"', context)  # case-insensitive
    assert quotes_input('The last token, "Ow", is a name.', context)  # a word-piece
    assert not quotes_input('The final token "dragon" is a word.', context)
    assert not quotes_input('The final token "." is a period.', context)  # no word
    assert not quotes_input("The final token the is unquoted.", context)
    assert not quotes_input('"Pike watched"', context)  # words not contiguous
    assert quotes_input('"\\n" then "Love\\nby"', context)  # written-out line breaks


def test_starts_with_word():
    assert starts_with_word("Structured summary: x", "Structured")
    assert starts_with_word("  Structured", "Structured")
    assert not starts_with_word("Structuredness", "Structured")
    assert not starts_with_word("structured summary", "Structured")
    assert not starts_with_word("A Structured summary", "Structured")
    assert starts_with_word("Genre: x", "Genre:")
    assert not starts_with_word("anything", "")


def test_format_stats():
    texts = [ORACLE, "no format here", ""]
    contexts = ["add the", "nothing", "x"]
    stats = format_stats(texts, contexts, [10, 20, 30], "Recipe")
    assert stats["n"] == 3 and stats["n_empty"] == 1
    assert stats["share_genre_line"] == pytest.approx(1 / 3)
    assert stats["share_quotes_input"] == pytest.approx(1 / 3)
    assert stats["share_starts_with"] == pytest.approx(1 / 3)
    assert stats["mean_paragraphs"] == pytest.approx(1.0)  # 2, 1, 0
    assert stats["mean_tokens"] == pytest.approx(20.0)
    assert stats["share_structured"] == 0.0 and stats["mean_features"] == pytest.approx(1.0)
    assert set(layout_stats(texts)) < set(stats)


STRUCTURED = 'Genre: Recipe\nTopic: honey bread\nToken: " the", a step word\nNext: a noun'
MANY_SHORT = 'Recipe.\nHoney bread.\nFinal token " the".\nA step word.\nNext a noun.'


def test_layout_stats_by_hand():
    stats = layout_stats([STRUCTURED, MANY_SHORT, ORACLE, ""])
    assert stats["share_structured"] == 0.25  # only STRUCTURED
    assert stats["share_many_short"] == 0.25  # only MANY_SHORT: 5 features of ≤ 3 words
    assert stats["share_field_genre"] == 0.25  # ORACLE's "Recipe:" is no field
    assert stats["share_field_topic"] == stats["share_field_next"] == 0.25
    assert stats["share_field_token"] == 0.25 and stats["share_field_context"] == 0.0
    assert stats["mean_features"] == pytest.approx((4 + 5 + 2 + 0) / 4)
    # words: STRUCTURED 2+3+5+3, MANY_SHORT 1+2+3+3+3, ORACLE 6+17; over 11 features
    assert stats["mean_words_per_feature"] == pytest.approx(48 / 11)


def test_layout_stats_of_the_oracle_layouts():
    """The oracle's own explanations in each layout are recognised as that layout."""
    from nlakit.toyworld.corpus import iter_documents
    from nlakit.toyworld.documents import token_records
    from nlakit.toyworld.oracle import explain_record, oracle_rng, word_offsets

    texts = {"plain": [], "structured": [], "many-short": []}
    for doc in iter_documents(10, seed=0):
        for pos, record in enumerate(token_records(doc, word_offsets(doc.text))):
            if record is not None:
                for layout, out in texts.items():
                    out.append(explain_record(record, oracle_rng(0, doc.doc_id, pos), 0.8, layout))
    stats = {layout: layout_stats(out) for layout, out in texts.items()}
    assert stats["plain"]["share_structured"] == stats["plain"]["share_many_short"] == 0.0
    assert stats["structured"]["share_structured"] == 1.0
    assert stats["structured"]["share_field_next"] == 1.0
    assert 0.6 < stats["structured"]["share_field_context"] < 0.95  # context_rate 0.8
    assert stats["many-short"]["share_many_short"] == 1.0
    assert 2 <= stats["plain"]["mean_features"] <= 3 < 5 <= stats["many-short"]["mean_features"]
    assert (
        stats["many-short"]["mean_words_per_feature"]
        < stats["structured"]["mean_words_per_feature"]
        < stats["plain"]["mean_words_per_feature"]
    )


def test_layout_stats_reads_llm_spellings():
    reply = '**Genre:** Recipe\n**Topic:** bread\n- Token: " the"\n- Next: a noun'
    stats = layout_stats([reply])
    assert stats["share_structured"] == 1.0 and stats["share_field_genre"] == 1.0


def test_plot_has_one_bar_series_per_source():
    stats = {
        "text": {"n": 3, "share_genre_line": 1.0, "share_quotes_input": 0.5},
        "chat": {"n": 2, "share_genre_line": 0.5, "share_starts_with": 0.1},
    }
    fig = _plot(stats, FormatsConfig(run="x"))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["text (n=3)", "chat (n=2)"]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert len(ax.patches) == 10  # five format features, two sources
    assert [t.get_text() for t in ax.get_xticklabels()][3:] == [
        "structured\nlayout",
        "many-short\nlayout",
    ]


def test_teacher_format_on_eval_run(eval_run):
    """The oracle teacher writes a "Genre: description" line and one line about the final
    token (the small run's teacher never adds the optional context line): two paragraphs."""
    summary = explanation_format(FormatsConfig(run=str(eval_run), column="teacher_explanation"))
    out = eval_run / "eval" / "format"
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["n"] == 48 and summary["n_empty"] == 0
    assert summary["share_genre_line"] == 1.0
    assert summary["mean_paragraphs"] == 2.0
    assert summary["share_starts_with"] == 0.0
    assert summary["share_structured"] == 0.0 and summary["mean_features"] == 2.0
    assert summary["share_field_genre"] == 0.0  # the plain genre line names no field
    assert summary["tokens_counted_by"] == "the AR's tokenizer"
    assert 10 < summary["mean_tokens"] < 100
    assert sum(s["n"] for s in summary["sources"].values()) == 48
    with open(out / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["group"] for r in table] == ["all", *summary["sources"]]


def test_av_lengths_come_from_n_tokens(eval_run):
    from nlakit.eval.rows import load_rows

    rows = load_rows(eval_run)
    summary = explanation_format(FormatsConfig(run=str(eval_run), starts_with="Genre"))
    assert summary["column"] == "explanation"
    assert summary["mean_tokens"] == pytest.approx(sum(rows.columns["n_tokens"]) / len(rows))


def test_rejects_a_column_that_is_not_text(eval_run):
    with pytest.raises(NLAKitError, match=r"'mse_nrm' is not a text column"):
        explanation_format(FormatsConfig(run=str(eval_run), column="mse_nrm"))
    with pytest.raises(NLAKitError, match="not a text column"):
        explanation_format(FormatsConfig(run=str(eval_run), column="nope"))


@pytest.mark.slow
def test_rl_av_keeps_the_teachers_format_but_misquotes(demo_eval_run):
    """After SFT on the oracle's explanations and RL, the demo AV keeps the oracle's
    layout: a "Genre: description" first line and one line about the final token (measured
    on the demo run: genre line in 99.8%, 2.00 paragraphs, none opening with "Structured").
    What it quotes as the final token is often not in the text, where the oracle's quote
    always is when it holds a word (measured: 29% of the AV's explanations quote the
    input vs 71% of the teacher's; all the rest of the teacher's quote a punctuation or
    line-break token, which holds no word)."""
    av = explanation_format(FormatsConfig(run=str(demo_eval_run)))
    assert av["n"] >= 256 and av["n_empty"] <= 0.05 * av["n"]
    assert av["share_genre_line"] >= 0.9
    assert 1.8 <= av["mean_paragraphs"] <= 3.0
    assert av["share_starts_with"] == 0.0
    teacher = explanation_format(
        FormatsConfig(run=str(demo_eval_run), column="teacher_explanation")
    )
    assert teacher["share_genre_line"] == 1.0
    assert av["share_quotes_input"] < teacher["share_quotes_input"] - 0.2
