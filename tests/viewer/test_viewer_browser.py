"""The viewer in headless Chromium: the panel, keys, every filter, the export, runs side by
side, script injection, and the time to load 40,000 rows and to apply a filter.

The `browser` fixture (tests/conftest.py) skips, saying why, without Playwright or chromium.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from viewer_tables import TRUE_EXPLANATION, rows_columns, write_run

from nlakit.viewer.export import export_document
from nlakit.viewer.inputs import read_inputs
from nlakit.viewer.payload import build_payload
from nlakit.viewer.view import ViewConfig, build_viewer, start_server

# Time from asking a control to change until the list is painted again (ms).
APPLY = """async ([selector, value, event]) => {
    const t = performance.now();
    const control = document.querySelector(selector);
    control.value = value;
    control.dispatchEvent(new Event(event));
    await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
    return performance.now() - t;
}"""
SHOWN = "() => window.nlakitViewer.order()"  # rows matching the filters, in display order


def open_page(browser, url: str, viewport=(1400, 1000)):
    """The page loaded and ready; what it requested outside the file and what it logged."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.outside, page.problems, page.dialogs = [], [], []
    page.on("request", lambda r: page.outside.append(r.url) if not r.url.startswith(url) else None)
    page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    start = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector("body[data-ready]", timeout=30_000)
    page.ready_seconds = time.perf_counter() - start
    return page


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs over the same 60 tokens (toy-world records); the second explains only 50."""
    root = tmp_path_factory.mktemp("viewer")
    a = rows_columns(n_docs=20, per_doc=3, seed=11, records=True)
    a["teacher_explanation"] = [f"The teacher's view of token {i}." for i in range(60)]
    a["teacher_mse_nrm"] = [0.5] * 60
    b = {k: v[:50] for k, v in rows_columns(n_docs=20, per_doc=3, seed=11, records=True).items()}
    b["explanation"] = ["Unclear.\nNothing to say about it."] * 50
    b["mse_nrm"] = [m * 0.5 for m in b["mse_nrm"]]
    runs = [str(write_run(root / "lam0", a)), str(write_run(root / "lam1", b))]
    result = build_viewer(ViewConfig(runs=runs, out=str(root / "view")))
    return {"page": Path(result["page"]), "payload": build_payload(read_inputs(runs)), "cols": a}


def test_click_a_token_and_read_the_panel(browser, two_runs, tmp_path):
    page = open_page(browser, two_runs["page"].as_uri())
    payload, cols = two_runs["payload"], two_runs["cols"]
    row = next(i for i, e in enumerate(cols["explanation"]) if e == TRUE_EXPLANATION)
    page.click(f'#list .tok[data-row="{row}"]')
    panel = page.inner_text("#panel")
    assert json.dumps(cols["token"][row]) in panel
    assert TRUE_EXPLANATION.splitlines()[0] in panel and "Nothing to say about it." in panel
    assert f"mse_nrm {cols['mse_nrm'][row]:.3f}" in panel
    assert f"mse_nrm {cols['mse_nrm'][row] * 0.5:.3f}" in panel  # the second run, side by side
    assert (
        f"cos {cols['cos'][row]:.3f}" in panel and f"length {cols['n_tokens'][row]} tokens" in panel
    )
    assert payload["types"][payload["rows"]["type"][row]] in panel
    assert f"The teacher's view of token {row}." in panel
    verdicts = page.eval_on_selector_all(
        "#panel table.truth tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
    )
    assert verdicts[1:6] == [
        ["genre", "poem", "true", "absent"],
        ["topic", "love", "true", "absent"],
        ["entity", "Owen Pike", "true", "absent"],
        ["role", "verse", "true", "absent"],
        ["continuation", "word", "true", "absent"],
    ]
    wrong = next(i for i, e in enumerate(cols["explanation"]) if e != TRUE_EXPLANATION)
    page.click(f'#list .tok[data-row="{wrong}"]')
    assert "false" in page.inner_text("#panel table.truth")
    page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
    assert (tmp_path / "viewer.png").stat().st_size > 30_000
    assert page.outside == [] and page.problems == []
    page.close()


def test_a_released_datasets_table_shows_its_ids_and_record(browser, tmp_path):
    """String doc ids and a record that is not the toy world's: the ids head the
    documents, the record is listed key by key, and no claims are judged."""
    cols = rows_columns(
        n_docs=2, per_doc=2, seed=13, doc_id_format="HuggingFaceFW/fineweb:train:{}"
    )
    cols["record"] = [json.dumps({"label": "x", "score": k}) for k in range(4)]
    run = write_run(tmp_path / "release", cols)
    result = build_viewer(ViewConfig(runs=[str(run)], out=str(tmp_path / "view")))
    page = open_page(browser, Path(result["page"]).as_uri())
    assert "doc HuggingFaceFW/fineweb:train:1" in page.inner_text("#list")
    page.click('#list .tok[data-row="2"]')
    panel = page.inner_text("#panel")
    assert "HuggingFaceFW/fineweb:train:1" in panel and "Toy-world" not in panel
    cells = page.eval_on_selector_all(
        "#panel table.record tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
    )
    assert cells == [["key", "value"], ["label", "x"], ["score", "2"]]
    assert page.problems == []
    page.close()


def test_keys_move_between_tokens(browser, two_runs):
    page = open_page(browser, two_runs["page"].as_uri())
    order = page.evaluate(SHOWN)
    page.keyboard.press("ArrowRight")
    assert page.get_attribute(".tok.sel", "data-row") == str(order[0])
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert page.get_attribute(".tok.sel", "data-row") == str(order[2])
    assert f"3 of {len(order)}" in page.inner_text("#panel")
    page.keyboard.press("ArrowLeft")
    assert page.get_attribute(".tok.sel", "data-row") == str(order[1])
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    assert page.query_selector(".tok.sel") is None
    page.close()


def test_every_filter_and_the_sort(browser, two_runs):
    payload = two_runs["payload"]
    rows, first = payload["rows"], payload["scores"][0]
    n = len(rows["doc"])
    page = open_page(browser, two_runs["page"].as_uri())
    assert page.evaluate(SHOWN) == list(range(n))

    chat = payload["sources"].index("chat")
    page.evaluate(APPLY, ["#source", str(chat), "change"])
    assert page.evaluate(SHOWN) == [i for i in range(n) if rows["source"][i] == chat]
    coloured = page.eval_on_selector_all("#list .tok:not(.dim)", "s => s.map(x => +x.dataset.row)")
    assert coloured and all(rows["source"][i] == chat for i in coloured)
    page.evaluate(APPLY, ["#source", "-1", "change"])

    kind = rows["type"][0]
    page.evaluate(APPLY, ["#type", str(kind), "change"])
    assert page.evaluate(SHOWN) == [i for i in range(n) if rows["type"][i] == kind]
    page.evaluate(APPLY, ["#type", "-1", "change"])

    page.evaluate(APPLY, ["#bucket", "4", "change"])
    assert page.evaluate(SHOWN) == [i for i in range(n) if first["bucket"][i] == 4]
    page.evaluate(APPLY, ["#bucket", "-1", "change"])

    page.evaluate(APPLY, ["#search", "OWEN pike", "input"])
    expected = [i for i in range(n) if "owen pike" in first["explanation"][i].lower()]
    assert 0 < len(expected) < n and page.evaluate(SHOWN) == expected
    assert f"{len(expected)} of {n} tokens" in page.inner_text("#status")
    page.evaluate(APPLY, ["#search", "", "input"])

    page.evaluate(APPLY, ["#sort", "desc", "change"])
    shown = page.evaluate(SHOWN)
    assert [first["mse_nrm"][i] for i in shown] == sorted(first["mse_nrm"], reverse=True)
    head = page.inner_text("#list .item-head >> nth=0")
    assert head.startswith(f"mse_nrm {max(first['mse_nrm']):.3f}")

    page.evaluate(APPLY, ["#run", "1", "change"])  # the second run leads: its 50 tokens
    second = payload["scores"][1]["mse_nrm"]
    assert [second[i] for i in page.evaluate(SHOWN)] == sorted(
        (m for m in second if m is not None), reverse=True
    )
    assert page.problems == []
    page.close()


def test_a_shared_colour_scale_compares_runs(browser, two_runs):
    payload = two_runs["payload"]
    second = payload["scores"][1]
    page = open_page(browser, two_runs["page"].as_uri())
    page.evaluate(APPLY, ["#run", "1", "change"])
    page.evaluate(APPLY, ["#bucket", "0", "change"])
    own = page.evaluate(SHOWN)
    assert own == [i for i, b in enumerate(second["bucket"]) if b == 0]
    page.evaluate(APPLY, ["#scale", "shared", "change"])  # run 1 on run 0's quintiles
    shared = page.evaluate(SHOWN)
    assert shared == [i for i, b in enumerate(second["shared_bucket"]) if b == 0]
    assert len(shared) > len(own)  # run 1's errors are half run 0's: more of them are "low"
    classes = page.eval_on_selector_all(
        "#list .tok:not(.dim)", "s => s.map(x => [+x.dataset.row, x.classList.contains('b0')])"
    )
    assert classes and all(is_b0 for _, is_b0 in classes)
    legend = page.inner_text("#legend")
    assert "lam0's quintiles" in legend and f"< {payload['shared_thresholds'][0]:.2f}" in legend
    assert page.problems == []
    page.close()


def test_the_export_matches_the_documented_schema(browser, two_runs, tmp_path):
    page = open_page(browser, two_runs["page"].as_uri())
    chat = two_runs["payload"]["sources"].index("chat")
    page.evaluate(APPLY, ["#source", str(chat), "change"])
    page.evaluate(APPLY, ["#sort", "asc", "change"])
    shown = page.evaluate(SHOWN)
    with page.expect_download() as download:
        page.click("#export")
    path = tmp_path / "explanations.json"
    download.value.save_as(path)
    assert json.loads(path.read_text()) == export_document(two_runs["payload"], shown)
    page.close()


def test_served_on_localhost(browser, two_runs):
    server = start_server(two_runs["page"].parent, port=0)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        page = open_page(browser, url)
        assert page.evaluate(SHOWN) and page.problems == [] and page.outside == []
        page.close()
    finally:
        server.shutdown()
        server.server_close()


# Ten ways a string could try to become markup or code.
PAYLOADS = [
    "<script>window.__pwned = 'script'</script>",
    "<img src=x onerror=\"window.__pwned = 'img'\">",
    "</textarea><script>window.__pwned = 'textarea'</script>",
    "</script><script>window.__pwned = 'close-script'</script>",
    "<svg onload=\"window.__pwned = 'svg'\"></svg>",
    "<iframe srcdoc=\"<script>parent.__pwned = 'iframe'</script>\"></iframe>",
    '"><body onload="window.__pwned = \'attribute\'">',
    '<a href="javascript:window.__pwned = \'link\'" id="evil">x</a>',
    "<details open ontoggle=\"window.__pwned = 'details'\">",
    "{{SCRIPT}} ${window.__pwned = 'template'} <!-- <style>*{display:none}</style>",
]
INJECTED = "img, iframe, svg, details, textarea, a#evil, body style, #list script, #panel script"


def test_no_payload_executes(browser, tmp_path):
    cols = rows_columns(n_docs=10, per_doc=2, seed=12, records=True)
    for k, payload in enumerate(PAYLOADS):  # in explanations, tokens, contexts and records
        cols["explanation"][2 * k] = f"Poem: {payload}\nThe end."
        cols["token"][2 * k + 1] = payload
        cols["context"][2 * k + 1] = cols["context"][2 * k] + " " + payload
        record = json.loads(cols["record"][2 * k])
        cols["record"][2 * k] = json.dumps({**record, "tone": payload})
        cols["source"][2 * k] = payload
    run = write_run(tmp_path / "<img src=x onerror=alert(1)>", cols)
    result = build_viewer(
        ViewConfig(runs=[str(run)], out=str(tmp_path / "view"), title=PAYLOADS[3])
    )
    page = open_page(browser, Path(result["page"]).as_uri())
    for k in range(len(PAYLOADS)):
        page.click(f'#list .tok[data-row="{2 * k}"]')
        page.keyboard.press("ArrowRight")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.dialogs == []
    assert page.eval_on_selector_all(INJECTED, "nodes => nodes.length") == 0
    assert page.evaluate("document.scripts.length") == 2  # the data block and the viewer
    assert page.title() == PAYLOADS[3]
    for k, payload in enumerate(PAYLOADS):  # every payload is shown, as text
        page.evaluate(APPLY, ["#sort", "doc", "change"])
        page.click(f'#list .tok[data-row="{2 * k}"]')
        panel = page.inner_text("#panel")
        assert payload in panel  # in the explanation, the source and the record
        page.click(f'#list .tok[data-row="{2 * k + 1}"]')
        assert json.dumps(payload) in page.inner_text("#panel h2")
    options = page.eval_on_selector_all("#source option", "o => o.map(x => x.textContent)")
    assert set(PAYLOADS) <= set(options)
    assert page.problems == []
    page.close()


@pytest.fixture(scope="module")
def large_page(tmp_path_factory):
    """40,000 rows, the size of the published explanation datasets: 5,000 documents of 400
    tokens with 8 explained positions each, 2,000-character contexts, 60-word explanations."""
    root = tmp_path_factory.mktemp("large")
    cols = rows_columns(n_docs=5000, per_doc=8, seed=13, doc_tokens=400, explanation_words=60)
    result = build_viewer(ViewConfig(runs=[str(write_run(root / "run", cols, vectors=False))]))
    return result


def test_forty_thousand_rows_load_in_3_s_and_filter_in_300_ms(browser, large_page):
    page = open_page(browser, Path(large_page["page"]).as_uri())
    figures = {"rows": large_page["rows"], "megabytes": large_page["bytes"] / 1e6}
    figures["build_s"] = large_page["seconds"]
    figures["ready_s"] = page.ready_seconds
    page.click("#list .tok >> nth=0")  # usable: a click fills the panel
    assert "Explanation" in page.inner_text("#panel")
    steps = [
        ("source", ["#source", "0", "change"]),
        ("token type", ["#type", "1", "change"]),
        ("error bucket", ["#bucket", "4", "change"]),
        ("search", ["#search", "quiet water", "input"]),
        ("sort by error", ["#sort", "desc", "change"]),
        ("clear all", ["#search", "", "input"]),
    ]
    for name, args in steps:
        figures[f"{name}_ms"] = page.evaluate(APPLY, args)
    print("\nviewer at 40,000 rows:", json.dumps(figures, indent=1))
    assert figures["ready_s"] < 3.0, figures
    assert all(v < 300 for k, v in figures.items() if k.endswith("_ms")), figures
    assert re.match(r"[\d,]+ of 40,000 tokens", page.inner_text("#status"))
    assert page.problems == []
    page.close()


@pytest.mark.slow
def test_the_demo_run_in_the_viewer(browser, demo_eval_run, tmp_path):
    result = build_viewer(ViewConfig(runs=[str(demo_eval_run)], out=str(tmp_path / "view")))
    page = open_page(browser, Path(result["page"]).as_uri())
    shown = page.evaluate(SHOWN)
    assert len(shown) == result["rows"] > 0
    page.keyboard.press("ArrowRight")
    panel = page.inner_text("#panel")
    assert "Toy-world latent record" in panel and "Teacher's explanation" in panel
    verdicts = page.eval_on_selector_all(
        "#panel table.truth tr", "rows => rows.slice(1, 6).map(r => r.cells[2].innerText)"
    )
    assert len(verdicts) == 5 and set(verdicts) <= {"true", "false", "absent"}
    assert page.ready_seconds < 3 and page.problems == [] and page.outside == []
    page.close()
