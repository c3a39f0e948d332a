"""Activation vectors on disk: the `activation_vector` column and vector files.

A table holds one raw (un-normalised) activation per row in `activation_vector`:
`FixedSizeList<float32, d>` as nlakit and the released datasets write it, or a plain
`List<float>` with every row `d` long. `decode_vectors` is the one place that turns
that column into a `[n, d]` float32 tensor, and it refuses what would otherwise
decode into wrong vectors without an error: rows of different widths (192 + 64 values
reshape happily into two rows of 128), nulls, non-numeric values, NaN and inf.

    vectors = decode_vectors(table["activation_vector"], "tables/eval.parquet")
    column = vector_column(vectors)          # back to FixedSizeList<float32, d>
    vectors = read_vectors("acts.npy")       # .npy, .safetensors, .pt or .parquet
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from nlakit.errors import NLAKitError
from nlakit.store.readers import read_npy, read_parquet, read_pt, read_safetensors

VECTOR_COLUMN = "activation_vector"
VECTOR_SUFFIXES = (".npy", ".safetensors", ".pt", ".parquet")
_FIX = (
    "Re-extract the activations with `nlakit extract`, or write the column as "
    "FixedSizeList<float32, d> holding one finite vector per row."
)


def _refuse(source, name: str, actual: str) -> NLAKitError:
    return NLAKitError(
        f"{source}: column `{name}`: expected one list of d finite numbers per row "
        f"(d the same for every row), got {actual}. {_FIX}"
    )


def _widths(lengths: np.ndarray) -> str:
    """'rows 192 and 64 wide' for the distinct widths of a ragged column."""
    distinct = list(dict.fromkeys(lengths.tolist()))
    shown = (
        ", ".join(map(str, distinct[:5])) if len(distinct) > 2 else " and ".join(map(str, distinct))
    )
    more = f" (+{len(distinct) - 5} more widths)" if len(distinct) > 5 else ""
    return f"rows {shown}{more} wide ({len(lengths)} rows, {int(lengths.sum())} values in total)"


def decode_vectors(
    column: pa.Array | pa.ChunkedArray, source: str | os.PathLike, name: str = VECTOR_COLUMN
) -> torch.Tensor:
    """The `[n, d]` float32 vectors of a parquet vector column. `source` (the file) and
    `name` (the column) are what an error names."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    fixed = pa.types.is_fixed_size_list(kind)
    if not (fixed or pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        raise _refuse(source, name, f"a column of type {kind}")
    value_type = kind.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise _refuse(source, name, f"lists of {value_type}")
    if column.null_count:
        raise _refuse(source, name, f"{column.null_count} null row(s)")
    n = len(column)
    if fixed:
        width = kind.list_size
    else:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if n and (lengths != lengths[0]).any():
            raise _refuse(source, name, _widths(lengths))
        width = int(lengths[0]) if n else 0
    if n and width == 0:
        raise _refuse(source, name, "empty rows")
    values = column.flatten()
    if values.null_count:
        raise _refuse(source, name, f"{values.null_count} null value(s) inside the rows")
    flat = values.to_numpy(zero_copy_only=False).astype(np.float32)
    finite = np.isfinite(flat)
    if not finite.all():
        rows = np.unique(np.flatnonzero(~finite) // width)
        shown = ", ".join(map(str, rows[:5].tolist())) + (" …" if len(rows) > 5 else "")
        raise _refuse(
            source, name, f"{int((~finite).sum())} NaN or infinite value(s), in row(s) {shown}"
        )
    return torch.from_numpy(flat.reshape(n, width))


def vector_column(vectors: torch.Tensor | np.ndarray) -> pa.FixedSizeListArray:
    """`[n, d]` vectors as the `FixedSizeList<float32, d>` column tables hold."""
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().float().cpu().numpy()
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(
        pa.array(array.reshape(-1), pa.float32()), array.shape[1]
    )


def read_vectors(path: str | os.PathLike) -> torch.Tensor:
    """Activation vectors `[n, d]` (float32) from a `.npy` array, a `.safetensors` file
    (a tensor named `vectors`, or its only tensor), a `.pt` tensor, or a parquet
    `activation_vector` column. A single vector `[d]` comes back as `[1, d]`."""
    path = Path(path)
    suffix = path.suffix.lower()
    what = "activation vectors [n, d]"
    if suffix == ".npy":
        vectors = torch.from_numpy(read_npy(path, what))
    elif suffix == ".safetensors":
        tensors = read_safetensors(path, what)
        if "vectors" not in tensors and len(tensors) != 1:
            raise NLAKitError(
                f"{path}: expected a tensor named 'vectors' or a single tensor, "
                f"found {sorted(tensors)}"
            )
        vectors = tensors.get("vectors", next(iter(tensors.values())))
    elif suffix == ".pt":
        vectors = read_pt(path, what)
    elif suffix == ".parquet":
        vectors = decode_vectors(read_parquet(path, [VECTOR_COLUMN], what)[VECTOR_COLUMN], path)
    else:
        raise NLAKitError(
            f"{path}: unknown vector file type {suffix!r}; use one of {', '.join(VECTOR_SUFFIXES)}"
        )
    if not isinstance(vectors, torch.Tensor) or vectors.ndim not in (1, 2):
        shape = list(vectors.shape) if isinstance(vectors, torch.Tensor) else type(vectors).__name__
        raise NLAKitError(f"{path}: expected vectors of shape [n, d] or [d], found {shape}")
    if vectors.dtype == torch.bool or vectors.is_complex():
        raise NLAKitError(f"{path}: expected numeric vectors, found dtype {vectors.dtype}")
    vectors = vectors.float().reshape(-1, vectors.shape[-1])
    if not torch.isfinite(vectors).all():
        raise NLAKitError(
            f"{path}: {int((~torch.isfinite(vectors)).sum())} NaN or infinite value(s); "
            "activation vectors must be finite."
        )
    return vectors
