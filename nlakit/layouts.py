"""Explanation layouts: the named shapes a teacher's explanation can take, and how to
tell which one a text follows.

    plain        2–3 features, most important first: a "Genre: description" line, an
                 optional line about the context, a line about the final token.
    structured   one labelled field per line, in a fixed order:
                     Genre: Recipe, upbeat in tone
                     Topic: honey bread
                     Context: the method; the text reads "knead the"   (optional)
                     Token: " dough", an ingredient name
                     Next: a punctuation mark
    many-short   5–8 features of a few words each (many facts, each said briefly).

The teacher prompts (`nlakit.data.teacher_prompts`), the toy world's oracle
(`nlakit.toyworld.oracle`) and the format analysis (`nlakit.eval.formats`) share
these names and the readers below, so what a prompt asks for, what the oracle writes
and what the analysis recognises cannot drift apart.
"""

from __future__ import annotations

import re

LAYOUTS = ("plain", "structured", "many-short")
DEFAULT_LAYOUT = "plain"

STRUCTURED_FIELDS = ("Genre", "Topic", "Context", "Token", "Next")
OPTIONAL_FIELDS = ("Context",)  # left out when there is nothing to say beyond the rest
REQUIRED_FIELDS = tuple(f for f in STRUCTURED_FIELDS if f not in OPTIONAL_FIELDS)

MANY_SHORT_FEATURES = (5, 8)  # features per many-short explanation, both ends included
MANY_SHORT_MAX_WORDS = 10  # words per many-short feature, at most

# A field line: optional bullet or bold markers, the label, a colon, then a value.
_FIELD_LINE = re.compile(r"[-*•\s]*\**([A-Za-z]+)\**\s*:\**\s+(\S.*)")
_WORD = re.compile(r"\w+")


def feature_lines(text: str) -> list[str]:
    """The features of an explanation: its non-empty lines, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def word_count(text: str) -> int:
    """Words in `text`: runs of letters, digits and underscores (punctuation and quotes
    are not words, so `"\\n"` is one word and `sort_names(items)` two)."""
    return len(_WORD.findall(text))


def field_of(line: str) -> str | None:
    """The structured field a line fills ("Genre" for "Genre: Recipe", "**Topic:** x" or
    "- token: x"; labels are matched case-insensitively and returned as spelled in
    `STRUCTURED_FIELDS`), or None when the line is no field line or the label is no field."""
    match = _FIELD_LINE.fullmatch(line.strip())
    if match is None:
        return None
    label = match.group(1).casefold()
    return next((f for f in STRUCTURED_FIELDS if f.casefold() == label), None)


def field_values(text: str) -> dict[str, str]:
    """{field: value} of the field lines of `text` (the first line of a field wins)."""
    values: dict[str, str] = {}
    for line in feature_lines(text):
        field = field_of(line)
        if field is not None and field not in values:
            values[field] = _FIELD_LINE.fullmatch(line).group(2).strip()
    return values


def fields_present(text: str) -> set[str]:
    """The structured fields some line of `text` fills, in any order."""
    return {f for f in map(field_of, feature_lines(text)) if f is not None}


def follows_structured(text: str) -> bool:
    """Whether `text` follows the structured layout: every line is a field line, each
    field at most once and in the order of `STRUCTURED_FIELDS`, every required field
    present (only `OPTIONAL_FIELDS` may be left out)."""
    fields = [field_of(line) for line in feature_lines(text)]
    if not fields or None in fields:
        return False
    order = [STRUCTURED_FIELDS.index(f) for f in fields]
    return order == sorted(set(order)) and set(REQUIRED_FIELDS) <= set(fields)


def follows_many_short(text: str) -> bool:
    """Whether `text` follows the many-short layout: between `MANY_SHORT_FEATURES`
    features, none longer than `MANY_SHORT_MAX_WORDS` words."""
    features = feature_lines(text)
    low, high = MANY_SHORT_FEATURES
    return low <= len(features) <= high and all(
        word_count(f) <= MANY_SHORT_MAX_WORDS for f in features
    )
