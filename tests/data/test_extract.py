import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from nlakit import meta as M
from nlakit import sites
from nlakit.data import extract as E
from nlakit.data.extract import ExtractConfig, extract, load_rows, suggest_injection_scale
from nlakit.errors import ArchitectureError, NLAKitError


def config(small_world, out, **kw):
    base = dict(
        model=str(small_world / "model"),
        layer=1,
        corpus=f"toyworld:{small_world}",
        out=str(out),
        positions_per_doc=4,
        max_docs=120,
        shard_rows=100,
    )
    return ExtractConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def extracted(small_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("extract") / "acts"
    extract(config(small_world, out), progress=False)
    return out


def keyed(table):
    keys = list(zip(table["doc_id"].to_pylist(), table["position"].to_pylist(), strict=True))
    vectors = np.stack(table["activation_vector"].to_numpy(zero_copy_only=False))
    return dict(zip(keys, vectors, strict=True))


def test_rows_are_the_block_k_outputs_at_sampled_positions(extracted, small_world):
    from nlakit.toyworld.world import World

    world = World(small_world)
    table = load_rows(extracted)
    assert table.schema.field("activation_vector").type.list_size == 64
    assert table.num_rows == 120 * 4
    model, tok = world.model(), world.tokenizer()
    row = table.slice(7, 1).to_pylist()[0]
    (doc,) = world.documents_for([row["doc_id"]])
    ids = tok(doc.text, return_tensors="pt")["input_ids"]
    with torch.no_grad():  # block 1 is this model's last: compare with the block output itself
        want = sites.extract_layer(model, ids, None, 1)[0, row["position"]]
    assert np.allclose(row["activation_vector"], want.numpy(), atol=1e-5)
    assert row["n_raw_tokens"] == row["position"] + 1 and row["activation_layer"] == 1
    assert row["token"] == tok.decode([ids[0, row["position"]]])
    assert row["detokenized_text_truncated"].endswith(row["token"])
    assert row["position"] >= world.min_pos
    assert set(table["split"].to_pylist()) <= {"av_sft", "ar_sft", "rl", "eval"}


def test_sidecar_and_manifest(extracted):
    meta = M.read_meta(extracted)
    assert meta.stage == "base" and meta.row_count == 480 and meta.layer == 1 and meta.d_model == 64
    assert meta.extraction.corpus.startswith("toyworld:")
    manifest = json.loads((extracted / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["shards"]) >= 4
    mean = manifest["result"]["mean_norm"]
    assert meta.extraction.injection_scale == suggest_injection_scale(mean) > mean


def test_columns_have_the_released_types(extracted):
    """The official datagen's types: string doc ids, int64 token count and layer."""
    schema = pq.read_schema(extracted / "shard_00000.parquet")
    assert schema.field("doc_id").type == pa.string()
    assert schema.field("n_raw_tokens").type == pa.int64()
    assert schema.field("activation_layer").type == pa.int64()
    doc_ids = set(load_rows(extracted, columns=["doc_id"])["doc_id"].to_pylist())
    assert doc_ids == {str(i) for i in range(120)}  # a toy world's documents by number


def test_shards_written_before_string_doc_ids_still_read(extracted, tmp_path):
    """An extraction resumed across the change mixes int64 and string doc ids."""
    out = tmp_path / "acts"
    shutil.copytree(extracted, out)
    old = pq.read_table(out / "shard_00000.parquet")
    for name, type_ in (
        ("doc_id", pa.int64()),
        ("n_raw_tokens", pa.int32()),
        ("activation_layer", pa.int32()),
    ):
        old = old.set_column(old.column_names.index(name), name, old[name].cast(type_))
    pq.write_table(old, out / "shard_00000.parquet")
    table = load_rows(out)
    assert table.schema.field("doc_id").type == pa.string()
    assert table.schema == load_rows(extracted).schema
    assert keyed(table).keys() == keyed(load_rows(extracted)).keys()


def test_splits_are_by_document(extracted):
    table = load_rows(extracted, columns=["doc_id", "split"])
    by_doc = {}
    for doc, split in zip(table["doc_id"].to_pylist(), table["split"].to_pylist(), strict=True):
        assert by_doc.setdefault(doc, split) == split


def test_killed_run_resumes_without_duplicates_or_gaps(
    extracted, small_world, tmp_path, monkeypatch
):
    out = tmp_path / "acts"
    calls = {"n": 0}
    original = E.activations_at

    def dies_on_the_fifth_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # as if the process were killed here
        return original(*args, **kwargs)

    monkeypatch.setattr(E, "activations_at", dies_on_the_fifth_batch)
    with pytest.raises(KeyboardInterrupt):
        extract(config(small_world, out), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and 0 < manifest["next_record"] < 120
    monkeypatch.setattr(E, "activations_at", original)
    extract(config(small_world, out), progress=False)
    resumed, whole = keyed(load_rows(out)), keyed(load_rows(extracted))
    assert resumed.keys() == whole.keys() and load_rows(out).num_rows == len(whole)
    for key in whole:
        assert np.allclose(resumed[key], whole[key], atol=1e-6)
    assert json.loads((out / "manifest.json").read_text())["stats"]["docs"] == 120


def test_damaged_shard_is_re_extracted_on_resume(small_world, tmp_path):
    out = tmp_path / "acts"
    extract(config(small_world, out), progress=False)
    before = keyed(load_rows(out))
    shard = out / "shard_00002.parquet"
    shard.write_bytes(shard.read_bytes()[:100])  # truncated
    with pytest.raises(NLAKitError, match=r"shard_00002\.parquet: unreadable"):
        load_rows(out)
    extract(config(small_world, out), progress=False)
    after = keyed(load_rows(out))
    assert after.keys() == before.keys()


def test_other_settings_are_refused_and_runtime_ones_are_not(extracted, small_world):
    with pytest.raises(NLAKitError, match=r"other settings.*positions_per_doc"):
        extract(config(small_world, extracted, positions_per_doc=3), progress=False)
    again = extract(config(small_world, extracted, batch_tokens=999), progress=False)
    assert again["complete"]


def test_foreign_directory_is_refused(small_world, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(NLAKitError, match="not empty"):
        extract(config(small_world, tmp_path), progress=False)


def test_layer_out_of_range(small_world, tmp_path):
    with pytest.raises(ArchitectureError, match="out of range"):
        extract(config(small_world, tmp_path / "x", layer=5), progress=False)


def test_short_and_empty_documents_are_counted(small_world, tmp_path, tokenizer):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"text": t}) for t in ["short", "a long one " * 20, "  "])
    )
    out = tmp_path / "acts"
    manifest = extract(
        ExtractConfig(
            model=str(small_world / "model"), layer=0, corpus=str(corpus), out=str(out), min_pos=20
        ),
        progress=False,
    )
    stats = manifest["stats"]
    assert (stats["docs"], stats["short"], stats["records_read"]) == (1, 1, 3)
    assert stats["empty"] == 1


def test_nothing_usable_is_an_error(small_world, tmp_path):
    corpus = tmp_path / "docs.txt"
    corpus.write_text("tiny\n")
    with pytest.raises(NLAKitError, match="no usable positions"):
        extract(
            ExtractConfig(
                model=str(small_world / "model"),
                layer=0,
                corpus=str(corpus),
                out=str(tmp_path / "acts"),
            ),
            progress=False,
        )


def test_incomplete_extraction_is_not_readable(tmp_path):
    with pytest.raises(NLAKitError, match="run `nlakit extract"):
        load_rows(tmp_path)


@pytest.mark.parametrize(
    ("norm", "scale"),
    [(137.2, 150), (0.51, 0.6), (8.0, 10), (2.4, 2.5), (79000, 80000), (1.0, 1.5)],
)
def test_suggest_injection_scale(norm, scale):
    assert suggest_injection_scale(norm) == scale


def test_shard_is_plain_parquet_with_a_fixed_size_list(extracted):
    table = pq.read_table(extracted / "shard_00000.parquet")
    assert (
        str(table.schema.field("activation_vector").type) == "fixed_size_list<element: float>[64]"
    )
    assert not list(extracted.glob("*.tmp"))


def test_extraction_uses_early_exit(small_world, tmp_path, monkeypatch):
    seen = []
    original = sites.extract_layer
    monkeypatch.setattr(
        sites, "extract_layer", lambda *a, **k: seen.append(a[3]) or original(*a, **k)
    )
    extract(config(small_world, tmp_path / "acts", max_docs=10), progress=False)
    assert seen and set(seen) == {1}
