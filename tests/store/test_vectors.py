"""`nlakit.store.vectors`: the one decode of the `activation_vector` column, and vector files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from nlakit.errors import NLAKitError
from nlakit.store.vectors import decode_vectors, read_vectors, vector_column

SOURCE = "tables/eval.parquet"


def refused(column, *expected: str) -> str:
    with pytest.raises(NLAKitError) as info:
        decode_vectors(column, SOURCE)
    message = str(info.value)
    for part in (SOURCE, "activation_vector", "expected", "nlakit extract", *expected):
        assert part in message, (part, message)
    return message


def test_fixed_size_and_plain_lists_decode_to_float32():
    v = torch.randn(3, 8)
    fixed = vector_column(v)
    assert isinstance(fixed, pa.FixedSizeListArray)
    assert torch.equal(decode_vectors(fixed, SOURCE), v)
    plain = pa.array(v.double().tolist(), pa.list_(pa.float64()))
    out = decode_vectors(pa.chunked_array([plain[:1], plain[1:]]), SOURCE)
    assert out.dtype == torch.float32 and torch.allclose(out, v)
    assert decode_vectors(pa.array([[1, 2], [3, 4]], pa.list_(pa.int64())), SOURCE).tolist() == [
        [1.0, 2.0],
        [3.0, 4.0],
    ]


def test_a_sliced_fixed_size_column_decodes_only_its_rows():
    v = torch.randn(6, 4)
    assert torch.equal(decode_vectors(vector_column(v).slice(2, 3), SOURCE), v[2:5])


def test_refuses_a_ragged_column_that_would_reshape_silently():
    # Rows 192 and 64 wide: 4 × 128 values in total, which reshape(4, -1) turns into
    # four 128-wide "vectors" without an error.
    rows = [np.ones(192), np.ones(64), np.ones(192), np.ones(64)]
    column = pa.array([r.tolist() for r in rows], pa.list_(pa.float32()))
    assert sum(len(r) for r in rows) == 4 * 128
    message = refused(column, "192 and 64", "512 values")
    assert "same for every row" in message


def test_refuses_non_numeric_columns():
    refused(pa.array(["0.1, 0.2", "0.3, 0.4"]), "type string")
    refused(pa.array([["a", "b"], ["c", "d"]], pa.list_(pa.string())), "lists of string")


def test_refuses_nan_and_inf_naming_the_rows():
    v = torch.randn(4, 8)
    v[1, 3] = float("nan")
    refused(vector_column(v), "NaN", "row(s) 1")
    v[1, 3] = 0.0
    v[3, 0] = float("inf")
    refused(vector_column(v), "row(s) 3")


def test_refuses_nulls_and_empty_rows():
    refused(pa.array([[1.0, 2.0], None], pa.list_(pa.float32())), "null row")
    refused(pa.array([[1.0, None], [3.0, 4.0]], pa.list_(pa.float32())), "null value")
    refused(pa.array([[], []], pa.list_(pa.float32())), "empty rows")


def test_read_vectors_reads_every_format(tmp_path):
    v = torch.randn(4, 8)
    np.save(tmp_path / "a.npy", v.numpy())
    save_file({"vectors": v}, str(tmp_path / "a.safetensors"))
    torch.save(v, tmp_path / "a.pt")
    pq.write_table(pa.table({"activation_vector": vector_column(v)}), tmp_path / "a.parquet")
    for name in ("a.npy", "a.safetensors", "a.pt", "a.parquet"):
        assert torch.allclose(read_vectors(tmp_path / name), v), name
    np.save(tmp_path / "one.npy", v[0].numpy())
    assert read_vectors(tmp_path / "one.npy").shape == (1, 8)


def test_read_vectors_refuses_bad_files(tmp_path):
    bad = np.ones((2, 4), np.float32)
    bad[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "cube.npy", np.ones((2, 2, 2), np.float32))
    save_file({"a": torch.ones(2), "b": torch.ones(2)}, str(tmp_path / "two.safetensors"))
    (tmp_path / "v.txt").write_text("1 2 3")
    for name, message in (
        ("missing.npy", "no such file"),
        ("nan.npy", "NaN"),
        ("cube.npy", "[2, 2, 2]"),
        ("two.safetensors", "'vectors'"),
        ("v.txt", "unknown vector file type"),
    ):
        with pytest.raises(NLAKitError) as info:
            read_vectors(tmp_path / name)
        assert name in str(info.value) and message in str(info.value), str(info.value)
