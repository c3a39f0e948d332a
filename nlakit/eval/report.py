"""`nlakit report RUN`: every analysis of a run assembled into one self-contained page.

    nlakit report RUN                 # after `nlakit eval --run RUN` (and any analyses)

Reads `RUN/eval/{summary.json,table.csv,plot.png}` (the evaluation) and every
`RUN/eval/NAME/` that holds a `summary.json` (the analyses: those of the registry,
`nlakit/eval/analyses.py`, in its order with its titles, then the others by name). Writes `RUN/eval/report/`:

    report.html     inline CSS, plots embedded as base64 data URIs: no external
                    resources and no JavaScript, so the file can be mailed or archived
    report.md       the same content as Markdown, plots also embedded as data URIs

Every string taken from the data (explanations, tokens, keys) is HTML-escaped in both.
"""

from __future__ import annotations

import base64
import csv
import html
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from nlakit import __version__
from nlakit.atomic import write_text
from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import SECTIONS
from nlakit.eval.outputs import read_summary
from nlakit.eval.runs import resolve_run
from nlakit.store.names import PLOT_FILE, SUMMARY_FILE, TABLE_FILE

MAX_ROWS = 40  # table rows shown per section; the full table stays in table.csv
MAX_CELL = 300  # characters shown per table cell
EVAL_SECTION = "eval"
_MD_CELL = str.maketrans({"|": "&#124;", "\r": " ", "\n": " "})

EVAL_DESCRIPTION = (
    "The run's AV explains held-out activations and its AR reconstructs them. FVE = 1 − mean "
    "error / baseline variance (0 = predicting the mean, 1 = perfect); the controls score the "
    "same AR on explanations that carry no information about the activation."
)


@dataclass
class ReportConfig(Config):
    """The one-page report of a run's analyses."""

    run: str = option(help="run directory (after nlakit eval)")
    out: str | None = option(None, "output directory (default: RUN/eval/report)")
    title: str | None = option(None, 'page title (default: "nlakit report: RUN name")')


@dataclass
class Section:
    """One block of the page; its strings are raw data, escaped when rendered."""

    name: str
    title: str
    description: str
    source: Path
    headline: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    total_rows: int = 0
    plot: bytes | None = None
    numbers: list[tuple[str, str]] = field(default_factory=list)


def fmt(value) -> str:
    """A summary value as text: floats to 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def flatten(data, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts (and lists of dicts) as `a.b.c` → formatted value pairs."""
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list) and any(isinstance(v, dict | list) for v in data):
        items = list(enumerate(data))
    else:
        return [(prefix, fmt(data))]
    out: list[tuple[str, str]] = []
    for key, value in items:
        out += flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def _cell(text: str) -> str:
    """A CSV cell for display: numbers to 4 significant digits, long text cut."""
    try:
        number = float(text)
    except ValueError:
        return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
    is_int = text.strip().lstrip("+-").isdigit()
    return text if is_int or number != number else f"{number:.4g}"


def read_table(path: Path) -> tuple[list[str], list[list[str]], int]:
    """(header, the first MAX_ROWS rows, total number of rows) of a CSV file."""
    if not path.is_file():
        return [], [], 0
    with path.open(newline="", encoding="utf-8") as handle:
        reader = list(csv.reader(handle))
    if not reader:
        return [], [], 0
    header, body = reader[0], reader[1:]
    return header, [[_cell(c) for c in row] for row in body[:MAX_ROWS]], len(body)


def load_section(directory: Path, name: str, title: str, description: str) -> Section:
    """A section from `directory/{summary.json,table.csv,plot.png}`."""
    header, rows, total = read_table(directory / TABLE_FILE)
    plot = directory / PLOT_FILE
    section = Section(name, title, description, directory, "", header, rows, total)
    section.plot = plot.read_bytes() if plot.is_file() else None
    section.numbers = flatten(read_summary(directory))
    return section


def eval_section(eval_dir: Path) -> Section:
    """The evaluation: headline FVE with its CI, baseline variance and n, the controls."""
    section = load_section(eval_dir, EVAL_SECTION, "Evaluation", EVAL_DESCRIPTION)
    summary = read_summary(eval_dir)
    av = summary.get("conditions", {}).get("av", {})
    ci = f" (95% CI {fmt(av['ci_low'])} to {fmt(av['ci_high'])})" if "ci_low" in av else ""
    section.headline = (
        f"FVE {fmt(summary.get('fve'))}{ci} on n = {summary.get('n')} rows; baseline "
        f"variance {fmt(summary.get('baseline_variance'))} "
        f"(from {summary.get('baseline_n')} training rows)."
    )
    # The conditions are the table already; the key numbers list the rest.
    section.numbers = [(k, v) for k, v in section.numbers if not k.startswith("conditions.")]
    return section


def analysis_names(eval_dir: Path) -> list[str]:
    """Analysis directories holding a summary.json: registered ones in the registry's
    order, then the rest by name."""
    found = {p.parent.name for p in eval_dir.glob(f"*/{SUMMARY_FILE}")}
    return [n for n in SECTIONS if n in found] + sorted(found - set(SECTIONS))


def collect_sections(eval_dir: Path) -> list[Section]:
    """The evaluation's section, then one per analysis; unknown names titled from the name."""
    sections = [eval_section(eval_dir)]
    for name in analysis_names(eval_dir):
        known = SECTIONS.get(name)
        title = known.title if known else name.replace("_", " ").capitalize()
        description = known.description if known else ""
        sections.append(load_section(eval_dir / name, name, title, description))
    return sections


def data_uri(png: bytes) -> str:
    """PNG bytes as a `data:` URI for an <img> or a Markdown image."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _row_note(s: Section) -> str:
    return (
        f"Showing {len(s.rows)} of {s.total_rows} rows; the full table is {s.source / TABLE_FILE}."
    )


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
header{border-bottom:2px solid #4C72B0;margin-bottom:1.5em}
header p{color:#555;margin:.2em 0}
section{margin:2.2em 0;padding-top:.5em}
section+section{border-top:1px solid #ddd}
figure{margin:1em 0}
h2{color:#1f3b6e;margin-bottom:.3em}
.headline{font-size:1.15em;font-weight:600;background:#eef3fb;padding:.5em .8em;border-radius:4px}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;font-size:.85em;margin:.8em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top;max-width:28em;
overflow-wrap:anywhere}
th{background:#f3f5f8}
tr:nth-child(even) td{background:#fafafa}
.note{color:#666;font-size:.85em}
img{max-width:100%;height:auto;border:1px solid #eee}
dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1.2em;font-size:.85em}
dt{font-family:ui-monospace,monospace;color:#444}
dd{margin:0;font-family:ui-monospace,monospace;overflow-wrap:anywhere}
"""


def render_html(title: str, meta: list[tuple[str, str]], sections: list[Section]) -> str:
    """The whole page as one HTML document (all data strings escaped)."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{_esc(title)}</h1>",
        *(f"<p><b>{_esc(k)}:</b> {_esc(v)}</p>" for k, v in meta),
        "</header>",
    ]
    for s in sections:
        out.append(f'<section id="{_esc(s.name)}"><h2>{_esc(s.title)}</h2>')
        if s.description:
            out.append(f'<p class="description">{_esc(s.description)}</p>')
        if s.headline:
            out.append(f'<p class="headline">{_esc(s.headline)}</p>')
        if s.header:
            out.append('<div class="table-wrap"><table><thead><tr>')
            out.append("".join(f"<th>{_esc(h)}</th>" for h in s.header) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in s.rows]
            out.append("</tbody></table></div>")
            if s.total_rows > len(s.rows):
                out.append(f'<p class="note">{_esc(_row_note(s))}</p>')
        if s.plot is not None:
            alt = _esc(f"{s.title} plot")
            out.append(f'<figure><img src="{data_uri(s.plot)}" alt="{alt}"></figure>')
        if s.numbers:
            out.append("<h3>Key numbers</h3><dl>")
            out += [f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in s.numbers]
            out.append("</dl>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md(text) -> str:
    """Escape for a Markdown table cell or line: HTML-escaped, no pipes or newlines."""
    return html.escape(str(text), quote=False).translate(_MD_CELL)


def render_markdown(title: str, meta: list[tuple[str, str]], sections: list[Section]) -> str:
    """The same page as Markdown, plots embedded as data URIs."""
    out = [f"# {_md(title)}", ""]
    out += [f"- **{_md(k)}:** {_md(v)}" for k, v in meta]
    for s in sections:
        out += ["", f"## {_md(s.title)}", ""]
        if s.description:
            out += [_md(s.description), ""]
        if s.headline:
            out += [f"**{_md(s.headline)}**", ""]
        if s.header:
            out.append("| " + " | ".join(_md(h) for h in s.header) + " |")
            out.append("|" + "---|" * len(s.header))
            out += ["| " + " | ".join(_md(c) for c in r) + " |" for r in s.rows]
            out.append("")
            if s.total_rows > len(s.rows):
                out += [f"*{_md(_row_note(s))}*", ""]
        if s.plot is not None:
            out += [f"![{_md(s.title)} plot]({data_uri(s.plot)})", ""]
        if s.numbers:
            out += ["Key numbers:", ""]
            out += [f"- {_md(k)}: {_md(v)}" for k, v in s.numbers]
    return "\n".join(out).rstrip() + "\n"


def report(config: ReportConfig) -> dict:
    """Write report.md and report.html; returns their paths and the section names."""
    paths = resolve_run(config.run, need_ar=False)
    if not (paths.eval_dir / SUMMARY_FILE).is_file():
        raise NLAKitError(
            f"{paths.eval_dir / SUMMARY_FILE}: the run has not been evaluated yet; "
            f"run `nlakit eval --run {paths.root}` first, then `nlakit report {paths.root}`."
        )
    sections = collect_sections(paths.eval_dir)
    title = config.title or f"nlakit report: {paths.name}"
    meta = [
        ("Run", str(paths.root)),
        ("Date", datetime.now().strftime("%Y-%m-%d %H:%M")),
        ("nlakit", __version__),
    ]
    out = Path(config.out) if config.out else paths.eval_dir / "report"
    markdown = write_text(out / "report.md", render_markdown(title, meta, sections))
    page = write_text(out / "report.html", render_html(title, meta, sections))
    return {"markdown": str(markdown), "html": str(page), "sections": [s.name for s in sections]}
