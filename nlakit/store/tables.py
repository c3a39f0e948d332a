"""Tables with their sidecars, and the FVE baseline beside them.

A table is a parquet file holding `activation_vector` and other columns, with its
dataset sidecar `{file}.nla_meta.yaml` (`kind: nla_dataset`); `nlakit build` writes
one per stage and `baseline.json` beside them.

    table = load_table("tables/rl.parquet", ("response",))
    table.vectors, table.columns["response"], table.meta.d_model
    check_agrees(model.meta, table.meta)     # same layer, same width, or a MetaError
    baseline = find_baseline(Path("tables"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch

from nlakit.atomic import write_parquet
from nlakit.errors import MetaError, NLAKitError
from nlakit.meta import DatasetMeta, ModelMeta, read_meta, write_meta
from nlakit.metrics import FVEBaseline
from nlakit.store.names import BASELINE_FILE
from nlakit.store.readers import read_parquet
from nlakit.store.vectors import VECTOR_COLUMN, decode_vectors


@dataclass
class Table:
    """One table: its rows (without vectors), vectors `[n, d]` (fp32) and sidecar."""

    path: Path
    meta: DatasetMeta
    columns: dict[str, list]
    vectors: torch.Tensor

    def __len__(self) -> int:
        return self.vectors.shape[0]


def load_table(path: str | os.PathLike, columns: tuple[str, ...] = ()) -> Table:
    """A table, its vectors and the requested columns, checking the sidecar agrees with
    the file (row count, width)."""
    path = Path(path)
    if not path.is_file():
        raise NLAKitError(f"{path}: no such table; build the tables with `nlakit build`.")
    meta = read_meta(path)
    if not isinstance(meta, DatasetMeta):
        raise NLAKitError(f"{meta.source}: expected a dataset sidecar (kind nla_dataset).")
    table = read_parquet(
        path,
        [VECTOR_COLUMN, *columns],
        what=f"a table with the columns {[VECTOR_COLUMN, *columns]}",
        fix="Rebuild the tables with `nlakit build`.",
    )
    if table.num_rows != meta.row_count:
        raise NLAKitError(f"{path}: {table.num_rows} rows, its sidecar says {meta.row_count}.")
    if table.num_rows == 0:
        raise NLAKitError(f"{path}: the table is empty; build it from more data.")
    vectors = decode_vectors(table[VECTOR_COLUMN], path)
    if vectors.shape[1] != meta.d_model:
        raise NLAKitError(
            f"{path}: vectors of width {vectors.shape[1]}, the sidecar's d_model is {meta.d_model}."
        )
    return Table(path, meta, {c: table[c].to_pylist() for c in columns}, vectors)


def write_table(path: str | os.PathLike, table: pa.Table, meta: DatasetMeta) -> Path:
    """Write the table, then its sidecar (both atomically); returns the table's path."""
    path = write_parquet(path, table)
    write_meta(meta, path)
    return path


def check_agrees(meta: ModelMeta, tables: DatasetMeta) -> None:
    """A model and a table must read the same layer of the same-width model."""
    if meta.layer is not None and meta.layer != tables.layer:
        raise MetaError(
            f"{meta.source}: the checkpoint reads layer {meta.layer}, the tables "
            f"layer {tables.layer}; use tables extracted at the same layer."
        )
    if meta.d_model != tables.d_model:
        raise MetaError(
            f"{meta.source}: d_model {meta.d_model}, the tables {tables.d_model}; "
            "these tables come from another model."
        )


def find_baseline(*directories: Path | None) -> FVEBaseline | None:
    """The FVE baseline (`baseline.json`) of the first directory that has one."""
    for directory in directories:
        if directory is not None and (Path(directory) / BASELINE_FILE).is_file():
            return FVEBaseline.load(Path(directory) / BASELINE_FILE)
    return None
