"""`nlakit analyze ablation --run RUN`: which paragraph of an explanation the AR reads.

Each explanation is cut into paragraphs — blocks separated by blank lines or, when it
has none, its non-empty lines (a toy-world explanation is "Genre: …", sometimes a
context line, then a line about the final token and what must follow) — and the run's
AR reconstructs every row from each condition's text:

    full            the explanation as written
    without_last    the last paragraph removed ("" for a one-paragraph explanation)
    last_only       only the last paragraph
    replaced_last   the last paragraph swapped for the last paragraph of another row's
                    explanation (donor rows are a seeded derangement)
    without_p{i}    paragraph i removed, for every earlier index i (0 … max paragraphs - 2);
                    rows where paragraph i is absent or is the last one keep their text

Each condition reports its FVE with a bootstrap CI and its FVE drop from `full`, with
a paired bootstrap CI (the same resampled rows for both). The findings say whether
removing the last paragraph costs more than removing any earlier one. Writes
`RUN/eval/ablation/{table.csv, summary.json, plot.png}`.

    from nlakit.eval.ablation import AblationConfig, paragraph_ablation
    summary = paragraph_ablation(AblationConfig(run="runs/demo"))
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from nlakit.config import DEVICE_HELP, DTYPE_HELP, DTYPES, Config, option
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.conditions import (
    condition_analysis,
    condition_figure,
    condition_table,
    text_column,
)
from nlakit.eval.outputs import write_analysis
from nlakit.eval.rows import load_rows
from nlakit.eval.stats import derangement

NAME = directory_of(__name__)  # RUN/eval/ablation/
MAIN_CONDITIONS = ("full", "without_last", "last_only", "replaced_last")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


@dataclass
class AblationConfig(Config):
    """Paragraph ablation of an evaluated run's explanations."""

    run: str = option(help="run directory (after nlakit eval)")
    column: str = option(
        "explanation", "text column of rows.parquet to ablate (e.g. teacher_explanation)"
    )
    seed: int = option(0, "seeds the donor rows of replaced_last and the bootstrap", ge=0)
    bootstrap: int = option(1000, "bootstrap resamples for the confidence intervals", ge=1)
    device: str | None = option(None, DEVICE_HELP)
    dtype: str | None = option(None, DTYPE_HELP, choices=DTYPES)
    progress: bool = option(True, "show progress bars")


def split_paragraphs(text: str) -> tuple[list[str], str]:
    """(paragraphs, separator) of an explanation: blocks between blank lines (separator
    "\\n\\n"), or its non-empty lines ("\\n") when it has no blank line; ([], "\\n") for ""."""
    text = (text or "").strip()
    if not text:
        return [], "\n"
    if _BLANK_LINE.search(text):
        return [p.strip() for p in _BLANK_LINE.split(text) if p.strip()], "\n\n"
    return [line.strip() for line in text.splitlines() if line.strip()], "\n"


def join_paragraphs(paragraphs: list[str], separator: str = "\n") -> str:
    """The text of `paragraphs` (empty ones dropped) joined by `separator`."""
    return separator.join(p for p in paragraphs if p)


def ablated_texts(explanations: list[str], seed: int = 0) -> dict[str, list[str]]:
    """Every condition's text per row (see the module docstring); `full` is the input itself.

    Needs ≥ 2 rows (the donors of `replaced_last` are a derangement)."""
    texts = [t or "" for t in explanations]
    n = len(texts)
    if n < 2:
        raise NLAKitError(f"paragraph ablation needs at least 2 rows, got {n}.")
    split = [split_paragraphs(t) for t in texts]
    donors = derangement(n, seed)

    def last_of(row: int) -> str:
        paragraphs = split[row][0]
        return paragraphs[-1] if paragraphs else ""

    out = {
        "full": texts,
        "without_last": [join_paragraphs(p[:-1], s) for p, s in split],
        "last_only": [last_of(i) for i in range(n)],
        "replaced_last": [
            join_paragraphs([*p[:-1], last_of(donors[i])], s) if p else ""
            for i, (p, s) in enumerate(split)
        ],
    }
    n_max = max(len(p) for p, _ in split)
    for index in range(n_max - 1):
        out[f"without_p{index}"] = [
            join_paragraphs(p[:index] + p[index + 1 :], s) if index < len(p) - 1 else text
            for text, (p, s) in zip(texts, split, strict=True)
        ]
    return out


def paragraph_counts(explanations: list[str]) -> dict:
    """How many rows have each number of paragraphs, the most paragraphs, and the
    number of single-paragraph and empty rows."""
    counts = Counter(len(split_paragraphs(t)[0]) for t in explanations)
    return {
        "rows_by_count": {str(k): counts[k] for k in sorted(counts)},
        "max": max(counts),
        "single_paragraph_rows": counts[1],
        "empty_rows": counts[0],
    }


def paragraph_ablation(config: AblationConfig) -> dict:
    """Score every condition with the run's AR; write and return the summary."""
    rows = load_rows(config.run, device=config.device, dtype=config.dtype)
    texts = ablated_texts(text_column(rows, config.column), config.seed)
    stats, head = condition_analysis(rows, texts, config, "ablation")
    summary = {
        **head,
        "paragraphs": paragraph_counts(texts["full"]),
        "conditions": stats,
        "findings": findings(stats),
    }
    out_dir = rows.paths.analysis_dir(NAME)
    write_analysis(out_dir, condition_table(stats), summary, _figure(stats, summary))
    return summary


def findings(stats: dict) -> dict:
    """The comparisons the ablation is for, from the per-condition stats."""
    drops = {name: s["drop"]["fve_drop"] for name, s in stats.items()}
    earlier = {k: v for k, v in drops.items() if k.startswith("without_p")}
    worst_earlier = max(earlier, key=earlier.get) if earlier else None
    return {
        "drop_without_last": drops["without_last"],
        "largest_earlier_drop": earlier.get(worst_earlier) if worst_earlier else None,
        "largest_earlier_condition": worst_earlier,
        # whether the last paragraph matters more than any earlier one, CIs not overlapping
        "last_costs_more": bool(
            worst_earlier is not None
            and stats["without_last"]["drop"]["ci_low"] > stats[worst_earlier]["drop"]["ci_high"]
        ),
        # over the conditions that change most rows (without_p{i} may change only a few)
        "full_is_best": all(
            stats["full"]["fve"] > s["fve"]
            for name, s in stats.items()
            if name != "full" and s["n_changed"] > s["n"] / 2
        ),
        "drop_replaced_last": drops["replaced_last"],
    }


def _figure(stats: dict, summary: dict):
    labels = [
        f"{k}\n({s['n_changed']} of {s['n']} rows changed)" if 0 < s["n_changed"] < s["n"] else k
        for k, s in stats.items()
    ]
    title = (
        f"Paragraph ablation of {summary['column']} (n = {summary['n']}, "
        f"baseline variance {summary['baseline_variance']:.3f})"
    )
    return condition_figure(stats, title, labels)
