"""Teacher subsystem over HTTP: the real `anthropic` and `openai` SDKs against the
local fake server (`fake_llm.FakeLLM`), through `run_teacher`."""

from __future__ import annotations

import itertools
import json
import logging
import socket

import pytest
from fake_llm import FakeLLM

from nlakit.data.teacher import TeacherCache, TeacherConfig, TeachRequest, run_teacher

FAST = {"base_delay_s": 0.01, "max_delay_s": 0.05, "timeout_s": 5.0}
ANTHROPIC_KEY = "sk-ant-TEST-KEY-do-not-leak-4242"
OPENAI_KEY = "sk-openai-TEST-KEY-do-not-leak-1717"
MISSING = "Plain text with no tags at all."
REFUSAL = "I'm sorry, but I can't help with that request."
ONE_LINE = "<explanation>Just one feature here.</explanation>"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)


@pytest.fixture
def fake():
    with FakeLLM() as server:
        yield server


@pytest.fixture(params=["anthropic", "openai"])
def api(request) -> str:
    return request.param


def spec_for(api: str, fake: FakeLLM) -> tuple[str, dict]:
    """(spec, teacher kwargs) routing `api`'s SDK to the fake server."""
    if api == "anthropic":
        return "anthropic:claude-haiku-4-5", {"base_url": fake.url}
    return f"openai:gpt-4o-mini@{fake.openai_url}", {}


def rows(n: int, start: int = 0) -> list[TeachRequest]:
    return [
        TeachRequest(f"{i}:7", f"Row {i}: once upon a time, word{i}", f" word{i}")
        for i in range(start, start + n)
    ]


def teach(api, fake, requests, cache_path=None, **config):
    spec, kwargs = spec_for(api, fake)
    return run_teacher(
        spec,
        requests,
        TeacherConfig(**{**FAST, **config}),
        cache_path=cache_path,
        progress=False,
        **kwargs,
    )


def test_sdk_talks_to_server(api, fake):
    results, report = teach(api, fake, rows(3))
    assert [r.status for r in results] == ["ok"] * 3
    for i, result in enumerate(results):
        assert f'Final token " word{i}"' in result.explanation  # each row got its own reply
        assert result.input_tokens > 0 and result.output_tokens > 0 and not result.cached
    path = "/v1/messages" if api == "anthropic" else "/v1/chat/completions"
    assert {r.path for r in fake.requests} == {path}
    body = fake.requests[0].body
    assert body["messages"][0]["role"] == "user"
    # SDK 2.x's Anthropic API version rejects sampling parameters; OpenAI gets it.
    assert body.get("temperature") == (None if api == "anthropic" else 1.0)
    assert (body.get("max_tokens") or body.get("max_completion_tokens")) == 400
    assert report["calls"] == 3 and report["cache_hits"] == 0
    assert report["status_counts"] == {
        "ok": 3,
        "missing_tags": 0,
        "refusal": 0,
        "too_few_features": 0,
        "error": 0,
    }
    assert report["input_tokens"] == sum(r.input_tokens for r in results)
    assert report["cost_usd"] > 0  # both model names are in the price table
    assert set(report) >= {"teacher", "requests", "output_tokens", "seconds"}


def test_local_openai_server_needs_no_key(monkeypatch, fake):
    monkeypatch.delenv("OPENAI_API_KEY")
    results, report = run_teacher(
        f"openai:llama3:8b@{fake.openai_url}", rows(1), TeacherConfig(**FAST), progress=False
    )
    assert results[0].status == "ok"
    assert fake.requests[0].body["model"] == "llama3:8b"
    assert fake.requests[0].body["max_tokens"] == 400
    assert report["cost_usd"] is None  # not a listed model


@pytest.mark.parametrize("header", ["retry-after", "retry-after-ms"])
def test_429_waits_at_least_retry_after(api, fake, header):
    if header == "retry-after":
        fake.fail(429, times=2, retry_after=0.2)
    else:
        fake.fail(429, times=2, retry_after_ms=200)
    results, report = teach(api, fake, rows(1))
    assert results[0].status == "ok" and report["calls"] == 1
    arrivals = [r.arrived for r in fake.requests]
    assert len(arrivals) == 3
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(arrivals))


def test_500_is_retried(api, fake):
    fake.fail(500)
    fake.fail(529 if api == "anthropic" else 503)
    results, _ = teach(api, fake, rows(1))
    assert results[0].status == "ok"
    assert len(fake.requests) == 3


def test_timeout_is_retried(api, fake):
    fake.sleep(3.0)
    results, _ = teach(api, fake, rows(1), timeout_s=0.3)
    assert results[0].status == "ok"
    assert len(fake.requests) == 2


def test_gives_up_after_max_retries_and_continues(api, fake):
    fake.fail(503, times=3)
    results, report = teach(api, fake, rows(3), concurrency=1, max_retries=2)
    assert results[0].status == "error" and "gave up after 2 retries" in results[0].error
    assert "503" in results[0].error and results[0].raw == ""
    assert [r.status for r in results[1:]] == ["ok", "ok"]
    assert report["status_counts"]["error"] == 1 and report["calls"] == 3


def test_client_errors_are_not_retried(api, fake):
    fake.fail(400)
    results, _ = teach(api, fake, rows(2), concurrency=1)
    assert results[0].status == "error" and "HTTP 400" in results[0].error
    assert results[1].status == "ok"
    assert len(fake.requests) == 2


def test_malformed_bodies_become_errors(api, fake):
    fake.malformed("this is not JSON")
    fake.malformed('{"unexpected": "fields"}')
    results, _ = teach(api, fake, rows(3), concurrency=1)
    assert [r.status for r in results] == ["error", "error", "ok"]
    assert all("malformed" in r.error for r in results[:2])
    assert len(fake.requests) == 3  # not retried


def test_concurrency_bound(api):
    with FakeLLM(latency_s=0.1) as fake:
        results, _ = teach(api, fake, rows(12), concurrency=3)
    assert all(r.status == "ok" for r in results)
    assert fake.max_in_flight == 3


def test_cache_second_run_makes_no_calls(api, fake, tmp_path):
    cache_path = tmp_path / "teacher.sqlite"
    first, _ = teach(api, fake, rows(5), cache_path)
    n_requests = len(fake.requests)
    second, report = teach(api, fake, rows(5), cache_path)
    assert len(fake.requests) == n_requests == 5
    assert report["calls"] == 0 and report["cache_hits"] == 5
    assert report["input_tokens"] == 0 and report["status_counts"]["ok"] == 5
    assert all(r.cached for r in second)
    for a, b in zip(first, second, strict=True):
        assert (a.key, a.explanation, a.raw, a.status) == (b.key, b.explanation, b.raw, b.status)
        assert (a.input_tokens, a.output_tokens) == (b.input_tokens, b.output_tokens)
    # Different sampling settings are a different question: no cache hit.
    _, report = teach(api, fake, rows(1), cache_path, temperature=0.0)
    assert report["calls"] == 1


def test_interrupted_run_keeps_paid_answers(api, fake, tmp_path):
    cache_path = tmp_path / "teacher.sqlite"
    results, report = teach(api, fake, rows(10), cache_path, max_requests=3)
    assert report["calls"] == 3 and len(fake.requests) == 3
    assert sum(r.status == "ok" for r in results) == 3
    stopped = [r for r in results if r.status == "error"]
    assert len(stopped) == 7 and all(r.error == "max_requests reached" for r in stopped)
    with TeacherCache(cache_path) as cache:
        assert len(cache) == 3
    results, report = teach(api, fake, rows(10), cache_path)
    assert report["calls"] == 7 and report["cache_hits"] == 3 and len(fake.requests) == 10
    assert all(r.status == "ok" for r in results)


def test_filtered_statuses_are_counted_and_cached(api, fake, tmp_path):
    cache_path = tmp_path / "teacher.sqlite"
    fake.reply(MISSING)
    fake.reply(REFUSAL)
    fake.reply(ONE_LINE)
    results, report = teach(api, fake, rows(4), cache_path, concurrency=1)
    assert [r.status for r in results] == ["missing_tags", "refusal", "too_few_features", "ok"]
    assert [r.raw for r in results[:3]] == [MISSING, REFUSAL, ONE_LINE]
    assert all(r.explanation is None for r in results[:3])
    assert report["status_counts"] == {
        "ok": 1,
        "missing_tags": 1,
        "refusal": 1,
        "too_few_features": 1,
        "error": 0,
    }
    # Unusable replies were still paid for: the re-run reads them from the cache.
    again, report = teach(api, fake, rows(4), cache_path)
    assert report["calls"] == 0
    assert [r.status for r in again] == [r.status for r in results]


def test_api_keys_never_leak(api, fake, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    cache_path = tmp_path / "teacher.sqlite"
    fake.fail(401)
    fake.fail(500, times=2)
    fake.malformed("not JSON")
    results, report = teach(api, fake, rows(5), cache_path, concurrency=1, max_retries=1)
    assert [r.status for r in results] == ["error", "error", "error", "ok", "ok"]
    # The key did reach the server (so the checks below are meaningful)...
    key = ANTHROPIC_KEY if api == "anthropic" else OPENAI_KEY
    assert any(key in value for value in fake.requests[0].headers.values())
    # ...and nowhere else: cache files, results, report, errors, output, logs.
    with socket.socket() as probe:  # a closed port: a connection error with the key in play
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    spec, kwargs = spec_for(api, fake)
    dead = spec.replace(fake.url, f"http://127.0.0.1:{dead_port}")
    if kwargs:
        kwargs = {"base_url": f"http://127.0.0.1:{dead_port}"}
    dead_results, dead_report = run_teacher(
        dead, rows(1), TeacherConfig(**{**FAST, "max_retries": 1}), progress=False, **kwargs
    )
    assert dead_results[0].status == "error" and dead_results[0].error
    texts = [
        repr(results),
        repr(dead_results),
        json.dumps(report),
        json.dumps(dead_report),
        *capsys.readouterr(),
        caplog.text,
    ]
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for secret in (ANTHROPIC_KEY, OPENAI_KEY):
        assert secret.encode() not in files
        assert all(secret not in text for text in texts)
