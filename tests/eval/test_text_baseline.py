"""Text-only baseline: the few-shot prompt and its examples, an LLM teacher behind
`teach_all` (a fake one here), the toy-world oracle on the small eval run (mechanics),
and on the demo run how the baseline compares with the AV."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from nlakit.data.teacher import Completion, Teacher, TeacherConfig, TeachRequest, teacher_prompt
from nlakit.errors import NLAKitError
from nlakit.eval.rows import load_rows
from nlakit.eval.text_baseline import (
    Shot,
    TextBaselineConfig,
    few_shot_prompt,
    llm_explanations,
    oracle_explanations,
    requests_of,
    shot_indices,
    text_baseline,
)

REQUEST = TeachRequest(key="7:12", prefix="Once upon a time, a fox", token=" fox")
SHOTS = [
    Shot("Mix the flour and", " and", "Recipe: bread.\nThe final token is a conjunction."),
    Shot('She said "hello', "hello", "Story: a greeting.\nThe final token opens a quote."),
]


def test_shot_indices_pick_the_best_rows_of_other_documents():
    mse = [0.5, 0.1, 0.3, 0.2, 0.05, 0.9]
    docs = [1, 1, 2, 3, 3, 4]
    texts = ["a", "b", "c", "d", "", "f"]  # row 4 is best but has no explanation
    picks = shot_indices(mse, docs, texts, shots=2)
    assert picks[0] == [3, 2]  # doc 1: not rows 0 or 1
    assert picks[1] == [3, 2]
    assert picks[2] == [1, 3]
    assert picks[3] == [1, 2]  # doc 3: not row 3 (nor the empty row 4)
    assert picks[5] == [1, 3]
    assert shot_indices(mse, docs, texts, shots=0) == [[]] * 6
    assert shot_indices([0.1, 0.2], [1, 1], ["a", "b"], shots=3) == [[], []]


def test_few_shot_prompt():
    prompt = few_shot_prompt(REQUEST, SHOTS)
    assert prompt.endswith(teacher_prompt(REQUEST))
    head = prompt[: -len(teacher_prompt(REQUEST))]
    assert head.count("<example>") == 2 and head.count("</explanation>") == 2
    # Examples in the given order, each with its text, quoted token and explanation.
    first, second = head.index("Mix the flour"), head.index('She said "hello')
    assert 0 < first < head.index("Recipe: bread.") < second < head.index("Story: a greeting")
    assert 'The final token is " and".' in head
    assert 'The final token is "hello".' in head
    assert REQUEST.prefix not in head  # the row's own text comes only in the task
    assert few_shot_prompt(REQUEST, []) == teacher_prompt(REQUEST)


class FakeTeacher(Teacher):
    spec = "fake:teacher"

    def __init__(self):
        self.prompts: list[str] = []

    async def complete(self, prompt: str, config: TeacherConfig) -> Completion:
        self.prompts.append(prompt)
        if "broken" in prompt:
            return Completion("no tags here", 10, 3)
        return Completion("<explanation>\nGenre: a guess.\nThe last token.\n</explanation>", 10, 8)


def test_llm_teacher_answers_the_few_shot_prompts(tmp_path):
    requests = [REQUEST, TeachRequest("8:3", "a broken text", " text")]
    shots = [SHOTS, SHOTS[:1]]
    teacher = FakeTeacher()
    cache = tmp_path / "cache.sqlite"
    texts, statuses = llm_explanations(
        teacher, requests, shots, TeacherConfig(), cache, progress=False
    )
    assert texts == ["Genre: a guess.\nThe last token.", ""]
    assert statuses == ["ok", "missing_tags"]
    assert sorted(teacher.prompts) == sorted(
        few_shot_prompt(r, s) for r, s in zip(requests, shots, strict=True)
    )
    # Cached: asking again makes no call; other examples are another prompt set.
    again = FakeTeacher()
    assert llm_explanations(again, requests, shots, TeacherConfig(), cache, False)[0] == texts
    assert again.prompts == []
    other = FakeTeacher()
    llm_explanations(other, requests, [SHOTS[1:], SHOTS], TeacherConfig(), cache, False)
    assert len(other.prompts) == 2


def test_requests_need_the_text():
    rows = SimpleNamespace(
        columns={"doc_id": [1], "position": [4], "context": [""], "token": ["x"]},
        paths=SimpleNamespace(rows="RUN/eval/rows.parquet"),
    )
    with pytest.raises(NLAKitError, match="no text"):
        requests_of(rows, 1)
    rows.columns["context"] = ["the x"]
    assert requests_of(rows, 1) == [TeachRequest("1:4", "the x", "x")]


def test_oracle_explanations_take_string_and_old_int64_doc_ids(small_world):
    from nlakit.toyworld.world import World

    world = World(small_world)
    doc = world.documents(limit=1)[0]
    position = world.min_pos
    new, old = oracle_explanations(small_world, [doc.table_id, doc.doc_id], [position] * 2)
    assert new and new == old == world.oracle().explain(doc, position, context_rate=0.0)[0]
    with pytest.raises(NLAKitError, match="fineweb:train:3"):
        oracle_explanations(small_world, ["fineweb:train:3"], [position])


def test_text_baseline_on_the_small_run(eval_run):
    summary = text_baseline(
        TextBaselineConfig(run=str(eval_run), n=24, bootstrap=100, device="cpu", progress=False)
    )
    out = eval_run / "eval" / "text_baseline"
    for name in ("table.csv", "summary.json", "plot.png", "explanations.parquet"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["n"] == 24 and summary["baseline_variance"] > 0
    assert set(summary["conditions"]) == {"av", "text_only", "teacher"}
    # Consistency: the same as scoring the oracle's context-free explanations directly.
    rows = load_rows(eval_run, device="cpu")
    texts = oracle_explanations(
        rows.paths.world, rows.columns["doc_id"][:24], rows.columns["position"][:24]
    )
    assert all(texts)
    direct = rows.fve(rows.score(texts, rows.vectors[:24]))
    assert summary["fve_text_only"] == pytest.approx(direct, abs=1e-5)
    assert summary["fve_av"] == pytest.approx(rows.fve(_tensor(rows.columns["mse_nrm"][:24])))
    written = pq.read_table(out / "explanations.parquet").to_pydict()
    assert written["explanation"] == texts and written["status"] == ["ok"] * 24
    assert len((out / "table.csv").read_text().splitlines()) == 4


def _tensor(values):
    import torch

    return torch.tensor(values)


@pytest.mark.slow
def test_text_only_oracle_beats_the_demo_av(demo_eval_run):
    summary = text_baseline(TextBaselineConfig(run=str(demo_eval_run), device="cpu"))
    text_only, av = summary["conditions"]["text_only"], summary["conditions"]["av"]
    # Reading the text (through the oracle's knowledge of its latents) gives the AR far
    # more than the AV's reading of the activation does.
    assert text_only["fve"] > 0.3
    assert text_only["ci_low"] > av["ci_high"]
    # The demo's teacher is this very oracle, so it writes the teacher's words exactly.
    assert summary["same_as_teacher_rate"] == 1.0
    assert text_only["fve"] == pytest.approx(summary["conditions"]["teacher"]["fve"])
