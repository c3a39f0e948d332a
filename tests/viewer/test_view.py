"""`nlakit view`: the page written where asked, served on 127.0.0.1, clear errors."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from viewer_tables import rows_columns, write_run

from nlakit.cli import main
from nlakit.viewer.view import ViewConfig, build_viewer, start_server


def test_view_writes_the_page_in_the_run(tmp_path, capsys):
    run = write_run(tmp_path / "demo", rows_columns(n_docs=3, per_doc=2))
    assert main(["view", str(run), "--no-serve", "--export", str(tmp_path / "all.json")]) == 0
    out = capsys.readouterr().out
    page = run / "eval" / "viewer" / "index.html"
    assert page.is_file() and f"wrote {page}" in out and "6 tokens in 3 documents" in out
    assert page.as_uri() in out
    assert len(json.loads((tmp_path / "all.json").read_text())["records"]) == 6


def test_view_of_two_runs_into_a_chosen_directory(tmp_path):
    a = write_run(tmp_path / "a", rows_columns(n_docs=2, per_doc=2, seed=1))
    b = write_run(tmp_path / "b", rows_columns(n_docs=2, per_doc=2, seed=1))
    result = build_viewer(ViewConfig(runs=[str(a), str(b)], out=str(tmp_path / "cmp")))
    assert result["runs"] == ["a", "b"] and result["page"] == str(tmp_path / "cmp" / "index.html")


def test_the_page_is_served_on_localhost(tmp_path):
    run = write_run(tmp_path / "demo", rows_columns(n_docs=2, per_doc=2))
    page = build_viewer(ViewConfig(runs=[str(run)]))["page"]
    server = start_server(tmp_path / "demo" / "eval" / "viewer", port=0)
    try:
        host, port = server.server_address
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as reply:
            assert reply.read() == Path(page).read_bytes()
    finally:
        server.shutdown()
        server.server_close()


def test_errors_are_one_line_and_leave_no_page(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["view", str(tmp_path / "run"), "--no-serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlakit view: error:") and "nlakit eval --run" in err
    assert not (tmp_path / "run" / "eval" / "viewer").exists()


def test_a_taken_port_is_a_clear_error(tmp_path):
    import pytest

    from nlakit.errors import NLAKitError

    server = start_server(tmp_path, port=0)
    try:
        with pytest.raises(NLAKitError, match="pass --port 0 for a free port"):
            start_server(tmp_path, port=server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_the_command_serves_until_interrupted(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import threading

    run = write_run(tmp_path / "demo", rows_columns(n_docs=2, per_doc=2))
    command = [sys.executable, "-m", "nlakit", "view", str(run), "--port", "0"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a real pipe
    # SIGINT at its default, whatever this process inherited (a shell's background job
    # starts with it ignored, and the command would then never see the Ctrl-C)
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    watchdog = threading.Timer(60, proc.kill)  # a command that never says so fails, not hangs
    watchdog.start()
    try:
        for line in proc.stdout:  # until the command says where it serves
            if line.startswith("serving "):
                break
        else:
            raise AssertionError(f"the command ended without serving: {proc.stderr.read()}")
        url = line.split()[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/index.html")
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert b'id="nla-data"' in reply.read()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        watchdog.cancel()
    assert proc.returncode == 0, err
    assert "stopped" in out
