"""The viewer's single HTML file: template, style, script and data inlined.

Nothing is fetched: the style and the script are inlined from `static/`, the data
sits in a non-executed `<script>` block as base64 of gzipped JSON (the browser
unpacks it with `DecompressionStream`), so the file opens straight from disk and
can be mailed or archived. Packed, 40,000 rows take ~6 MB instead of ~26 MB and
load in about two-thirds of the time.

Data strings never become markup. The base64 alphabet has no `<`, so no string
can close the data block; the script puts every string on the page as text
(`textContent`, text nodes), never as HTML. As a second line of defence, a
Content-Security-Policy lets only the viewer's own script run (by its SHA-256) and
forbids every network request.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import re
from importlib import resources

_SLOT = re.compile(r"\{\{(\w+)\}\}")
_DATA_BLOCK = re.compile(r'<script id="nla-data" type="application/gzip;base64">([^<]*)</script>')


def static_text(name: str) -> str:
    return resources.files("nlakit.viewer").joinpath("static", name).read_text(encoding="utf-8")


def pack_json(payload: dict) -> str:
    """`payload` as base64 of gzipped JSON."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return base64.b64encode(gzip.compress(text.encode("utf-8"), 5, mtime=0)).decode("ascii")


def unpack_json(text: str) -> dict:
    """The payload back from `pack_json`'s text (what the page's script does)."""
    return json.loads(gzip.decompress(base64.b64decode(text)))


def page_payload(page: str) -> dict:
    """The payload embedded in a viewer page's HTML."""
    match = _DATA_BLOCK.search(page)
    if match is None:
        raise ValueError("not an nlakit viewer page: no data block")
    return unpack_json(match.group(1))


def script_hash(script: str) -> str:
    """The CSP source expression that allows exactly this inline script."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def render_page(payload: dict) -> str:
    """The complete, self-contained HTML page for `payload` (see `payload.py`)."""
    script = static_text("viewer.js")
    slots = {
        "TITLE": html.escape(payload["title"]),
        "CSP": (
            "default-src 'none'; "
            f"script-src {script_hash(script)}; "
            "style-src 'unsafe-inline'; img-src data:; "
            "base-uri 'none'; form-action 'none'"
        ),
        "STYLE": static_text("viewer.css"),
        "DATA": pack_json(payload),
        "SCRIPT": script,
    }
    # One pass over the template: text put into a slot is never scanned for slots.
    return _SLOT.sub(lambda m: slots[m.group(1)], static_text("viewer.html"))
