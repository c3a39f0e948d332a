"""The figures a run measured, for the model card of its exported `av/` or `ar/`.

A run directory (`nlakit sft` / `nlakit rl --out RUN`) holds `config.json` (whose
`data` names the tables, with `baseline.json` and `eval.parquet`) and
`metrics.jsonl`, whose last held-out evaluation gives the card its numbers:

    RL          eval_fve over eval_n activations: this run's AV explains, its AR reconstructs
    AR SFT      eval_fve: the AR reconstructs the teacher's held-out explanations
    AV SFT      eval_loss only (cross-entropy): no FVE without an AR

Only what was logged is reported; a run without an evaluation gives no figures.
"""

from __future__ import annotations

import os
from pathlib import Path

from nlakit.card import CardFigures
from nlakit.store.names import BASELINE_FILE, RUN_CONFIG, table_file
from nlakit.store.readers import parquet_row_count, read_json
from nlakit.store.runs import read_metrics, run_config


def stage_of(config: dict) -> str | None:
    """ "rl" or "sft" from a run's config snapshot (None if neither)."""
    if "role" in config:
        return "sft"
    if "av" in config and "ar" in config:
        return "rl"
    return None


def figures_from_records(
    records: list[dict],
    stage: str | None,
    role: str,
    baseline: dict | None = None,
    eval_n: int | None = None,
) -> CardFigures | None:
    """Card figures from a run's `metrics.jsonl` records (pure).

    `baseline` is the run's `baseline.json` (its `variance` and `n` are used);
    `eval_n` the held-out rows of an SFT evaluation, which SFT does not log.
    """
    evals = [r for r in records if "eval_fve" in r or "eval_loss" in r]
    if not evals or stage not in ("sft", "rl"):
        return None
    last = evals[-1]
    step = last.get("step")
    fve = last.get("eval_fve")
    if stage == "rl":
        measured = (
            f"Measured at the end of RL (step {step}): the run's AV explained each held-out "
            "activation once with the training sampling settings and the run's AR "
            "reconstructed it."
        )
        n = last.get("eval_n")
    elif role == "ar":
        measured = (
            f"Measured at the end of AR SFT (step {step}): this AR reconstructed the teacher's "
            "explanations of held-out activations."
        )
        n = eval_n
    else:
        measured = f"Measured at the end of AV SFT (step {step})."
        n, fve = eval_n, None
    with_fve = fve is not None and baseline is not None
    return CardFigures(
        fve=fve,
        n=n,
        baseline_variance=baseline.get("variance") if with_fve else None,
        baseline_n=baseline.get("n") if with_fve else None,
        cos=last.get("eval_cos"),
        eval_loss=last.get("eval_loss") if stage == "sft" and role == "av" else None,
        measured=measured,
    )


def _table_rows(path: Path) -> int | None:
    if not path.is_file():
        return None
    return parquet_row_count(path, "a table (`nlakit build`)")


def run_figures(run_dir: str | os.PathLike, role: str) -> CardFigures | None:
    """The figures of the run at `run_dir` for its exported `role` ("av" or "ar")."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    if not records or not (run_dir / RUN_CONFIG).is_file():
        return None
    config = run_config(run_dir)
    tables = Path(config["data"]) if config.get("data") else None
    baseline = None
    if tables is not None and (tables / BASELINE_FILE).is_file():
        baseline = read_json(tables / BASELINE_FILE, "the FVE baseline (`nlakit build`)")
    eval_n = None
    if tables is not None and stage_of(config) == "sft" and config.get("eval_rows"):
        rows = _table_rows(tables / table_file("eval"))
        eval_n = None if rows is None else min(int(config["eval_rows"]), rows)
    return figures_from_records(records, stage_of(config), role, baseline, eval_n)
