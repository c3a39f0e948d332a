"""`nlakit.store.tables`: a table with its sidecar, `check_agrees`, the FVE baseline."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from nlakit import meta as M
from nlakit.errors import MetaError, NLAKitError
from nlakit.metrics import FVEBaseline
from nlakit.store.tables import check_agrees, find_baseline, load_table, write_table
from nlakit.store.vectors import vector_column


@pytest.fixture
def table_meta(tokenizer) -> M.DatasetMeta:
    av = M.new_meta(tokenizer, layer=2, d_model=8)
    return M.DatasetMeta(
        stage="eval",
        row_count=4,
        extraction=M.ExtractionMeta(base_model="tiny", d_model=8, layer_index=2),
        tokens=av.tokens,
        av_template=av.av_template,
        ar_template=av.ar_template,
    )


def test_write_then_load(tmp_path, table_meta):
    v = torch.randn(4, 8)
    rows = pa.table({"activation_vector": vector_column(v), "explanation": list("abcd")})
    path = write_table(tmp_path / "eval.parquet", rows, table_meta)
    assert (tmp_path / "eval.parquet.nla_meta.yaml").is_file()
    table = load_table(path, ("explanation",))
    assert torch.equal(table.vectors, v) and table.columns["explanation"] == list("abcd")
    assert len(table) == 4 and table.meta.d_model == 8


def test_load_refuses_a_ragged_column_naming_the_file(tmp_path, table_meta):
    column = pa.array([[0.0] * 12, [0.0] * 4, [0.0] * 12, [0.0] * 4], pa.list_(pa.float32()))
    write_table(tmp_path / "eval.parquet", pa.table({"activation_vector": column}), table_meta)
    with pytest.raises(NLAKitError, match=r"eval\.parquet: column `activation_vector`.*12 and 4"):
        load_table(tmp_path / "eval.parquet")


def test_load_refuses_what_disagrees_with_the_sidecar(tmp_path, table_meta):
    rows = pa.table({"activation_vector": vector_column(torch.randn(3, 8))})
    write_table(tmp_path / "short.parquet", rows, table_meta)
    with pytest.raises(NLAKitError, match="3 rows, its sidecar says 4"):
        load_table(tmp_path / "short.parquet")
    wide = pa.table({"activation_vector": vector_column(torch.randn(4, 16))})
    write_table(tmp_path / "wide.parquet", wide, table_meta)
    with pytest.raises(NLAKitError, match="width 16, the sidecar's d_model is 8"):
        load_table(tmp_path / "wide.parquet")
    with pytest.raises(NLAKitError, match=r"no column\(s\) \['response'\]"):
        load_table(tmp_path / "wide.parquet", ("response",))
    with pytest.raises(NLAKitError, match="no such table"):
        load_table(tmp_path / "missing.parquet")


def test_check_agrees(tokenizer, table_meta):
    meta = M.new_meta(tokenizer, layer=2, d_model=8)
    check_agrees(meta, table_meta)
    with pytest.raises(MetaError, match="layer 3, the tables layer 2"):
        check_agrees(M.new_meta(tokenizer, layer=3, d_model=8), table_meta)
    with pytest.raises(MetaError, match="d_model 16, the tables 8"):
        check_agrees(M.new_meta(tokenizer, layer=2, d_model=16), table_meta)


def test_find_baseline(tmp_path):
    assert find_baseline(None, tmp_path) is None
    FVEBaseline.from_vectors(torch.randn(10, 8)).save(tmp_path / "baseline.json")
    assert find_baseline(None, tmp_path / "nowhere", tmp_path).n == 10
    (tmp_path / "baseline.json").write_text('{"variance": 1.0}')
    with pytest.raises(NLAKitError, match=r"baseline\.json: not a complete baseline"):
        find_baseline(tmp_path)
