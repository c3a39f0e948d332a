import collections

import pytest

from nlakit.toyworld.corpus import GENERATORS, iter_documents, make_document
from nlakit.toyworld.documents import Document, infer_kind, token_records
from nlakit.toyworld.labels import GENRES, TOPICS
from nlakit.toyworld.world import World


def test_documents_are_deterministic_by_seed():
    a = [make_document(i, seed=1) for i in range(50)]
    b = [make_document(i, seed=1) for i in range(50)]
    c = [make_document(i, seed=2) for i in range(50)]
    assert a == b
    assert [d.text for d in a] != [d.text for d in c]
    assert make_document(7, seed=1) == a[7]  # independent of what was generated before


def test_every_genre_is_generated_with_its_topics():
    docs = list(iter_documents(400, seed=0))
    counts = collections.Counter(d.genre for d in docs)
    assert set(counts) == set(GENRES) == set(GENERATORS) and len(GENRES) >= 8
    assert min(counts.values()) > 20
    for genre in GENRES:
        assert len(TOPICS[genre]) >= 5
        assert {d.topic for d in docs if d.genre == genre} <= set(TOPICS[genre])


def test_writing_requests_are_answered_with_the_piece_asked_for():
    from nlakit.toyworld.genres import WRITES

    plain = [make_document(i, genre="chat") for i in range(300)]
    assert "writing" not in {d.topic for d in plain}  # off by default: the draws of old
    asked = [make_document(i, genre="chat", writing_share=0.5) for i in range(300)]
    requests = [d for d in asked if d.topic == "writing"]
    assert 100 < len(requests) < 200
    for doc in requests[:20]:
        piece = make_document(doc.doc_id, seed=7919, genre=WRITES[doc.entity])
        first = next(line for line in piece.text.splitlines() if line.strip()).rstrip()
        answer = doc.text.split("<|assistant|>\n", 1)[1]
        assert first in answer, (doc.entity, doc.text)
    # the questions that are not requests are the chats a world without requests has
    assert {d.topic for d in asked if d.topic != "writing"} <= set(TOPICS["chat"]) - {"writing"}


@pytest.mark.parametrize("genre", GENRES)
def test_enough_variety_not_to_memorise(genre):
    # Among 1000 documents of one genre drawn from a space of S equally likely ones,
    # about 1000² / 2S pairs repeat: at most 10 repeats means S is well over 50k per
    # genre (and the nine genres together well over 100k distinct documents).
    texts = [make_document(i, seed=0, genre=genre).text for i in range(1000)]
    assert len(texts) - len(set(texts)) <= 10


def test_documents_are_short_and_structured():
    for doc in iter_documents(200, seed=0):
        assert 40 < len(doc.text) < 700
        assert doc.text == "".join(s.text for s in doc.spans)
        assert doc.entity in doc.text or doc.entity.upper() in doc.text


def test_chat_is_in_the_chat_format(tokenizer):
    doc = make_document(0, seed=0, genre="chat")
    assert doc.text.startswith("<|user|>\n") and "<|assistant|>\n" in doc.text
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=False
    )
    assert rendered.startswith(tokenizer.bos_token + "<|user|>\nx<|end|>\n")
    speakers = {s.speaker for s in doc.spans}
    assert speakers == {"user", "assistant"}


def test_token_records_carry_structure_labels(small_world):
    world = World(small_world)
    oracle = world.oracle()
    recipe = make_document(3, seed=0, genre="recipe")
    records = oracle.records(recipe)
    assert records[0] is None  # BOS
    quantities = [i for i, r in enumerate(records) if r and r.role == "quantity"]
    assert quantities
    for i in quantities:
        assert records[i - 1].next_kind == "number"
        assert records[i + 1].after_number
    assert any(r.section == "ingredients" for r in records if r)
    assert any(r.end_of_line for r in records if r)
    assert records[-1].next_kind == "end"
    code = oracle.records(make_document(5, seed=0, genre="code"))
    assert any(r.in_code_string and r.role == "code_string" for r in code if r)
    story = oracle.records(make_document(5, seed=0, genre="story"))
    assert any(r.in_quote and r.role == "dialogue" for r in story if r)
    chat = oracle.records(make_document(5, seed=0, genre="chat"))
    assert {r.speaker for r in chat if r and r.role == "assistant_text"} == {"assistant"}


def test_document_round_trips_through_a_row():
    doc = make_document(11, seed=0)
    row = {
        "doc_id": doc.doc_id,
        "genre": doc.genre,
        "topic": doc.topic,
        "entity": doc.entity,
        "tone": doc.tone,
        "spans": doc.span_dicts(),
    }
    assert Document.from_row(row) == doc


def test_manual_offsets():
    doc = make_document(2, seed=0, genre="weather")
    records = token_records(doc, [(0, 0), (0, 3), (3, 7)])
    assert records[0] is None and records[1].token == doc.text[:3]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("<|end|>", "end"),
        ("<|user|>", "tag"),
        ("\n", "newline"),
        (" 42", "number"),
        (",", "punctuation"),
        (' "', "quote"),
        (" soup", "word"),
    ],
)
def test_infer_kind(text, kind):
    assert infer_kind(text) == kind
