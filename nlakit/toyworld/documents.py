"""Documents made of labelled spans, and the latent record of every token.

A generator writes a document as a list of `Span`s — pieces of text, each with its
section, role and kind (and flags: inside a quote, inside a code string, speaker).
Joining the spans gives the text; tokenizing it with offsets gives, for every
token, the labels of the span its last character falls in (`token_records`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields

from nlakit.toyworld.labels import ROLES, SECTIONS

SPECIAL = re.compile(r"<\|[a-z]+\|>")
_PUNCT = re.compile(r"^[^\w\s]+$")


@dataclass(frozen=True)
class Span:
    """A piece of a document's text and what it is."""

    text: str
    section: str
    role: str
    kind: str  # word, name, number, punctuation, newline, quote, tag, end
    in_quote: bool = False
    in_code_string: bool = False
    speaker: str = ""  # "user" / "assistant" inside a chat, else ""


SPAN_FIELDS = tuple(f.name for f in fields(Span))


@dataclass
class Document:
    """A generated document with its document-level latents."""

    doc_id: int
    genre: str
    topic: str
    entity: str
    tone: str
    spans: list[Span] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.spans)

    @property
    def table_id(self) -> str:
        """Its `doc_id` in NLA tables (extraction, training, eval): the number as text,
        since the released datasets' doc ids are strings ("17")."""
        return str(self.doc_id)

    def span_dicts(self) -> list[dict]:
        return [{name: getattr(s, name) for name in SPAN_FIELDS} for s in self.spans]

    @classmethod
    def from_row(cls, row: dict) -> Document:
        """Rebuild from a `corpus.parquet` row."""
        spans = [Span(**s) for s in row["spans"]]
        return cls(row["doc_id"], row["genre"], row["topic"], row["entity"], row["tone"], spans)


def infer_kind(text: str) -> str:
    stripped = text.strip(" ")
    if SPECIAL.fullmatch(stripped):
        return "end" if stripped == "<|end|>" else "tag"
    if "\n" in text and not text.strip():
        return "newline"
    if stripped[:1].isdigit():
        return "number"
    if stripped and _PUNCT.match(stripped):
        return "quote" if '"' in stripped else "punctuation"
    return "word"


class Writer:
    """Accumulates spans; generators call `put` and `words`."""

    def __init__(self, section: str = "body", speaker: str = ""):
        self.spans: list[Span] = []
        self.section = section
        self.speaker = speaker
        self.in_quote = False
        self.in_code_string = False

    def put(
        self, text: str, role: str, kind: str | None = None, section: str | None = None
    ) -> None:
        if not text:
            return
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        section = section or self.section
        if section not in SECTIONS:
            raise ValueError(f"unknown section {section!r}")
        self.spans.append(
            Span(
                text,
                section,
                role,
                kind or infer_kind(text),
                self.in_quote,
                self.in_code_string,
                self.speaker,
            )
        )

    def words(self, text: str, role: str, kind: str | None = None) -> None:
        """Put `text` word by word (punctuation gets its own span and role)."""
        for piece in re.findall(r" ?[\w'-]+| ?[^\w\s]+|\n| +", text):
            if piece.strip(" ") and _PUNCT.match(piece.strip(" ")) and '"' not in piece:
                self.put(piece, "punctuation")
            elif piece == "\n":
                self.put(piece, "newline")
            else:
                self.put(piece, role, kind)

    def name(self, text: str, role: str) -> None:
        """A proper name (kind `name`), one span per word."""
        for piece in re.findall(r" ?\S+", text):
            self.put(piece, role, "name")

    def newline(self) -> None:
        self.put("\n", "newline")

    def quote(self, text: str, role: str, lead: str = " ") -> None:
        """`"text"`, its inside marked as quoted (or, in code, as a code string)."""
        self.put(lead + '"', "punctuation", "quote")
        flag = "in_code_string" if self.section in ("body", "call") else "in_quote"
        setattr(self, flag, True)
        self.words(text, role)
        setattr(self, flag, False)
        self.put('"', "punctuation", "quote")


@dataclass
class TokenRecord:
    """The latent record of one token position: everything true about it."""

    genre: str
    topic: str
    entity: str
    tone: str
    section: str
    role: str
    next_kind: str
    token: str
    context: str  # the text up to and including this token (tail)
    after_number: bool
    end_of_line: bool
    in_quote: bool
    in_code_string: bool
    speaker: str

    def to_dict(self) -> dict:
        return asdict(self)


def char_owners(doc: Document) -> list[int]:
    """Index of the span that owns each character of `doc.text`."""
    owners: list[int] = []
    for i, span in enumerate(doc.spans):
        owners.extend([i] * len(span.text))
    return owners


def token_kind(doc: Document, owners: list[int], text: str, start: int, end: int) -> str:
    """A token's kind: the kind of the span holding its first non-space character."""
    pos = start
    while pos < end - 1 and text[pos] == " ":
        pos += 1
    return doc.spans[owners[pos]].kind if pos < len(owners) else "end"


def token_records(doc: Document, offsets: list[tuple[int, int]]) -> list[TokenRecord | None]:
    """The record of each token, given the tokenizer's character offsets of `doc.text`
    (tokens with an empty span, such as an added BOS, get None)."""
    owners = char_owners(doc)
    text = doc.text
    kinds = [token_kind(doc, owners, text, s, e) if e > s else None for s, e in offsets]
    # The kind of the nearest real token after / before each token (one pass each).
    following, previous = [None] * len(kinds), [None] * len(kinds)
    seen = "end"
    for i in range(len(kinds) - 1, -1, -1):
        following[i] = seen
        seen = kinds[i] or seen
    seen = None
    for i, kind in enumerate(kinds):
        previous[i] = seen
        seen = kind or seen
    records: list[TokenRecord | None] = []
    for i, (start, end) in enumerate(offsets):
        if end <= start:
            records.append(None)
            continue
        span = doc.spans[owners[end - 1]]
        records.append(
            TokenRecord(
                genre=doc.genre,
                topic=doc.topic,
                entity=doc.entity,
                tone=doc.tone,
                section=span.section,
                role=span.role,
                next_kind=following[i],
                token=text[start:end],
                context=text[max(0, end - 60) : end],
                after_number=previous[i] == "number",
                end_of_line=following[i] in ("newline", "end"),
                in_quote=span.in_quote,
                in_code_string=span.in_code_string,
                speaker=span.speaker,
            )
        )
    return records
