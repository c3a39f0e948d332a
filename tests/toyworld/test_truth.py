import collections
import random

import pytest

from nlakit.layouts import feature_lines
from nlakit.toyworld.corpus import iter_documents
from nlakit.toyworld.genres import ENTITIES, entities
from nlakit.toyworld.labels import CONTINUATIONS, GENRE_NAMES, GENRES, ROLES, TOPICS
from nlakit.toyworld.oracle import explain_record
from nlakit.toyworld.truth import FIELDS, claim_parts, score_claims, truth_rates
from nlakit.toyworld.world import World


@pytest.fixture(scope="module")
def explained(small_world):
    oracle = World(small_world).oracle()
    rng = random.Random(0)
    out = []
    for doc in iter_documents(300, seed=0):
        records = oracle.records(doc)
        valid = [i for i, r in enumerate(records) if r is not None]
        for position in rng.sample(valid, 2):
            out.append(oracle.explain(doc, position))
    return out


def test_oracle_explanations_score_100_percent(explained):
    rates = truth_rates(score_claims(text, record) for text, record in explained)
    for field in FIELDS:
        assert rates[field]["correct"] == 1.0, (field, rates[field])


@pytest.mark.parametrize("layout", ["structured", "many-short"])
@pytest.mark.parametrize("context_rate", [0.0, 1.0])
def test_oracle_explanations_in_every_layout_score_100_percent(explained, layout, context_rate):
    texts = [
        explain_record(record, random.Random(i), context_rate, layout)
        for i, (_, record) in enumerate(explained)
    ]
    assert all(len(feature_lines(t)) >= 4 for t in texts)
    rates = truth_rates(score_claims(t, r) for t, (_, r) in zip(texts, explained, strict=True))
    for field in FIELDS:
        assert rates[field]["correct"] == 1.0, (layout, field, rates[field])


STRUCTURED = 'Genre: Recipe, upbeat in tone\nTopic: bread\nToken: " the", a verse line\nNext: x'
MANY_SHORT = 'Recipe.\nBread.\nText reads "a b".\nFinal token " the".\nA verse line.\nNext comes x.'
PLAIN = 'Recipe: bread.\nThe token " the" is a verse line. Next comes x.'


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (STRUCTURED, ("Recipe, upbeat in tone", "Recipe, upbeat in tone\nbread",
                      '"…", a verse line', "x")),
        (MANY_SHORT, ("Recipe.", "Recipe.\nBread.", "A verse line.", "Next comes x.")),
        (PLAIN, ("Recipe", "Recipe: bread.", 'The token "…" is a verse line.', "Next comes x.")),
    ],
    ids=["structured", "many-short", "plain"],
)  # fmt: skip
def test_each_layout_is_read_from_its_own_parts(text, parts):
    assert claim_parts(text) == dict(zip(("genre", "subject", "role", "next"), parts, strict=True))


def test_shuffled_explanations_score_at_chance(explained):
    rng = random.Random(1)
    texts = [t for t, _ in explained]
    records = [r for _, r in explained]
    shuffled = texts[:]
    rng.shuffle(shuffled)
    scores = [score_claims(t, r) for t, r in zip(shuffled, records, strict=True)]
    genre_rate = sum(s["genre"] == "correct" for s in scores) / len(scores)
    freq = collections.Counter(r.genre for r in records)
    chance = sum((c / len(records)) ** 2 for c in freq.values())
    assert abs(genre_rate - chance) < 0.06 and genre_rate < 0.25
    for field in ("topic", "entity", "role", "continuation"):
        rate = sum(s[field] == "correct" for s in scores) / len(scores)
        assert rate < 0.55, (field, rate)


def _aliases(table):
    return [(alias.lower(), value) for value, aliases in table.items() for alias in aliases]


@pytest.mark.parametrize(
    "table",
    [GENRE_NAMES, ROLES, CONTINUATIONS, *TOPICS.values()],
    ids=["genres", "roles", "continuations", *(f"topics-{g}" for g in TOPICS)],
)
def test_no_alias_names_two_values(table):
    seen = {}
    for alias, value in _aliases(table):
        assert seen.setdefault(alias, value) == value, alias


def test_entities_are_distinct_within_a_genre():
    for genre in GENRES:
        names = [e for t in TOPICS[genre] for e in entities(genre, t)]
        if not isinstance(ENTITIES[genre], dict):
            names = list(entities(genre, next(iter(TOPICS[genre]))))
        assert len(names) == len(set(names)), genre


RECORD = {
    "genre": "recipe",
    "topic": "soup",
    "entity": "lentil",
    "role": "quantity",
    "next_kind": "word",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'Recipe: a lentil soup.\nThe final token " 2" is a quantity. Next must come another word.',
            dict(
                genre="correct",
                topic="correct",
                entity="correct",
                role="correct",
                continuation="correct",
            ),
        ),
        (
            'Poem: a lentil cake.\nThe final token "2" is a unit of measure. Next must come a number.',
            dict(
                genre="wrong", topic="wrong", entity="correct", role="wrong", continuation="wrong"
            ),
        ),
        (
            "Something about food.",
            dict(
                genre="absent",
                topic="absent",
                entity="absent",
                role="absent",
                continuation="absent",
            ),
        ),
        (
            "Recipe: soup or stew with tomato and lentil.\nIt is a quantity.",
            dict(
                genre="correct",
                topic="wrong",
                entity="wrong",
                role="correct",
                continuation="absent",
            ),
        ),
    ],
)
def test_hand_written_claims(text, expected):
    assert score_claims(text, RECORD) == expected


def test_quoted_token_text_is_not_read_as_a_claim():
    text = 'Recipe: lentil soup.\nThe final token "a number" is a quantity. Next must come another word.'
    assert score_claims(text, RECORD)["role"] == "correct"
    assert score_claims(text, RECORD)["continuation"] == "correct"
