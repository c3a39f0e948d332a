"""What the viewer reads: per-row explanation tables, one per run or file.

An input is either a run directory (its `RUN/eval/rows.parquet`, written by
`nlakit eval`) or any parquet file with at least the columns of `REQUIRED` — for
example the per-λ files of `nlakit sweep length`
(`RUN/eval/length_sweep/rows_lambda_0.01.parquet`). The activation vectors are
never read.

Per input, the viewer keeps the scores of `SCORE_COLUMNS`; the per-token columns
of `TOKEN_COLUMNS` (the token, its context, the toy world's latent record …) are
taken from the first input that has them, so a sweep file can be shown beside the
run it came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nlakit.errors import NLAKitError
from nlakit.store.names import EVAL_DIR, ROWS_FILE, SUMMARY_FILE
from nlakit.store.readers import read_json, read_parquet, read_parquet_schema

REQUIRED = ("doc_id", "position", "explanation", "mse_nrm")
SCORE_COLUMNS = ("explanation", "mse_nrm", "cos", "n_tokens", "finished")
TOKEN_COLUMNS = ("token", "context", "source", "record", "teacher_explanation", "teacher_mse_nrm")


@dataclass
class ViewerInput:
    """One run's per-row table, as the viewer needs it."""

    name: str  # shown in the page's headers
    path: Path  # the parquet file read
    columns: dict[str, list]  # the columns of REQUIRED, SCORE_COLUMNS and TOKEN_COLUMNS present
    variance: float | None  # the run's FVE baseline variance, when its summary says it

    def __len__(self) -> int:
        return len(self.columns["doc_id"])


def _table_path(path: Path) -> Path:
    if path.is_dir():
        table = path / EVAL_DIR / ROWS_FILE
        if not table.is_file():
            raise NLAKitError(
                f"{table}: no per-row eval table yet; run `nlakit eval --run {path}` first "
                "(or pass a parquet file of explanations)."
            )
        return table
    if not path.is_file():
        raise NLAKitError(f"{path}: no such run directory or parquet file.")
    if path.suffix != ".parquet":
        raise NLAKitError(f"{path}: expected a run directory or a .parquet file of explanations.")
    return path


def _name(path: Path, table: Path) -> str:
    if path.is_dir():
        return path.resolve().name
    if table.name == ROWS_FILE and table.parent.name == EVAL_DIR:
        return table.parent.parent.resolve().name  # RUN/eval/rows.parquet → RUN
    return table.stem.removeprefix("rows_")


def _variance(table: Path) -> float | None:
    """The baseline variance from the summary beside the table or one level up (a
    sweep file in RUN/eval/length_sweep/ is scored against RUN/eval/summary.json's)."""
    for summary in (table.parent / SUMMARY_FILE, table.parent.parent / SUMMARY_FILE):
        if summary.is_file():
            try:
                value = read_json(summary).get("baseline_variance")
            except NLAKitError:  # the variance is optional: the page shows FVE without it
                continue
            if isinstance(value, int | float) and value > 0:
                return float(value)
    return None


def read_input(path: str | os.PathLike) -> ViewerInput:
    """The per-row table of a run directory or a parquet file (without its vectors)."""
    path = Path(path)
    table = _table_path(path)
    what = f"a table of explanations with the columns {list(REQUIRED)}"
    fix = "Per-row eval tables come from `nlakit eval --run RUN`."
    schema = read_parquet_schema(table, what, fix)
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise NLAKitError(
            f"{table}: missing column(s) {missing}; a table of explanations needs {list(REQUIRED)} "
            f"(it has {schema.names}). Per-row eval tables come from `nlakit eval --run RUN`."
        )
    wanted = [c for c in (*REQUIRED, *SCORE_COLUMNS, *TOKEN_COLUMNS) if c in schema.names]
    data = read_parquet(table, list(dict.fromkeys(wanted)), what, fix)
    if data.num_rows == 0:
        raise NLAKitError(f"{table}: the table has no rows.")
    columns = {c: data[c].to_pylist() for c in data.column_names}
    # Doc ids are text, as in the released datasets ("HuggingFaceFW/fineweb:train:17");
    # tables written before nlakit followed them hold int64 ids.
    columns["doc_id"] = [str(d) for d in columns["doc_id"]]
    if all(m is None for m in columns["mse_nrm"]):
        raise NLAKitError(
            f"{table}: every mse_nrm is null; the viewer shows explanations with their "
            "reconstruction error (score them with `nlakit eval`)."
        )
    return ViewerInput(_name(path, table), table, columns, _variance(table))


def read_inputs(paths: list[str | os.PathLike]) -> list[ViewerInput]:
    """Every input, with names made unique ("run", "run (2)", …)."""
    if not paths:
        raise NLAKitError("nothing to view: pass at least one run directory or parquet file.")
    inputs = [read_input(p) for p in paths]
    seen: dict[str, int] = {}
    for item in inputs:
        count = seen[item.name] = seen.get(item.name, 0) + 1
        if count > 1:
            item.name = f"{item.name} ({count})"
    return inputs
