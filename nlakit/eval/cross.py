"""The AV × AR cross table: each run's AV explanations scored by each run's AR.

A co-trained AR learns to read its own AV's idiom, which flatters that AV; scoring
every AV with every AR on the same rows separates "the words carry the vector"
from "this AR reads this AV".

    nlakit eval --run RUN_A --run RUN_B        # evaluates both, then the cross table

Writes `RUN_A/eval/cross/` (table.csv, summary.json, plot.png: a heat map).
"""

from __future__ import annotations

import os

import torch

from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.outputs import write_analysis
from nlakit.eval.plots import figure
from nlakit.eval.rows import EvalRows, load_rows
from nlakit.eval.stats import fve_summary

NAME = directory_of(__name__)  # RUN_A/eval/cross/


def check_same_rows(a: EvalRows, b: EvalRows) -> None:
    """Both runs must have evaluated the same activations, in the same order."""
    keys_a = list(zip(a.columns["doc_id"], a.columns["position"], strict=True))
    keys_b = list(zip(b.columns["doc_id"], b.columns["position"], strict=True))
    if keys_a != keys_b or not torch.equal(a.vectors, b.vectors):
        raise NLAKitError(
            f"{a.paths.rows} and {b.paths.rows} hold different rows; evaluate both runs on "
            "the same --data with the same --n."
        )


def cross_table(
    runs: list[str | os.PathLike],
    bootstrap: int = 1000,
    seed: int = 0,
    device: str | None = None,
    dtype: str | None = None,
) -> dict:
    """FVE of AV i's explanations reconstructed by AR j, for every pair of runs."""
    if len(runs) < 2:
        raise NLAKitError("the cross table needs at least two runs")
    tables = [load_rows(run, device, dtype) for run in runs]
    for other in tables[1:]:
        check_same_rows(tables[0], other)
    names = _names(tables)
    rows, matrix = [], []
    for j, reader in enumerate(tables):  # one AR in memory at a time
        column = []
        for i, writer in enumerate(tables):
            errors = reader.score(writer.explanations)
            stats = fve_summary(errors, tables[0].baseline, bootstrap, seed)
            rows.append({"av": names[i], "ar": names[j], **stats})
            column.append(stats["fve"])
        matrix.append(column)
        reader._ar = None
    fve = [[matrix[j][i] for j in range(len(tables))] for i in range(len(tables))]
    summary = {
        "runs": [str(t.paths.root) for t in tables],
        "names": names,
        "fve": fve,  # fve[i][j]: AV of run i, AR of run j
        "n": len(tables[0]),
        "baseline_variance": tables[0].baseline.variance,
        "baseline_n": tables[0].baseline.n,
    }
    write_analysis(tables[0].paths.analysis_dir(NAME), rows, summary, _figure(summary))
    return summary


def _names(tables: list[EvalRows]) -> list[str]:
    names = [t.paths.name for t in tables]
    if len(set(names)) < len(names):
        names = [str(t.paths.root) for t in tables]
    return names


def _figure(summary: dict):
    names, fve = summary["names"], summary["fve"]
    fig, ax = figure(f"AV × AR cross table: FVE (n = {summary['n']})", "AR (reader)", "AV (writer)")
    ax.grid(False)
    image = ax.imshow(fve, cmap="viridis")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    for i, row in enumerate(fve):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:+.3f}", ha="center", va="center", color="white")
    fig.colorbar(image, ax=ax, label="FVE")
    return fig


def print_cross(summary: dict) -> None:
    names = summary["names"]
    width = max(len(n) for n in names) + 2
    print(f"\nAV × AR cross table (FVE, n = {summary['n']}; rows: AV, columns: AR)")
    print(" " * width + "".join(f"{n:>{width}}" for n in names))
    for name, row in zip(names, summary["fve"], strict=True):
        print(f"{name:<{width}}" + "".join(f"{v:>+{width}.3f}" for v in row))
