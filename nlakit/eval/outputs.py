"""How every analysis leaves its results: `RUN/eval/NAME/` holding

    table.csv       the analysis's table, one row per group / condition / setting
    summary.json    the headline numbers (FVE always with baseline variance and n)
    plot.png        a titled matplotlib figure with labelled axes

All three are written atomically; `nlakit report` assembles every such directory.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from nlakit.atomic import write_atomic, write_json, write_text

TABLE, SUMMARY, PLOT = "table.csv", "summary.json", "plot.png"


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
    write_text(out_dir / TABLE, csv_text(rows))
    if figure is not None:
        from nlakit.eval.plots import save_figure

        save_figure(figure, out_dir / PLOT)
    write_json(out_dir / SUMMARY, summary)
    return out_dir


def read_summary(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / SUMMARY).read_text())


def write_png(path: Path, data: bytes) -> Path:
    return write_atomic(path, lambda p: p.write_bytes(data))
