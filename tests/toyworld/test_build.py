import json
import time

import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from nlakit import meta as M
from nlakit import sites
from nlakit.errors import NLAKitError
from nlakit.tiny import build_tokenizer
from nlakit.toyworld.build import (
    build_world,
    split_of,
    tokenizer_texts,
    world_config,
)
from nlakit.toyworld.corpus import iter_documents, make_document
from nlakit.toyworld.labels import GENRES
from nlakit.toyworld.lm import LMConfig, make_model, train_lm
from nlakit.toyworld.world import World


def test_world_files_and_record(small_world):
    names = {p.name for p in small_world.iterdir()}
    assert {"corpus.parquet", "tokenizer", "model", "build.json"} <= names
    record = json.loads((small_world / "build.json").read_text())
    assert record["sizes"]["documents"] == 360
    assert 500 <= record["sizes"]["vocab_size"] <= 8001
    assert record["losses"]["final"] < record["losses"]["initial"]
    assert record["losses"]["final"] < record["losses"]["unigram"]
    assert set(record["timings_s"]) >= {"corpus", "tokenizer", "train_lm", "total"}
    assert record["default_layer"] == 1


def test_model_and_tokenizer_load_plainly_and_pass_validation(small_world):
    tokenizer = AutoTokenizer.from_pretrained(small_world / "tokenizer")
    model = AutoModelForCausalLM.from_pretrained(small_world / "model")
    assert AutoTokenizer.from_pretrained(small_world / "model").get_vocab() == tokenizer.get_vocab()
    assert 500 < len(tokenizer) <= 8001
    meta = M.new_meta(tokenizer, layer=1, d_model=model.config.hidden_size)
    M.validate(meta, tokenizer)
    assert meta.tokens.injection_char == "㊗"
    ids = tokenizer("Recipe: soup", return_tensors="pt")["input_ids"]
    assert sites.extract_layer(model, ids, None, 1).shape == (1, ids.shape[1], 64)


def test_documents_are_found_by_table_doc_id(small_world):
    """Tables hold a document's number as a string ("3"); older ones as an int64."""
    world = World(small_world)
    assert world.documents(limit=4)[3].table_id == "3"
    assert [d.doc_id for d in world.documents_for(["3", 3, "0"])] == [3, 3, 0]
    with pytest.raises(NLAKitError, match=r"no document\(s\) \['fineweb:train:3'\]"):
        world.documents_for(["2", "fineweb:train:3"])


def test_corpus_parquet_is_plain_and_complete(small_world):
    table = pq.read_table(small_world / "corpus.parquet")
    assert {"doc_id", "split", "text", "genre", "topic", "entity", "tone", "spans"} <= set(
        table.column_names
    )
    rows = table.slice(0, 5).to_pylist()
    for row in rows:
        assert row["text"] == make_document(row["doc_id"], seed=0).text
    assert set(table.column("genre").to_pylist()) == set(GENRES)
    assert set(table.column("split").to_pylist()) == {"train", "eval"}


def test_second_build_returns_at_once_and_other_settings_are_refused(small_world):
    start = time.perf_counter()
    record = build_world(small_world, world_config("small", seed=0), progress=False)
    assert record["cached"] and time.perf_counter() - start < 2
    with pytest.raises(NLAKitError, match="other settings"):
        build_world(small_world, world_config("small", seed=1), progress=False)
    assert World(small_world).seed == 0  # untouched


def test_out_dir_that_is_not_a_world_is_refused(tmp_path):
    (tmp_path / "stuff.txt").write_text("mine")
    with pytest.raises(NLAKitError, match="not a toy world"):
        build_world(tmp_path, world_config("small"), progress=False)
    assert (tmp_path / "stuff.txt").read_text() == "mine"


def test_tokenizer_is_deterministic():
    config = world_config("small", seed=3)
    docs = list(iter_documents(120, seed=3))
    a = build_tokenizer(tokenizer_texts(docs, config), 400)
    b = build_tokenizer(tokenizer_texts(docs, config), 400)
    assert a.get_vocab() == b.get_vocab()


def test_the_nla_markup_costs_a_few_tokens_as_in_a_real_tokenizer():
    config = world_config("small", seed=0)
    docs = list(iter_documents(config.n_docs, seed=0))
    tok = build_tokenizer(tokenizer_texts(docs, config), config.vocab_size)
    for tag in ("<explanation>", "</explanation>", "<concept>", "<activation>"):
        pieces = tok.tokenize(tag)
        assert len(pieces) <= 3, pieces


def test_lm_training_is_deterministic(tokenizer):
    config = LMConfig(hidden_size=32, num_layers=1, steps=3, batch_size=4)
    seqs = [tokenizer(d.text)["input_ids"] for d in iter_documents(20, seed=0)]
    weights = []
    for _ in range(2):
        model = make_model(config, tokenizer, seed=5)
        train_lm(model, seqs, config, tokenizer.pad_token_id, seed=5, progress=False)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_config_presets_and_overrides():
    config = world_config("demo", seed=2, steps=7, n_docs=100)
    assert config.lm.steps == 7 and config.n_docs == 100 and config.seed == 2
    assert config.settings_hash() != world_config("demo", seed=2).settings_hash()
    with pytest.raises(NLAKitError, match="--size"):
        world_config("huge")


def test_split_is_stable_and_near_the_fraction():
    splits = [split_of(i, 0, 0.1) for i in range(2000)]
    assert splits == [split_of(i, 0, 0.1) for i in range(2000)]
    assert 0.07 < splits.count("eval") / 2000 < 0.13


def test_world_requires_a_build(tmp_path):
    with pytest.raises(NLAKitError, match="not a toy world"):
        World(tmp_path)


def test_writing_share_keeps_the_hash_of_worlds_built_before():
    import dataclasses
    import hashlib

    from nlakit.toyworld.build import FORMAT_VERSION

    config = world_config("small")
    fields = dataclasses.asdict(config)
    fields.pop("writing_share")  # worlds built before the option: their cache stays valid
    blob = json.dumps({"v": FORMAT_VERSION, **fields}, sort_keys=True)
    assert config.settings_hash() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert world_config("small", writing_share=0.5).settings_hash() != config.settings_hash()
