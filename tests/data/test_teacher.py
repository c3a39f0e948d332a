"""Teacher subsystem, offline parts: prompt, reply parsing, spec parsing, cache, cost,
and the retry/concurrency policy of `teach_all` against in-process fake teachers."""

from __future__ import annotations

import asyncio
import time

import pytest

from nlakit.data.teacher import (
    Completion,
    RetryableError,
    TeacherCache,
    TeacherConfig,
    TeachRequest,
    estimate_cost,
    make_teacher,
    parse_reply,
    teach_all,
    teacher_prompt,
)
from nlakit.data.teacher_backends import (
    Teacher,
    is_local_url,
    redact_secrets,
    retry_after_seconds,
)
from nlakit.errors import NLAKitError

FAST = {"base_delay_s": 0.01, "max_delay_s": 0.05, "timeout_s": 5.0}
ENV_VARS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)
GOOD = "<explanation>\nNews report: a story about rain.\nThe token ends a sentence.\n</explanation>"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def rows(n: int) -> list[TeachRequest]:
    return [TeachRequest(f"{i}:{i + 3}", f"Document {i} starts here and", " and") for i in range(n)]


class ScriptedTeacher(Teacher):
    """Answers from a script of texts / exceptions, then GOOD; tracks concurrency."""

    def __init__(self, script=(), delay_s: float = 0.0):
        self.spec = "fake:scripted"
        self.script = list(script)
        self.delay_s = delay_s
        self.calls: list[float] = []
        self.in_flight = self.max_in_flight = 0

    async def complete(self, prompt: str, config: TeacherConfig) -> Completion:
        self.calls.append(time.monotonic())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            step = self.script.pop(0) if self.script else GOOD
            if isinstance(step, Exception):
                raise step
            return Completion(step, len(prompt.split()), len(step.split()))
        finally:
            self.in_flight -= 1


# --------------------------------------------------------------------------- prompt and parsing


def test_prompt_shows_prefix_token_and_format():
    request = TeachRequest("1:5", "The cat sat on the", " the")
    prompt = teacher_prompt(request)
    assert "<text>\nThe cat sat on the\n</text>" in prompt
    assert 'final token is " the"' in prompt
    assert "<explanation>" in prompt and "</explanation>" in prompt
    assert "FINAL token" in prompt and "Genre: description" in prompt
    newline_prompt = teacher_prompt(TeachRequest("1:6", "Line one\n", "\n"))
    assert 'final token is "\\n"' in newline_prompt


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (GOOD, "ok"),
        ("Sure! <explanation>a: b\n\nc</explanation> done", "ok"),
        ("News report: rain.\nThe token ends a sentence.", "missing_tags"),
        ("<explanation>\nNews: rain.\nunterminated", "missing_tags"),
        ("", "missing_tags"),
        ("I can't help with explaining this text.", "refusal"),
        ("I\u2019m sorry, but I won\u2019t describe that.", "refusal"),
        ("**As an AI**, I do not have access to model internals.", "refusal"),
        ("Hmm. Unfortunately, I cannot do this task for you.", "refusal"),
        ("<explanation>Just one feature.</explanation>", "too_few_features"),
        ("<explanation>\n\n  \n</explanation>", "too_few_features"),
        ("<explanation>I cannot do that.</explanation>", "too_few_features"),
    ],
)
def test_parse_reply_statuses(reply, status):
    explanation, got = parse_reply(reply)
    assert got == status
    assert (explanation is not None) == (status == "ok")


def test_parse_reply_strips_explanation():
    assert parse_reply("<explanation>\n  a: b\nc  \n</explanation>") == ("a: b\nc", "ok")


def test_config_rejects_bad_values():
    with pytest.raises(NLAKitError, match=r"concurrency must be ≥ 1, got 0; timeout_s"):
        TeacherConfig(concurrency=0, timeout_s=0)


# --------------------------------------------------------------------------- specs and keys


def test_openai_spec_splits_on_first_colon_and_last_at():
    teacher = make_teacher("openai:llama3:8b@http://localhost:11434/v1")
    assert (teacher.model, str(teacher._client.base_url)) == (
        "llama3:8b",
        "http://localhost:11434/v1/",
    )
    assert teacher._client.api_key == "EMPTY"  # local server: placeholder key
    teacher = make_teacher("openai:org/model@v2:q4@http://127.0.0.1:8000/v1")
    assert teacher.model == "org/model@v2:q4"
    assert teacher.spec == "openai:org/model@v2:q4@http://127.0.0.1:8000/v1"


@pytest.mark.parametrize(
    "spec",
    ["gpt-4o", "mistral:7b", "anthropic", "anthropic:", "hf:", "openai:m@localhost:8000", "@x"],
)
def test_malformed_spec_names_spec_and_forms(spec):
    with pytest.raises(NLAKitError) as info:
        make_teacher(spec)
    assert repr(spec) in str(info.value)
    assert "openai:MODEL@BASE_URL" in str(info.value)


@pytest.mark.parametrize(
    ("spec", "variable"),
    [
        ("anthropic:claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
        ("openai:gpt-4o", "OPENAI_API_KEY"),
        ("openai:gpt-4o@https://api.example.com/v1", "OPENAI_API_KEY"),
    ],
)
def test_missing_key_names_the_variable(spec, variable):
    with pytest.raises(NLAKitError, match=variable):
        make_teacher(spec)


def test_key_comes_from_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-anthropic")
    assert make_teacher("openai:gpt-4o")._client.api_key == "sk-test-openai"
    assert make_teacher("anthropic:claude-haiku-4-5")._client.api_key == "sk-test-anthropic"


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://localhost:8000/v1", True),
        ("http://127.0.0.1:11434/v1", True),
        ("http://[::1]:8080/v1", True),
        ("http://192.168.1.20:8000/v1", True),
        ("http://vllm:8000/v1", True),
        ("https://api.openai.com/v1", False),
        ("https://openrouter.ai/api/v1", False),
        ("http://8.8.8.8/v1", False),
    ],
)
def test_is_local_url(url, local):
    assert is_local_url(url) is local


def test_redact_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    assert redact_secrets("bad key sk-very-secret!") == "bad key <OPENAI_API_KEY>!"


def test_retry_after_parsing():
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 20 < retry_after_seconds({"retry-after": future}) <= 31


# --------------------------------------------------------------------------- cache and cost


def test_cache_roundtrip_and_key(tmp_path):
    params = {"max_tokens": 400, "temperature": 1.0}
    with TeacherCache(tmp_path / "sub" / "c.sqlite") as cache:
        key = cache.key("anthropic:m", "prompt", params)
        assert len(key) == 64
        assert key == cache.key("anthropic:m", "prompt", dict(reversed(params.items())))
        assert key != cache.key("anthropic:m", "prompt", {**params, "temperature": 0.0})
        assert key != cache.key("openai:m", "prompt", params)
        assert key != cache.key("anthropic:m", "prompt!", params)
        assert cache.get(key) is None
        cache.put(key, Completion("reply", 10, 3))
        # A second connection (another process) sees the committed row at once.
        with TeacherCache(tmp_path / "sub" / "c.sqlite") as other:
            assert other.get(key) == Completion("reply", 10, 3)
            assert len(other) == 1


def test_cost_table_and_overrides():
    config = TeacherConfig()
    assert estimate_cost("anthropic:claude-sonnet-4-5-20250929", 1_000_000, 0, config) == 3.0
    assert estimate_cost("openai:gpt-4o-mini", 0, 1_000_000, config) == pytest.approx(0.6)
    assert estimate_cost("openai:gpt-5.4-mini-2026-03-17", 0, 10**6, config) == 4.5
    assert estimate_cost("openai:gpt-5.6-sol", 10, 10, config) is None  # not "gpt-5"
    assert estimate_cost("anthropic:claude-opus-4-8", 10, 10, config) is None
    assert estimate_cost("openai:llama3:8b@http://localhost:1/v1", 10, 10, config) is None
    assert estimate_cost("hf:/models/qwen", 10, 10, config) is None
    priced = TeacherConfig(price_in_per_mtok=1.0, price_out_per_mtok=2.0)
    assert estimate_cost("hf:/models/qwen", 1_000_000, 1_000_000, priced) == 3.0
    assert estimate_cost("openai:gpt-4o", 1_000_000, 0, priced) == 1.0


# --------------------------------------------------------------------------- teach_all policy


def run(teacher, requests, cache=None, **config):
    return asyncio.run(
        teach_all(teacher, requests, TeacherConfig(**{**FAST, **config}), cache, progress=False)
    )


def test_results_in_request_order_and_concurrency_bound():
    teacher = ScriptedTeacher(delay_s=0.02)
    results = run(teacher, rows(20), concurrency=5)
    assert [r.key for r in results] == [r.key for r in rows(20)]
    assert all(r.status == "ok" and not r.cached for r in results)
    assert teacher.max_in_flight == 5


def test_backoff_honours_retry_after_and_gives_up():
    teacher = ScriptedTeacher([RetryableError("429", retry_after=0.15), GOOD])
    [result] = run(teacher, rows(1))
    assert result.status == "ok"
    assert teacher.calls[1] - teacher.calls[0] >= 0.15

    teacher = ScriptedTeacher([RetryableError("busy")] * 3)
    results = run(teacher, rows(2), concurrency=1, max_retries=2)
    assert results[0].status == "error" and "gave up after 2 retries: busy" in results[0].error
    assert results[1].status == "ok"
    assert len(teacher.calls) == 4


def test_backoff_is_capped_full_jitter(monkeypatch):
    waits = []
    real_sleep = asyncio.sleep

    async def record_sleep(delay):
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr("nlakit.data.teacher.asyncio.sleep", record_sleep)
    teacher = ScriptedTeacher([RetryableError("busy")] * 6)
    run(teacher, rows(1), base_delay_s=1.0, max_delay_s=3.0, max_retries=6)
    assert len(waits) == 6
    assert all(0 <= w <= min(3.0, 2**i) for i, w in enumerate(waits))


def test_plain_errors_are_not_retried():
    teacher = ScriptedTeacher([ValueError("bad request: HTTP 400")])
    results = run(teacher, rows(2), concurrency=1)
    assert results[0].status == "error" and "HTTP 400" in results[0].error
    assert results[0].raw == "" and results[0].explanation is None
    assert results[1].status == "ok"
    assert len(teacher.calls) == 2


def test_a_custom_prompt_is_sent_and_keys_the_cache(tmp_path):
    class Recording(ScriptedTeacher):
        async def complete(self, prompt, config):
            self.prompts = [*getattr(self, "prompts", []), prompt]
            return await super().complete(prompt, config)

    config = TeacherConfig(**FAST)
    with TeacherCache(tmp_path / "c.sqlite") as cache:
        teacher = Recording()
        custom = lambda r: f"Paraphrase: {r.prefix}"  # noqa: E731
        asyncio.run(teach_all(teacher, rows(2), config, cache, False, prompt_of=custom))
        assert teacher.prompts == [f"Paraphrase: {r.prefix}" for r in rows(2)]
        again = asyncio.run(teach_all(teacher, rows(2), config, cache, False, prompt_of=custom))
        assert all(r.cached for r in again) and len(teacher.prompts) == 2
        # the standard prompt for the same rows is another cache entry
        plain = asyncio.run(teach_all(teacher, rows(2), config, cache, False))
        assert not any(r.cached for r in plain) and len(teacher.prompts) == 4


def test_empty_request_list():
    assert run(ScriptedTeacher(), []) == []


def test_progress_bar_postfix_counts(capsys):
    teacher = ScriptedTeacher([RetryableError("down")] * 2)
    config = TeacherConfig(**{**FAST, "max_retries": 0})
    asyncio.run(teach_all(teacher, rows(3), config, None, progress=True))
    bar = capsys.readouterr().err
    assert "teacher fake:scripted" in bar and "3/3" in bar
    assert "ok=1" in bar and "cached=0" in bar and "errors=2" in bar


@pytest.mark.parametrize(
    "message, cause",
    [
        ("openai: HTTP 500 from http://x/v1: Internal Server Error", "HTTP 500"),
        ("APIConnectionError: Connection error.", "connection failed"),
        ("ConnectError: [Errno 111] Connection refused", "connection failed"),
        ("APITimeoutError: Request timed out.", "timed out"),
        ("JSONDecodeError: Expecting value: line 1 column 1", "malformed response"),
        ("HTTP 401: invalid api key", "authentication"),
        ("max_requests reached (--max-requests 10)", "max_requests reached"),
        ("SomethingElse: odd", "SomethingElse"),
    ],
)
def test_failure_cause(message, cause):
    from nlakit.data.teacher import failure_cause

    assert failure_cause(message) == cause
