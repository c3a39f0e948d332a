"""The explanation layouts' readers: field lines, the structured and many-short checks."""

from __future__ import annotations

import pytest

from nlakit.layouts import (
    MANY_SHORT_MAX_WORDS,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    STRUCTURED_FIELDS,
    feature_lines,
    field_of,
    fields_present,
    follows_many_short,
    follows_structured,
    word_count,
)

STRUCTURED = (
    'Genre: Recipe\nTopic: honey bread\nContext: the method\nToken: " the", a word\nNext: a noun'
)


def test_fields():
    assert STRUCTURED_FIELDS == ("Genre", "Topic", "Context", "Token", "Next")
    assert OPTIONAL_FIELDS == ("Context",)
    assert REQUIRED_FIELDS == ("Genre", "Topic", "Token", "Next")


def test_feature_lines_and_word_count():
    assert feature_lines("\n  a b \n\n c\n") == ["a b", "c"]
    assert feature_lines("") == []
    assert word_count('Final token "\\n".') == 3  # Final, token, n
    assert word_count("sort_names(items):") == 2
    assert word_count("— . ,") == 0


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("Genre: Recipe", "Genre"),
        ("  Topic:   honey bread", "Topic"),
        ("**Token:** x", "Token"),
        ("**Next**: x", "Next"),
        ("- context: the method", "Context"),
        ("GENRE: x", "Genre"),
        ("Genre:", None),  # no value
        ("Genre:x", None),  # no space after the colon
        ("Final token: x", None),  # not a field label
        ("Tone: calm", None),  # a label, but no field of the layout
        ("Recipe blog: a home cook", None),
        ("plain sentence", None),
    ],
)
def test_field_of(line, field):
    assert field_of(line) == field


def test_structured_layout():
    assert follows_structured(STRUCTURED)
    no_context = "\n".join(line for line in STRUCTURED.splitlines() if "Context" not in line)
    assert follows_structured(no_context)  # the optional field may be left out
    assert fields_present(no_context) == set(REQUIRED_FIELDS)
    lines = STRUCTURED.splitlines()
    assert not follows_structured("\n".join([lines[1], lines[0], *lines[2:]]))  # out of order
    assert not follows_structured("\n".join(lines[:-1]))  # Next missing
    assert not follows_structured("\n".join([*lines, lines[-1]]))  # Next twice
    assert not follows_structured("\n".join([*lines, "And one more thing."]))
    assert not follows_structured("")
    assert fields_present("Intro\nTopic: x\nGenre: y") == {"Genre", "Topic"}


def test_many_short_layout():
    five = "\n".join(["Recipe.", "Honey bread.", "Final token.", "A word.", "Next a noun."])
    assert follows_many_short(five)
    assert not follows_many_short("\n".join(five.splitlines()[:4]))  # 4 features
    assert follows_many_short("\n".join(["a"] * 8))
    assert not follows_many_short("\n".join(["a"] * 9))
    long_feature = " ".join(["word"] * (MANY_SHORT_MAX_WORDS + 1))
    assert not follows_many_short(five + "\n" + long_feature)
    assert follows_many_short(five + "\n" + " ".join(["word"] * MANY_SHORT_MAX_WORDS))
