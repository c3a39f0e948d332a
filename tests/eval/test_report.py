"""`nlakit report`: sections, order, escaping, embedded images, the missing-eval error.

The run is a fake `RUN/eval` tree written with `write_analysis` and real matplotlib
figures (no model is trained), built once for the module: a few seconds in all.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.outputs import write_analysis
from nlakit.eval.report import ReportConfig, flatten, fmt, report

SCRIPT = "<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _eval_figure():
    from nlakit.eval.plots import bar_with_ci

    return bar_with_ci("FVE of the AV", ["AV", "shuffled"], [0.5, -0.9], [0.4, -1.0], [0.6, -0.8])


def _line_figure(title: str):
    from nlakit.eval.plots import figure

    fig, ax = figure(title, "mean tokens", "FVE")
    ax.plot([10, 20, 40], [0.1, 0.3, 0.4], marker="o", label="own AR")
    ax.legend(loc="best")
    return fig


def build_fake_run(root: Path) -> list:
    """A run with an eval and five analyses (written in scrambled order); returns the figures."""
    eval_dir = root / "eval"
    figures = [_eval_figure(), _line_figure("by token type"), _line_figure("ablation")]
    figures += [_line_figure("truth"), _line_figure("custom analysis")]
    conditions = {
        "av": {"fve": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 10, "baseline_variance": 0.95},
        "shuffled": {"fve": -0.9, "ci_low": -1.0, "ci_high": -0.8, "n": 10},
    }
    write_analysis(
        eval_dir,
        [{"condition": k, **v} for k, v in conditions.items()],
        {
            "fve": 0.5,
            "n": 10,
            "baseline_variance": 0.952480554,
            "baseline_n": 1234,
            "sampling": {"temperature": 1.0, "max_new_tokens": 200},
            "conditions": conditions,
        },
        figures[0],
    )
    write_analysis(
        eval_dir / "zz_custom",
        [{"k": 1}],
        {"score": 0.123456789, "nested": {"a": [1, 2]}},
        figures[4],
    )
    write_analysis(eval_dir / "truth", [{"field": "genre", "correct": 0.9}], {"n": 5}, figures[3])
    ablation_rows = [{"paragraph": i, "fve": 0.5 - i / 100} for i in range(55)]
    write_analysis(eval_dir / "ablation", ablation_rows, {"n": 55, "fve": 0.5}, figures[2])
    token_rows = [
        {"token_type": "word-start", "explanation": SCRIPT, "fve": 0.25},
        {"token_type": "a|b", "explanation": "line one\nline two", "fve": -0.125},
    ]
    write_analysis(eval_dir / "token_types", token_rows, {"fve": {SCRIPT: 0.3}}, figures[1])
    (eval_dir / "notes").mkdir()  # no summary.json: not an analysis
    (eval_dir / "notes" / "table.csv").write_text("x\n1\n")
    return figures


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> tuple[Path, list]:
    run = tmp_path_factory.mktemp("report") / "run"
    return run, build_fake_run(run)


@pytest.fixture(scope="module")
def built(fake_run) -> tuple[dict, str, str]:
    result = report(ReportConfig(run=str(fake_run[0])))
    return result, Path(result["html"]).read_text(), Path(result["markdown"]).read_text()


def _section(page: str, name: str) -> str:
    return re.search(rf'<section id="{name}">(.*?)</section>', page, re.S).group(1)


def test_every_figure_has_title_labelled_axes_and_legend(fake_run):
    _, figures = fake_run
    assert len(figures) == 5
    for fig in figures:
        (ax,) = fig.axes
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        assert ax.get_legend() is not None and ax.get_legend().get_texts()


def test_sections_known_names_first_then_unknown(built, fake_run):
    result, page, markdown = built
    assert result["sections"] == ["eval", "token_types", "ablation", "truth", "zz_custom"]
    titles = ["Evaluation", "Error by token type", "Paragraph ablation", "Truth on the toy world"]
    titles.append("Zz custom")
    h2 = re.findall(r"<h2>(.*?)</h2>", page)
    assert h2 == titles
    assert re.findall(r"^## (.*)$", markdown, re.M) == titles
    assert 'id="notes"' not in page
    assert Path(result["html"]) == fake_run[0] / "eval" / "report" / "report.html"
    assert Path(result["markdown"]).parent == fake_run[0] / "eval" / "report"


def test_header_names_run_date_and_version(built, fake_run):
    from nlakit import __version__

    _, page, markdown = built
    for text in (page, markdown):
        assert str(fake_run[0]) in text
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", text)
        assert __version__ in text


def test_data_strings_are_escaped(built):
    _, page, markdown = built
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in _section(page, "token_types")
    assert "<script" not in page.lower()
    assert "<script" not in markdown.lower()
    # A key from summary.json is escaped as well as a table cell.
    assert "fve.&lt;script&gt;" in page
    # Markdown table rows keep their column count despite a pipe and a newline in cells.
    rows = [
        line
        for line in markdown.splitlines()
        if line.startswith("| word-start") or "a&#124;b" in line
    ]
    assert len(rows) == 2
    assert all(line.count(" | ") == 2 for line in rows)


def test_plots_embedded_as_data_uris(built):
    _, page, markdown = built
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 5
    assert all(base64.b64decode(u).startswith(PNG_MAGIC) for u in uris)
    assert len(re.findall(r"\]\(data:image/png;base64,", markdown)) == 5
    # Self-contained: no link, script or stylesheet pointing elsewhere.
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "http://" not in page and "https://" not in page


def test_eval_section_headline_and_numbers(built):
    _, page, _ = built
    section = _section(page, "eval")
    headline = re.search(r'<p class="headline">(.*?)</p>', section).group(1)
    assert "FVE 0.5" in headline and "0.4 to 0.6" in headline
    assert "n = 10" in headline and "0.9525" in headline and "1234" in headline
    assert "<dt>sampling.max_new_tokens</dt><dd>200</dd>" in section
    assert "conditions.av" not in section  # the conditions are the table
    assert section.count("<tr>") == 1 + 2  # header + av + shuffled


def test_table_capped_at_40_rows(built):
    _, page, markdown = built
    section = _section(page, "ablation")
    assert section.count("<tr>") == 1 + 40
    assert "Showing 40 of 55 rows" in section
    assert "Showing 40 of 55 rows" in markdown


def test_summary_flattened_and_rounded(built):
    _, page, _ = built
    section = _section(page, "zz_custom")
    assert "<dt>score</dt><dd>0.1235</dd>" in section
    assert "<dt>nested.a</dt><dd>[1, 2]</dd>" in section


def test_custom_out_and_title(fake_run, tmp_path):
    out = tmp_path / "elsewhere"
    result = report(ReportConfig(run=str(fake_run[0]), out=str(out), title="My <b>run</b>"))
    page = Path(result["html"]).read_text()
    assert Path(result["html"]).parent == out
    assert "<h1>My &lt;b&gt;run&lt;/b&gt;</h1>" in page


def test_run_without_eval_says_to_run_eval(tmp_path):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    with pytest.raises(NLAKitError, match=r"nlakit eval --run .*run"):
        report(ReportConfig(run=str(run)))
    with pytest.raises(NLAKitError, match="no such run directory"):
        report(ReportConfig(run=str(tmp_path / "missing")))


def test_fmt_and_flatten():
    assert fmt(0.123456789) == "0.1235"
    assert fmt(12345.678) == "1.235e+04"
    assert fmt(3) == "3" and fmt(True) == "True" and fmt(None) == "None"
    assert fmt([0.5, 1 / 3]) == "[0.5, 0.3333]"
    assert flatten({"a": {"b": 1.0, "c": [{"d": 2}]}, "e": "x"}) == [
        ("a.b", "1"),
        ("a.c.0.d", "2"),
        ("e", "x"),
    ]
