"""Where a run's pieces are: its AV and AR, its tables, its toy world, its eval outputs.

A run directory is what `nlakit sft`, `nlakit rl` or `nlakit demo` wrote. Its final
pair is looked up in this order:

    RUN/av, RUN/ar                      a training run (`nlakit rl --out RUN`)
    RUN/rl/{av,ar}                      a demo run: the RL pair
    RUN/av_sft/av, RUN/ar_sft/ar        a demo run stopped before RL

The tables directory is `--data`'s directory when one is given, else the run's
`config.json` `data` field, else `RUN/tables`. Analyses write under `RUN/eval/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nlakit.errors import NLAKitError
from nlakit.meta import read_meta
from nlakit.store.names import (
    BUILD_RECORD,
    DATASET_SIDECAR_SUFFIX,
    EVAL_DIR,
    MODEL_CONFIG,
    ROWS_FILE,
    SIDECAR_NAME,
)
from nlakit.store.runs import run_config


@dataclass
class RunPaths:
    root: Path
    av: Path | None
    ar: Path | None
    tables: Path | None
    world: Path | None

    @property
    def eval_dir(self) -> Path:
        return self.root / EVAL_DIR

    @property
    def rows(self) -> Path:
        return self.eval_dir / ROWS_FILE

    def analysis_dir(self, name: str) -> Path:
        return self.eval_dir / name

    @property
    def name(self) -> str:
        return self.root.name


def _first_model(root: Path, candidates: list[str]) -> Path | None:
    for rel in candidates:
        path = root / rel
        if (path / SIDECAR_NAME).is_file() or (path / MODEL_CONFIG).is_file():
            return path
    return None


def _tables_dir(root: Path) -> Path | None:
    data = run_config(root).get("data")
    if data and Path(data).is_dir():
        return Path(data)
    if (root / "tables").is_dir():
        return root / "tables"
    return None


def _world_dir(root: Path, tables: Path | None) -> Path | None:
    if (root / "world" / BUILD_RECORD).is_file():
        return root / "world"
    if tables is not None:
        for sidecar in sorted(tables.glob(f"*.parquet{DATASET_SIDECAR_SUFFIX}")):
            corpus = read_meta(sidecar).extraction.corpus or ""
            if corpus.startswith("toyworld:"):
                world = Path(corpus.split(":", 1)[1])
                return world if (world / BUILD_RECORD).is_file() else None
            break
    return None


def resolve_run(run: str | os.PathLike, need_ar: bool = True, need_av: bool = False) -> RunPaths:
    """The run's pieces; a clear error when the run lacks what the caller needs."""
    root = Path(run)
    if not root.is_dir():
        raise NLAKitError(f"{root}: no such run directory.")
    av = _first_model(root, ["av", "rl/av", "av_sft/av"])
    ar = _first_model(root, ["ar", "rl/ar", "ar_sft/ar"])
    if need_ar and ar is None:
        raise NLAKitError(
            f"{root}: the run has no AR (looked for ar/, rl/ar/, ar_sft/ar/). Scoring needs "
            "one: train it with `nlakit sft ar` or pass a run that has one."
        )
    if need_av and av is None:
        raise NLAKitError(
            f"{root}: the run has no AV (looked for av/, rl/av/, av_sft/av/); "
            "train it with `nlakit sft av`."
        )
    tables = _tables_dir(root)
    return RunPaths(root=root, av=av, ar=ar, tables=tables, world=_world_dir(root, tables))


def starting_ar(root: Path) -> Path | None:
    """The AR a run's RL started from, the fair scorer of its AV ("the common AR"):
    RUN/ar_sft/ar (a demo run), else the `ar` field of RUN/config.json or
    RUN/rl/config.json (an `nlakit rl` run)."""
    if (root / "ar_sft" / "ar" / SIDECAR_NAME).is_file():
        return root / "ar_sft" / "ar"
    for run_dir in (root, root / "rl"):
        ar = run_config(run_dir).get("ar")
        if ar and (Path(ar) / SIDECAR_NAME).is_file():
            return Path(ar)
    return None


def require_rows(paths: RunPaths) -> Path:
    """The run's per-row eval table; an error saying how to make it when it is missing."""
    if not paths.rows.is_file():
        raise NLAKitError(
            f"{paths.rows}: no per-row eval table yet; run `nlakit eval --run {paths.root}` first."
        )
    return paths.rows
