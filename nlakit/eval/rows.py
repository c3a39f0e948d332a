"""The per-row eval table (`RUN/eval/rows.parquet`) as analyses use it.

rows = load_rows("runs/demo")               # after `nlakit eval --run runs/demo`
rows.columns["explanation"], rows.vectors   # [n] texts, [n, d] raw activations
errors = rows.score(["..."] * n)            # mse_nrm [n] by the run's AR
rows.fve(errors)                            # against the run's frozen baseline
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nlakit.errors import NLAKitError
from nlakit.eval.runs import RunPaths, require_rows, resolve_run
from nlakit.metrics import FVEBaseline, fve, mse_nrm
from nlakit.models import ActivationReconstructor
from nlakit.store.names import BASELINE_FILE, SUMMARY_FILE
from nlakit.store.readers import read_json, read_parquet
from nlakit.store.tables import find_baseline
from nlakit.store.vectors import VECTOR_COLUMN, decode_vectors


@dataclass
class EvalRows:
    paths: RunPaths
    columns: dict[str, list]
    vectors: torch.Tensor  # [n, d] raw activations, fp32
    baseline: FVEBaseline
    summary: dict
    device: str | None = None
    dtype: str | None = None
    _ar: object = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def explanations(self) -> list[str]:
        return self.columns["explanation"]

    def records(self) -> list[dict]:
        """The toy world's latent record of each row; an error off the toy world."""
        if "record" not in self.columns:
            raise NLAKitError(
                f"{self.paths.rows}: no latent records; truth scoring needs a toy-world run."
            )
        return [json.loads(r) for r in self.columns["record"]]

    @property
    def ar(self):
        """The run's AR, loaded on first use."""
        if self._ar is None:
            self._ar = ActivationReconstructor.from_pretrained(
                self.paths.ar, device=self.device, dtype=self.dtype
            )
            self._ar.eval()
        return self._ar

    @torch.no_grad()
    def score(
        self, texts: list[str], vectors: torch.Tensor | None = None, batch_size: int = 64
    ) -> torch.Tensor:
        """mse_nrm `[n]` of the AR's reconstruction of each text against its row's vector."""
        gold = self.vectors if vectors is None else vectors
        if len(texts) != gold.shape[0]:
            raise NLAKitError(f"{len(texts)} texts for {gold.shape[0]} vectors")
        pred = self.ar.reconstruct(list(texts), batch_size)
        return mse_nrm(pred, gold, self.ar.meta.mse_scale_value)

    def fve(self, errors: torch.Tensor) -> float:
        return fve(errors, self.baseline)


def load_rows(
    run: str | os.PathLike, device: str | None = None, dtype: str | None = None
) -> EvalRows:
    """The run's per-row eval table, its vectors and FVE baseline (the AR loads lazily)."""
    paths = resolve_run(run, need_ar=True)
    path = require_rows(paths)
    summary_path = paths.eval_dir / SUMMARY_FILE
    rerun = f"Re-run `nlakit eval --run {paths.root}`."
    summary = read_json(summary_path, "the eval summary", rerun) if summary_path.is_file() else {}
    what = f"a per-row eval table (with {VECTOR_COLUMN} and explanation columns)"
    table = read_parquet(path, what=what, fix=rerun)
    if table.num_rows == 0:
        raise NLAKitError(f"{path}: the eval table is empty; re-run `nlakit eval` with more rows.")
    if VECTOR_COLUMN not in table.column_names or "explanation" not in table.column_names:
        raise NLAKitError(
            f"{path}: not a per-row eval table (needs {VECTOR_COLUMN} and explanation "
            f"columns, has {table.column_names}); re-run `nlakit eval --run {paths.root}`."
        )
    vectors = decode_vectors(table[VECTOR_COLUMN], path)
    columns = {c: table[c].to_pylist() for c in table.column_names if c != VECTOR_COLUMN}
    if "doc_id" in columns:  # text, as in the released datasets; older runs wrote int64
        columns["doc_id"] = [str(d) for d in columns["doc_id"]]
    baseline = _baseline(paths, summary)
    return EvalRows(paths, columns, vectors, baseline, summary, device, dtype)


def _baseline(paths: RunPaths, summary: dict) -> FVEBaseline:
    directories = [Path(summary["data"]).parent] if summary.get("data") else []
    directories += [paths.tables] if paths.tables is not None else []
    baseline = find_baseline(*directories)
    if baseline is None:
        looked = [str(d / BASELINE_FILE) for d in directories]
        raise NLAKitError(f"{paths.root}: cannot find the FVE baseline (looked at {looked}).")
    return baseline
