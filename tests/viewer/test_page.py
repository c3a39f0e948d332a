"""The page: self-contained, data embedded so that no string can become markup."""

from __future__ import annotations

import json
import re

from viewer_tables import rows_columns, write_run

from nlakit.viewer.inputs import read_inputs
from nlakit.viewer.page import pack_json, page_payload, render_page, script_hash, static_text
from nlakit.viewer.payload import build_payload


def test_packed_data_cannot_close_its_block():
    payload = {"x": "</script><script>alert(1)</script>", "y": "a & b <!-- \u2028 é"}
    text = pack_json(payload)
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", text)  # base64: no "<", so no way out
    assert json.loads(json.dumps(payload)) == page_payload(
        f'<script id="nla-data" type="application/gzip;base64">{text}</script>'
    )


def page_of(tmp_path, **columns):
    cols = rows_columns(n_docs=3, per_doc=2, seed=8)
    cols.update(columns)
    payload = build_payload(read_inputs([write_run(tmp_path / "run", cols)]), title="{{SCRIPT}}")
    return payload, render_page(payload)


def test_the_page_holds_the_payload_and_nothing_outside(tmp_path):
    payload, page = page_of(tmp_path, explanation=["{{DATA}} <b>x</b>"] * 6)
    assert page_payload(page) == payload
    assert page.count("<script") == 2  # the data block and the viewer
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no CDN, no fetch
    assert "{{" not in page.replace("{{DATA}}", "").replace("{{SCRIPT}}", "")
    assert "<title>{{SCRIPT}}</title>" in page  # a slot name in the data stays text


def test_only_the_viewer_script_may_run(tmp_path):
    _, page = page_of(tmp_path)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert f"script-src {script_hash(static_text('viewer.js'))};" in csp
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    assert script == static_text("viewer.js")  # byte for byte, or the hash would not match


def test_the_viewer_script_puts_no_data_through_inner_html():
    script = static_text("viewer.js")
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)
