"""Text conditions scored by a run's AR: the machinery the ablation, steganography and
truth analyses share.

A condition is a list of texts, one per eval row (the full explanations, the
explanations without their last paragraph, paraphrased …). The first condition is
the reference: it is scored in full, and every other condition re-scores only the
rows whose text differs from it. Each condition gets an FVE summary and its paired
FVE drop from the reference.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from nlakit.errors import NLAKitError
from nlakit.eval.plots import bar_with_ci
from nlakit.eval.stats import fve_drop, fve_summary


def score_changed(rows, texts: list[str], reference: list[str], errors: torch.Tensor):
    """mse_nrm `[n]` of `texts` by the run's AR, re-scoring only the rows whose text
    differs from `reference` (whose mse_nrm `[n]` is `errors`); also the changed count."""
    changed = [i for i, (a, b) in enumerate(zip(texts, reference, strict=True)) if a != b]
    out = errors.clone()
    if changed:
        out[changed] = rows.score([texts[i] for i in changed], rows.vectors[changed])
    return out, len(changed)


def text_column(rows, column: str) -> list[str]:
    """The texts of a rows.parquet column ("" for missing values), or a clear error."""
    if column not in rows.columns:
        raise NLAKitError(
            f"{rows.paths.rows}: no column {column!r} (has {sorted(rows.columns)}); pass "
            "--column explanation or --column teacher_explanation."
        )
    return [t or "" for t in rows.columns[column]]


def score_conditions(rows, texts: dict[str, list[str]], progress: bool = True, desc: str = ""):
    """({condition: mse_nrm [n]}, {condition: rows re-scored}) by the run's AR. The first
    condition is the reference, scored in full; the others re-score only the rows whose
    text differs from it."""
    names = list(texts)
    reference = names[0]
    errors = {reference: rows.score(texts[reference])}
    changed = {reference: 0}
    for name in tqdm(names[1:], desc=desc, unit="condition", disable=not progress):
        errors[name], changed[name] = score_changed(
            rows, texts[name], texts[reference], errors[reference]
        )
    return errors, changed


def condition_stats(errors: dict, changed: dict, baseline, n_boot: int, seed: int) -> dict:
    """Per condition: `fve_summary`, rows changed, and the paired FVE drop from the
    first condition."""
    reference = errors[next(iter(errors))]
    return {
        name: {
            **fve_summary(e, baseline, n_boot, seed),
            "n_changed": changed[name],
            "drop": fve_drop(reference, e, baseline, n_boot, seed),
        }
        for name, e in errors.items()
    }


def condition_analysis(rows, texts: dict[str, list[str]], config, desc: str) -> tuple[dict, dict]:
    """Score every condition (`config` carries column, bootstrap, seed, progress); returns
    (stats per condition, the head every condition analysis's summary starts with)."""
    errors, changed = score_conditions(rows, texts, config.progress, desc)
    stats = condition_stats(errors, changed, rows.baseline, config.bootstrap, config.seed)
    return stats, condition_head(rows, config)


def condition_head(rows, config) -> dict:
    """What every condition analysis's summary starts with: the run, the column, n, the
    FVE baseline and the seed."""
    return {
        "run": str(rows.paths.root),
        "column": config.column,
        "n": len(rows),
        "baseline_variance": rows.baseline.variance,
        "baseline_n": rows.baseline.n,
        "seed": config.seed,
    }


def condition_figure(stats: dict, title: str, labels: list[str] | None = None):
    """FVE with its 95% CI per condition, as bars (labels default to the names)."""
    names = list(stats)
    return bar_with_ci(
        title,
        labels or names,
        [stats[k]["fve"] for k in names],
        [stats[k]["ci_low"] for k in names],
        [stats[k]["ci_high"] for k in names],
    )


def condition_table(stats: dict) -> list[dict]:
    """One table row per condition, the drop and its CI flattened into columns."""
    return [
        {
            "condition": name,
            **{k: v for k, v in s.items() if k != "drop"},
            "fve_drop": s["drop"]["fve_drop"],
            "drop_ci_low": s["drop"]["ci_low"],
            "drop_ci_high": s["drop"]["ci_high"],
        }
        for name, s in stats.items()
    ]
