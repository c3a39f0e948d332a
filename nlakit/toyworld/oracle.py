"""The oracle teacher: explanations written from the latent record, true by construction.

The plain layout (the default) has 2–3 features, one per line, most important first:

1. a genre/topic line, `Genre: description` (genre, topic, main entity, sometimes tone);
2. (usually) a feature that quotes the nearby text and says which part of the
   document it is in;
3. a feature about the final token: its role, and what must come next.

The other layouts of `nlakit.layouts` say the same facts in another shape:

    structured                                  many-short
    Genre: Recipe, upbeat in tone               Recipe, upbeat.
    Topic: honey bread                          Honey bread.
    Context: the method; the text reads "…"     In the method.
    Token: " the", an instruction word          Text reads "…".
    Next: another word                          Final token " the".
                                                An instruction word.
                                                Next comes another word.

Wording varies (several frames and synonyms per statement), so explanations are
not one fixed template; the choice is seeded by (seed, doc_id, position), and one
seed gives every layout the same facts in the same words (`draw_wording`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

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
# The topic and main entity in a few words (the structured and many-short layouts).
_TOPIC_PHRASES = {
    "chat": "{T}, mentioning {E}",
    "recipe": "{E} {T}",
    "sports": "{T}, {E}",
    "weather": "{T} weather for {E}",
    "code": "{T} function named {E}",
    "list": "{T} for {E}",
    "story": "{E} in the {T}",
    "poem": "the {T}, by {E}",
    "news": "{T} news from {E}",
}


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


@dataclass(frozen=True)
class Wording:
    """The oracle's random choices for one token: every fact's surface form and the
    plain layout's frames, drawn in one fixed order so that each layout of a token
    states the same facts in the same words."""

    topic: str  # the topic alias
    tone: str  # the tone word
    genre_frame: str  # the plain genre line; its tone is stated only where it holds one
    genre_name: str
    token_frame: str
    role: str
    next_frame: str
    continuation: str
    context_frame: str | None  # None: no context feature
    section: str | None

    @property
    def says_tone(self) -> bool:
        return "tone}" in self.genre_frame


def draw_wording(record: TokenRecord, rng: random.Random, context_rate: float) -> Wording:
    """Draw the wording of `record`'s explanation; the context feature is drawn with
    probability `context_rate`. The order of the draws is the plain layout's as first
    written, so its explanations (and every table made from them) stay as they were."""
    topic = rng.choice(TOPICS[record.genre][record.topic])
    tone = rng.choice(TONE_WORDS[record.tone])
    genre_frame = rng.choice(_GENRE_LINES[record.genre])
    genre_name = rng.choice(GENRE_NAMES[record.genre])
    token_frame = rng.choice(_TOKEN_LINES)
    role = rng.choice(ROLES[record.role])
    next_frame = rng.choice(_NEXT_LINES)
    continuation = rng.choice(CONTINUATIONS[record.next_kind])
    context_frame = section = None
    if rng.random() < context_rate:
        context_frame = rng.choice(_CONTEXT_LINES)
        section = rng.choice(SECTIONS[record.section])
    return Wording(
        topic,
        tone,
        genre_frame,
        genre_name,
        token_frame,
        role,
        next_frame,
        continuation,
        context_frame,
        section,
    )


def plain_layout(record: TokenRecord, w: Wording) -> str:
    """Genre line, optional context line, final-token line (2–3 features)."""
    line1 = w.genre_frame.format(
        G=w.genre_name,
        T=w.topic,
        E=record.entity,
        tone=w.tone,
        a_tone=("an " if w.tone[0] in "aeiou" else "a ") + w.tone,
    )
    line3 = (
        w.token_frame.format(K=show_token(record.token), R=w.role, F=_flags(record))
        + " "
        + w.next_frame.format(N=w.continuation)
    )
    lines = [line1]
    if w.context_frame is not None:
        lines.append(w.context_frame.format(S=w.section, C=context_quote(record.context)))
    lines.append(line3)
    return "\n".join(lines)


def _topic(record: TokenRecord, w: Wording) -> str:
    return _TOPIC_PHRASES[record.genre].format(T=w.topic, E=record.entity)


def structured_layout(record: TokenRecord, w: Wording) -> str:
    """One field per line (`nlakit.layouts.STRUCTURED_FIELDS`): Genre, Topic, Context
    (where the plain layout has its context line), Token, Next."""
    fields = {
        "Genre": w.genre_name + (f", {w.tone} in tone" if w.says_tone else ""),
        "Topic": _topic(record, w),
        "Context": None
        if w.context_frame is None
        else f'{w.section}; the text reads "{context_quote(record.context)}"',
        "Token": f'"{show_token(record.token)}", {w.role}{_flags(record)}',
        "Next": w.continuation,
    }
    return "\n".join(f"{name}: {value}" for name, value in fields.items() if value is not None)


def _sentence(phrase: str) -> str:
    return phrase[0].upper() + phrase[1:] + "."


def many_short_layout(record: TokenRecord, w: Wording) -> str:
    """The same facts as short features, one per line (5–8): genre (and tone), topic,
    the section and the text before (where the plain layout has them), the final token,
    its role, what else holds of it, and what comes next."""
    lines = [w.genre_name + (f", {w.tone}" if w.says_tone else ""), _topic(record, w)]
    if w.context_frame is not None:
        lines += [f"in {w.section}", f'text reads "{context_quote(record.context)}"']
    lines += [f'final token "{show_token(record.token)}"', w.role]
    flags = _flags(record).removeprefix(", ")
    if flags:
        lines.append(flags)
    lines.append(f"next comes {w.continuation}")
    return "\n".join(map(_sentence, lines))


LAYOUTS = {
    "plain": plain_layout,
    "structured": structured_layout,
    "many-short": many_short_layout,
}


def explain_record(
    record: TokenRecord, rng: random.Random, context_rate: float = 0.8, layout: str = "plain"
) -> str:
    """The oracle's explanation of one token, from its latent record, in `layout`
    (`nlakit.layouts.LAYOUTS`); the context feature appears in a share `context_rate`
    of explanations. With the same rng state every layout states the same facts."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    return LAYOUTS[layout](record, draw_wording(record, rng, context_rate))


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
