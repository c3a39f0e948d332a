"""What shape the explanations take: paragraphs, a "Genre: description" first line,
quotes of the input, an opening word, the teacher prompts' layouts, and length.

    nlakit analyze format --run RUN                                  # the AV's explanations
    nlakit analyze format --run RUN --column teacher_explanation     # the teacher's

Per explanation (pure functions below): the number of paragraphs; whether the first line
is a genre line (a label of 1–4 words, a colon, then text: "Recipe: how to make bread.");
whether it quotes the input (a double-quoted span of at least one word that occurs in the
row's context, punctuation and case aside); whether it starts with `--starts-with`; its length in
tokens (the AV's sampled `n_tokens` for the `explanation` column, else counted with the
run's AR tokenizer). The layouts of `nlakit teach --prompt` (`nlakit.layouts`): whether
it follows the structured layout (Genre/Topic/Context/Token/Next lines, in order) and
which of those fields it has; whether it follows the many-short layout (5–8 features of
at most 10 words); its features (non-empty lines) and words per feature, for any run,
whichever prompt its teacher had. Reported overall and per `source`; writes
RUN/eval/format/{table.csv,summary.json,plot.png}. No model is run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.outputs import write_analysis
from nlakit.eval.plots import figure
from nlakit.eval.rows import EvalRows, load_rows
from nlakit.layouts import (
    STRUCTURED_FIELDS,
    feature_lines,
    fields_present,
    follows_many_short,
    follows_structured,
    word_count,
)
from nlakit.models import load_tokenizer

NAME = directory_of(__name__)  # RUN/eval/format/
SHARES = (
    "share_genre_line",
    "share_quotes_input",
    "share_starts_with",
    "share_structured",
    "share_many_short",
)

_BLANK_LINE = re.compile(r"\n[ \t\r]*\n")
# A label of 1-4 words (the first starts with a letter), a colon, whitespace, then text.
_GENRE_LINE = re.compile(r"[^\W\d_][\w'&/.-]*(?: [\w'&/.-]+){0,3}:\s+\S")
_QUOTED = re.compile(r'"([^"\n]+)"|“([^”\n]+)”')
_WORD = re.compile(r"\w+")


def paragraphs(text: str) -> list[str]:
    """The paragraphs of an explanation: blocks separated by blank lines. An explanation
    with no blank line (the usual one-feature-per-line style) has one paragraph per
    non-empty line. An empty explanation has none."""
    text = text.strip()
    blocks = _BLANK_LINE.split(text) if _BLANK_LINE.search(text) else text.splitlines()
    return [b.strip() for b in blocks if b.strip()]


def has_genre_line(text: str) -> bool:
    """Whether the first line reads "label: description", the label 1–4 words
    ("Recipe: …", "To-do list: …", "Python function: …"). "http://x" is not one: the
    colon must be followed by whitespace and text."""
    lines = text.strip().splitlines()
    return bool(lines) and _GENRE_LINE.match(lines[0]) is not None


def _words(text: str) -> str:
    """Space-joined lower-case words; a written-out "\\n" counts as a line break."""
    return " ".join(_WORD.findall(text.replace("\\n", " ").casefold()))


def quoted_spans(text: str) -> list[str]:
    """The double-quoted ("…" or “…”) spans of one line each, without the quotes."""
    return [a or b for a, b in _QUOTED.findall(text)]


def quotes_input(text: str, context: str) -> bool:
    """Whether some quoted span holds at least one word and its words occur, contiguous
    and in order, in `context` (case-insensitive; punctuation and line breaks between
    words are ignored, so a quote that writes the prefix's line breaks as " / " still
    matches). The first and last quoted word may be parts of context words, as a quoted
    token often is ("fic" of "terrific")."""
    haystack = _words(context)
    for span in quoted_spans(text):
        words = _words(span)
        if words and words in haystack:
            return True
    return False


def starts_with_word(text: str, word: str) -> bool:
    """Whether the explanation (leading whitespace ignored) begins with `word` as a whole
    word: "Structured summary" starts with "Structured", "Structuredness" does not."""
    if not word:
        return False
    return re.match(rf"\s*{re.escape(word)}(?!\w)", text) is not None


def layout_stats(texts: list[str]) -> dict[str, float]:
    """The teacher prompts' layouts in one group of explanations (`nlakit.layouts`):
    shares following the structured and the many-short layout, the share holding each
    structured field (`share_field_genre`, …), features (non-empty lines) per
    explanation, and words per feature (all the group's words over all its features;
    0 when it has none)."""
    features = [feature_lines(t) for t in texts]
    n_features = sum(map(len, features))
    n_words = sum(word_count(f) for lines in features for f in lines)
    present = [fields_present(t) for t in texts]
    return {
        "share_structured": float(np.mean([follows_structured(t) for t in texts])),
        **{
            f"share_field_{field.lower()}": float(np.mean([field in p for p in present]))
            for field in STRUCTURED_FIELDS
        },
        "share_many_short": float(np.mean([follows_many_short(t) for t in texts])),
        "mean_features": float(np.mean([len(lines) for lines in features])),
        "mean_words_per_feature": n_words / n_features if n_features else 0.0,
    }


def format_stats(
    texts: list[str], contexts: list[str], lengths: list[int], word: str
) -> dict[str, float | int]:
    """Shares and means over one group of explanations (empty ones count as following no
    format); the row lists are aligned, `lengths` in tokens."""
    n = len(texts)
    if n == 0:
        return {"n": 0}
    return {
        "n": n,
        "n_empty": sum(not t.strip() for t in texts),
        "share_genre_line": float(np.mean([has_genre_line(t) for t in texts])),
        "share_quotes_input": float(
            np.mean([quotes_input(t, c) for t, c in zip(texts, contexts, strict=True)])
        ),
        "share_starts_with": float(np.mean([starts_with_word(t, word) for t in texts])),
        "mean_paragraphs": float(np.mean([len(paragraphs(t)) for t in texts])),
        "mean_tokens": float(np.mean(lengths)),
        **layout_stats(texts),
    }


@dataclass
class FormatsConfig(Config):
    """The shape of an evaluated run's explanations."""

    run: str = option(help="run directory (after nlakit eval)")
    column: str = option(
        "explanation", "texts analysed: explanation (the AV's) or teacher_explanation"
    )
    starts_with: str = option("Structured", "opening word whose share is reported")


def _lengths(rows: EvalRows, column: str, texts: list[str]) -> tuple[list[int], str]:
    """Token count of each text and how it was counted."""
    if column == "explanation" and "n_tokens" in rows.columns:
        return [int(n) for n in rows.columns["n_tokens"]], "n_tokens (the AV's sampled tokens)"
    tokenizer = load_tokenizer(rows.paths.ar)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(i) for i in ids], "the AR's tokenizer"


def explanation_format(config: FormatsConfig) -> dict:
    """Format shares of one text column, overall and per source; writes the analysis and
    returns its summary."""
    rows = load_rows(config.run)
    values = rows.columns.get(config.column)
    if values is None or not all(v is None or isinstance(v, str) for v in values):
        raise NLAKitError(
            f"{rows.paths.rows}: --column {config.column!r} is not a text column of the eval "
            f"table (columns: {sorted(rows.columns)}); use explanation or teacher_explanation."
        )
    texts = [v or "" for v in values]
    contexts = [c or "" for c in rows.columns.get("context", [""] * len(texts))]
    sources = rows.columns.get("source") or ["unknown"] * len(texts)
    lengths, counted_by = _lengths(rows, config.column, texts)

    groups = {"all": list(range(len(texts)))}
    for source in sorted(set(sources)):
        groups[source] = [i for i, s in enumerate(sources) if s == source]
    stats = {
        name: format_stats(
            [texts[i] for i in idx],
            [contexts[i] for i in idx],
            [lengths[i] for i in idx],
            config.starts_with,
        )
        for name, idx in groups.items()
    }
    summary = {
        "run": str(rows.paths.root),
        "column": config.column,
        "starts_with": config.starts_with,
        "tokens_counted_by": counted_by,
        **stats["all"],
        "sources": {name: s for name, s in stats.items() if name != "all"},
    }
    table = [{"group": name, **s} for name, s in stats.items()]
    plotted = stats if len(stats) > 2 else {k: v for k, v in stats.items() if k != "all"}
    write_analysis(rows.paths.analysis_dir(NAME), table, summary, _plot(plotted, config))
    return summary


def _plot(stats: dict[str, dict], config: FormatsConfig):
    """Grouped bars: one group per format feature, one bar per source."""
    labels = [
        "genre\nline",
        "quotes\ninput",
        f'starts with\n"{config.starts_with}"',
        "structured\nlayout",
        "many-short\nlayout",
    ]
    fig, ax = figure(
        f"Explanation format ({config.column})", "format feature", "share of explanations"
    )
    width = 0.8 / max(len(stats), 1)
    x = np.arange(len(SHARES))
    for i, (name, s) in enumerate(stats.items()):
        values = [s.get(k, 0.0) for k in SHARES]
        ax.bar(x + (i - (len(stats) - 1) / 2) * width, values, width, label=f"{name} (n={s['n']})")
    ax.set_xticks(x)
    ax.set_xticklabels(labels)
    ax.set_ylim(0, 1.05)
    ax.legend(title="source", loc="best")
    return fig
