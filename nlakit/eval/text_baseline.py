"""`nlakit analyze text_baseline --run RUN`: how much of the activation can be
reconstructed from the text alone, without reading the activation?

A teacher sees only each row's text prefix (the `context` of `RUN/eval/rows.parquet`),
never the activation, and writes an explanation; the run's AR scores it. Its FVE,
beside the AV's and the original teacher's, says how much the AV adds over what a
reader of the text could have written: an AV whose FVE is not above this baseline
has learned nothing from the vector that the text did not already give away.

Teachers:

- `anthropic:MODEL`, `openai:MODEL[@URL]`, `hf:PATH`: the LLM gets the standard
  teacher prompt preceded by `shots` examples of good explanations — the AV's
  explanations with the lowest mse_nrm, of rows from other documents, with their
  texts — so it writes in the AV's style. Answers are cached in
  `RUN/eval/text_baseline/teacher_cache.sqlite`.
- `toyworld`: the toy world's oracle writes from the text alone (no context quote:
  `context_rate=0`), never from the activation. It knows the document's latent
  variables (genre, topic, entity, tone, the token's role and what follows), which a
  reader of the text could in principle infer — though at an early position the text
  may not have revealed them yet, so this is an upper bound on what reading the text
  gives, not a fair LLM reader. On a demo run, whose teacher was this same oracle,
  it writes the teacher's very words (`same_as_teacher_rate` says how often).

Writes `RUN/eval/text_baseline/`: `explanations.parquet` (per row), `table.csv`,
`summary.json` (FVE of each condition with CI, n and baseline variance), `plot.png`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch

from nlakit.atomic import write_parquet
from nlakit.config import DEVICE_HELP, DTYPE_HELP, DTYPES, Config, option
from nlakit.data.teacher import (
    Teacher,
    TeacherConfig,
    TeachRequest,
    make_teacher,
    teach_sync,
    teacher_prompt,
)
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.outputs import write_analysis
from nlakit.eval.plots import bar_with_ci
from nlakit.eval.rows import EvalRows, load_rows
from nlakit.eval.stats import fve_summary
from nlakit.toyworld.world import World

NAME = directory_of(__name__)  # RUN/eval/text_baseline/
LABELS = {
    "av": "AV (reads the activation)",
    "text_only": "text-only teacher",
    "teacher": "original teacher",
}


@dataclass
class TextBaselineConfig(Config):
    """A teacher that reads the text (not the activation) as a baseline explainer."""

    run: str = option(help="run directory (after nlakit eval)")
    teacher: str = option(
        "toyworld", "toyworld (the oracle), anthropic:MODEL, openai:MODEL[@URL], hf:PATH"
    )
    shots: int = option(
        3, "examples shown to an LLM teacher (the AV's best explanations elsewhere)", ge=0
    )
    n: int = option(0, "rows explained, the first n of rows.parquet (0 = all)", ge=0)
    concurrency: int = option(8, "LLM teacher requests in flight at once", ge=1)
    max_requests: int | None = option(None, "stop after this many paid teacher calls", ge=0)
    bootstrap: int = option(1000, "bootstrap resamples for the confidence intervals", ge=1)
    seed: int = option(0, "seeds the shots and the bootstrap", ge=0)
    device: str | None = option(None, DEVICE_HELP)
    dtype: str | None = option(None, DTYPE_HELP, choices=DTYPES)
    progress: bool = option(True, "show progress bars")


@dataclass
class Shot:
    """One worked example of the few-shot prompt."""

    prefix: str  # the text up to and including the final token
    token: str  # the final token
    explanation: str  # a good explanation of the state at that token


def shot_indices(
    mse_nrm: list[float], doc_ids: list, explanations: list[str], shots: int
) -> list[list[int]]:
    """For each row, the `shots` rows with the lowest mse_nrm (best first) among rows of
    other documents with a non-empty explanation — never the row's own document, whose
    explanation would give its answer away."""
    ranked = sorted((i for i, e in enumerate(explanations) if e), key=lambda i: (mse_nrm[i], i))
    out = []
    for doc in doc_ids:
        picked: list[int] = []
        for j in ranked:
            if len(picked) == shots:
                break
            if doc_ids[j] != doc:
                picked.append(j)
        out.append(picked)
    return out


def few_shot_prompt(request: TeachRequest, shots: list[Shot]) -> str:
    """The standard teacher prompt for `request`, preceded by worked examples."""
    if not shots:
        return teacher_prompt(request)
    blocks = [
        f"<example>\n<text>\n{s.prefix}\n</text>\n"
        f"The final token is {json.dumps(s.token, ensure_ascii=False)}.\n"
        f"<explanation>\n{s.explanation}\n</explanation>\n</example>"
        for s in shots
    ]
    return (
        "Here are examples of good answers to the task below, each for another text:\n\n"
        + "\n\n".join(blocks)
        + "\n\nNow the task itself.\n\n"
        + teacher_prompt(request)
    )


def requests_of(rows: EvalRows, n: int) -> list[TeachRequest]:
    """One teacher request per row: its text prefix and final token."""
    c = rows.columns
    if not any(c.get("context", [])[:n]):
        raise NLAKitError(
            f"{rows.paths.rows}: the rows have no text (context column empty); a text-only "
            "teacher needs the eval table's detokenized_text_truncated column."
        )
    return [
        TeachRequest(key=f"{d}:{p}", prefix=x, token=t)
        for d, p, x, t in zip(
            c["doc_id"][:n], c["position"][:n], c["context"][:n], c["token"][:n], strict=True
        )
    ]


def llm_explanations(
    teacher: Teacher,
    requests: list[TeachRequest],
    shots: list[list[Shot]],
    config: TeacherConfig,
    cache_path: Path | None,
    progress: bool = True,
) -> tuple[list[str], list[str]]:
    """(explanations, statuses) of an LLM teacher answering each request's few-shot
    prompt; an unusable reply is the empty explanation (scored as such)."""
    shots_of = {r.key: s for r, s in zip(requests, shots, strict=True)}
    results = teach_sync(
        lambda: teacher,
        requests,
        config,
        cache_path,
        progress,
        prompt_of=lambda r: few_shot_prompt(r, shots_of[r.key]),
    )
    return [r.explanation or "" for r in results], [r.status for r in results]


def oracle_explanations(
    world_dir: Path, doc_ids: list[int | str], positions: list[int]
) -> list[str]:
    """The toy world's oracle's explanation of each (table doc_id, position), without a
    quote of the context (`context_rate=0`)."""
    world = World(world_dir)
    oracle = world.oracle()
    return [
        oracle.explain(doc, p, context_rate=0.0)[0]
        for doc, p in zip(world.documents_for(doc_ids), positions, strict=True)
    ]


def text_only_explanations(config: TextBaselineConfig, rows: EvalRows, n: int) -> tuple[list, list]:
    """(explanations, statuses) of the configured text-only teacher for the first n rows."""
    c = rows.columns
    if config.teacher == "toyworld":
        if rows.paths.world is None:
            raise NLAKitError(
                f"{rows.paths.root}: --teacher toyworld needs a toy-world run; pass an LLM "
                "teacher (anthropic:MODEL, openai:MODEL@URL, hf:PATH) instead."
            )
        texts = oracle_explanations(rows.paths.world, c["doc_id"][:n], c["position"][:n])
        return texts, ["ok"] * n
    if config.shots < 0:
        raise NLAKitError(f"shots: {config.shots}; pass 0 or more worked examples.")
    picks = shot_indices(c["mse_nrm"], c["doc_id"], c["explanation"], config.shots)
    shots = [
        [Shot(c["context"][j], c["token"][j], c["explanation"][j]) for j in picks[i]]
        for i in range(n)
    ]
    local = config.teacher.startswith("hf:")
    kwargs = {"device": config.device, "dtype": config.dtype} if local else {}
    teacher_config = TeacherConfig(concurrency=config.concurrency, max_requests=config.max_requests)
    cache = rows.paths.analysis_dir(NAME) / "teacher_cache.sqlite"
    cache.parent.mkdir(parents=True, exist_ok=True)
    return llm_explanations(
        make_teacher(config.teacher, **kwargs),
        requests_of(rows, n),
        shots,
        teacher_config,
        cache,
        config.progress,
    )


def text_baseline(config: TextBaselineConfig) -> dict:
    """Score a text-only teacher's explanations with the run's AR; returns the summary."""
    rows = load_rows(config.run, device=config.device, dtype=config.dtype)
    n = min(config.n or len(rows), len(rows))
    texts, statuses = text_only_explanations(config, rows, n)
    errors = {"av": torch.tensor(rows.columns["mse_nrm"][:n])}
    errors["text_only"] = rows.score(texts, rows.vectors[:n])
    if "teacher_mse_nrm" in rows.columns:
        errors["teacher"] = torch.tensor(rows.columns["teacher_mse_nrm"][:n])
    stats = {
        k: fve_summary(e, rows.baseline, config.bootstrap, config.seed) for k, e in errors.items()
    }
    teacher_texts = rows.columns.get("teacher_explanation")
    same = None if teacher_texts is None else sum(map(str.__eq__, texts, teacher_texts[:n])) / n
    summary = {
        "run": str(rows.paths.root),
        "ar": str(rows.paths.ar),
        "teacher": config.teacher,
        "shots": 0 if config.teacher == "toyworld" else config.shots,
        "n": n,
        "baseline_variance": rows.baseline.variance,
        "baseline_n": rows.baseline.n,
        **{f"fve_{k}": s["fve"] for k, s in stats.items()},
        "conditions": stats,
        "status_counts": {s: statuses.count(s) for s in sorted(set(statuses))},
        "same_as_teacher_rate": same,  # share of rows where it wrote the teacher's very words
    }
    out = rows.paths.analysis_dir(NAME)
    per_row = {
        "doc_id": rows.columns["doc_id"][:n],
        "position": rows.columns["position"][:n],
        "explanation": texts,
        "status": statuses,
        "mse_nrm": errors["text_only"].tolist(),
    }
    write_parquet(out / "explanations.parquet", pa.table(per_row))
    table = [{"condition": k, "label": LABELS[k], **s} for k, s in stats.items()]
    write_analysis(out, table, summary, _figure(stats, summary))
    return summary


def _figure(stats: dict, summary: dict):
    names = list(stats)
    return bar_with_ci(
        f"Text-only baseline ({summary['teacher']}), scored by the run's AR\n"
        f"n = {summary['n']}, baseline variance {summary['baseline_variance']:.3f}",
        [LABELS[k] for k in names],
        [stats[k]["fve"] for k in names],
        [stats[k]["ci_low"] for k in names],
        [stats[k]["ci_high"] for k in names],
        xlabel="who wrote the explanations",
    )
