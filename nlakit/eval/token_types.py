"""Which kinds of tokens the NLA explains well: reconstruction error by token type.

    nlakit analyze token_types --run RUN        # after `nlakit eval --run RUN`

Each eval row's final token is classified (`nlakit.token_types.token_type`) as
whitespace, newline, punctuation, number, word-start (a word after a space), word-piece
(letters without a leading space) or special. From the per-row table alone (no model is loaded) it reports
per type: count, share, mean mse_nrm and the FVE of that subset; the mix of types in each
error quintile (Q1 = the lowest-error fifth of the rows, Q5 the highest); and the same per
`source`. Writes RUN/eval/token_types/{table.csv,summary.json,plot.png}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.outputs import write_analysis
from nlakit.eval.plots import pyplot
from nlakit.eval.rows import EvalRows, load_rows
from nlakit.metrics import fve
from nlakit.token_types import TOKEN_TYPES, error_buckets, token_type

NAME = directory_of(__name__)  # RUN/eval/token_types/


def type_stats(types: list[str], errors: np.ndarray, variance: float) -> dict[str, dict]:
    """Per type present in `types`: count, share, mean mse_nrm and FVE (1 - mean/variance)."""
    out = {}
    for kind in TOKEN_TYPES:
        mask = np.array([t == kind for t in types], dtype=bool)
        if not mask.any():
            continue
        mean = float(errors[mask].mean())
        out[kind] = {
            "count": int(mask.sum()),
            "share": float(mask.mean()),
            "mean_mse_nrm": mean,
            "fve": 1.0 - mean / variance,
        }
    return out


@dataclass
class TokenTypesConfig(Config):
    """Which kinds of token an evaluated run explains well or badly."""

    run: str = option(help="run directory (after nlakit eval)")
    error_column: str = option(
        "mse_nrm", "per-row error analysed: mse_nrm (the AV) or teacher_mse_nrm"
    )
    n_buckets: int = option(5, "error buckets by rank (5 = quintiles, Q1 lowest error)", ge=1)


def _errors(rows: EvalRows, column: str) -> np.ndarray:
    if column not in rows.columns:
        raise NLAKitError(
            f"{rows.paths.rows}: no column {column!r} for --error-column (has "
            f"{sorted(rows.columns)}); use mse_nrm or teacher_mse_nrm."
        )
    return np.array([float("nan") if e is None else e for e in rows.columns[column]], float)


def token_types(config: TokenTypesConfig) -> dict:
    """Error by token type, per error bucket and per source; writes the analysis, returns
    its summary."""
    if config.n_buckets < 1:
        raise NLAKitError(f"--n-buckets must be at least 1, got {config.n_buckets}.")
    rows = load_rows(config.run)
    errors = _errors(rows, config.error_column)
    keep = ~np.isnan(errors)
    errors = errors[keep]
    types = [token_type(t) for t, k in zip(rows.columns["token"], keep, strict=True) if k]
    all_sources = rows.columns.get("source") or ["unknown"] * len(keep)
    sources = [s for s, k in zip(all_sources, keep, strict=True) if k]
    if len(errors) == 0:
        raise NLAKitError(f"{rows.paths.rows}: no row has a {config.error_column} value.")
    variance = rows.baseline.variance
    buckets = error_buckets(errors, config.n_buckets)

    table: list[dict] = []
    overall = type_stats(types, errors, variance)
    table += _table_rows("all", "all", overall)
    per_bucket = {}
    for b in range(config.n_buckets):
        mask = buckets == b
        if not mask.any():
            continue
        name = f"Q{b + 1}"
        stats = _subset_stats(types, errors, mask, variance)
        table += _table_rows("bucket", name, stats)
        per_bucket[name] = {
            "n": int(mask.sum()),
            "mse_low": float(errors[mask].min()),
            "mse_high": float(errors[mask].max()),
            "shares": {k: s["share"] for k, s in stats.items()},
        }
    per_source = {}
    for source in sorted(set(sources)):
        mask = np.array([s == source for s in sources], dtype=bool)
        stats = _subset_stats(types, errors, mask, variance)
        table += _table_rows("source", source, stats)
        per_source[source] = {"n": int(mask.sum()), "types": stats}

    summary = {
        "run": str(rows.paths.root),
        "error_column": config.error_column,
        "n": len(errors),
        "baseline_variance": variance,
        "baseline_n": rows.baseline.n,
        "fve": fve(torch.from_numpy(errors), rows.baseline),
        "types": overall,
        "buckets": per_bucket,
        "sources": per_source,
    }
    figure = _plot(per_bucket, per_source, config.error_column)
    write_analysis(rows.paths.analysis_dir(NAME), table, summary, figure)
    return summary


def _subset_stats(
    types: list[str], errors: np.ndarray, mask: np.ndarray, variance: float
) -> dict[str, dict]:
    """`type_stats` of the rows where `mask [n]` is true."""
    return type_stats([t for t, m in zip(types, mask, strict=True) if m], errors[mask], variance)


def _table_rows(group_kind: str, group: str, stats: dict[str, dict]) -> list[dict]:
    return [{"group_kind": group_kind, "group": group, "type": k, **s} for k, s in stats.items()]


def _plot(per_bucket: dict, per_source: dict, error_column: str):
    """Stacked type shares per error bucket; with ≥ 2 sources a second panel per source."""
    plt = pyplot()
    panels = [
        (
            "Token types by reconstruction-error bucket",
            f"error bucket by {error_column} (Q1 = lowest)",
            {name: b["shares"] for name, b in per_bucket.items()},
        )
    ]
    if len(per_source) >= 2:
        shares = {
            f"{s} (n={d['n']})": {k: v["share"] for k, v in d["types"].items()}
            for s, d in per_source.items()
        }
        panels.append(("Token types by source", "source", shares))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.4), dpi=110)
    colors = plt.get_cmap("tab10")
    for ax, (title, xlabel, groups) in zip(np.atleast_1d(axes), panels, strict=True):
        bottom = np.zeros(len(groups))
        for i, kind in enumerate(TOKEN_TYPES):
            values = np.array([shares.get(kind, 0.0) for shares in groups.values()])
            if values.any():
                ax.bar(list(groups), values, bottom=bottom, label=kind, color=colors(i))
                bottom += values
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share of rows")
        ax.set_ylim(0, 1)
        ax.legend(title="token type", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
