"""The teacher step of the data pipeline: an LLM explains what a model's internal
state at one token represents, and those explanations become AV training targets.

Each `TeachRequest` is a text prefix ending at the token of interest. A named,
versioned prompt (`teacher_prompts.PROMPTS`: plain, structured, many-short; by default
the plain `teacher_prompt`) turns it into the request; a `Teacher` (`teacher_backends`:
Anthropic, OpenAI-compatible servers, local transformers models) answers it;
`parse_reply` pulls the explanation out of the tags and filters unusable replies.
`teach_all` runs many requests with bounded concurrency, retries with backoff,
an on-disk `TeacherCache` and a progress bar; `run_teacher` is its sync wrapper
that also returns a report (status counts, tokens, approximate cost).

    results, report = run_teacher("anthropic:claude-sonnet-4-6", requests,
                                  TeacherConfig(concurrency=16), cache_path="teacher.sqlite")
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from nlakit.config import Config, option
from nlakit.data.teacher_backends import (
    Completion,
    RetryableError,
    Teacher,
    make_teacher,
    redact_secrets,
)
from nlakit.data.teacher_cache import TeacherCache
from nlakit.data.teacher_prompts import (
    PROMPTS,
    TeacherPrompt,
    TeachRequest,
    get_prompt,
    teacher_prompt,
)
from nlakit.generation import parse_explanation

__all__ = [
    "PROMPTS",
    "STATUSES",
    "Completion",
    "RetryableError",
    "TeachRequest",
    "TeachResult",
    "Teacher",
    "TeacherCache",
    "TeacherConfig",
    "TeacherPrompt",
    "estimate_cost",
    "get_prompt",
    "make_teacher",
    "parse_reply",
    "run_teacher",
    "teach_all",
    "teacher_prompt",
]

STATUSES = ("ok", "missing_tags", "refusal", "too_few_features", "error")
MAX_REQUESTS_REACHED = "max_requests reached"

# Approximate list prices in USD per million tokens (input, output), standard tier,
# as published in mid-2026. They change: check the provider's pricing page, or set
# the prices in TeacherConfig. Looked up by exact name after dropping a date or
# "-latest" suffix, so a model missing here costs None rather than a wrong guess.
APPROX_PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-opus-4-6": (5.0, 25.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4-0": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4-6": (3.0, 15.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4-0": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "gpt-5.5": (5.0, 30.0),
    "gpt-5.4": (2.5, 15.0),
    "gpt-5.4-mini": (0.75, 4.5),
    "gpt-5.4-nano": (0.2, 1.25),
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
}
_MODEL_VERSION_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")

# Openings of a refusal (lower-cased, straight apostrophes).
_REFUSAL_OPENINGS = (
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i will not",
    "i'm sorry",
    "i am sorry",
    "sorry,",
    "i apologize",
    "i apologise",
    "i'm unable",
    "i am unable",
    "i'm not able",
    "i am not able",
    "as an ai",
    "unfortunately, i",
)
# A reply this short that contains a refusal phrase anywhere is "mostly" a refusal.
_SHORT_REPLY_CHARS = 400


@dataclass
class TeachResult:
    """The teacher's answer for one row. `explanation` is set only when status is "ok";
    `raw` is the full reply ("" when the request failed); token counts are the
    backend's (the stored ones for cache hits)."""

    key: str
    explanation: str | None
    raw: str
    status: str  # one of STATUSES
    input_tokens: int
    output_tokens: int
    cached: bool
    error: str = ""


@dataclass
class TeacherConfig(Config):
    """How teacher requests are sent. Times in seconds; prices in USD per million tokens."""

    concurrency: int = option(8, "requests in flight at once", ge=1)
    max_tokens: int = option(400, "reply cap, in tokens", ge=1)
    temperature: float = option(1.0, "teacher sampling temperature", ge=0)
    max_retries: int = option(6, "retries on 429, 5xx, timeouts and connection errors", ge=0)
    timeout_s: float = option(60.0, "per request", gt=0)
    base_delay_s: float = option(
        1.0, "backoff base: attempt n waits up to base * 2**n (full jitter)", ge=0
    )
    max_delay_s: float = option(60.0, "longest backoff wait", ge=0)
    max_requests: int | None = option(
        None, "paid calls; the rest get status 'error', uncached", ge=0
    )
    price_in_per_mtok: float | None = option(
        None, "USD per million input tokens (overrides the built-in table)", ge=0
    )
    price_out_per_mtok: float | None = option(
        None, "USD per million output tokens (overrides the built-in table)", ge=0
    )


def _is_refusal(text: str) -> bool:
    opening = text.strip().lstrip("\"'*_#> ").lower().replace("\u2019", "'")
    if opening.startswith(_REFUSAL_OPENINGS):
        return True
    return len(opening) <= _SHORT_REPLY_CHARS and any(p in opening for p in _REFUSAL_OPENINGS)


def parse_reply(text: str) -> tuple[str | None, str]:
    """(explanation, status) for a teacher reply; the explanation is None unless "ok".

    "refusal": no complete tags and the reply reads as a refusal; "missing_tags": no
    complete `<explanation>…</explanation>`; "too_few_features": fewer than 2
    non-empty lines inside the tags; else "ok" with the stripped text inside them.
    Every prompt's layout passes the same check: a structured reply has a line per
    field, a many-short reply 5–8 lines.
    """
    explanation = parse_explanation(text)
    if explanation is None:
        return None, "refusal" if _is_refusal(text) else "missing_tags"
    features = [line for line in explanation.splitlines() if line.strip()]
    if len(features) < 2:
        return None, "too_few_features"
    return explanation, "ok"


def estimate_cost(
    spec: str, input_tokens: int, output_tokens: int, config: TeacherConfig
) -> float | None:
    """Approximate USD for the tokens, from the config's prices or the built-in table;
    None when no price is known (local models, unlisted names)."""
    scheme, _, model = spec.partition(":")
    if scheme == "openai":
        model = model.rpartition("@")[0] or model
    listed = (
        None if scheme == "hf" else APPROX_PRICES_PER_MTOK.get(_MODEL_VERSION_SUFFIX.sub("", model))
    )
    price_in = config.price_in_per_mtok
    price_out = config.price_out_per_mtok
    if listed is not None:
        price_in = listed[0] if price_in is None else price_in
        price_out = listed[1] if price_out is None else price_out
    if price_in is None or price_out is None:
        return None
    return (input_tokens * price_in + output_tokens * price_out) / 1e6


async def _complete_with_retries(
    teacher: Teacher, prompt: str, config: TeacherConfig
) -> Completion:
    """`teacher.complete`, retrying `RetryableError` with capped exponential backoff and
    full jitter, waiting at least the server's retry-after."""
    for attempt in range(config.max_retries + 1):
        try:
            return await teacher.complete(prompt, config)
        except RetryableError as exc:
            if attempt == config.max_retries:
                raise RetryableError(
                    f"gave up after {config.max_retries} retries: {exc}", exc.retry_after
                ) from None
            delay = random.uniform(0, min(config.max_delay_s, config.base_delay_s * 2**attempt))
            if exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class _Run:
    """Counters shared by the tasks of one `teach_all` call."""

    def __init__(self, config: TeacherConfig, total: int, progress: bool, spec: str):
        self.config = config
        self.calls = 0
        self.counts: Counter[str] = Counter()
        self.bar = tqdm(total=total, disable=not progress, desc=f"teacher {spec}", unit="row")

    def claim_call(self) -> bool:
        """Count a paid call, or refuse one once `max_requests` calls were made."""
        limit = self.config.max_requests
        if limit is not None and self.calls >= limit:
            return False
        self.calls += 1
        return True

    def done(self, result: TeachResult) -> TeachResult:
        self.counts["cached"] += result.cached
        self.counts[result.status] += 1
        self.bar.set_postfix(
            ok=self.counts["ok"],
            cached=self.counts["cached"],
            errors=self.counts["error"],
            refresh=False,  # update() redraws, rate-limited
        )
        self.bar.update(1)
        return result


def _error(key: str, message: str) -> TeachResult:
    return TeachResult(key, None, "", "error", 0, 0, False, message)


def _describe(exc: Exception) -> str:
    """A key-free one-line description of a failed request."""
    # Backends already write complete messages; other exceptions need their type.
    if isinstance(exc, (RetryableError, RuntimeError)):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    return redact_secrets(message)


_CAUSES = (  # (words in a failure message, the cause it is counted under)
    (("max_requests",), "max_requests reached"),
    (("connect", "refused", "unreachable", "name or service", "nodename"), "connection failed"),
    (("timed out", "timeout"), "timed out"),
    (("json", "decode", "malformed", "unexpected response"), "malformed response"),
    (("401", "403", "api key", "authentication", "permission"), "authentication"),
    (("429", "rate limit"), "rate limited"),
)


def failure_cause(message: str) -> str:
    """The cause a failed request is counted under (`HTTP 500`, `connection failed`, …)."""
    text = message.lower()
    status = re.search(r"\b(?:http|status)\D{0,3}([45]\d\d)\b", text)
    if status and status.group(1) not in ("401", "403", "429"):
        return f"HTTP {status.group(1)}"
    for words, cause in _CAUSES:
        if any(w in text for w in words):
            return cause
    return message.split(":")[0][:60] or "unknown"


def failure_counts(results) -> dict[str, int]:
    """Failed requests (status `error`) by cause, most frequent first."""
    causes = Counter(failure_cause(r.error) for r in results if r.status == "error")
    return dict(causes.most_common())


def _result(key: str, completion: Completion, cached: bool) -> TeachResult:
    explanation, status = parse_reply(completion.text)
    return TeachResult(
        key,
        explanation,
        completion.text,
        status,
        completion.input_tokens,
        completion.output_tokens,
        cached,
    )


async def teach_all(
    teacher: Teacher,
    requests: Sequence[TeachRequest],
    config: TeacherConfig,
    cache: TeacherCache | None,
    progress: bool = True,
    prompt_of: Callable[[TeachRequest], str] = teacher_prompt,
) -> list[TeachResult]:
    """Answer every request (results in request order), at most `config.concurrency`
    at a time; cache hits make no call, and every successful reply is cached at once.
    A row that fails (after retries, or past `max_requests`) gets status "error".

    `prompt_of` writes each request's prompt (default: the explanation prompt); the
    analyses pass their own (few-shot, paraphrase) and keep the batching, retries,
    cache and request cap. The cache key is the prompt actually sent."""
    run = _Run(config, len(requests), progress, teacher.spec)
    in_flight = asyncio.Semaphore(config.concurrency)
    params = {"max_tokens": int(config.max_tokens), "temperature": float(config.temperature)}
    results: list[TeachResult | None] = [None] * len(requests)
    todo = iter(enumerate(requests))

    async def answer(request: TeachRequest) -> TeachResult:
        prompt = prompt_of(request)
        key = cache.key(teacher.spec, prompt, params) if cache is not None else ""
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            return _result(request.key, hit, cached=True)
        async with in_flight:
            if not run.claim_call():
                return _error(request.key, MAX_REQUESTS_REACHED)
            try:
                completion = await _complete_with_retries(teacher, prompt, config)
            except Exception as exc:
                return _error(request.key, _describe(exc))
        if cache is not None:
            cache.put(key, completion)
        return _result(request.key, completion, cached=False)

    async def worker() -> None:
        for index, request in todo:
            results[index] = run.done(await answer(request))

    # A fixed pool of workers rather than one task per row (a million-row run must
    # not hold a million coroutines); twice as many workers as call slots, so cache
    # lookups go on while every slot waits on the teacher.
    n_workers = min(2 * config.concurrency, len(requests))
    try:
        await asyncio.gather(*(worker() for _ in range(n_workers)))
    finally:
        run.bar.close()
    return [r for r in results if r is not None]


def teach_sync(
    new_teacher: Callable[[], Teacher],
    requests: Sequence[TeachRequest],
    config: TeacherConfig,
    cache_path: str | os.PathLike | None = None,
    progress: bool = True,
    prompt_of: Callable[[TeachRequest], str] = teacher_prompt,
) -> list[TeachResult]:
    """`teach_all` from synchronous code: the teacher is made inside the event loop (its
    async client binds to it), closed after, and the cache at `cache_path` is closed. The
    cache is opened once the teacher is made: a bad spec or a missing key writes nothing."""
    opened: list[TeacherCache] = []

    async def main() -> list[TeachResult]:
        teacher = new_teacher()
        if cache_path is not None:
            opened.append(TeacherCache(cache_path))
        try:
            cache = opened[0] if opened else None
            return await teach_all(teacher, requests, config, cache, progress, prompt_of)
        finally:
            await teacher.aclose()

    try:
        return asyncio.run(main())
    finally:
        for cache in opened:
            cache.close()


def run_teacher(
    spec: str,
    requests: list[TeachRequest],
    config: TeacherConfig | None = None,
    cache_path: str | os.PathLike | None = None,
    progress: bool = True,
    prompt_of: Callable[[TeachRequest], str] = teacher_prompt,
    **teacher_kwargs,
) -> tuple[list[TeachResult], dict]:
    """Run `teach_all` with the teacher `spec` names and the prompt `prompt_of` writes
    (a `PROMPTS[name].write`; default the plain prompt); returns (results, report).

    The report: teacher, requests, calls (paid calls made), cache_hits,
    status_counts, input_tokens / output_tokens (of the paid calls), cost_usd
    (approximate, None when no price is known) and seconds (wall clock).
    """
    config = config or TeacherConfig()
    start = time.monotonic()
    results = teach_sync(
        lambda: make_teacher(spec, **teacher_kwargs),
        requests,
        config,
        cache_path,
        progress,
        prompt_of,
    )
    paid = [r for r in results if not r.cached]
    input_tokens = sum(r.input_tokens for r in paid)
    output_tokens = sum(r.output_tokens for r in paid)
    counts = Counter(r.status for r in results)
    report = {
        "teacher": spec,
        "requests": len(requests),
        "calls": sum(1 for r in paid if r.error != MAX_REQUESTS_REACHED),
        "cache_hits": len(results) - len(paid),
        "status_counts": {status: counts[status] for status in STATUSES},
        "failures": failure_counts(results),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": estimate_cost(spec, input_tokens, output_tokens, config),
        "seconds": round(time.monotonic() - start, 3),
    }
    return results, report
