"""`nlakit report` in a real browser: headless Chromium (through Playwright) opens
report.html, takes a full-page screenshot and checks from the DOM that every plot
loaded and every section has a title.

The `browser` fixture (tests/conftest.py) skips, saying why, without Playwright or chromium.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_report import build_fake_run

from nlakit.eval.report import ReportConfig, report

# What the checks read from the page. An image "renders" when it decodes and paints: the
# share of opaque pixels (matplotlib draws an opaque white background) — naturalWidth
# alone comes from the PNG header and is > 0 even for a truncated file.
DOM_PROBE = """async () => ({
    images: await Promise.all([...document.images].map(async img => {
        try { await img.decode(); } catch (e) { return {width: 0, painted: 0}; }
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const context = canvas.getContext('2d');
        context.drawImage(img, 0, 0);
        const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
        let opaque = 0;
        for (let k = 3; k < pixels.length; k += 4) if (pixels[k] > 0) opaque++;
        return {width: img.naturalWidth, painted: opaque / (pixels.length / 4)};
    })),
    sections: [...document.querySelectorAll('section')].map(s => ({
        id: s.id, title: (s.querySelector('h2') || {}).innerText || ''})),
    scripts: document.scripts.length,
    height: document.documentElement.scrollHeight,
})"""


def open_report(browser, html: str, screenshot: Path) -> dict:
    """Load the page, screenshot it, and read what the checks need from the DOM."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    outside: list[str] = []
    page.on(
        "request",
        lambda r: outside.append(r.url) if r.url.split(":")[0] not in ("file", "data") else None,
    )
    start = time.perf_counter()
    page.goto(Path(html).resolve().as_uri(), wait_until="load")
    seconds = time.perf_counter() - start
    page.screenshot(path=str(screenshot), full_page=True)
    dom = page.evaluate(DOM_PROBE)
    page.close()
    return {**dom, "outside": outside, "seconds": seconds}


def test_report_renders_in_chromium(browser, tmp_path):
    run = tmp_path / "run"
    build_fake_run(run)
    result = report(ReportConfig(run=str(run)))
    shot = tmp_path / "report.png"
    dom = open_report(browser, result["html"], shot)
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert shot.stat().st_size > 20_000  # a full page of tables and plots, not a blank frame
    assert len(dom["images"]) == 5
    assert all(i["width"] > 0 and i["painted"] > 0.999 for i in dom["images"]), dom["images"]
    assert [s["id"] for s in dom["sections"]] == result["sections"]
    assert all(s["title"].strip() for s in dom["sections"])
    assert dom["scripts"] == 0  # the <script> in the data stayed text
    assert dom["outside"] == []  # self-contained: nothing fetched beyond the file
    assert dom["height"] > 2000


@pytest.mark.slow
def test_report_of_the_demo_run_renders_quickly(browser, demo_eval_run, tmp_path):
    # The analyses that other slow tests ran on the shared demo run are in the report too.
    result = report(ReportConfig(run=str(demo_eval_run)))
    assert result["sections"][0] == "eval"
    dom = open_report(browser, result["html"], tmp_path / "demo_report.png")
    assert dom["seconds"] < 5
    assert dom["sections"][0]["title"] == "Evaluation"
    assert all(s["title"].strip() for s in dom["sections"])
    assert len(dom["images"]) == len(result["sections"])  # one plot per section
    assert all(i["width"] > 0 and i["painted"] > 0.999 for i in dom["images"])
    assert dom["outside"] == []
