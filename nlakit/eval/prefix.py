"""`nlakit analyze prefix --run RUN`: the prefix curve — how much of the activation the
first k tokens of each explanation carry.

Each row's explanation is cut to its first k tokens (`nlakit.generation.prefix_text`:
token boundaries of the AR's tokenizer, the text between the tags, so the AR reads a
cut explanation as it reads a short one) and re-scored, for every k of `--ks` (default
4 8 16 32) and the whole explanation. By default the scorer is the run's AR; `--ar`
names another (a common AR, to compare runs). Per k:

    FVE with its 95% bootstrap CI, and the paired drop from the whole explanation
    share_of_whole   FVE(k) / FVE(whole): how front-loaded the explanations are
    mean_tokens      tokens actually kept (an explanation shorter than k is kept whole)
    true_FIELD, absent_FIELD   (toy world) the share of rows stating each claim
                     correctly / not at all within the first k tokens

Writes `RUN/eval/prefix/{table.csv, summary.json, plot.png}` and, per k, the viewer's
input `rows_k{k}.parquet` (doc_id, position, the prefix as `explanation`, its mse_nrm,
tokens kept, the toy world's record), so the prefixes show as columns beside the run:

    nlakit view RUN RUN/eval/prefix/rows_k8.parquet RUN/eval/prefix/rows_k16.parquet

    from nlakit.eval.prefix import PrefixConfig, prefix_curve
    summary = prefix_curve(PrefixConfig(run="runs/demo"))
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from nlakit.atomic import write_parquet
from nlakit.config import DEVICE_HELP, DTYPE_HELP, DTYPES, Config, ConfigError, option
from nlakit.eval.analyses import directory_of
from nlakit.eval.conditions import (
    condition_head,
    condition_stats,
    score_conditions,
    text_column,
)
from nlakit.eval.outputs import write_analysis
from nlakit.eval.plots import figure
from nlakit.eval.rows import load_rows
from nlakit.eval.truth import claims_summary
from nlakit.generation import prefix_texts
from nlakit.models import ActivationReconstructor

NAME = directory_of(__name__)  # RUN/eval/prefix/
ALL = "all"  # the condition of the whole explanation
DEFAULT_KS = "4 8 16 32"


def parse_ks(text: str) -> list[int]:
    """The prefix lengths of a space-separated string: distinct integers ≥ 1, sorted."""
    try:
        ks = [int(x) for x in text.split()]
    except ValueError:
        ks = []
    if not ks or any(k < 1 for k in ks) or len(set(ks)) != len(ks):
        raise ConfigError(
            f"ks: expected distinct whole numbers ≥ 1 (prefix lengths in tokens), got "
            f"{text!r}; e.g. --ks '{DEFAULT_KS}'."
        )
    return sorted(ks)


@dataclass
class PrefixConfig(Config):
    """FVE and truth from the first k tokens of an evaluated run's explanations."""

    run: str = option(help="run directory (after nlakit eval)")
    ks: str = option(DEFAULT_KS, "prefix lengths in tokens, space-separated")
    ar: str | None = option(None, "AR that scores every prefix (default: the run's AR)")
    column: str = option("explanation", "text column of rows.parquet to cut")
    seed: int = option(0, "seeds the bootstrap", ge=0)
    bootstrap: int = option(1000, "bootstrap resamples for the confidence intervals", ge=1)
    device: str | None = option(None, DEVICE_HELP)
    dtype: str | None = option(None, DTYPE_HELP, choices=DTYPES)
    progress: bool = option(True, "show progress bars")

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_ks(self.ks)


def condition(k: int | None) -> str:
    """The name of prefix length k's condition (None: the whole explanation)."""
    return ALL if k is None else f"k{k}"


def cut_texts(tokenizer, texts: list[str], ks: list[int]) -> dict[str, list[str]]:
    """{condition: texts}: the whole explanations first, then their first k tokens per k."""
    out = {ALL: texts}
    for k in ks:
        out[condition(k)] = prefix_texts(tokenizer, texts, [k] * len(texts))
    return out


def kept_tokens(lengths: list[int], k: int | None) -> float:
    """Mean tokens kept of texts `lengths` tokens long, within the first k (None: all)."""
    return sum(n if k is None else min(n, k) for n in lengths) / max(len(lengths), 1)


def curve_rows(stats: dict, ks: list[int], truth: dict, tokens: dict) -> list[dict]:
    """One row per k, then the whole explanation: FVE, CI, drop, share of the whole's
    FVE, tokens kept and (toy world) the truth per field."""
    whole = stats[ALL]["fve"]
    rows = []
    for k in [*ks, None]:
        name = condition(k)
        s = stats[name]
        row = {
            "k": k if k is not None else ALL,
            "fve": s["fve"],
            "ci_low": s["ci_low"],
            "ci_high": s["ci_high"],
            "fve_drop": s["drop"]["fve_drop"],
            "drop_ci_low": s["drop"]["ci_low"],
            "drop_ci_high": s["drop"]["ci_high"],
            "share_of_whole": s["fve"] / whole if whole > 0 else None,
            "mean_tokens": tokens[name],
            "n": s["n"],
        }
        for field, rates in truth.get(name, {}).items():
            row[f"true_{field}"] = rates["correct"]
            row[f"absent_{field}"] = rates["absent"]
        rows.append(row)
    return rows


def prefix_curve(config: PrefixConfig) -> dict:
    """Score every prefix length; write and return the summary."""
    ks = parse_ks(config.ks)
    rows = load_rows(config.run, device=config.device, dtype=config.dtype)
    if config.ar:
        rows._ar = ActivationReconstructor.from_pretrained(
            config.ar, device=config.device, dtype=config.dtype
        ).eval()
    tokenizer = rows.ar.tokenizer
    texts = cut_texts(tokenizer, text_column(rows, config.column), ks)
    errors, changed = score_conditions(rows, texts, config.progress, "prefix")
    stats = condition_stats(errors, changed, rows.baseline, config.bootstrap, config.seed)
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts[ALL]]
    tokens = {condition(k): kept_tokens(lengths, k) for k in [*ks, None]}
    truth = {}
    if "record" in rows.columns:
        records = rows.records()
        truth = {name: claims_summary(t, records)["fields"] for name, t in texts.items()}
    table = curve_rows(stats, ks, truth, tokens)
    summary = {
        **condition_head(rows, config),
        "scorer": config.ar or str(rows.paths.ar),
        "ks": ks,
        "curve": table,
        "fve_whole": stats[ALL]["fve"],
        **{f"fve_k{k}": stats[condition(k)]["fve"] for k in ks},
    }
    out_dir = rows.paths.analysis_dir(NAME)
    for k in ks:
        name = condition(k)
        table_k = viewer_rows(rows, texts[name], errors[name], [min(n, k) for n in lengths])
        write_parquet(out_dir / f"rows_{name}.parquet", table_k)
    write_analysis(out_dir, table, summary, _figure(table, summary))
    return summary


def viewer_rows(rows, texts: list[str], errors, kept: list[int]) -> pa.Table:
    """One prefix length's per-row table in the viewer's layout (`nlakit.viewer.inputs`)."""
    columns = {
        "doc_id": rows.columns["doc_id"],
        "position": rows.columns["position"],
        "explanation": texts,
        "mse_nrm": errors.tolist(),
        "n_tokens": kept,
    }
    for name in ("token", "context", "record"):
        if name in rows.columns:
            columns[name] = rows.columns[name]
    return pa.table(columns)


def _figure(table: list[dict], summary: dict):
    fig, ax = figure(
        f"Prefix curve: FVE from the first k tokens (n = {summary['n']}, "
        f"baseline variance {summary['baseline_variance']:.3f})",
        "tokens kept (mean)",
        "FVE",
    )
    x = [r["mean_tokens"] for r in table]
    y = [r["fve"] for r in table]
    ax.fill_between(x, [r["ci_low"] for r in table], [r["ci_high"] for r in table], alpha=0.2)
    ax.plot(x, y, "o-", label="FVE (95% bootstrap CI)")
    for r in table:
        ax.annotate(f"k={r['k']}", (r["mean_tokens"], r["fve"]), xytext=(3, -12),
                    textcoords="offset points")  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend(loc="lower right")
    return fig


def prefix_agreement(tokenizer, before: list[str], after: list[str]) -> dict:
    """How far each `after` text keeps its `before` text as its opening: per row the
    longest common token prefix over the length of `before`; the mean over rows whose
    `before` is not empty, and the share of those rows that keep all of it."""
    shares = []
    for a, b in zip(before, after, strict=True):
        first = tokenizer(a, add_special_tokens=False)["input_ids"]
        second = tokenizer(b, add_special_tokens=False)["input_ids"]
        if not first:
            continue
        common = next(
            (i for i, (x, y) in enumerate(zip(first, second, strict=False)) if x != y),
            min(len(first), len(second)),
        )
        shares.append(common / len(first))
    n = len(shares)
    return {
        "mean": sum(shares) / n if n else None,
        "kept_whole": sum(s == 1.0 for s in shares) / n if n else None,
        "n": n,
    }
