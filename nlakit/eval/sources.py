"""`nlakit analyze sources --run RUN`: can a reader of an explanation pick the text it
explains?

Every eval row (one activation at one token of one document) becomes a question: the
judge sees only an explanation and `--options` (4) candidate sources — the text of the
row's document up to and including the explained token (its last `--source-chars`
characters, from the `context` column of rows.parquet; "…" marks a cut start), and
distractors, the sources of other eval rows from other documents, drawn with a seeded
RNG (`--distractors same_genre` draws them from documents of the row's genre first) —
and picks one. Each question is asked with the AV's explanation, the teacher's and the
AV's explanation of a shuffled vector (`nlakit.eval.choice`); chance is 1 / options.

Judges (`--judge`):

    oracle     (toy world) a point each (`source_points`) when the candidate ends with
               the explanation's quoted final token, when the world's genre reader
               (`nlakit.toyworld.reader`, fitted on the text of training documents) reads
               the candidate as the claimed genre, when a word of the claimed topic, the
               claimed entity, and a quoted stretch of the context (two words or more)
               appear in it. It sees only the candidates' text, never their latent labels.
    SPEC       a teacher backend (`anthropic:MODEL`, `openai:MODEL[@URL]`, `hf:PATH`)
               answers `sources_prompt`; replies are cached in RUN/eval/sources/judge.sqlite.
               Needs no toy world: any evaluated run with contexts can be judged.

Writes `RUN/eval/sources/{table.csv, summary.json, plot.png, questions.csv}`.

    from nlakit.eval.sources import SourcesConfig, pick_sources
    summary = pick_sources(SourcesConfig(run="runs/demo"))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nlakit.config import option
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.choice import (
    ORACLE_NEEDS,
    ChoiceConfig,
    Claims,
    check_judge,
    genre_readings,
    mentions,
    multiple_choice,
    quoted,
    toy_world,
)
from nlakit.eval.judge import ORACLE, numbered
from nlakit.eval.rows import load_rows

NAME = directory_of(__name__)  # RUN/eval/sources/
CUT = "…"  # opens a source whose start was cut off


@dataclass
class SourcesConfig(ChoiceConfig):
    """Pick the source text of an explanation among candidates."""

    options: int = option(4, "options per question: the true one and options − 1 others", ge=2)
    source_chars: int = option(
        240, "characters of each source: the end of the text up to the explained token", ge=1
    )


def source_texts(contexts: Sequence[str | None], chars: int) -> list[str]:
    """Each row's source: the last `chars` characters of its context, CUT-prefixed where
    the context was longer ("" where a row has none)."""
    return [c if len(c) <= chars else CUT + c[-chars:] for c in (x or "" for x in contexts)]


def ends_with_token(text: str, token: str | None) -> bool:
    """Whether `text` ends with the quoted final `token` (spaces around it ignored)."""
    token = (token or "").strip(" ")
    return bool(token) and text.rstrip(" ").endswith(token)


def one_line(text: str) -> str:
    """Text as the oracle quotes context: line breaks as " / ", spaces collapsed."""
    return " ".join(text.replace("\n", " / ").split()).lower()


def quotes_in(quotes: Sequence[str], text: str) -> bool:
    """Whether a quote of two words or more appears in `text` (as the oracle quotes:
    line breaks as " / ", case and spacing ignored)."""
    line = one_line(text)
    return any(len(q.split()) >= 2 and one_line(q) in line for q in quotes)


def source_points(claims: Claims, text: str, genre_read: str | None) -> int:
    """The oracle's score of a candidate source `text` for an explanation's `claims`: one
    point each for the final token, the claimed genre (as the genre reader reads `text`:
    `genre_read`), a claimed topic word, a claimed entity and a quote of the context."""
    return (
        ends_with_token(text, claims.token)
        + (genre_read in claims.genres)
        + mentions(text, claims.topic_words)
        + mentions(text, claims.entities)
        + quotes_in(claims.quotes, text)
    )


def sources_prompt(explanation: str, options: Sequence[str]) -> str:
    """The question a judge model answers about one row."""
    return (
        "An explanation describes what a language model represents at the last token of a "
        f"text. Below are {len(options)} candidate texts, each the end of a document up to "
        "some token. Exactly one of them is the text the explanation is about: its last "
        "token is the explained token.\n\n"
        f"Explanation:\n{explanation.strip() or '(empty)'}\n\n"
        f"Candidate texts (quoted; a line break is written \\n; {CUT} marks a cut start):\n\n"
        f"{numbered([quoted(o) for o in options])}\n\n"
        "Which text does the explanation describe? Reply with only "
        '"Answer: N", N the number of the text.'
    )


def sources_oracle(world, texts: list[str], records: list[dict], seed: int):
    """(the oracle's scorer of the option that is asked row j's source, what the summary
    says of its genre reader)."""
    read, about = genre_readings(world, texts, records, seed)

    def points(claims: Claims, j: int) -> int:
        return source_points(claims, texts[j], read[j])

    return points, about


def pick_sources(config: SourcesConfig) -> dict:
    """Ask every question; write and return the summary."""
    check_judge(config.judge)
    rows = load_rows(config.run)
    sources = source_texts(rows.columns.get("context") or [], config.source_chars)
    asked = [i for i, s in enumerate(sources) if s]
    if len(asked) < config.options:
        raise NLAKitError(
            f"{rows.paths.rows}: {len(asked)} rows with a context (the text up to the "
            f"token), {config.options} or more needed; evaluate a table with a "
            "detokenized_text_truncated column (`nlakit eval`)."
        )
    texts = [sources[i] for i in asked]
    points, extra = None, {"source_chars": config.source_chars}
    if config.judge == ORACLE:
        world = toy_world(rows.paths, ORACLE_NEEDS)
        records = rows.records()
        points, about = sources_oracle(world, texts, [records[i] for i in asked], config.seed)
        extra |= about
    return multiple_choice(rows, config, NAME, asked, texts, points, sources_prompt, extra)
