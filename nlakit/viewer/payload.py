"""The viewer's data: every input joined on (doc_id, position), laid out as documents.

`build_payload(inputs)` returns the JSON object the page embeds. It is columnar
(one list per field, one entry per token row) because a page with 40,000 rows
parses that several times faster than a list of objects:

    runs    [{name, path, n, variance, fve, buckets: [[lo, hi] × 5]}]
    docs    {id: [doc_id as text], text: [document text as far as it is kept]}
    rows    {doc, position, token, start, end, type, source, record, world_record, teacher,
            teacher_mse}
            token rows sorted by document, then position; `start:end` is the token's
            character span in its document's text, `type`/`source` index `types`/`sources`;
            `record` is the row's `record` column as an object (any keys), `world_record`
            whether it is a toy-world latent record (only those have claims scored)
    scores  per run {explanation, mse_nrm, cos, n_tokens, finished, bucket, shared_bucket,
            claims}, null where the run has no row for that token; `bucket` is the
            error quintile within the run, `shared_bucket` on the first run's
            quintiles (`shared_thresholds`), comparable across runs

Scores are rounded to 6 decimals; the JSON export (`export.py`) reads this object,
so the page's export and `nlakit view --export` agree.
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import datetime, timezone

import numpy as np

from nlakit import __version__
from nlakit.errors import NLAKitError
from nlakit.token_types import TOKEN_TYPES, error_buckets, token_type
from nlakit.toyworld.truth import is_world_record, score_claims
from nlakit.viewer.inputs import ViewerInput

N_BUCKETS = 5
GAP = " … "  # stands for text missing between two tokens whose contexts do not overlap
MIN_OVERLAP = 16  # characters two truncated contexts must share to be joined
# Claim field → the latent record's key holding the true value (toy world).
CLAIM_FIELDS = {
    "genre": "genre",
    "topic": "topic",
    "entity": "entity",
    "role": "role",
    "continuation": "next_kind",
}
VERDICT_LETTER = {"correct": "t", "wrong": "f", "absent": "a"}  # claims as one string per row


# --------------------------------------------------------------------------- pure pieces


def continuation(previous: str, context: str) -> str | None:
    """The text `context` adds after `previous`, where both are the text of one
    document up to a token (each possibly cut at the front to the same length).
    None when they do not overlap by at least MIN_OVERLAP characters."""
    if context.startswith(previous):
        return context[len(previous) :]
    for cut in range(1, max(len(previous) - MIN_OVERLAP + 1, 1)):
        if context.startswith(previous[cut:]):
            return context[len(previous) - cut :]
    return None


def document_layout(
    contexts: list[str | None], tokens: list[str], max_chars: int
) -> tuple[str, list[tuple[int, int]]]:
    """One document's text and each token's `(start, end)` span in it.

    `contexts[k]` is the document up to and including `tokens[k]` (rows in position
    order), or None when unknown (the token then stands alone). The text before the
    first token is cut to its last `max_chars` characters (marked "…"); a token its
    context does not end with gets an empty span at its context's end.
    """
    text, spans = "", []
    for k, (context, token) in enumerate(zip(contexts, tokens, strict=True)):
        previous = contexts[k - 1] if k > 0 else None
        if context is None:
            context = token
            added = None
        else:
            added = None if previous is None else continuation(previous, context)
        if added is None:
            added = context
            if k > 0:
                text += GAP
            if len(added) > max_chars + len(token):
                added = "…" + added[len(added) - max_chars - len(token) :]
        text += added
        width = len(token) if token and text.endswith(token) else 0
        spans.append((len(text) - width, len(text)))
    return text, spans


def bucket_edges(errors: np.ndarray, buckets: np.ndarray, n_buckets: int = N_BUCKETS) -> list:
    """`[[lowest, highest] error]` per bucket (None for an empty bucket)."""
    return [
        [float(errors[buckets == b].min()), float(errors[buckets == b].max())]
        if (buckets == b).any()
        else None
        for b in range(n_buckets)
    ]


def quintile_thresholds(errors: np.ndarray, n_buckets: int = N_BUCKETS) -> list[float]:
    """The `n_buckets - 1` error values that split `errors` into equal-count buckets."""
    return np.quantile(errors, np.arange(1, n_buckets) / n_buckets).tolist()


def threshold_buckets(errors: list[float | None], thresholds: list[float]) -> list[int]:
    """Bucket of each error on a fixed scale (-1 for a missing one): bucket b holds
    errors from thresholds[b - 1] (inclusive) to thresholds[b]."""
    return [-1 if e is None else int(np.searchsorted(thresholds, e, side="right")) for e in errors]


def claims_code(explanation: str | None, record: dict | None) -> str | None:
    """The truth verdict of each claim field as one letter (t true, f false, a absent);
    None without an explanation or a toy-world record to judge it on."""
    if not explanation or not is_world_record(record):
        return None
    verdicts = score_claims(explanation, record)
    return "".join(VERDICT_LETTER[verdicts[f]] for f in CLAIM_FIELDS)


def _number(value, digits: int = 6):
    if value is None:
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


# --------------------------------------------------------------------------- the join


def _keys(inputs: list[ViewerInput]) -> tuple[list[tuple[str, int]], list[dict]]:
    """Every (doc_id, position) in any input, by document (first seen) then position,
    and per input its row index of each key."""
    where = []
    for item in inputs:
        index = {}
        for i, key in enumerate(zip(item.columns["doc_id"], item.columns["position"], strict=True)):
            key = (key[0], int(key[1]))  # doc ids are text (`inputs.read_input`)
            if key in index:
                raise NLAKitError(
                    f"{item.path}: doc {key[0]} position {key[1]} appears twice (rows "
                    f"{index[key]} and {i}); the viewer shows one explanation per token and "
                    "run — split the table into one file per sample."
                )
            index[key] = i
        where.append(index)
    doc_rank: dict[str, int] = {}
    for index in where:
        for doc, _ in index:
            doc_rank.setdefault(doc, len(doc_rank))
    keys = sorted({k for index in where for k in index}, key=lambda k: (doc_rank[k[0]], k[1]))
    return keys, where


def _token_column(inputs, where, keys, name, default):
    """Per key, column `name` from the first input that has it (and that row)."""
    out = []
    for key in keys:
        value = default
        for item, index in zip(inputs, where, strict=True):
            if name in item.columns and key in index:
                value = item.columns[name][index[key]]
                if value is not None:
                    break
        out.append(value if value is not None else default)
    return out


def _record(value, path) -> dict | None:
    """A `record` value as an object: JSON text, a struct (a dict) or a map (key/value
    pairs), with any keys; toy-world records are one kind among others."""
    if not value:
        return None
    try:
        record = json.loads(value) if isinstance(value, str) else dict(value)
    except (json.JSONDecodeError, TypeError, ValueError):
        record = None
    if not isinstance(record, dict):
        raise NLAKitError(
            f"{path}: column `record`: expected a JSON object, struct or map per row, got "
            f"{str(value)[:80]!r}; drop the column or store an object of key/values."
        )
    record.pop("context", None)  # the page shows the context already
    return record


def _scores(item: ViewerInput, index: dict, keys: list, records: list) -> dict:
    rows = [index.get(k) for k in keys]
    col = item.columns

    def pick(name, convert=lambda v: v):
        if name not in col:
            return [None] * len(keys)
        return [None if r is None or col[name][r] is None else convert(col[name][r]) for r in rows]

    mse = pick("mse_nrm", _number)
    present = np.array([m is not None for m in mse])
    errors = np.array([m for m in mse if m is not None], dtype=np.float64)
    bucket = np.full(len(keys), -1, dtype=np.int64)
    bucket[present] = error_buckets(errors, N_BUCKETS)
    explanation = pick("explanation", str)
    fve = None
    if item.variance and len(errors):
        fve = _number(1.0 - errors.mean() / item.variance)
    summary = {
        "name": item.name,
        "path": str(item.path),
        "n": int(present.sum()),
        "variance": item.variance,
        "fve": fve,
        "buckets": bucket_edges(errors, bucket[present]),
    }
    scores = {
        "explanation": explanation,
        "mse_nrm": mse,
        "cos": pick("cos", _number),
        "n_tokens": pick("n_tokens", int),
        "finished": pick("finished", bool),
        "bucket": bucket.tolist(),
        "claims": [claims_code(e, r) for e, r in zip(explanation, records, strict=True)],
    }
    return {"run": summary, "scores": scores}


def build_payload(
    inputs: list[ViewerInput], context_chars: int = 600, title: str | None = None
) -> dict:
    """The page's data object (see the module docstring)."""
    keys, where = _keys(inputs)
    tokens = [str(t) for t in _token_column(inputs, where, keys, "token", "")]
    contexts = [c or None for c in _token_column(inputs, where, keys, "context", None)]
    sources = [str(s) for s in _token_column(inputs, where, keys, "source", "unknown")]
    path = next((i.path for i in inputs if "record" in i.columns), None)
    records = [_record(r, path) for r in _token_column(inputs, where, keys, "record", None)]
    teacher = _token_column(inputs, where, keys, "teacher_explanation", None)
    teacher_mse = [_number(v) for v in _token_column(inputs, where, keys, "teacher_mse_nrm", None)]

    doc_ids, doc_texts, doc_of, starts, ends = [], [], [], [], []
    k = 0
    for doc_id, group in itertools.groupby(keys, key=lambda key: key[0]):  # keys come by doc
        j = k + len(list(group))
        text, spans = document_layout(contexts[k:j], tokens[k:j], context_chars)
        doc_of += [len(doc_ids)] * (j - k)
        doc_ids.append(doc_id)
        doc_texts.append(text)
        starts += [s for s, _ in spans]
        ends += [e for _, e in spans]
        k = j

    types = [token_type(t) for t in tokens]
    present = set(types)
    type_names = [t for t in TOKEN_TYPES if t in present]
    type_index = {t: i for i, t in enumerate(type_names)}
    source_names = sorted(set(sources))
    source_index = {s: i for i, s in enumerate(source_names)}
    per_run = [
        _scores(item, index, keys, records) for item, index in zip(inputs, where, strict=True)
    ]
    # A shared scale, the first run's quintiles, makes colours comparable across runs.
    lead = np.array([m for m in per_run[0]["scores"]["mse_nrm"] if m is not None])
    shared = [_number(t) for t in quintile_thresholds(lead)]
    for run in per_run:
        run["scores"]["shared_bucket"] = threshold_buckets(run["scores"]["mse_nrm"], shared)
    return {
        "schema_version": 1,
        "title": title or "nlakit viewer: " + ", ".join(i.name for i in inputs),
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nlakit_version": __version__,
        "context_chars": context_chars,
        "claim_fields": [list(item) for item in CLAIM_FIELDS.items()],
        "types": type_names,
        "sources": source_names,
        "shared_thresholds": shared,
        "runs": [r["run"] for r in per_run],
        "docs": {"id": doc_ids, "text": doc_texts},
        "rows": {
            "doc": doc_of,
            "position": [p for _, p in keys],
            "token": tokens,
            "start": starts,
            "end": ends,
            "type": [type_index[t] for t in types],
            "source": [source_index[s] for s in sources],
            "record": records,
            "world_record": [is_world_record(r) for r in records],
            "teacher": teacher,
            "teacher_mse": teacher_mse,
        },
        "scores": [r["scores"] for r in per_run],
    }
