"""One reader per on-disk format: JSON, JSON lines, YAML, parquet, npy, safetensors, pt.

Every reader turns a missing, empty, truncated, corrupt or wrong-kind file into an
`NLAKitError` that names the path, what the file should hold and what to do — never
a raw traceback from the parser:

    read_json(path, what="the FVE baseline", fix="Rebuild the tables with `nlakit build`.")
    # NLAKitError: TABLES/baseline.json: not a readable JSON file (JSONDecodeError: …);
    #              expected the FVE baseline. Rebuild the tables with `nlakit build`.

`what` is what the file should hold, `fix` what the user can do about it. `.pt` files
are read with `weights_only=True`: nlakit never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from nlakit.errors import NLAKitError

PathLike = str | os.PathLike
DEFAULT_FIX = "Re-create it with the nlakit command that writes it, or point at the right file."


def _message(path: Path, problem: str, what: str, fix: str) -> NLAKitError:
    return NLAKitError(f"{path}: {problem}; expected {what}. {fix}".rstrip())


def _parse_failure(path: Path, kind: str, exc: BaseException, what: str, fix: str):
    detail = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    text = kind.startswith(("JSON", "YAML"))
    problem = f"not valid {kind} ({detail})" if text else f"not a readable {kind} file ({detail})"
    return _message(path, problem, what, fix)


def existing_file(path: PathLike, what: str, fix: str = DEFAULT_FIX) -> Path:
    """`path` as a Path; an error when it is missing, a directory, or empty."""
    path = Path(path)
    if path.is_dir():
        raise _message(path, "a directory, not a file", what, fix)
    if not path.is_file():
        raise _message(path, "no such file", what, fix)
    if path.stat().st_size == 0:
        raise _message(path, "the file is empty (0 bytes)", what, fix)
    return path


def _check_kind(path: Path, data: Any, expect: type | None, what: str, fix: str) -> Any:
    if expect is not None and not isinstance(data, expect):
        raise _message(path, f"holds a {type(data).__name__}, not a {expect.__name__}", what, fix)
    return data


def _text(path: Path, kind: str, what: str, fix: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _parse_failure(path, kind, exc, what, fix) from None


# --------------------------------------------------------------------------- text formats


def _parse_text(path: PathLike, kind: str, parse, errors, what: str, fix: str, expect) -> Any:
    """`parse` of the text at `path`; its `errors` and too-deep nesting refused by name."""
    path = existing_file(path, what, fix)
    try:
        data = parse(_text(path, kind, what, fix))
    except errors as exc:
        raise _parse_failure(path, kind, exc, what, fix) from None
    except RecursionError:
        raise _message(path, f"{kind} nested too deeply to read", what, fix) from None
    return _check_kind(path, data, expect, what, fix)


def read_json(
    path: PathLike, what: str = "a JSON object", fix: str = DEFAULT_FIX, expect: type | None = dict
) -> Any:
    """The parsed JSON of `path` (a dict unless `expect` says otherwise)."""
    return _parse_text(path, "JSON", json.loads, json.JSONDecodeError, what, fix, expect)


def read_jsonl(path: PathLike, what: str = "JSON lines", fix: str = DEFAULT_FIX) -> list[dict]:
    """One dict per non-blank line. An empty file is an empty log (a run that has not
    logged yet), so unlike the other readers this one returns [] for it."""
    path = Path(path)
    if not path.is_file():
        raise _message(path, "no such file", what, fix)
    records = []
    for number, line in enumerate(_text(path, "JSON lines", what, fix).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _parse_failure(path, f"JSON lines (line {number})", exc, what, fix) from None
        records.append(_check_kind(path, record, dict, what, fix))
    return records


def read_yaml(
    path: PathLike, what: str = "a YAML mapping", fix: str = DEFAULT_FIX, expect: type | None = dict
) -> Any:
    """The parsed YAML of `path` (safe loader; a mapping unless `expect` says otherwise)."""
    return _parse_text(path, "YAML", yaml.safe_load, yaml.YAMLError, what, fix, expect)


# --------------------------------------------------------------------------- parquet


def read_parquet_schema(
    path: PathLike, what: str = "a parquet table", fix: str = DEFAULT_FIX
) -> pa.Schema:
    """The schema of a parquet file (reads the footer only)."""
    path = existing_file(path, what, fix)
    try:
        return pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise _parse_failure(path, "parquet", exc, what, fix) from None


def parquet_row_count(path: PathLike, what: str = "a parquet table", fix: str = DEFAULT_FIX) -> int:
    """The number of rows of a parquet file (reads the footer only)."""
    path = existing_file(path, what, fix)
    try:
        return pq.read_metadata(path).num_rows
    except Exception as exc:
        raise _parse_failure(path, "parquet", exc, what, fix) from None


def read_parquet(
    path: PathLike,
    columns: list[str] | tuple[str, ...] | None = None,
    what: str = "a parquet table",
    fix: str = DEFAULT_FIX,
) -> pa.Table:
    """The table at `path` (only `columns` when given; missing ones are an error that
    lists what the file has)."""
    schema = read_parquet_schema(path, what, fix)
    path = Path(path)
    if columns is not None:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise _message(path, f"no column(s) {missing} (it has {schema.names})", what, fix)
    try:
        return pq.read_table(
            path,
            columns=None if columns is None else list(columns),
            page_checksum_verification=True,  # files nlakit writes carry page checksums
        )
    except Exception as exc:
        raise _parse_failure(path, "parquet", exc, what, fix) from None


# --------------------------------------------------------------------------- arrays and tensors


def read_npy(path: PathLike, what: str = "a NumPy array", fix: str = DEFAULT_FIX) -> np.ndarray:
    """The array of a `.npy` file (never unpickles: object arrays are refused)."""
    path = existing_file(path, what, fix)
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError, EOFError, OSError, UnpicklingError
        raise _parse_failure(path, "npy", exc, what, fix) from None
    data = _check_kind(path, data, np.ndarray, what, fix)
    if data.dtype.kind not in "biuf":
        raise _message(path, f"holds an array of dtype {data.dtype}, not numbers", what, fix)
    return data


# torch and safetensors are imported by the two tensor readers alone: the viewer and
# the sidecar code read their files through this module without loading torch.


def read_safetensors(
    path: PathLike, what: str = "safetensors weights", fix: str = DEFAULT_FIX
) -> dict:
    """`{name: tensor}` of a `.safetensors` file, on the CPU."""
    from safetensors.torch import load_file

    path = existing_file(path, what, fix)
    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError, OSError
        raise _parse_failure(path, "safetensors", exc, what, fix) from None


def read_pt(path: PathLike, what: str = "a PyTorch state", fix: str = DEFAULT_FIX) -> Any:
    """The object of a `.pt` file, loaded on the CPU with `weights_only=True` (tensors,
    numbers, strings and containers of them; anything else is refused, not unpickled)."""
    import torch

    path = existing_file(path, what, fix)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (zip), EOFError
        raise _parse_failure(path, "pt (weights_only)", exc, what, fix) from None
