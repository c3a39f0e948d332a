"""`nlakit analyze suffix --run RUN`: can a reader of an explanation tell what text came
next? (toy world)

Every eval row (one activation at one token of one document) becomes a question: the
judge sees only an explanation and `--options` (10) candidate continuations — the true
next `--suffix-tokens` (8) tokens of the row's document after the explained token, and
distractors, the continuations of other eval rows from other documents, drawn with a
seeded RNG (`--distractors same_genre` draws them from documents of the row's genre
first) — and picks one. Rows at the end of their document have no continuation and are
left out. Each question is asked with the AV's explanation, the teacher's and the AV's
explanation of a shuffled vector (`nlakit.eval.choice`); chance is 1 / options.

Judges (`--judge`):

    oracle     (toy world) a point each (`suffix_points`) when the claimed next-token
               kind is the kind of the candidate's first piece, when the world's genre
               reader (`nlakit.toyworld.reader`, fitted on the text of training
               documents) reads the candidate as the claimed genre, when a word of the
               claimed topic and when the claimed entity appear in it. It sees only the
               candidates' text, never their latent labels.
    SPEC       a teacher backend (`anthropic:MODEL`, `openai:MODEL[@URL]`, `hf:PATH`)
               answers `suffix_prompt`; replies are cached in RUN/eval/suffix/judge.sqlite.

Writes `RUN/eval/suffix/{table.csv, summary.json, plot.png, questions.csv}`.

    from nlakit.eval.suffix import SuffixConfig, suffix_prediction
    summary = suffix_prediction(SuffixConfig(run="runs/demo"))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from nlakit.config import option
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.choice import (
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
from nlakit.toyworld.documents import infer_kind

NAME = directory_of(__name__)  # RUN/eval/suffix/
# What a reader takes for the first piece of a text: a chat tag, a line break, a word
# (with its leading space), a run of punctuation, or spaces.
_PIECE = re.compile(r"<\|[a-z]+\|>|\n| ?[\w'-]+| ?[^\w\s]+| +")


@dataclass
class SuffixConfig(ChoiceConfig):
    """Pick the true continuation of the explained token among candidates."""

    options: int = option(10, "options per question: the true one and options − 1 others", ge=2)
    suffix_tokens: int = option(8, "tokens of each continuation", ge=1)


def first_piece(text: str) -> str:
    """The first piece of a text as a reader splits it: a chat tag (`<|end|>`), a line
    break, a word with its leading space, a run of punctuation, or spaces."""
    match = _PIECE.match(text)
    return match.group(0) if match else text[:1]


def visible_kinds(piece: str) -> set[str]:
    """The kinds (CONTINUATIONS ids) a reader can tell a piece of text is: its
    `infer_kind`, and a capitalised word may also be a name."""
    kind = infer_kind(piece)
    if kind == "word" and piece.strip()[:1].isupper():
        return {"word", "name"}
    return {kind}


def suffix_points(claims: Claims, text: str, genre_read: str | None) -> int:
    """The oracle's score of a candidate continuation `text` for an explanation's
    `claims`: one point each for the claimed next kind, the claimed genre (as the genre
    reader reads `text`: `genre_read`), a claimed topic word and a claimed entity."""
    return (
        bool(claims.next_kinds & visible_kinds(first_piece(text)))
        + (genre_read in claims.genres)
        + mentions(text, claims.topic_words)
        + mentions(text, claims.entities)
    )


def suffix_prompt(explanation: str, options: Sequence[str]) -> str:
    """The question a judge model answers about one row."""
    return (
        "An explanation describes what a language model represents at one token of a "
        f"document. Below are {len(options)} candidate continuations: texts that might come "
        "right after that token. Exactly one of them is the true continuation.\n\n"
        f"Explanation:\n{explanation.strip() or '(empty)'}\n\n"
        f"Candidate continuations (quoted; a line break is written \\n):\n\n"
        f"{numbered([quoted(o) for o in options])}\n\n"
        "Which continuation comes right after the explained token? Reply with only "
        '"Answer: N", N the number of the continuation.'
    )


def continuations(
    world, doc_ids: list[str], positions: list[int], tokens: list[str] | None, n: int
) -> list[str]:
    """The text of the `n` tokens after each (doc_id, position) in the world's documents,
    tokenized as the extraction did (BOS at position 0); "" at a document's end."""
    tokenizer = world.tokenizer()
    ids: dict[int, list[int]] = {}
    out = []
    for k, (doc, p) in enumerate(zip(world.documents_for(doc_ids), positions, strict=True)):
        if doc.doc_id not in ids:
            ids[doc.doc_id] = tokenizer(doc.text, add_special_tokens=True)["input_ids"]
        doc_tokens = ids[doc.doc_id]
        token = tokens[k] if tokens is not None else ""
        if token and (p >= len(doc_tokens) or tokenizer.decode(doc_tokens[p : p + 1]) != token):
            raise NLAKitError(
                f"{world.path}: document {doc.table_id} position {p} is not the row's token "
                f"{token!r}; the eval rows were not extracted from this world."
            )
        out.append(tokenizer.decode(doc_tokens[p + 1 : p + 1 + n]))
    return out


def suffix_oracle(world, texts: list[str], records: list[dict], seed: int):
    """(the oracle's scorer of the option that is asked row j's continuation, what the
    summary says of its genre reader)."""
    read, about = genre_readings(world, texts, records, seed)

    def points(claims: Claims, j: int) -> int:
        return suffix_points(claims, texts[j], read[j])

    return points, about


def suffix_prediction(config: SuffixConfig) -> dict:
    """Ask every question; write and return the summary."""
    check_judge(config.judge)
    rows = load_rows(config.run)
    world = toy_world(
        rows.paths, "suffix prediction reads what follows each row's token in its document."
    )
    suffixes = continuations(
        world, rows.columns["doc_id"], rows.columns["position"], rows.columns.get("token"),
        config.suffix_tokens,
    )  # fmt: skip
    asked = [i for i, s in enumerate(suffixes) if s]
    texts = [suffixes[i] for i in asked]
    points, extra = None, {"suffix_tokens": config.suffix_tokens}
    if config.judge == ORACLE:
        records = rows.records()
        points, about = suffix_oracle(world, texts, [records[i] for i in asked], config.seed)
        extra |= about
    return multiple_choice(rows, config, NAME, asked, texts, points, suffix_prompt, extra)
