"""Truth scoring: which latents an explanation states correctly, wrongly, or not at all.

`score_claims(explanation, record)` reads an explanation the way the oracle lays
it out (`claim_parts`), in each layout of `nlakit.layouts`:

- plain: the first line names the genre, topic and main entity; the first sentence
  of the last line names the final token's role, the sentences after it what must
  come next;
- structured: the `Genre:` field the genre, `Genre:` and `Topic:` the topic and
  entity, `Token:` the role, `Next:` what comes next;
- many-short: the first line the genre, the first two the topic and entity, the
  lines between the one quoting the final token and the last the role, the last
  line what comes next;

and compares every value it finds with the latent record:

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

from nlakit.layouts import feature_lines, field_values
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


def claim_parts(explanation: str) -> dict[str, str]:
    """The parts of an explanation each claim is read from, whatever its layout:
    `genre` (the genre's label opens it), `subject` (topic and entity), `role` and
    `next`. An explanation with two or more structured field lines is read as
    structured; one with four or more lines as many-short; any other as plain."""
    fields = field_values(explanation)
    if len(fields) >= 2:  # structured
        genre = fields.get("Genre", "")
        return {
            "genre": genre,
            "subject": f"{genre}\n{fields.get('Topic', '')}",
            "role": _QUOTED.sub('"…"', fields.get("Token", "")),
            "next": fields.get("Next", ""),
        }
    lines = feature_lines(explanation)
    if len(lines) >= 4:  # many-short: genre, topic, …, final token, role, …, next
        quoting = [i for i, line in enumerate(lines[:-1]) if _QUOTED.search(line)]
        after = quoting[-1] + 1 if quoting else 2
        return {
            "genre": lines[0],
            "subject": "\n".join(lines[:2]),
            "role": _QUOTED.sub('"…"', "\n".join(lines[after:-1])),
            "next": lines[-1],
        }
    first, last = split_features(explanation)
    sentences = _SENTENCE_END.split(_QUOTED.sub('"…"', last), maxsplit=1)
    return {
        "genre": first.split(":")[0] if ":" in first else first,
        "subject": first,
        "role": sentences[0] if sentences else "",
        "next": sentences[1] if len(sentences) > 1 else "",
    }


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
    part = claim_parts(explanation)
    genre_found = find_values(part["genre"], GENRE_NAMES)[:1]  # the label it opens with
    return {
        "genre": judge(genre_found, rec["genre"]),
        "topic": judge(find_values(part["subject"], TOPICS[rec["genre"]]), rec["topic"]),
        "entity": judge(find_values(part["subject"], _entity_table(rec["genre"])), rec["entity"]),
        "role": judge(find_values(part["role"], ROLES), rec["role"]),
        "continuation": judge(find_values(part["next"], CONTINUATIONS), rec["next_kind"]),
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
