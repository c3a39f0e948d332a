import dataclasses
import hashlib
import random

import pytest

from nlakit.layouts import feature_lines, follows_many_short, follows_structured, word_count
from nlakit.toyworld.corpus import iter_documents, make_document
from nlakit.toyworld.documents import TokenRecord, token_records
from nlakit.toyworld.labels import CONTINUATIONS, GENRE_NAMES, GENRES, ROLES, SECTIONS, TOPICS
from nlakit.toyworld.oracle import (
    LAYOUTS,
    context_quote,
    draw_wording,
    explain_record,
    oracle_rng,
    show_token,
    word_offsets,
)
from nlakit.toyworld.world import World


@pytest.fixture(scope="module")
def oracle(small_world):
    return World(small_world).oracle()


def sample_positions(oracle, n_docs=120, seed=0):
    rng = random.Random(seed)
    for doc in iter_documents(n_docs, seed=0):
        records = oracle.records(doc)
        valid = [i for i, r in enumerate(records) if r is not None]
        for position in rng.sample(valid, 3):
            yield doc, position


def test_explanations_have_two_or_three_features_genre_first(oracle):
    for doc, position in sample_positions(oracle, 60):
        text, record = oracle.explain(doc, position)
        lines = text.split("\n")
        assert 2 <= len(lines) <= 3
        label = lines[0].split(":")[0]
        assert label in GENRE_NAMES[record.genre]
        assert f'"{show_token(record.token)}"' in lines[-1]
        if len(lines) == 3:
            assert f'"{context_quote(record.context)}"' in lines[1]


def test_wording_varies(oracle):
    texts = [oracle.explain(d, p)[0] for d, p in sample_positions(oracle, 60)]
    frames = {t.split("\n")[-1].split('"')[0] for t in texts}
    assert len(frames) >= 3
    assert len(set(texts)) == len(texts)


def test_deterministic(oracle):
    doc = make_document(4, seed=0)
    assert oracle.explain(doc, 9) == oracle.explain(doc, 9)


def test_bos_is_not_explainable(oracle):
    with pytest.raises(ValueError, match="not a text token"):
        oracle.explain(make_document(4, seed=0), 0)


def test_record_matches_the_document(oracle):
    doc = make_document(8, seed=0, genre="sports")
    _, record = oracle.explain(doc, 10)
    assert (record.genre, record.topic, record.entity, record.tone) == (
        doc.genre,
        doc.topic,
        doc.entity,
        doc.tone,
    )
    assert doc.text.startswith(record.context.lstrip()) or record.context in doc.text


def test_explain_record_every_genre(oracle):
    for genre in GENRES:
        doc = make_document(1, seed=0, genre=genre)
        records = [r for r in oracle.records(doc) if r]
        text = explain_record(records[len(records) // 2], random.Random(0))
        assert text.split(":")[0] in GENRE_NAMES[genre]


# --------------------------------------------------------------------------- layouts

RECIPE = TokenRecord(
    genre="recipe",
    topic="bread",
    entity="honey",
    tone="cheerful",
    section="ingredients",
    role="quantity",
    next_kind="word",
    token=" 4",
    context="Honey Bread\n- 2 cups flour\n- 4",
    after_number=False,
    end_of_line=False,
    in_quote=False,
    in_code_string=False,
    speaker="",
)
CODE = dataclasses.replace(
    RECIPE,
    genre="code",
    topic="sorting",
    entity="sort_names",
    tone="formal",
    section="body",
    role="identifier",
    next_kind="punctuation",
    token=" items",
    context="def sort_names(items):\n    return sorted(items",
    in_code_string=True,
    end_of_line=True,
)
POEM = dataclasses.replace(
    RECIPE,
    genre="poem",
    topic="moon",
    entity="Ada Moss",
    tone="gloomy",
    section="verse",
    role="rhyme",
    next_kind="newline",
    token=" night",
    context="The moon\nby Ada Moss\nI watched it through the night",
)
HAND_PICKED = (RECIPE, CODE, POEM)
LAYOUT_NAMES = ("plain", "structured", "many-short")


def corpus_records(n_docs=40):
    """(doc_id, position, record) of every word of the first documents, no tokenizer."""
    for doc in iter_documents(n_docs, seed=0):
        for position, record in enumerate(token_records(doc, word_offsets(doc.text))):
            if record is not None:
                yield doc.doc_id, position, record


def field_values(text):
    return dict(line.split(": ", 1) for line in text.splitlines())


def test_plain_layout_is_unchanged():
    """The plain explanations of 40 documents, hashed as they were before layouts existed:
    every plain table and teacher cache depends on them."""
    texts = [explain_record(r, oracle_rng(0, d, p), 0.8) for d, p, r in corpus_records()]
    assert len(texts) == 2027
    digest = hashlib.sha256("\n\n".join(texts).encode()).hexdigest()
    assert digest == "c8781c9fa6c59fd6f28a5ee22009167d8e454a3d2b1ee350b6ebddc85475d54c"


@pytest.mark.parametrize("record", HAND_PICKED, ids=lambda r: r.genre)
@pytest.mark.parametrize("context_rate", [0.0, 1.0])
def test_structured_layout_holds_every_field(record, context_rate):
    for seed in range(6):
        text = explain_record(record, random.Random(seed), context_rate, "structured")
        assert follows_structured(text)
        fields = field_values(text)
        expected = ["Genre", "Topic", "Token", "Next"]
        if context_rate:
            expected.insert(2, "Context")
        assert list(fields) == expected
        assert fields["Genre"].split(",")[0] in GENRE_NAMES[record.genre]
        assert record.entity in fields["Topic"]
        assert any(alias in fields["Topic"] for alias in TOPICS[record.genre][record.topic])
        assert fields["Token"].startswith(f'"{show_token(record.token)}", ')
        assert any(alias in fields["Token"] for alias in ROLES[record.role])
        assert fields["Next"] in CONTINUATIONS[record.next_kind]
        if context_rate:
            assert any(fields["Context"].startswith(s) for s in SECTIONS[record.section])
            assert f'"{context_quote(record.context)}"' in fields["Context"]


def test_structured_token_field_keeps_the_flags():
    fields = field_values(explain_record(CODE, random.Random(0), 0.0, "structured"))
    assert fields["Token"].endswith(", within a code string, last on its line")


def test_every_layout_states_the_same_facts():
    """One rng seed, three layouts: the genre name, topic alias, tone, role and
    continuation drawn are the same words in each (only the shape differs)."""
    for doc_id, position, record in list(corpus_records(20))[::7]:
        texts = {
            name: explain_record(record, oracle_rng(0, doc_id, position), 0.8, name)
            for name in LAYOUT_NAMES
        }
        w = draw_wording(record, oracle_rng(0, doc_id, position), 0.8)
        for name, text in texts.items():
            lowered = text.lower()
            for fact in (w.genre_name, w.topic, w.role, w.continuation, record.entity):
                assert fact.lower() in lowered, (name, fact, text)
            assert (w.tone in text) == w.says_tone, (name, text)
            if w.section is not None:
                assert w.section in text and f'"{context_quote(record.context)}"' in text
        assert ("Context: " in texts["structured"]) == (w.section is not None)
        assert ("Text reads" in texts["many-short"]) == (w.section is not None)


@pytest.mark.parametrize("context_rate", [0.0, 0.8])  # 0.0: the demo's oracle
def test_many_short_has_more_and_shorter_features_than_plain(context_rate):
    n, plain_words, short_words = 0, [], []
    for doc_id, position, record in corpus_records(20):
        rng = oracle_rng(0, doc_id, position)
        plain = feature_lines(explain_record(record, rng, context_rate))
        rng = oracle_rng(0, doc_id, position)
        short = feature_lines(explain_record(record, rng, context_rate, "many-short"))
        assert follows_many_short("\n".join(short))
        assert len(short) >= len(plain) + 2
        plain_words.append(sum(map(word_count, plain)) / len(plain))
        short_words.append(sum(map(word_count, short)) / len(short))
        assert short_words[-1] < plain_words[-1]
        n += 1
    assert n > 500
    assert sum(short_words) / n < 0.5 * sum(plain_words) / n


def test_many_short_hand_picked():
    text = explain_record(CODE, random.Random(3), 1.0, "many-short")
    lines = text.splitlines()
    assert lines[0].split(",")[0].removesuffix(".") in GENRE_NAMES["code"]
    assert 'Final token " items".' in lines
    assert "Within a code string, last on its line." in lines
    assert lines[-1].startswith("Next comes ")
    assert all(line.endswith(".") for line in lines)


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_layouts_are_deterministic(layout):
    first = explain_record(POEM, oracle_rng(0, 3, 9), 0.8, layout)
    assert explain_record(POEM, oracle_rng(0, 3, 9), 0.8, layout) == first
    assert set(LAYOUTS) == set(LAYOUT_NAMES)


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="expected one of plain, structured, many-short"):
        explain_record(RECIPE, random.Random(0), 0.8, "bulleted")
