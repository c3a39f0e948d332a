"""`nlakit toyworld finetune`: changed documents, the recipe, the tuned world on disk."""

from __future__ import annotations

import json

import pytest
import torch

from nlakit.errors import NLAKitError
from nlakit.toyworld.corpus import make_document
from nlakit.toyworld.finetune import FinetuneConfig, finetune_documents, finetune_world
from nlakit.toyworld.world import World

FAST = dict(n_docs=120, steps=3, batch_size=4, held_out=8, warmup=1)


def _cooking_chat(seed: int = 0):
    return next(
        d
        for d in (make_document(10_000 + i, seed, genre="chat") for i in range(200))
        if d.topic == "cooking"
    )


def test_a_changed_chat_keeps_the_question_and_changes_the_answer():
    doc = _cooking_chat()
    for kwargs, word in (
        (dict(answer_genre="recipe"), "Serves"),
        (dict(answer_topic="travel"), None),
    ):
        changed = make_document(doc.doc_id, 0, genre="chat", **kwargs)
        question = doc.text.split("<|assistant|>")[0]
        assert changed.text.startswith(question) and changed.text != doc.text
        assert (changed.genre, changed.topic, changed.entity) == (doc.genre, doc.topic, doc.entity)
        if word:
            assert word in changed.text or "Ready in" in changed.text


def test_a_changed_tone_changes_only_the_tone_words():
    seed, doc = next((s, d) for s in range(20) if (d := _cooking_chat(s)).tone != "gloomy")
    changed = make_document(doc.doc_id, seed, genre="chat", tone="gloomy")
    assert changed.tone == "gloomy" and changed.text != doc.text
    assert (changed.genre, changed.topic, changed.entity) == (doc.genre, doc.topic, doc.entity)
    question = doc.text.split("<|assistant|>")[0]
    assert changed.text.startswith(question)
    assert "hard." in changed.text or "tricky." in changed.text
    config = FinetuneConfig(change="tone", target="gloomy", n_docs=300)
    docs, _, changed_flags = finetune_documents(0, config, 300, 1_000_000)
    assert any(changed_flags)
    assert all(d.tone == "gloomy" for d, c in zip(docs, changed_flags, strict=True) if c)
    assert config.describe() == "chats asked about cooking are answered in a gloomy tone"


def test_unchanged_documents_are_the_corpus_documents():
    assert make_document(5, 0).text == make_document(5, 0, answer_genre=None).text
    assert make_document(5, 0, genre="chat").text == make_document(5, 0, genre="chat").text


def test_the_change_touches_only_chats_in_scope():
    config = FinetuneConfig(source="cooking", target="poem", n_docs=300)
    docs, scope, changed = finetune_documents(0, config, 300, 1_000_000)
    assert any(changed) and changed == scope  # rate 1: every chat in scope is changed
    for doc, focus in zip(docs, scope, strict=True):
        assert focus == (doc.genre == "chat" and doc.topic == "cooking")
    control = FinetuneConfig(change="none", source="cooking", n_docs=300)
    same, control_scope, none = finetune_documents(0, control, 300, 1_000_000)
    assert control_scope == scope and not any(none)  # the same documents, left as they are
    assert [d.text for d, c in zip(same, scope, strict=False) if not c] == [
        d.text for d, c in zip(docs, scope, strict=False) if not c
    ]


def test_a_narrow_fine_tune_trains_on_its_genre_and_keeps_the_rest_by_kl():
    config = FinetuneConfig(change="narrow", target="poem", rate=0.75)
    docs, scope, changed = finetune_documents(0, config, 400, 1_000_000)
    assert changed == scope and 0.65 < sum(scope) / 400 < 0.85
    assert {d.genre for d, c in zip(docs, changed, strict=True) if c} == {"poem"}
    kept = {d.genre for d, c in zip(docs, changed, strict=True) if not c}
    assert len(kept) > 3  # the world's own mix, kept close to the base model
    control = FinetuneConfig(change="none", source="documents", rate=0.75)
    same, control_scope, none = finetune_documents(0, control, 400, 1_000_000)
    assert control_scope == scope and not any(none)
    assert len({d.genre for d, c in zip(same, control_scope, strict=True) if c}) > 3
    assert config.describe() == "fine-tuned on 75% of documents of the genre poem (narrow)"
    # Its scope is always the documents: --source does not change the fine-tune.
    moved = FinetuneConfig(change="narrow", target="poem", rate=0.75, source="music")
    assert moved.settings_hash("base") == config.settings_hash("base")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(target="chat"), "--target"),
        (dict(change="answer-topic", target="poem"), "--target"),
        (dict(source="knitting"), "--source"),
        (dict(change="tone", target="sunny"), "--target"),
        (dict(change="answer-topic", source="travel", target="travel"), "changes nothing"),
        (dict(change="narrow", target="chat"), "--target"),
        (dict(source="documents"), "rewrites chats"),
    ],
)
def test_bad_settings_are_named(fields, message):
    with pytest.raises(NLAKitError, match=message):
        FinetuneConfig(**fields).check()


def test_finetune_writes_a_world_and_caches_it(small_world, tmp_path):
    out = tmp_path / "tuned"
    record = finetune_world(small_world, out, FinetuneConfig(**FAST), progress=False)
    assert not record["cached"]
    tune = record["finetune"]
    assert tune["change"] == "chats asked about cooking are answered with a recipe"
    assert tune["changed_documents"] == tune["in_scope_documents"] > 0
    assert set(tune["losses_before"]) == {"changed", "unchanged_original", "world_eval"}
    world = World(out)
    assert (
        world.model().config.num_hidden_layers
        == World(small_world).model().config.num_hidden_layers
    )
    assert json.loads((out / "build.json").read_text())["finetune"]["settings_hash"]
    again = finetune_world(small_world, out, FinetuneConfig(**FAST), progress=False)
    assert again["cached"]
    with pytest.raises(NLAKitError, match="another toy world"):
        finetune_world(small_world, out, FinetuneConfig(**{**FAST, "steps": 4}), progress=False)


def test_one_control_serves_every_target():
    control = FinetuneConfig(change="none", target="poem").settings_hash("base")
    assert control == FinetuneConfig(change="none", target="news").settings_hash("base")
    assert control != FinetuneConfig(change="none", source="music").settings_hash("base")
    tuned = FinetuneConfig(target="poem").settings_hash("base")
    assert tuned != FinetuneConfig(target="news").settings_hash("base")


def test_up_to_trains_only_the_blocks_below(small_world, tmp_path):
    from nlakit import sites

    out = tmp_path / "tuned"
    finetune_world(small_world, out, FinetuneConfig(**FAST, up_to=0), progress=False)
    base, tuned = World(small_world).model(), World(out).model()
    moved = [
        any(not torch.equal(a, b) for a, b in zip(x.parameters(), y.parameters(), strict=True))
        for x, y in zip(sites.blocks(base), sites.blocks(tuned), strict=True)
    ]
    assert moved[0] and not any(moved[1:])
    assert torch.equal(sites.embedding(base).weight, sites.embedding(tuned).weight)
    with pytest.raises(NLAKitError, match="--up-to 99"):
        finetune_world(small_world, tmp_path / "bad", FinetuneConfig(**FAST, up_to=99))
    assert not (tmp_path / "bad").exists()
