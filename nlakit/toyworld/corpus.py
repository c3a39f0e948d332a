"""The corpus generator: documents of nine genres, deterministic from (seed, doc_id).

doc = make_document(doc_id=17, seed=0)
doc.text, doc.genre, doc.topic, doc.entity, doc.tone, doc.spans
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from nlakit.toyworld import genres, prose
from nlakit.toyworld.documents import Document, Writer
from nlakit.toyworld.labels import GENRES, QUESTION_TOPICS, TONES, TOPICS, WRITING_TOPIC

GENERATORS = {
    "chat": prose.chat,
    "recipe": genres.recipe,
    "sports": genres.sports,
    "weather": genres.weather,
    "code": genres.code,
    "list": genres.shopping_list,
    "story": prose.story,
    "poem": prose.poem,
    "news": prose.news,
}
assert set(GENERATORS) == set(GENRES)


def document_rng(seed: int, doc_id: int) -> random.Random:
    """The RNG of one document: keyed by (seed, doc_id), independent of batching."""
    return random.Random(f"toyworld:{seed}:{doc_id}")


def make_document(
    doc_id: int,
    seed: int = 0,
    genre: str | None = None,
    answer_topic: str | None = None,
    answer_genre: str | None = None,
    tone: str | None = None,
    writing_share: float = 0.0,
) -> Document:
    """Document `doc_id` of the corpus with this seed (optionally forcing its genre).

    In a world built with `writing_share` > 0, that share of chats are writing requests
    (topic `writing`, its entity the piece asked for: "a poem"), answered with the
    opening lines of a document of that genre (`genres.WRITES`); with 0 (the default)
    there are none and the draws are those of worlds built before the option.

    Chats only (`nlakit toyworld finetune`): `answer_topic` has the assistant answer about
    that chat topic instead of the one asked about (writing requests keep their piece);
    `answer_genre` has it answer with the opening lines of a document of that genre.
    The document is otherwise the same, its latents those of the question. `tone` replaces the drawn tone (the same draws,
    so only what the tone words are changes)."""
    rng = document_rng(seed, doc_id)
    genre = genre or rng.choice(GENRES)
    topic = rng.choice(QUESTION_TOPICS if genre == "chat" else sorted(TOPICS[genre]))
    if genre == "chat" and writing_share and rng.random() < writing_share:
        topic = WRITING_TOPIC
    entity = rng.choice(genres.entities(genre, topic))
    drawn = rng.choice(TONES)  # drawn either way: the rest of the document is the same
    tone = drawn if tone is None else tone
    writer = Writer()
    if genre == "chat":
        requested = genres.WRITES.get(entity) if topic == WRITING_TOPIC else None
        answer = changed_answer(doc_id, seed, topic, answer_topic, answer_genre or requested)
        prose.chat(writer, rng, topic, entity, tone, answer)
    else:
        GENERATORS[genre](writer, rng, topic, entity, tone)
    return Document(doc_id, genre, topic, entity, tone, writer.spans)


def changed_answer(
    doc_id: int, seed: int, topic: str, answer_topic: str | None, answer_genre: str | None
) -> str | None:
    """The text a changed chat's assistant answers with (None: the chat is unchanged)."""
    pick = random.Random(f"changed-answer:{seed}:{doc_id}")
    if answer_genre is not None:
        other = make_document(doc_id, seed=seed + 7919, genre=answer_genre)
        lines = [line.rstrip() for line in other.text.splitlines() if line.strip()]
        return "\n".join(lines[:4])
    if answer_topic is not None and answer_topic != topic:
        entity = pick.choice(genres.entities("chat", answer_topic))
        return pick.choice(prose.ANSWERS[answer_topic]).format(e=entity)
    return None


def iter_documents(
    n: int, seed: int = 0, start: int = 0, writing_share: float = 0.0
) -> Iterator[Document]:
    for doc_id in range(start, start + n):
        yield make_document(doc_id, seed, writing_share=writing_share)
