"""A local fake LLM server for the teacher tests (a helper, not a test module).

`FakeLLM` serves just enough of the Anthropic Messages API (`POST /v1/messages`)
and the OpenAI Chat Completions API (`POST /v1/chat/completions`) for the real
`anthropic` and `openai` SDKs to talk to it. Point the Anthropic client at
`fake.url` and the OpenAI client at `fake.openai_url` (`fake.url + "/v1"`).

Tests script what the next requests get, first in first out, whatever the path:

    with FakeLLM() as fake:
        fake.fail(429, times=2, retry_after=0.2)  # two rate limits, then...
        fake.reply("<explanation>a\\nb</explanation>")  # ...this text
        ...
        fake.requests  # every request: path, headers, body JSON, arrival time

Unscripted requests get a valid reply whose explanation (2 lines, in tags) quotes
the final token named in the prompt, so tests can check which row got which reply.
Every request is recorded with its arrival time (`time.monotonic()`), and
`max_in_flight` counts the most requests handled at once.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_FINAL_TOKEN_RE = re.compile(r'final token is (".*?(?<!\\)")')


@dataclass
class Behaviour:
    """What one request gets.

    kind: "reply" (status 200 with `text`, or the default reply when `text` is None),
    "status" (HTTP `status` with an error body and `headers`), "sleep" (wait `seconds`,
    then the default reply), "malformed" (`text` as the raw body: not JSON, or JSON
    missing the fields the SDKs need).
    """

    kind: str
    text: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class RecordedRequest:
    """One request as the server saw it; `arrived` is `time.monotonic()` seconds."""

    path: str
    headers: dict[str, str]
    body: dict | None
    arrived: float

    @property
    def prompt(self) -> str:
        """The user message text (both wire formats put it in `messages[0].content`)."""
        content = (self.body or {}).get("messages", [{}])[0].get("content", "")
        if isinstance(content, list):
            return "".join(block.get("text", "") for block in content)
        return content


def default_reply(prompt: str) -> str:
    """A valid two-feature explanation quoting the prompt's final token."""
    match = _FINAL_TOKEN_RE.search(prompt)
    token = match.group(1) if match else repr(prompt[-20:])
    return (
        "<explanation>\n"
        "Fake text: a scripted reply from the local test server.\n"
        f"Final token {token}: echoed back so tests can check routing.\n"
        "</explanation>"
    )


class FakeLLM:
    """A threaded HTTP server on 127.0.0.1 (free port) speaking both wire formats.

    `latency_s` delays every reply (to overlap concurrent requests).
    """

    def __init__(self, latency_s: float = 0.0):
        self.latency_s = latency_s
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._script: list[Behaviour] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ scripting

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests, in order."""
        with self._lock:
            self._script.extend(behaviours)

    def reply(self, text: str, times: int = 1) -> None:
        """The next `times` requests get `text` as the assistant's reply."""
        self.script(*[Behaviour("reply", text=text) for _ in range(times)])

    def fail(
        self,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        retry_after_ms: float | None = None,
    ) -> None:
        """The next `times` requests get HTTP `status`, with optional retry-after headers."""
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        self.script(*[Behaviour("status", status=status, headers=headers) for _ in range(times)])

    def sleep(self, seconds: float, times: int = 1) -> None:
        """The next `times` requests wait `seconds` before replying (to trigger timeouts)."""
        self.script(*[Behaviour("sleep", seconds=seconds) for _ in range(times)])

    def malformed(self, body: str = "this is not JSON", times: int = 1) -> None:
        """The next `times` requests get status 200 with `body` as the raw response."""
        self.script(*[Behaviour("malformed", text=body) for _ in range(times)])

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The server root: the Anthropic SDK's base URL."""
        assert self._server is not None, "use FakeLLM as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        """The OpenAI SDK's base URL."""
        return self.url + "/v1"

    def __enter__(self) -> FakeLLM:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping.set()  # wakes handlers still sleeping on a "sleep" behaviour
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ internals

    def _next(self) -> Behaviour:
        with self._lock:
            return self._script.pop(0) if self._script else Behaviour("reply")

    def _enter(self, record: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(record)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _error_body(path: str, status: int) -> dict:
    kind = "rate_limit_error" if status == 429 else "api_error"
    if path.endswith("/messages"):
        return {"type": "error", "error": {"type": kind, "message": f"fake error {status}"}}
    return {"error": {"message": f"fake error {status}", "type": kind, "code": None}}


def _success_body(path: str, model: str, prompt: str, text: str) -> dict:
    n_in, n_out = len(prompt.split()), len(text.split())
    if path.endswith("/messages"):
        return {
            "id": f"msg_{uuid.uuid4().hex[:12]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": n_in, "output_tokens": n_out},
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
    }


def _make_handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args) -> None:
            pass  # keep test output clean (and never echo request headers)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            record = RecordedRequest(self.path, dict(self.headers), body, time.monotonic())
            fake._enter(record)
            try:
                self._respond(record)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to answer
            finally:
                fake._leave()

        def _respond(self, record: RecordedRequest) -> None:
            if record.path not in ("/v1/messages", "/v1/chat/completions"):
                self._send(404, json.dumps({"error": {"message": "no such route"}}))
                return
            behaviour = fake._next()
            if fake.latency_s:
                fake._wait(fake.latency_s)
            if behaviour.kind == "status":
                body = json.dumps(_error_body(record.path, behaviour.status))
                self._send(behaviour.status, body, behaviour.headers)
                return
            if behaviour.kind == "malformed":
                self._send(200, behaviour.text or "")
                return
            if behaviour.kind == "sleep":
                fake._wait(behaviour.seconds)
            prompt = record.prompt
            text = behaviour.text if behaviour.text is not None else default_reply(prompt)
            model = (record.body or {}).get("model", "fake-model")
            self._send(200, json.dumps(_success_body(record.path, model, prompt, text)))

        def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
