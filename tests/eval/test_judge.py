"""Asking a judge: replies through the teacher backends (the local fake LLM server),
cached, and multiple-choice answers parsed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nlakit.eval.judge import ask, numbered, parse_choice

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))  # the fake LLM server
from fake_llm import FakeLLM


@pytest.mark.parametrize(
    ("reply", "n", "expected"),
    [
        ("Answer: 3", 10, 2),
        ("I think option 2 fits best.\nAnswer: (7)", 10, 6),
        ("answer=B", 4, 1),
        ("Candidate 4.", 10, 3),
        ("Between 2 and 5 ... hard to say", 10, None),  # two numbers, no Answer:
        ("Answer: 11", 10, None),  # out of range
        ("3.5 points", 10, None),  # not an option number
        ("", 10, None),
        (None, 10, None),
    ],
)
def test_parse_choice(reply, n, expected):
    assert parse_choice(reply, n) == expected


def test_numbered():
    assert numbered([" a ", "b"]) == "1. a\n\n2. b"


def test_ask_through_the_fake_server_is_cached(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    prompts = ["Which? 1 or 2", "And now? 1 or 2"]
    with FakeLLM() as fake:
        fake.reply("Answer: 2", times=2)
        spec = f"openai:judge@{fake.openai_url}"
        replies, report = ask(spec, prompts, tmp_path / "judge.sqlite", progress=False)
        again, report_again = ask(spec, prompts, tmp_path / "judge.sqlite", progress=False)
        assert len(fake.requests) == 2  # the second time, every answer came from the cache
        assert sorted(r.prompt for r in fake.requests) == sorted(prompts)
    assert replies == again == ["Answer: 2", "Answer: 2"]
    assert report == {"judge": spec, "requests": 2, "failed": 0, "cache_hits": 0}
    assert report_again["cache_hits"] == 2


def test_ask_reports_failed_requests(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeLLM() as fake:
        fake.fail(400, times=1)
        replies, report = ask(f"openai:judge@{fake.openai_url}", ["q"], progress=False)
    assert replies == [None] and report["failed"] == 1
