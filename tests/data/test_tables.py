import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoTokenizer

from nlakit import meta as M
from nlakit.data.extract import ExtractConfig, extract, load_rows
from nlakit.data.tables import BuildConfig, build_tables
from nlakit.data.teach import TeachConfig, teach
from nlakit.errors import NLAKitError
from nlakit.metrics import FVEBaseline
from nlakit.toyworld.truth import score_claims
from nlakit.toyworld.world import World


@pytest.fixture(scope="module")
def pipeline(small_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    extract(
        ExtractConfig(
            model=str(small_world / "model"),
            layer=1,
            corpus=f"toyworld:{small_world}",
            out=str(root / "acts"),
            positions_per_doc=4,
            max_docs=150,
        ),
        progress=False,
    )
    report = teach(TeachConfig(data=str(root / "acts"), teacher="toyworld"), progress=False)
    record = build_tables(BuildConfig(data=str(root / "acts"), out=str(root / "tables")))
    return root, report, record


def test_teach_toyworld_writes_true_explanations(pipeline, small_world):
    root, report, _ = pipeline
    assert report["status_counts"] == {"ok": 600} and report["calls"] == 0
    table = pq.read_table(root / "acts" / "explanations" / "toyworld.parquet")
    assert table.num_rows == 600 and set(table["status"].to_pylist()) == {"ok"}
    world = World(small_world)
    oracle = world.oracle()
    rows = table.slice(0, 20).to_pylist()
    for row, doc in zip(rows, world.documents_for([r["doc_id"] for r in rows]), strict=True):
        _, record = oracle.explain(doc, row["position"])
        assert set(score_claims(row["explanation"], record).values()) == {"correct"}


def test_tables_and_sidecars_validate_against_the_toy_tokenizer(pipeline, small_world):
    root, _, record = pipeline
    tokenizer = AutoTokenizer.from_pretrained(small_world / "tokenizer")
    total = 0
    for stage in ("av_sft", "ar_sft", "rl", "eval"):
        path = root / "tables" / f"{stage}.parquet"
        meta = M.read_meta(path)
        assert meta.kind == "nla_dataset" and meta.schema_version == 1 and meta.stage == stage
        M.validate(meta, tokenizer)
        assert meta.row_count == pq.read_metadata(path).num_rows == record["rows"][stage] > 0
        assert meta.tokens.critic_suffix_ids and meta.av_template and meta.ar_template
        total += meta.row_count
    assert total == 600


def test_table_columns_follow_the_released_schema(pipeline):
    root, _, _ = pipeline
    av = pq.read_table(root / "tables" / "av_sft.parquet")
    for column in (
        "prompt",
        "response",
        "activation_vector",
        "doc_id",
        "n_raw_tokens",
        "activation_layer",
        "detokenized_text_truncated",
    ):
        assert column in av.column_names
    assert av.schema.field("doc_id").type == pa.string()  # the official datagen's types
    assert av.schema.field("n_raw_tokens").type == pa.int64()
    assert av.schema.field("activation_layer").type == pa.int64()
    row = av.slice(0, 1).to_pylist()[0]
    assert row["prompt"][0]["role"] == "user" and "<INJECT>" in row["prompt"][0]["content"]
    assert row["response"].startswith("<explanation>\n") and row["response"].endswith(
        "\n</explanation>"
    )
    ar = pq.read_table(root / "tables" / "ar_sft.parquet").slice(0, 1).to_pylist()[0]
    meta = M.read_meta(root / "tables" / "ar_sft.parquet")
    assert ar["prompt"] == meta.ar_template.format(explanation=ar["explanation"])


def test_splits_do_not_share_documents(pipeline):
    root, _, _ = pipeline
    seen = {}
    for stage in ("av_sft", "ar_sft", "rl", "eval"):
        for doc in set(pq.read_table(root / "tables" / f"{stage}.parquet")["doc_id"].to_pylist()):
            assert seen.setdefault(doc, stage) == stage


def test_baseline_is_from_the_training_rows(pipeline):
    root, _, record = pipeline
    baseline = FVEBaseline.load(root / "tables" / "baseline.json")
    train = [pq.read_table(root / "tables" / f"{s}.parquet") for s in ("av_sft", "ar_sft", "rl")]
    vectors = np.concatenate(
        [np.stack(t["activation_vector"].to_numpy(zero_copy_only=False)) for t in train]
    )
    assert baseline.n == len(vectors) == record["baseline"]["n"]
    again = FVEBaseline.from_vectors(torch.from_numpy(vectors))
    assert baseline.variance == pytest.approx(again.variance, rel=1e-4)


def test_rebuild_is_cached_and_other_settings_refused(pipeline):
    root, _, _ = pipeline
    cached = build_tables(BuildConfig(data=str(root / "acts"), out=str(root / "tables")))
    assert cached["cached"]
    with pytest.raises(NLAKitError, match="other settings"):
        build_tables(
            BuildConfig(data=str(root / "acts"), out=str(root / "tables"), baseline_rows=10)
        )


def test_rows_without_an_ok_explanation_are_dropped(pipeline, tmp_path):
    root, _, _ = pipeline
    import shutil

    import pyarrow as pa

    data = tmp_path / "acts"
    shutil.copytree(root / "acts", data)
    path = data / "explanations" / "toyworld.parquet"
    table = pq.read_table(path)
    status = ["missing_tags" if i % 3 == 0 else "ok" for i in range(table.num_rows)]
    pq.write_table(
        table.set_column(table.column_names.index("status"), "status", pa.array(status)), path
    )
    record = build_tables(BuildConfig(data=str(data), out=str(tmp_path / "tables")))
    assert record["rows_without_explanation"] == 200 and sum(record["rows"].values()) == 400
    assert record["teacher_status"] == {"missing_tags": 200, "ok": 400}


def test_build_needs_explanations(pipeline, tmp_path):
    root, _, _ = pipeline
    import shutil

    shutil.copytree(root / "acts", tmp_path / "acts", ignore=shutil.ignore_patterns("explanations"))
    with pytest.raises(NLAKitError, match="nlakit teach"):
        build_tables(BuildConfig(data=str(tmp_path / "acts"), out=str(tmp_path / "tables")))


def test_oracle_needs_a_toy_world_corpus(small_world, tmp_path):
    corpus = tmp_path / "docs.txt"
    corpus.write_text("a long enough document " * 20 + "\n")
    extract(
        ExtractConfig(
            model=str(small_world / "model"),
            layer=0,
            corpus=str(corpus),
            out=str(tmp_path / "acts"),
            min_pos=5,
        ),
        progress=False,
    )
    assert load_rows(tmp_path / "acts").num_rows > 0
    with pytest.raises(NLAKitError, match="oracle explains toy-world documents"):
        teach(TeachConfig(data=str(tmp_path / "acts"), teacher="toyworld"), progress=False)
    assert json.loads((tmp_path / "acts" / "manifest.json").read_text())["complete"]


def ok_explanations(rows: pa.Table) -> pa.Table:
    """What `nlakit teach` writes, as if a teacher had explained every row."""
    n = rows.num_rows
    return pa.table(
        {
            "doc_id": rows["doc_id"],
            "position": rows["position"],
            "explanation": [f"Row {i}.\nThe token is a word." for i in range(n)],
            "status": ["ok"] * n,
        }
    )


def test_string_doc_ids_round_trip_from_a_local_corpus(small_world, tmp_path):
    """A local corpus's documents get the official `{corpus}:{split}:{index}` ids, which
    survive extraction, explanations and the tables."""
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"text": f"document {i} says " + "more words " * 20}) for i in range(8)
        )
    )
    acts = tmp_path / "acts"
    extract(
        ExtractConfig(
            model=str(small_world / "model"), layer=1, corpus=str(corpus), out=str(acts), min_pos=5
        ),
        progress=False,
    )
    rows = load_rows(acts)
    assert set(rows["doc_id"].to_pylist()) == {f"{corpus}:train:{i}" for i in range(8)}
    (acts / "explanations").mkdir()
    pq.write_table(ok_explanations(rows), acts / "explanations" / "fake.parquet")
    record = build_tables(BuildConfig(data=str(acts), out=str(tmp_path / "tables")))
    assert sum(record["rows"].values()) == rows.num_rows and record["rows_without_explanation"] == 0
    built = [pq.read_table(tmp_path / "tables" / f"{s}.parquet") for s in record["rows"]]
    keys = {
        (d, p)
        for t in built
        for d, p in zip(*(t[c].to_pylist() for c in ("doc_id", "position")), strict=True)
    }
    assert keys == set(zip(rows["doc_id"].to_pylist(), rows["position"].to_pylist(), strict=True))


def old_types(table: pa.Table) -> pa.Table:
    """`table` as nlakit wrote it before string doc ids: int64 doc_id, int32 counts."""
    for name, type_ in (
        ("doc_id", pa.int64()),
        ("n_raw_tokens", pa.int32()),
        ("activation_layer", pa.int32()),
    ):
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, table[name].cast(type_))
    return table


def test_an_extraction_with_int64_doc_ids_still_builds(pipeline, tmp_path):
    root, _, record = pipeline
    data = tmp_path / "acts"
    shutil.copytree(root / "acts", data)
    for path in [*data.glob("shard_*.parquet"), *(data / "explanations").glob("*.parquet")]:
        pq.write_table(old_types(pq.read_table(path)), path)
    again = build_tables(BuildConfig(data=str(data), out=str(tmp_path / "tables")))
    assert again["rows"] == record["rows"]
    eval_table = pq.read_table(tmp_path / "tables" / "eval.parquet")
    assert eval_table.schema.field("doc_id").type == pa.string()
    assert (
        eval_table["doc_id"].to_pylist()
        == pq.read_table(root / "tables" / "eval.parquet")["doc_id"].to_pylist()
    )


def test_template_problem():
    from nlakit.data.tables import template_problem

    assert template_problem(None, "explanation") is None
    assert template_problem("<e>{explanation}</e>", "explanation") is None
    assert "once" in template_problem("no placeholder", "explanation")
    assert "once" in template_problem("{explanation} {explanation}", "explanation")
    assert "no other" in template_problem("{other} {explanation}", "explanation")
    assert "literal braces" in template_problem("{explanation", "explanation")


def test_tokenizer_mismatches(small_world, tiny_dirs):
    from nlakit.data.tables import tokenizer_mismatches
    from nlakit.models import load_tokenizer

    world = load_tokenizer(small_world / "model")
    ids = world("a poem about the sea")["input_ids"][:5]
    tokens = [world.decode([i]) for i in ids]
    assert tokenizer_mismatches(world, ids, tokens) == []
    other = load_tokenizer(tiny_dirs["target"])
    assert len(tokenizer_mismatches(other, ids, tokens)) > 0
    assert tokenizer_mismatches(world, [10**9], ["x"]) == [
        "id 1000000000: 'x' extracted, None here"
    ]
