"""`nlakit.store.readers`: every format's reader turns a bad file into an NLAKitError
naming the path and what was expected, never a parser's traceback."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from nlakit.errors import NLAKitError
from nlakit.store.readers import (
    read_json,
    read_jsonl,
    read_npy,
    read_parquet,
    read_pt,
    read_safetensors,
    read_yaml,
)


def _json(path):
    path.write_text(json.dumps({"variance": 1.5, "mu": [0.0, 1.0]}))


def _yaml(path):
    path.write_text("kind: nla_model\nd_model: 64\ntokens: {injection_char: x}\n")


def _parquet(path):
    pq.write_table(pa.table({"a": list(range(100)), "b": [str(i) for i in range(100)]}), path)


def _npy(path):
    np.save(path, np.arange(64, dtype=np.float32).reshape(8, 8))


def _safetensors(path):
    save_file({"weight": torch.eye(8)}, str(path))


def _pt(path):
    torch.save({"step": torch.tensor(3), "state": [torch.ones(4)]}, path)


# reader, writer of a good file, suffix, the bytes of a file of another kind
FORMATS = {
    "json": (read_json, _json, ".json", b"kind: nla_model\n"),
    "yaml": (read_yaml, _yaml, ".yaml", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}"),
    "parquet": (read_parquet, _parquet, ".parquet", b'{"a": [1, 2, 3]}'),
    "npy": (read_npy, _npy, ".npy", b'{"a": [1, 2, 3]}'),
    "safetensors": (read_safetensors, _safetensors, ".safetensors", b'{"a": [1, 2, 3]}'),
    "pt": (read_pt, _pt, ".pt", b'{"a": [1, 2, 3]}'),
}
TRUNCATED_TEXT = {
    "json": '{"variance": 1.5, "mu": [0.0, 1.',
    "yaml": "kind: nla_model\ntokens: {a: [1, 2",
}


def refused(reader, path, *expected: str) -> str:
    with pytest.raises(NLAKitError) as info:
        reader(path)
    message = str(info.value)
    assert str(path) in message and "expected" in message, message
    assert "Traceback" not in message
    for part in expected:
        assert part in message, (part, message)
    return message


@pytest.mark.parametrize("kind", FORMATS)
def test_a_good_file_reads(kind, tmp_path):
    reader, write, suffix, _ = FORMATS[kind]
    write(tmp_path / f"good{suffix}")
    assert reader(tmp_path / f"good{suffix}") is not None


@pytest.mark.parametrize("kind", FORMATS)
def test_missing_and_empty_files_are_refused(kind, tmp_path):
    reader, _, suffix, _ = FORMATS[kind]
    refused(reader, tmp_path / f"missing{suffix}", "no such file")
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    refused(reader, tmp_path / f"empty{suffix}", "empty")
    refused(reader, tmp_path, "a directory")


@pytest.mark.parametrize("kind", FORMATS)
def test_a_truncated_file_is_refused(kind, tmp_path):
    reader, write, suffix, _ = FORMATS[kind]
    path = tmp_path / f"cut{suffix}"
    if kind in TRUNCATED_TEXT:
        path.write_text(TRUNCATED_TEXT[kind])
    else:
        write(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    refused(reader, path, "not")


@pytest.mark.parametrize("kind", FORMATS)
def test_a_file_of_another_kind_is_refused(kind, tmp_path):
    reader, _, suffix, other = FORMATS[kind]
    path = tmp_path / f"other{suffix}"
    path.write_bytes(other)
    refused(reader, path, "not")


def test_what_and_fix_are_in_the_message(tmp_path):
    (tmp_path / "baseline.json").write_text("[1, 2]")
    message = refused(
        lambda p: read_json(p, what="the FVE baseline", fix="Rebuild the tables."),
        tmp_path / "baseline.json",
        "holds a list",
        "the FVE baseline",
        "Rebuild the tables.",
    )
    assert message.startswith(str(tmp_path / "baseline.json"))


def test_parquet_names_missing_columns(tmp_path):
    _parquet(tmp_path / "t.parquet")
    assert read_parquet(tmp_path / "t.parquet", ["b"]).column_names == ["b"]
    refused(lambda p: read_parquet(p, ["a", "activation_vector"]), tmp_path / "t.parquet",
            "['activation_vector']", "'b'")  # fmt: skip


def test_pt_never_unpickles_arbitrary_objects(tmp_path):
    torch.save({"model": Fraction(1, 3)}, tmp_path / "pickled.pt")  # not a tensor type
    refused(read_pt, tmp_path / "pickled.pt", "weights_only")


def test_npy_never_unpickles_object_arrays(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    refused(read_npy, tmp_path / "objects.npy", "not a readable npy file")


def test_jsonl_names_the_bad_line_and_reads_an_empty_log(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "lo\n')
    refused(read_jsonl, tmp_path / "metrics.jsonl", "line 2")
    (tmp_path / "metrics.jsonl").write_text("")
    assert read_jsonl(tmp_path / "metrics.jsonl") == []
