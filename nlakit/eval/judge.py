"""Asking a judge: an LLM, through any teacher backend, answers questions about explanations.

The evaluations that need a reader of explanations (suffix prediction, judged quality,
classification by a judge, the secret audit) send their questions through the data
pipeline's teacher backends (`anthropic:MODEL`, `openai:MODEL[@URL]`, `hf:PATH`), with
its batching, retries, request cap and on-disk cache: re-running an analysis pays only
for questions it has not asked before. On the toy world each analysis also has an
`oracle` judge, rules that read the world's labels; those live with the analysis.

    replies, report = ask("openai:gpt-4.1-mini", prompts, cache_path="RUN/eval/x/judge.sqlite")
    pick = parse_choice(replies[0], n=10)      # 0-based index, or None
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from nlakit.data.teacher import TeacherConfig, TeachRequest, teach_sync
from nlakit.data.teacher_backends import make_teacher

ORACLE = "oracle"  # the toy world's rule-based judge, where an analysis has one
_ANSWER = re.compile(r"answer\s*[:=]?\s*\(?([0-9]+|[A-Za-z])\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])([0-9]+)(?!\w|\.\d)")


def ask(
    spec: str,
    prompts: Sequence[str],
    cache_path: str | os.PathLike | None = None,
    *,
    max_tokens: int = 64,
    temperature: float = 0.0,
    concurrency: int = 8,
    progress: bool = True,
    device: str = "cpu",
    dtype: str | None = None,
) -> tuple[list[str | None], dict]:
    """(reply per prompt, report) from the judge `spec`: the raw reply text, or None where
    the request failed after its retries. The report: judge, requests, failed, cache_hits."""
    requests = [TeachRequest(str(i), p, "") for i, p in enumerate(prompts)]
    kwargs = {"device": device, "dtype": dtype} if spec.startswith("hf:") else {}
    config = TeacherConfig(concurrency=concurrency, max_tokens=max_tokens, temperature=temperature)
    results = []
    if requests:
        results = teach_sync(
            lambda: make_teacher(spec, **kwargs),
            requests,
            config,
            cache_path,
            progress,
            prompt_of=lambda r: r.prefix,
        )
    replies = [r.raw if r.status != "error" else None for r in results]
    report = {
        "judge": spec,
        "requests": len(requests),
        "failed": sum(r is None for r in replies),
        "cache_hits": sum(r.cached for r in results),
    }
    return replies, report


def parse_choice(reply: str | None, n: int) -> int | None:
    """The 0-based option a reply picks among `n` options numbered 1..n (or lettered A..):
    the value after "Answer:" when there is one, else the only option number in the reply;
    None when the reply names no option, or several without an "Answer:"."""
    if not reply:
        return None
    match = _ANSWER.search(reply)
    if match:
        token = match.group(1)
        index = int(token) - 1 if token.isdigit() else ord(token.upper()) - ord("A")
        return index if 0 <= index < n else None
    numbers = {int(m) for m in _NUMBER.findall(reply) if 1 <= int(m) <= n}
    return numbers.pop() - 1 if len(numbers) == 1 else None


def numbered(options: Sequence[str]) -> str:
    """Options as a numbered list, one per paragraph, for a multiple-choice prompt."""
    return "\n\n".join(f"{i}. {option.strip()}" for i, option in enumerate(options, 1))
