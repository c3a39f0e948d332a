"""`nlakit view RUN [RUN …]`: build the explanation viewer and serve it on 127.0.0.1.

    nlakit view runs/demo                              # after `nlakit eval --run runs/demo`
    nlakit view runs/a runs/b --out /tmp/compare       # two runs side by side, token by token
    nlakit view runs/demo runs/demo/eval/length_sweep/rows_lambda_0.01.parquet
    nlakit view runs/demo --no-serve --export explanations.json

Writes one self-contained file, `OUT/index.html` (default `RUN/eval/viewer/` of the
first input): open it from disk or through the printed URL. `--export FILE` also
writes every token in the JSON schema of `export.py`.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from nlakit.atomic import write_text
from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.store.guard import check_output_dir, check_output_file
from nlakit.viewer.export import write_export
from nlakit.viewer.inputs import read_inputs
from nlakit.viewer.page import render_page
from nlakit.viewer.payload import build_payload

PAGE = "index.html"


@dataclass
class ViewConfig(Config):
    """The explorer page of one or more evaluated runs, and its server."""

    runs: list[str] = option(help="run directories or parquet tables, first leads", factory=list)
    out: str | None = option(None, "output directory (None: the first run's eval/viewer/)")
    serve: bool = option(True, "serve the page on 127.0.0.1 until Ctrl-C")
    port: int = option(8765, "port to serve on (0: any free port)", ge=0, le=65535)
    export: str | None = option(None, "also write every token as JSON to this file")
    force: bool = option(False, "overwrite the --export file if it exists")
    context_chars: int = option(600, "characters kept before each document's first token", ge=0)
    title: str | None = option(None, "page title (None: the run names)")


def default_out(first: str) -> Path:
    path = Path(first)
    if path.is_dir():
        return path / "eval" / "viewer"
    return path.parent / "viewer"


def build_viewer(config: ViewConfig) -> dict:
    """Write the page (and the export); returns paths and counts."""
    if config.context_chars < 0:
        raise NLAKitError(f"context_chars must be ≥ 0, got {config.context_chars}.")
    start = time.perf_counter()
    inputs = read_inputs(config.runs)
    out = Path(config.out) if config.out else default_out(config.runs[0])
    check_output_dir(out)
    if config.export:
        check_output_file(config.export, config.force, "--export")
    payload = build_payload(inputs, config.context_chars, config.title)
    page = write_text(out / PAGE, render_page(payload))
    result = {
        "page": str(page),
        "rows": len(payload["rows"]["doc"]),
        "documents": len(payload["docs"]["id"]),
        "runs": [r["name"] for r in payload["runs"]],
        "bytes": page.stat().st_size,
        "seconds": time.perf_counter() - start,
    }
    if config.export:
        result["export"] = str(write_export(payload, config.export))
    return result


def start_server(directory: str | Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """A static file server for `directory` on 127.0.0.1 (running in a daemon thread)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise NLAKitError(
            f"cannot serve on 127.0.0.1:{port} ({exc.strerror}); pass --port 0 for a free port "
            "or --no-serve to only write the page."
        ) from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per request is noise here
        pass


def view(config: ViewConfig) -> dict:
    """Build the viewer; serve it until interrupted when `config.serve`."""
    result = build_viewer(config)
    print(
        f"wrote {result['page']} ({result['rows']:,} tokens in {result['documents']:,} documents, "
        f"runs: {', '.join(result['runs'])}; {result['bytes'] / 1e6:.1f} MB, "
        f"{result['seconds']:.1f} s)"
    )
    if "export" in result:
        print(f"wrote {result['export']} (JSON, one record per token)")
    if not config.serve:
        print(f"open {Path(result['page']).resolve().as_uri()}")
        return result
    server = start_server(Path(result["page"]).parent, config.port)
    url = f"http://127.0.0.1:{server.server_address[1]}/{PAGE}"
    print(f"serving {url}  (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.shutdown()
    return result
