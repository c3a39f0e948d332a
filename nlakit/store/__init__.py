"""The on-disk contract: what every stage writes and reads, below data/train/eval/viewer.

    names      the fixed file names (`nla_meta.yaml`, `baseline.json`, `rows.parquet`, …)
    readers    one reader per format (JSON, YAML, parquet, npy, safetensors, pt): a bad file
               is an NLAKitError naming the path, what was expected and what to do
    vectors    the `activation_vector` column ⇄ `[n, d]` float32, and vector files
    tables     a table with its sidecar (`load_table`, `write_table`), `check_agrees`,
               the FVE baseline beside the tables
    runs       a run directory's config snapshot and metrics log

The stage packages share these instead of importing each other. Names are exported
lazily (`from nlakit.store import load_table`), so reading a file name or a JSON file
does not import torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "read_json": "readers",
    "read_jsonl": "readers",
    "read_yaml": "readers",
    "read_parquet": "readers",
    "read_parquet_schema": "readers",
    "read_npy": "readers",
    "read_safetensors": "readers",
    "read_pt": "readers",
    "VECTOR_COLUMN": "vectors",
    "decode_vectors": "vectors",
    "vector_column": "vectors",
    "read_vectors": "vectors",
    "Table": "tables",
    "load_table": "tables",
    "write_table": "tables",
    "check_agrees": "tables",
    "find_baseline": "tables",
    "run_config": "runs",
    "read_metrics": "runs",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"nlakit.store.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nlakit.store' has no attribute {name!r}")
