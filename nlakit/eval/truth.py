"""`nlakit analyze truth --run RUN`: are the claims of the explanations true? (toy world)

Every explanation is scored against the row's latent record with
`nlakit.toyworld.truth.score_claims`: per field (genre, topic, entity, role,
continuation) the claim is `correct`, `wrong` or `absent`. Reported per condition:

    full, without_last, last_only, replaced_last
        the explanations and the paragraph-ablation texts of `nlakit.eval.ablation`
        (same seed, same donor rows), so truth can be set beside reconstruction
    lambda=λ
        the explanations of a length sweep, one condition per
        `RUN/eval/length_sweep/rows_lambda_{λ:g}.parquet` that exists

with, per field, the share of rows whose claim is correct / wrong / absent, and overall
the share of stated claims that are true, correct / (correct + wrong), pooled over the
fields. `score_claims` reads the first line as the genre line and the last line as the
final-token line; the `last_only` text (the final-token line alone) is scored as a last
line. Writes `RUN/eval/truth/{table.csv, summary.json, plot.png}`; needs a toy-world run.

    from nlakit.eval.truth import TruthConfig, truth_analysis
    summary = truth_analysis(TruthConfig(run="runs/demo"))
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.eval.ablation import MAIN_CONDITIONS, ablated_texts
from nlakit.eval.analyses import REGISTRY, directory_of
from nlakit.eval.conditions import text_column
from nlakit.eval.outputs import write_analysis
from nlakit.eval.plots import pyplot
from nlakit.eval.rows import load_rows
from nlakit.store.readers import read_parquet
from nlakit.toyworld.truth import FIELDS, score_claims, truth_rates

NAME = directory_of(__name__)  # RUN/eval/truth/
VERDICTS = ("correct", "wrong", "absent")
SWEEP_DIR = REGISTRY["length"].out_dir  # where the length sweep writes its rows
_SWEEP_FILE = re.compile(r"^rows_lambda_(.+)\.parquet$")
# A first line that states nothing, so that a lone final-token line is read as a last line.
_NO_CLAIM_LINE = "-"


@dataclass
class TruthConfig(Config):
    """How often a toy-world run's explanations state the true latents."""

    run: str = option(help="run directory (after nlakit eval; a toy-world run)")
    column: str = option("explanation", "text column of rows.parquet to score")
    seed: int = option(
        0, "seeds the donor rows of replaced_last (as in the ablation analysis)", ge=0
    )
    progress: bool = option(True, "show progress bars")


def claims_summary(texts: list[str], records: list[dict], last_line_only: bool = False) -> dict:
    """Truth of `texts` against `records`: n, per field the correct / wrong / absent
    shares, and the pooled share of stated claims that are true (None when none is
    stated). `last_line_only`: each text is a final-token line alone."""
    scores = [
        score_claims(f"{_NO_CLAIM_LINE}\n{t}" if last_line_only and t else t, r)
        for t, r in zip(texts, records, strict=True)
    ]
    counts = {v: sum(s[f] == v for s in scores for f in FIELDS) for v in VERDICTS}
    stated = counts["correct"] + counts["wrong"]
    return {
        "n": len(scores),
        "fields": truth_rates(scores),
        "stated_claims": stated,
        "stated_true_share": counts["correct"] / stated if stated else None,
    }


def sweep_files(paths) -> list[tuple[float, Path]]:
    """(λ, file) of every length-sweep rows file of the run, by increasing λ."""
    directory = paths.analysis_dir(SWEEP_DIR)
    found = []
    for path in sorted(directory.glob("rows_lambda_*.parquet")):
        match = _SWEEP_FILE.match(path.name)
        try:
            found.append((float(match.group(1)), path))
        except (AttributeError, ValueError):
            continue  # not a file the sweep writes
    return sorted(found)


def sweep_conditions(paths) -> dict[str, tuple[list[str], list[dict]]]:
    """{"lambda=λ": (explanations, records)} from the run's length sweep, if any."""
    out = {}
    for lam, path in sweep_files(paths):
        table = read_parquet(
            path,
            ["explanation", "record"],
            what="a length-sweep rows file with explanation and record columns",
            fix="Re-run the length sweep on a toy-world run.",
        )
        texts = [t or "" for t in table["explanation"].to_pylist()]
        records = [json.loads(r) for r in table["record"].to_pylist()]
        out[f"lambda={lam:g}"] = (texts, records)
    return out


def truth_analysis(config: TruthConfig) -> dict:
    """Score the claims of every condition; write and return the summary."""
    rows = load_rows(config.run)
    if "record" not in rows.columns:
        raise NLAKitError(
            f"{rows.paths.rows}: no latent records (no record column); the truth analysis "
            "scores claims against the toy world's latents, so it needs a toy-world run "
            "(`nlakit demo`) evaluated with `nlakit eval`."
        )
    records = rows.records()
    texts = ablated_texts(text_column(rows, config.column), config.seed)
    conditions = {name: (texts[name], records) for name in MAIN_CONDITIONS}
    conditions.update(sweep_conditions(rows.paths))
    results = {}
    bar = tqdm(conditions.items(), desc="truth", unit="condition", disable=not config.progress)
    for name, (condition_texts, condition_records) in bar:
        results[name] = claims_summary(
            condition_texts, condition_records, last_line_only=name == "last_only"
        )
    summary = {
        "run": str(rows.paths.root),
        "column": config.column,
        "n": len(rows),
        "seed": config.seed,
        "fields": list(FIELDS),
        "conditions": results,
    }
    table = [
        {
            "condition": name,
            "field": field,
            **result["fields"][field],
            "n": result["n"],
            "field_stated_true_share": _true_share(result["fields"][field]),
            "stated_true_share": result["stated_true_share"],
        }
        for name, result in results.items()
        for field in FIELDS
    ]
    write_analysis(rows.paths.analysis_dir(NAME), table, summary, _figure(results, summary))
    return summary


def _true_share(rates: dict) -> float | None:
    """correct / (correct + wrong) of one field's rates; None when nothing is stated."""
    stated = rates["correct"] + rates["wrong"]
    return rates["correct"] / stated if stated else None


def _figure(results: dict, summary: dict):
    """One panel per condition: per field, stacked shares of correct / wrong / absent."""
    plt = pyplot()
    names = list(results)
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols + 1, 3.2 * nrows + 0.8), dpi=110, sharey=True
    )
    axes = [axes] if len(names) == 1 else list(getattr(axes, "flat", axes))
    colours = {"correct": "#55A868", "wrong": "#C44E52", "absent": "#BBBBBB"}
    for ax, name in zip(axes, names, strict=False):
        bottom = [0.0] * len(FIELDS)
        for verdict in VERDICTS:
            shares = [results[name]["fields"][f][verdict] for f in FIELDS]
            ax.bar(FIELDS, shares, bottom=bottom, color=colours[verdict], label=verdict)
            bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
        true_share = results[name]["stated_true_share"]
        ax.set_title(f"{name} (stated true {true_share:.2f})" if true_share is not None else name)
        ax.set_xlabel("field")
        ax.set_ylabel("share of rows")
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", labelrotation=30)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Truth of the claims of {summary['column']} (n = {summary['n']})")
    return fig
