"""Teaching: a teacher writes an explanation for every extracted row.

    nlakit teach --data DIR --teacher SPEC

SPEC is `anthropic:MODEL`, `openai:MODEL@BASE_URL` (any OpenAI-compatible server),
`hf:PATH` (a local transformers model) or `toyworld` (the toy world's oracle; the
world is the extraction's corpus, or `toyworld:DIR`). The teacher sees the text up
to and including the row's token. Answers are cached on disk (SQLite, keyed by
teacher, prompt and sampling parameters), so a re-run or a crash never repeats a
paid call. The explanations land in `DIR/explanations/<teacher>.parquet` with
their status (`ok`, `missing_tags`, `refusal`, `too_few_features`, `error`), and
the counts, tokens and cost in `DIR/explanations/<teacher>.json`.

`--prompt structured` or `--prompt many-short` asks for another layout
(`nlakit.data.teacher_prompts`; the oracle writes the same layouts) and writes the
set `<teacher>_<prompt>`, so variants never overwrite each other; the report records
the prompt's name and version (`structured@v1`), and `nlakit build` carries it into
the tables. `--prompt plain` (the default) keeps the set name `<teacher>`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from nlakit.atomic import write_json, write_parquet
from nlakit.config import Config, ConfigError, option
from nlakit.data.extract import load_rows
from nlakit.data.tables import teacher_slug
from nlakit.data.teacher_prompts import PROMPTS, get_prompt
from nlakit.errors import NLAKitError
from nlakit.layouts import DEFAULT_LAYOUT
from nlakit.meta import read_meta
from nlakit.separators import SEPARATOR, add_separators
from nlakit.store.names import EXPLANATIONS_DIR


@dataclass
class TeachConfig(Config):
    """Which teacher explains the extracted rows, and how its requests are sent."""

    data: str = option(help="extraction directory")
    teacher: str = option(help="anthropic:MODEL, openai:MODEL@BASE_URL, hf:PATH, or toyworld")
    prompt: str = option(
        DEFAULT_LAYOUT,
        "explanation prompt: plain (2-3 features), structured (Genre/Topic/Context/Token/"
        "Next fields) or many-short (5-8 short features); a variant writes the set "
        "TEACHER_PROMPT",
        choices=tuple(PROMPTS),
    )
    concurrency: int = option(8, "requests in flight at once", ge=1)
    max_tokens: int = option(400, "reply cap, in tokens", ge=1)
    temperature: float = option(1.0, "teacher sampling temperature", ge=0)
    max_retries: int = option(
        6, "retries on 429, 5xx and timeouts (exponential backoff with jitter)", ge=0
    )
    timeout_s: float = option(60.0, "per request, in seconds", gt=0)
    max_requests: int | None = option(None, "stop after this many paid calls", ge=0)
    price_in_per_mtok: float | None = option(
        None, "USD per million input tokens (overrides the table)", ge=0
    )
    price_out_per_mtok: float | None = option(None, "USD per million output tokens", ge=0)
    limit: int | None = option(None, "only the first N rows (to try a teacher)", ge=1)
    oracle_context: float = option(
        0.8, "toyworld: share of explanations with the context feature", ge=0, le=1
    )
    cache: str | None = option(None, "SQLite cache file (default: DIR/teacher_cache.sqlite)")
    separators: bool = option(
        False,
        f"put the graded-prefix separator {SEPARATOR} after every sentence but the last of "
        "each explanation (the warm start of `nlakit rl --reward separators`); written as "
        "the set TEACHER_separators (`nlakit build --teacher TEACHER_separators`)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.separators and self.prompt == "structured":
            # Separators go after sentences; structured fields are not sentences, so the
            # set would carry none between fields and stray ones inside quotes.
            raise ConfigError(
                "--separators with --prompt structured: separators go after every sentence "
                "and the structured fields are not sentences, so none would fall between "
                "them; use --prompt plain or many-short with --separators."
            )


COLUMNS = ["doc_id", "position", "token", "detokenized_text_truncated"]


def _results_table(rows: pa.Table, results: list[dict]) -> pa.Table:
    return pa.table(
        {
            "doc_id": rows["doc_id"],
            "position": rows["position"],
            "explanation": pa.array([r["explanation"] for r in results], pa.string()),
            "raw": pa.array([r["raw"] for r in results], pa.string()),
            "status": pa.array([r["status"] for r in results], pa.string()),
            "input_tokens": pa.array([r["input_tokens"] for r in results], pa.int64()),
            "output_tokens": pa.array([r["output_tokens"] for r in results], pa.int64()),
            "cached": pa.array([r["cached"] for r in results], pa.bool_()),
        }
    )


def explanation_set_name(config: TeachConfig) -> str:
    """The file stem of the explanations `config` writes: the teacher, then the prompt
    unless it is the plain one, then `separators` when they are added."""
    name = teacher_slug(config.teacher)
    if config.prompt != DEFAULT_LAYOUT:
        name += f"_{config.prompt}"
    return name + ("_separators" if config.separators else "")


def oracle_explanations(
    data_dir: str, spec: str, rows: pa.Table, context_rate: float = 0.8, layout: str = "plain"
) -> list[dict]:
    """The toy world's oracle explanation of every row (true by construction), in
    `layout` (`nlakit.layouts.LAYOUTS`)."""
    # Lazy: the toy world is one optional corpus; data does not depend on it otherwise.
    from nlakit.toyworld.oracle import explain_record, oracle_rng
    from nlakit.toyworld.world import World

    corpus = read_meta(data_dir).extraction.corpus or ""
    world_dir = spec.removeprefix("toyworld").removeprefix(":") or corpus.removeprefix("toyworld:")
    if not world_dir or (not spec.startswith("toyworld:") and not corpus.startswith("toyworld:")):
        raise NLAKitError(
            f"--teacher {spec}: the oracle explains toy-world documents, but {data_dir} was "
            f"extracted from {corpus!r}. Use a toy-world corpus or another teacher."
        )
    world = World(world_dir)
    oracle = world.oracle()
    positions, tokens = rows["position"].to_pylist(), rows["token"].to_pylist()
    docs = world.documents_for(rows["doc_id"].to_pylist())
    records_of: dict[int, list] = {}
    out = []
    for doc, position, token in zip(docs, positions, tokens, strict=True):
        if doc.doc_id not in records_of:
            records_of[doc.doc_id] = oracle.records(doc)
        records = records_of[doc.doc_id]
        record = records[position] if position < len(records) else None
        if record is None or record.token != token:
            raise NLAKitError(
                f"doc {doc.table_id} position {position}: the extraction's token {token!r} is "
                f"not the world tokenizer's {getattr(record, 'token', None)!r}; extract with "
                "the world's model."
            )
        rng = oracle_rng(world.seed, doc.doc_id, position)
        text = explain_record(record, rng, context_rate, layout)
        out.append(
            {
                "explanation": text,
                "raw": text,
                "status": "ok",
                "input_tokens": 0,
                "output_tokens": 0,
                "cached": False,
            }
        )
    return out


def teach(config: TeachConfig, progress: bool = True) -> dict:
    """Explain every row; write the explanations and the report; return the report."""
    rows = load_rows(config.data, columns=COLUMNS)
    if config.limit is not None:
        rows = rows.slice(0, config.limit)
    start = time.perf_counter()
    prompt = get_prompt(config.prompt)
    if config.teacher == "toyworld" or config.teacher.startswith("toyworld:"):
        results = oracle_explanations(
            config.data, config.teacher, rows, config.oracle_context, prompt.name
        )
        report = {
            "teacher": config.teacher,
            "requests": rows.num_rows,
            "calls": 0,
            "cache_hits": 0,
            "status_counts": {"ok": rows.num_rows},
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
        }
    else:
        from nlakit.data.teacher import TeacherConfig, TeachRequest, run_teacher

        keys = [
            f"{d}:{p}"
            for d, p in zip(rows["doc_id"].to_pylist(), rows["position"].to_pylist(), strict=True)
        ]
        requests = [
            TeachRequest(key=k, prefix=prefix, token=token)
            for k, prefix, token in zip(
                keys,
                rows["detokenized_text_truncated"].to_pylist(),
                rows["token"].to_pylist(),
                strict=True,
            )
        ]
        teacher_config = TeacherConfig(
            concurrency=config.concurrency,
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            max_retries=config.max_retries,
            timeout_s=config.timeout_s,
            max_requests=config.max_requests,
            price_in_per_mtok=config.price_in_per_mtok,
            price_out_per_mtok=config.price_out_per_mtok,
        )
        cache = config.cache or str(Path(config.data) / "teacher_cache.sqlite")
        answers, report = run_teacher(
            config.teacher,
            requests,
            teacher_config,
            cache_path=cache,
            progress=progress,
            prompt_of=prompt.write,
        )
        results = [asdict(a) for a in answers]
    if config.separators:
        for r in results:
            if r["explanation"] is not None:
                r["explanation"] = add_separators(r["explanation"])
    report["seconds"] = round(time.perf_counter() - start, 2)
    report["prompt"] = prompt.tag
    folder = Path(config.data) / EXPLANATIONS_DIR
    folder.mkdir(exist_ok=True)
    path = folder / f"{explanation_set_name(config)}.parquet"
    write_parquet(path, _results_table(rows, results))
    report["explanations"] = str(path)
    write_json(path.with_suffix(".json"), report)
    return report
