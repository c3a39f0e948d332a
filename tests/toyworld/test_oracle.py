import random

import pytest

from nlakit.toyworld.corpus import iter_documents, make_document
from nlakit.toyworld.labels import GENRE_NAMES, GENRES
from nlakit.toyworld.oracle import context_quote, explain_record, show_token
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
