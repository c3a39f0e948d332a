"""Training tables: activations + teacher explanations → av_sft / ar_sft / rl / eval.

    nlakit build --data DIR --out TABLES

Each table is a parquet file in the released schema with its sidecar
`{file}.nla_meta.yaml` (`kind: nla_dataset`, `schema_version: 1`, the stage, the
marker and its neighbour ids, the AR suffix ids, both prompt templates):

- `av_sft.parquet`, `rl.parquet`, `eval.parquet`: `prompt` is the AV chat (one user
  message whose marker is the `<INJECT>` placeholder), `response` the explanation in
  `<explanation>` tags (for RL, the teacher's, as a reference);
- `ar_sft.parquet`: `prompt` is the filled AR template;

all with the raw `activation_vector` and the provenance columns. `baseline.json`
holds the FVE baseline (mu, variance, n) of the training rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import string
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from nlakit.atomic import write_json
from nlakit.config import Config, ConfigError, option
from nlakit.data.extract import load_rows
from nlakit.data.positions import SPLITS
from nlakit.errors import NLAKitError
from nlakit.generation import wrap_explanation
from nlakit.meta import (
    INJECT_PLACEHOLDER,
    DatasetMeta,
    ModelMeta,
    dataset_id,
    new_meta,
    parse_scale,
    read_meta,
)
from nlakit.metrics import FVEBaseline
from nlakit.models import load_tokenizer, local_dir
from nlakit.separators import add_separators
from nlakit.store.guard import LOCK_FILE, check_output_dir, locked
from nlakit.store.names import BASELINE_FILE, BUILD_RECORD, EXPLANATIONS_DIR, table_file
from nlakit.store.readers import read_json, read_parquet
from nlakit.store.tables import write_table
from nlakit.store.vectors import VECTOR_COLUMN, decode_vectors

PROVENANCE = [
    "doc_id",
    "position",
    "n_raw_tokens",
    "activation_layer",
    "token",
    "detokenized_text_truncated",
    "source",
]
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])


@dataclass
class BuildConfig(Config):
    """Which extraction and explanations make the training tables, and their templates."""

    data: str = option(help="extraction directory, with explanations from `nlakit teach`")
    out: str = option(help="directory for the tables")
    teacher: str | None = option(None, "which explanations to use (default: the only set)")
    injection_scale: str | None = option(
        None, "number, sqrt_d_model or raw (default: the extraction's suggestion)"
    )
    tokenizer: str | None = option(
        None, "tokenizer directory or Hub id (default: the extracted model's)"
    )
    baseline_rows: int = option(50000, "training rows the FVE baseline is computed from", ge=2)
    av_template: str | None = option(
        None, "AV prompt template with {injection_char} (default: nlakit's)"
    )
    ar_template: str | None = option(
        None, "AR prompt template with {explanation} (default: nlakit's)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, placeholder in (
            ("av_template", "injection_char"),
            ("ar_template", "explanation"),
        ):
            problem = template_problem(getattr(self, name), placeholder)
            if problem:
                raise ConfigError(f"--{name.replace('_', '-')}: {problem}")

    def identity_hash(self) -> str:
        blob = json.dumps(
            {k: v for k, v in dataclasses.asdict(self).items() if k != "out"}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def template_problem(template: str | None, placeholder: str) -> str | None:
    """Why `template` cannot be a prompt template with one `{placeholder}` (and no other
    field), or None when it can (or is None: the default)."""
    if template is None:
        return None
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"not a valid template ({exc}); write literal braces as {{{{ and }}}}"
    if fields.count(placeholder) != 1 or len(fields) != 1:
        return (
            f"expected a template containing `{{{placeholder}}}` once and no other `{{…}}` "
            f"field, got {template!r}"
        )
    return None


def tokenizer_mismatches(tokenizer, token_ids: list[int], tokens: list[str]) -> list[str]:
    """The extracted (id, token) pairs that `tokenizer` decodes differently: the
    extraction's tokenizer is another one when any do."""
    bad = []
    for token_id, token in zip(token_ids, tokens, strict=True):
        got = (
            tokenizer.decode([token_id], skip_special_tokens=False)
            if 0 <= token_id < len(tokenizer)
            else None
        )
        if got != token:
            bad.append(f"id {token_id}: {token!r} extracted, {got!r} here")
    return bad


def teacher_slug(spec: str) -> str:
    """A file-name-safe name for a teacher spec."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)


def explanations_path(data_dir: str | os.PathLike, teacher: str | None) -> Path:
    folder = Path(data_dir) / EXPLANATIONS_DIR
    found = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if teacher is not None:
        path = folder / f"{teacher_slug(teacher)}.parquet"
        if not path.is_file():
            raise NLAKitError(
                f"{path}: no explanations from teacher {teacher!r}; found "
                f"{[p.stem for p in found]}. Run `nlakit teach --teacher {teacher}`."
            )
        return path
    if len(found) != 1:
        raise NLAKitError(
            f"{folder}: expected one set of explanations, found {[p.stem for p in found]}. "
            "Run `nlakit teach` first, or choose one with --teacher."
        )
    return found[0]


def explanations_prompt(path: Path) -> str | None:
    """The prompt (`structured@v1`) that wrote the explanations at `path`, from the report
    `nlakit teach` wrote beside them; None when the report records none (sets taught
    before prompts were named) or is missing."""
    report_path = path.with_suffix(".json")
    if not report_path.is_file():
        return None
    report = read_json(report_path, "the teacher's report", "Re-run `nlakit teach`.")
    prompt = report.get("prompt")
    return prompt if isinstance(prompt, str) else None


def _ok_explanations(path: Path) -> tuple[dict[tuple[str, int], str], dict]:
    """The usable explanations by (doc_id, position), and the count of each status."""
    table = read_parquet(
        path,
        ["doc_id", "position", "explanation", "status"],
        what="teacher explanations (`nlakit teach`)",
        fix="Re-run `nlakit teach`; its cache keeps the finished explanations.",
    )
    ok, counts = {}, {}
    for doc_id, pos, text, status in zip(
        *(table[c].to_pylist() for c in table.column_names), strict=True
    ):
        counts[status] = counts.get(status, 0) + 1
        if status == "ok" and text:
            ok[(str(doc_id), pos)] = text  # older files hold int64 doc ids; the rows, text
    return ok, counts


def av_prompt(meta: ModelMeta) -> list[dict]:
    return [{"role": "user", "content": meta.av_template.format(injection_char=INJECT_PLACEHOLDER)}]


def split_table(rows: pa.Table, explanations: list[str], stage: str, meta: ModelMeta) -> pa.Table:
    """The table of one stage from its activation rows and their explanations."""
    n = rows.num_rows
    if stage == "ar_sft":
        prompt = pa.array(
            [meta.ar_template.format(explanation=e) for e in explanations], pa.string()
        )
    else:
        prompt = pa.array([av_prompt(meta)] * n, pa.list_(_MESSAGE))
    columns = {
        "prompt": prompt,
        "response": pa.array([wrap_explanation(e) for e in explanations], pa.string()),
        "explanation": pa.array(explanations, pa.string()),
        VECTOR_COLUMN: rows[VECTOR_COLUMN],
    }
    columns.update({c: rows[c] for c in PROVENANCE})
    return pa.table(columns)


def build_tables(config: BuildConfig) -> dict:
    """Write the four tables, their sidecars and `baseline.json`; returns the report."""
    out = Path(config.out)
    record_path = out / BUILD_RECORD
    if record_path.is_file():
        record = read_json(record_path, "the tables' build record", "Choose another --out.")
        if record.get("identity_hash") == config.identity_hash():
            return {**record, "cached": True}
        raise NLAKitError(
            f"{out}: holds tables built with other settings ({record.get('config')}); "
            "it is left as is. Choose another --out."
        )
    check_output_dir(out)
    if out.exists() and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise NLAKitError(f"--out {out}: exists and is not empty; choose another --out.")
    base = read_meta(config.data)
    if not isinstance(base, DatasetMeta) or base.stage != "base":
        raise NLAKitError(f"{base.source}: expected the sidecar of an extraction (stage base).")
    ex = base.extraction
    scale = (
        ex.injection_scale
        if config.injection_scale is None
        else parse_scale(config.injection_scale, "--injection-scale", None)
    )
    if scale is None and config.injection_scale is None:
        raise NLAKitError(
            f"{base.source}: records no injection scale (the release's datasets leave it to "
            "training). Pass --injection-scale: a number near the mean activation norm "
            "(`nlakit extract` suggests one), or sqrt_d_model."
        )
    tokenizer = load_tokenizer(local_dir(config.tokenizer or ex.base_model))
    templates = {
        k: v
        for k, v in (("av_template", config.av_template), ("ar_template", config.ar_template))
        if v
    }
    meta = new_meta(
        tokenizer,
        ex.layer_index,
        ex.d_model,
        injection_scale=scale,
        mse_scale=ex.mse_scale,
        base_model=ex.base_model,
        **templates,
    )

    rows = load_rows(config.data)
    if rows.schema.field(VECTOR_COLUMN).type.list_size != ex.d_model:
        raise NLAKitError(f"{config.data}: activation width disagrees with the sidecar d_model.")
    sample = rows.slice(0, 256)
    bad = tokenizer_mismatches(
        tokenizer, sample["token_id"].to_pylist(), sample["token"].to_pylist()
    )
    if bad:
        raise NLAKitError(
            f"--tokenizer {config.tokenizer or ex.base_model}: not the tokenizer the activations "
            f"in {config.data} were extracted with ({len(bad)} of {sample.num_rows} tokens "
            f"differ, e.g. {bad[0]}); pass the extracted model's tokenizer."
        )
    expl_path = explanations_path(config.data, config.teacher)
    ok, status_counts = _ok_explanations(expl_path)
    with locked(out, "tables directory"):
        return _write_tables(config, out, base, meta, scale, rows, expl_path, ok, status_counts)


def _write_tables(config, out, base, meta, scale, rows, expl_path, ok, status_counts) -> dict:
    """Write the four tables, the baseline and the build record (under the lock)."""
    ex = base.extraction
    record_path = out / BUILD_RECORD
    keys = list(zip(rows["doc_id"].to_pylist(), rows["position"].to_pylist(), strict=True))
    splits = rows["split"].to_pylist()
    prompt = explanations_prompt(expl_path)
    counts = {}
    for stage in SPLITS:
        index = [
            i for i, (k, s) in enumerate(zip(keys, splits, strict=True)) if s == stage and k in ok
        ]
        # Typed indices: an empty stage (a small corpus) must take no rows, not fail.
        taken = rows.take(pa.array(index, pa.int64()))
        table = split_table(taken, [ok[keys[i]] for i in index], stage, meta)
        extra = {**ex.extra, "teacher_explanations": expl_path.name}
        if prompt is not None:
            extra["teacher_prompt"] = prompt
        extraction = dataclasses.replace(ex, injection_scale=scale, extra=extra)
        write_table(
            out / table_file(stage),
            table,
            DatasetMeta(
                stage=stage,
                row_count=table.num_rows,
                extraction=extraction,
                tokens=meta.tokens,
                av_template=meta.av_template,
                ar_template=meta.ar_template,
                parent_datasets=[base.dataset_id or dataset_id(base)],
            ),
        )
        counts[stage] = table.num_rows
    train = [
        i for i, (k, s) in enumerate(zip(keys, splits, strict=True)) if s != "eval" and k in ok
    ]
    if len(train) < 2:
        raise NLAKitError(
            f"{config.data}: fewer than 2 training rows with explanations; cannot "
            "compute the FVE baseline."
        )
    vectors = decode_vectors(rows[VECTOR_COLUMN].take(train[: config.baseline_rows]), config.data)
    baseline = FVEBaseline.from_vectors(vectors, scale=meta.mse_scale_value)
    baseline.save(out / BASELINE_FILE)
    record = {
        "identity_hash": config.identity_hash(),
        "config": dataclasses.asdict(config),
        "rows": counts,
        "teacher_status": status_counts,
        "teacher_prompt": prompt,
        "rows_without_explanation": len(keys) - sum(1 for k in keys if k in ok),
        "baseline": {"variance": baseline.variance, "n": baseline.n},
        "injection_char": meta.tokens.injection_char,
    }
    write_json(record_path, record)
    return {**record, "cached": False}


def separator_tables(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """A copy of the tables in `src` whose explanations carry graded-prefix separators
    (`nlakit.separators.add_separators`: one after every sentence but the last), for the
    separator warm start (`nlakit sft av --separator`) when the teacher did not write
    them; the vectors, rows and sidecars are `src`'s. Returns `dst` (reused when done)."""
    src, dst = Path(src), Path(dst)
    if (dst / BUILD_RECORD).is_file():
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    for stage in SPLITS:
        path = src / table_file(stage)
        meta = read_meta(path)
        table = read_parquet(path, what="a training table", fix="Rebuild it with `nlakit build`.")
        marked = [add_separators(e) for e in table["explanation"].to_pylist()]
        columns = {"explanation": marked, "response": [wrap_explanation(e) for e in marked]}
        if stage == "ar_sft":
            columns["prompt"] = [meta.ar_template.format(explanation=e) for e in marked]
        for name, values in columns.items():
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, pa.array(values, pa.string()))
        write_table(dst / table_file(stage), table, meta)
    for name in (BASELINE_FILE, BUILD_RECORD):  # the record last: it marks the copy done
        (dst / name).write_bytes((src / name).read_bytes())
    return dst
