"""The type of a token (word-start, number, punctuation, …) and error buckets by rank.

Pure functions shared by the token-type analysis (`nlakit.eval.token_types`) and the
viewer, which groups and colours rows by them; they need neither torch nor a model.

    token_type(" the") == "word-start";  token_type("ing") == "word-piece"
    error_buckets(errors, 5)     # quintile index [n] of each error, 0 = lowest
"""

from __future__ import annotations

import re

import numpy as np

TOKEN_TYPES = (
    "word-start",
    "word-piece",
    "number",
    "punctuation",
    "newline",
    "whitespace",
    "special",
)

# Space markers of raw (undecoded) vocabularies: SentencePiece "▁", GPT-2 byte-level "Ġ"
# (space), "Ċ" (newline), "ĉ" (tab); and SentencePiece byte-fallback pieces.
_SPACE_MARKERS = ("▁", "Ġ")
_BYTE_PIECES = {"<0x0A>": "\n", "<0x0D>": "\r", "<0x20>": " ", "<0x09>": "\t"}
_SPECIAL = re.compile(
    r"<\|[^|<>]*\|>"  # <|endoftext|>, <|im_start|>, <|end|>
    r"|</?[A-Za-z][A-Za-z0-9_]*>"  # <s>, </s>, <pad>, <bos>, <eos>, <unk>
    r"|\[[A-Z][A-Z_]*\]"  # [CLS], [SEP], [PAD]
)


def _normalise(token: str) -> str:
    """The token as text: byte pieces and leading space markers made real whitespace."""
    if token in _BYTE_PIECES:
        return _BYTE_PIECES[token]
    if token and set(token) <= {"Ġ", "Ċ", "ĉ", "▁"} | set(" \t\n\r"):
        return token.translate(str.maketrans({"Ġ": " ", "▁": " ", "Ċ": "\n", "ĉ": "\t"}))
    if token[:1] in _SPACE_MARKERS:
        return " " + token[1:]
    return token


def token_type(token: str, is_special: bool = False) -> str:
    """The type of one decoded token string (one of `TOKEN_TYPES`).

    special      `is_special`, or shaped like a special token (`<|end|>`, `<s>`, `[CLS]`)
    newline      only whitespace, with at least one line break ("\\n", "\\n   ")
    whitespace   only whitespace, or empty
    word-start   leading whitespace (or "▁"/"Ġ"), then at least one letter (" the", "▁the")
    word-piece   at least one letter, no leading whitespace ("the", "ing", "(he")
    number       digits and no letters (" 2", "3.5", "10%")
    punctuation  no letters or digits (".", " (", '"))')
    """
    if is_special or _SPECIAL.fullmatch(token):
        return "special"
    text = _normalise(token)
    if not text.strip():
        return "newline" if ("\n" in text or "\r" in text) else "whitespace"
    body = text.lstrip()
    if any(c.isalpha() for c in body):
        return "word-start" if len(body) < len(text) else "word-piece"
    if any(c.isdigit() for c in body):
        return "number"
    return "punctuation"


def error_buckets(errors: np.ndarray, n_buckets: int = 5) -> np.ndarray:
    """Bucket index `[n]` in 0..n_buckets-1 of each error by rank: bucket 0 holds the
    lowest-error n/n_buckets rows. Ties are split by row order, so buckets have equal
    sizes (±1) even when many errors are equal."""
    order = np.argsort(errors, kind="stable")
    ranks = np.empty(len(errors), dtype=np.int64)
    ranks[order] = np.arange(len(errors))
    return ranks * n_buckets // max(len(errors), 1)
