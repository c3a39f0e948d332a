"""The oracle teacher: explanations written from the latent record, true by construction.

An explanation has 2–3 features, one per line, most important first:

1. a genre/topic line, `Genre: description` (genre, topic, main entity, sometimes tone);
2. (usually) a feature that quotes the nearby text and says which part of the
   document it is in;
3. a feature about the final token: its role, and what must come next.

Wording varies (several frames and synonyms per statement), so explanations are
not one fixed template; the choice is seeded by (seed, doc_id, position).
"""

from __future__ import annotations

import random
import re

from nlakit.toyworld.documents import Document, TokenRecord, token_records
from nlakit.toyworld.labels import CONTINUATIONS, GENRE_NAMES, ROLES, SECTIONS, TONE_WORDS, TOPICS

_GENRE_LINES = {
    "chat": (
        "{G}: the user asks the assistant about {T}, mentioning {E}.",
        "{G}: {a_tone} exchange about {T} and {E}.",
    ),
    "recipe": ("{G}: {a_tone} recipe for {E} {T}.", "{G}: how to make {E} {T}."),
    "sports": ("{G}: a {T} match won by {E}.", "{G}: {E} in a {T} game, {tone} in tone."),
    "weather": ("{G}: {T} weather for {E}.", "{G}: the outlook for {E}, mostly {T}."),
    "code": ("{G}: a {T} function called {E}.", "{G}: {E}, a small helper for {T}."),
    "list": ("{G}: {T} for {E}.", "{G}: {a_tone} list of {T} for {E}."),
    "story": (
        "{G}: {a_tone} tale about {E}, set in the {T}.",
        "{G}: {E} and an adventure in the {T}.",
    ),
    "poem": ("{G}: verses about the {T} by {E}.", "{G}: {a_tone} poem on {T}, written by {E}."),
    "news": ("{G}: a {T} story from {E}.", "{G}: {T} news in {E}, {tone} in tone."),
}
_CONTEXT_LINES = (
    'In {S}, the text reads "{C}".',
    'We are in {S}; just before: "{C}".',
    'The nearby text "{C}" belongs to {S}.',
)
_TOKEN_LINES = (
    'The final token "{K}" is {R}{F}.',
    'The last token, "{K}", is {R}{F}.',
    '"{K}" ends the text and is {R}{F}.',
)
_NEXT_LINES = ("Next must come {N}.", "It must be followed by {N}.", "What follows is {N}.")


def show_token(token: str) -> str:
    """A token as written inside quotes: line breaks as `\\n`."""
    return token.replace("\n", "\\n")


def context_quote(context: str, max_words: int = 6) -> str:
    """The last few words of the prefix, on one line."""
    words = context.replace("\n", " / ").split()
    return " ".join(words[-max_words:])


def _flags(record: TokenRecord) -> str:
    flags = []
    if record.after_number and record.role not in ("quantity", "score", "temperature"):
        flags.append("right after a number")
    if record.in_quote and record.role != "dialogue":
        flags.append("within quotation marks")
    if record.in_code_string and record.role != "code_string":
        flags.append("within a code string")
    if record.end_of_line and record.role != "newline":
        flags.append("last on its line")
    return "".join(f", {f}" for f in flags[:2])


def explain_record(record: TokenRecord, rng: random.Random, context_rate: float = 0.8) -> str:
    """The oracle's explanation of one token, from its latent record; the context
    feature appears in a share `context_rate` of explanations."""
    topic_alias = rng.choice(TOPICS[record.genre][record.topic])
    tone = rng.choice(TONE_WORDS[record.tone])
    line1 = rng.choice(_GENRE_LINES[record.genre]).format(
        G=rng.choice(GENRE_NAMES[record.genre]),
        T=topic_alias,
        E=record.entity,
        tone=tone,
        a_tone=("an " if tone[0] in "aeiou" else "a ") + tone,
    )
    line3 = (
        rng.choice(_TOKEN_LINES).format(
            K=show_token(record.token), R=rng.choice(ROLES[record.role]), F=_flags(record)
        )
        + " "
        + rng.choice(_NEXT_LINES).format(N=rng.choice(CONTINUATIONS[record.next_kind]))
    )
    lines = [line1]
    if rng.random() < context_rate:
        lines.append(
            rng.choice(_CONTEXT_LINES).format(
                S=rng.choice(SECTIONS[record.section]), C=context_quote(record.context)
            )
        )
    lines.append(line3)
    return "\n".join(lines)


def oracle_rng(seed: int, doc_id: int, position: int) -> random.Random:
    return random.Random(f"oracle:{seed}:{doc_id}:{position}")


class Oracle:
    """Explains token positions of toy-world documents under a given tokenizer."""

    def __init__(self, tokenizer, seed: int = 0):
        self.tokenizer = tokenizer
        self.seed = seed

    def records(self, doc: Document) -> list[TokenRecord | None]:
        """The latent record of every token of `tokenizer(doc.text)` (None for BOS)."""
        enc = self.tokenizer(doc.text, add_special_tokens=True, return_offsets_mapping=True)
        return token_records(doc, [tuple(o) for o in enc["offset_mapping"]])

    def explain(
        self, doc: Document, position: int, context_rate: float = 0.8
    ) -> tuple[str, TokenRecord]:
        """(explanation, latent record) for the token at `position` (an index into the
        ids of `tokenizer(doc.text, add_special_tokens=True)`)."""
        records = self.records(doc)
        if not 0 <= position < len(records) or records[position] is None:
            raise ValueError(
                f"doc {doc.doc_id}: position {position} is not a text token "
                f"(valid: 1..{len(records) - 1})"
            )
        record = records[position]
        rng = oracle_rng(self.seed, doc.doc_id, position)
        return explain_record(record, rng, context_rate), record


_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?\w+| ?[^\s\w]+|\s+(?!\S)|\s+")


def word_offsets(text: str) -> list[tuple[int, int]]:
    """Character offsets of GPT-2-style pre-tokens (for explaining before a tokenizer exists)."""
    return [m.span() for m in _PIECES.finditer(text)]
