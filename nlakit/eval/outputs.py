"""How every analysis leaves its results: `RUN/eval/NAME/` holding

    table.csv       the analysis's table, one row per group / condition / setting
    summary.json    the headline numbers (FVE always with baseline variance and n)
    plot.png        a titled matplotlib figure with labelled axes

All three are written atomically; `nlakit report` assembles every such directory.
The figure is rendered by `plots.figure_png`; this module only writes files.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from nlakit.atomic import write_bytes, write_json, write_text
from nlakit.eval.plots import figure_png
from nlakit.store.names import PLOT_FILE, SUMMARY_FILE, TABLE_FILE
from nlakit.store.readers import read_json


def csv_text(rows: list[dict]) -> str:
    """Rows of dicts as CSV (columns in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buffer.getvalue()


def _cell(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def write_analysis(out_dir: Path, rows: list[dict], summary: dict, figure=None) -> Path:
    """Write `table.csv`, `summary.json` and (with a figure) `plot.png` to `out_dir`."""
    out_dir = Path(out_dir)
    write_text(out_dir / TABLE_FILE, csv_text(rows))
    if figure is not None:
        write_bytes(out_dir / PLOT_FILE, figure_png(figure))
    write_json(out_dir / SUMMARY_FILE, summary)
    return out_dir


def read_summary(out_dir: Path) -> dict:
    """The `summary.json` of an analysis directory; an NLAKitError when it is unreadable."""
    return read_json(
        Path(out_dir) / SUMMARY_FILE, what="an analysis summary", fix="Re-run its analysis."
    )
