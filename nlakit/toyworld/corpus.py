"""The corpus generator: documents of nine genres, deterministic from (seed, doc_id).

doc = make_document(doc_id=17, seed=0)
doc.text, doc.genre, doc.topic, doc.entity, doc.tone, doc.spans
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from nlakit.toyworld import genres, prose
from nlakit.toyworld.documents import Document, Writer
from nlakit.toyworld.labels import GENRES, TONES, TOPICS

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


def make_document(doc_id: int, seed: int = 0, genre: str | None = None) -> Document:
    """Document `doc_id` of the corpus with this seed (optionally forcing its genre)."""
    rng = document_rng(seed, doc_id)
    genre = genre or rng.choice(GENRES)
    topic = rng.choice(sorted(TOPICS[genre]))
    entity = rng.choice(genres.entities(genre, topic))
    tone = rng.choice(TONES)
    writer = Writer()
    GENERATORS[genre](writer, rng, topic, entity, tone)
    return Document(doc_id, genre, topic, entity, tone, writer.spans)


def iter_documents(n: int, seed: int = 0, start: int = 0) -> Iterator[Document]:
    for doc_id in range(start, start + n):
        yield make_document(doc_id, seed)
