"""Truth scoring: which latents an explanation states correctly, wrongly, or not at all.

`score_claims(explanation, record)` reads an explanation the way the oracle lays
it out — the first line names the genre, topic and main entity; the first
sentence of the last line names the final token's role, the sentences after it
what must come next — and compares every value it finds with the latent record:

- `correct`: only the true value is stated;
- `wrong`: another value of the same latent is stated (alone or beside the true one);
- `absent`: no value of that latent is stated.

Values are recognised by their aliases (`labels.py`), case-insensitively, on word
boundaries; topics and entities are compared within the record's genre.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from nlakit.toyworld.documents import TokenRecord
from nlakit.toyworld.genres import entities
from nlakit.toyworld.labels import CONTINUATIONS, GENRE_NAMES, ROLES, TOPICS

FIELDS = ("genre", "topic", "entity", "role", "continuation")
RECORD_KEYS = ("genre", "topic", "entity", "role", "next_kind")  # what FIELDS are judged on
_QUOTED = re.compile(r'"[^"\n]*"')
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


@functools.lru_cache(maxsize=8192)
def _pattern(alias: str) -> re.Pattern:
    """`alias` (lower case) on word boundaries."""
    return re.compile(r"(?<!\w)" + re.escape(alias) + r"(?!\w)")


@functools.lru_cache(maxsize=64)
def _entity_table(genre: str) -> dict[str, tuple[str, ...]]:
    """Every entity of every topic of `genre`, each its own alias."""
    return {e: (e,) for topic in TOPICS[genre] for e in entities(genre, topic)}


def find_values(text: str, table: Mapping[str, Iterable[str]]) -> list[tuple[int, str]]:
    """(position, value) of every alias of every value in `text`, longest match winning
    where matches overlap."""
    text = text.lower()
    matches = []
    for value, aliases in table.items():
        for alias in aliases:
            alias = alias.lower()
            if alias not in text:  # a cheap test first: most aliases are absent
                continue
            for m in _pattern(alias).finditer(text):
                matches.append((m.start(), m.end(), value))
    kept = []
    for start, end, value in sorted(matches, key=lambda m: (m[0], -(m[1] - m[0]))):
        if any(s <= start and end <= e and (s, e) != (start, end) for s, e, _ in kept):
            continue
        kept.append((start, end, value))
    return [(start, value) for start, _, value in kept]


def judge(found: list[tuple[int, str]], truth: str) -> str:
    values = {v for _, v in found}
    if not values:
        return "absent"
    return "correct" if values == {truth} else "wrong"


def split_features(explanation: str) -> tuple[str, str]:
    """(first line, last line) of an explanation's non-empty lines."""
    lines = [line.strip() for line in explanation.strip().splitlines() if line.strip()]
    if not lines:
        return "", ""
    return lines[0], lines[-1] if len(lines) > 1 else ""


def is_world_record(record) -> bool:
    """Whether `record` is a toy-world latent record claims can be judged on: a mapping
    with every key of RECORD_KEYS and a genre of the toy world."""
    return (
        isinstance(record, Mapping)
        and all(key in record for key in RECORD_KEYS)
        and record["genre"] in TOPICS
    )


def score_claims(explanation: str, record: TokenRecord | Mapping) -> dict[str, str]:
    """`{field: "correct" | "wrong" | "absent"}` for genre, topic, entity, role, continuation."""
    rec = record if isinstance(record, Mapping) else record.to_dict()
    first, last = split_features(explanation)
    genre_found = find_values(first.split(":")[0] if ":" in first else first, GENRE_NAMES)
    genre_found = genre_found[:1]  # the label the line opens with
    topic_table = TOPICS[rec["genre"]]
    entity_table = _entity_table(rec["genre"])
    unquoted = _QUOTED.sub('"…"', last)
    sentences = _SENTENCE_END.split(unquoted, maxsplit=1)
    role_part = sentences[0] if sentences else ""
    next_part = sentences[1] if len(sentences) > 1 else ""
    return {
        "genre": judge(genre_found, rec["genre"]),
        "topic": judge(find_values(first, topic_table), rec["topic"]),
        "entity": judge(find_values(first, entity_table), rec["entity"]),
        "role": judge(find_values(role_part, ROLES), rec["role"]),
        "continuation": judge(find_values(next_part, CONTINUATIONS), rec["next_kind"]),
    }


def truth_rates(scores: Iterable[dict[str, str]]) -> dict[str, dict[str, float]]:
    """Per field, the share of explanations whose claim is correct / wrong / absent."""
    scores = list(scores)
    out = {}
    for field in FIELDS:
        n = max(len(scores), 1)
        out[field] = {
            verdict: sum(s[field] == verdict for s in scores) / n
            for verdict in ("correct", "wrong", "absent")
        }
    return out
