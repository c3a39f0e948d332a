import json

import pytest

from nlakit.toyworld.labels import GENRES, TONES
from nlakit.toyworld.probe import ProbeConfig, latent_probe, probe_world
from nlakit.toyworld.world import World


def test_probe_on_the_small_world(small_world):
    results = probe_world(small_world, ProbeConfig(max_docs=120, steps=40), progress=False)
    assert results["layer"] == 1 and results["n_test"] > 100
    for name in ("genre", "topic", "structure", "section", "role"):
        assert 0 <= results[f"{name}_acc"] <= 1
    # even the tiny, briefly trained model carries genre far above chance
    assert results["genre_acc"] > results["genre_majority"] + 0.3
    assert json.loads((small_world / "probe.json").read_text())["genre_acc"] == results["genre_acc"]


@pytest.mark.slow
def test_latent_probes_read_one_latent(small_world):
    world = World(small_world)
    config = ProbeConfig(max_docs=60, steps=20)
    genre = latent_probe(world, world.default_layer, "genre", config)
    assert set(genre.classes) <= set(GENRES) and len(genre.classes) > 2
    assert genre.accuracy > 1 / len(genre.classes)  # genre is linearly readable
    x = genre.mean[None].repeat(3, 1)
    assert len(genre.predict(x)) == 3 and set(genre.predict(x)) <= set(genre.classes)
    tone = latent_probe(world, world.default_layer, "tone", config)  # read at chats only
    assert set(tone.classes) <= set(TONES) and 0.0 <= tone.accuracy <= 1.0


def test_demo_world_acceptance(tmp_path):
    """`nlakit toyworld build --size demo` in ≤ 4 minutes; probes: genre ≥ 95%,
    next-token kind ≥ 80% held out at the default layer."""
    from nlakit.toyworld.build import build_world, world_config

    record = build_world(tmp_path / "demo", world_config("demo"), progress=False)
    assert record["timings_s"]["total"] < 240
    assert record["losses"]["final"] < record["losses"]["unigram"] / 3
    results = probe_world(tmp_path / "demo", progress=False)
    assert results["genre_acc"] >= 0.95
    assert results["structure_acc"] >= 0.80
