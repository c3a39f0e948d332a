"""The genre reader reads the world's genres from the opening of its documents."""

from __future__ import annotations

from nlakit.toyworld.reader import genre_reader, openings
from nlakit.toyworld.world import World


def test_genre_reader_reads_held_out_documents(small_world):
    world = World(small_world)
    reader = genre_reader(world, n_train=300, n_test=60, tokens=20)
    assert reader.accuracy >= 0.9
    docs = world.documents("eval")
    predicted = reader.predict(openings(world, docs, 20))
    right = sum(p == d.genre for p, d in zip(predicted, docs, strict=True))
    assert right >= 0.9 * len(docs) and reader.n_test == len(docs)
