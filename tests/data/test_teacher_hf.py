"""The local transformers teacher (`hf:PATH`) on a tiny random model: real token
counts, one result per request, and concurrent requests batched into one
`model.generate` call. The tokenizer is the session fixture of tests/conftest.py
(`build_tokenizer(sample_corpus())`)."""

from __future__ import annotations

import asyncio

import pytest

from nlakit.data.teacher import (
    STATUSES,
    TeacherConfig,
    TeachRequest,
    make_teacher,
    run_teacher,
    teach_all,
    teacher_prompt,
)
from nlakit.tiny import tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("hf_teacher")
    tiny_model("qwen3", tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def teacher(model_dir):
    return make_teacher(f"hf:{model_dir}", device="cpu")


@pytest.fixture
def batch_sizes(teacher, monkeypatch) -> list[int]:
    """Counts `teacher.model.generate` calls: the batch size of each, in order."""
    sizes: list[int] = []
    generate = teacher.model.generate

    def counting_generate(**kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        return generate(**kwargs)

    monkeypatch.setattr(teacher.model, "generate", counting_generate)
    return sizes


def rows(n: int) -> list[TeachRequest]:
    # Different lengths, so the batch needs (left) padding.
    return [TeachRequest(f"0:{i}", "the cat sat on the mat " * (i + 1), " mat") for i in range(n)]


def teach(teacher, requests, **config):
    async def main():
        try:
            return await teach_all(teacher, requests, TeacherConfig(**config), None, False)
        finally:
            await teacher.aclose()

    return asyncio.run(main())


def test_hf_teacher_batches_concurrent_requests(teacher, batch_sizes):
    requests = rows(5)
    results = teach(teacher, requests, concurrency=8, max_tokens=6)
    assert batch_sizes == [5]  # one generate call for all five pending prompts
    assert [r.key for r in results] == [r.key for r in requests]
    for request, result in zip(requests, results, strict=True):
        assert result.status in STATUSES and result.status != "error"
        rendered = teacher.tokenizer.apply_chat_template(
            [{"role": "user", "content": teacher_prompt(request)}],
            tokenize=False,
            add_generation_prompt=True,
        )
        n_prompt = len(teacher.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        assert result.input_tokens == n_prompt  # padding not counted
        assert 1 <= result.output_tokens <= 6


def test_hf_teacher_splits_into_batches_of_concurrency(teacher, batch_sizes):
    results = teach(teacher, rows(5), concurrency=3, max_tokens=2)
    assert sorted(batch_sizes, reverse=True) == [3, 2]
    assert len(results) == 5


def test_hf_teacher_greedy_is_padding_independent(teacher):
    short, long = rows(3)[0], rows(3)[2]
    twin = TeachRequest("1:0", short.prefix, short.token)
    results = teach(teacher, [short, long, twin], temperature=0.0, max_tokens=6)
    assert results[0].raw == results[2].raw
    assert results[0].output_tokens == results[2].output_tokens


def test_run_teacher_with_hf_spec(model_dir):
    results, report = run_teacher(
        f"hf:{model_dir}", rows(2), TeacherConfig(max_tokens=2), progress=False, device="cpu"
    )
    assert len(results) == 2 and report["calls"] == 2
    assert report["cost_usd"] is None  # local model: no price known
    assert report["output_tokens"] == sum(r.output_tokens for r in results) > 0
