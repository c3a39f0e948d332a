"""The viewer's JSON export: one record per token with its explanations and scores.

The page's "Export JSON" button writes the tokens the filters keep, in the order
shown; `nlakit view RUN --export FILE` writes every token. Both produce this
schema (`docs/viewer.md` documents it field by field):

    {
      "schema": "nlakit.explanations", "schema_version": 1,
      "runs": [{"name", "path", "n", "baseline_variance", "fve"}],
      "records": [{
        "doc_id", "position", "token", "token_type", "source", "context",
        "explanations": [{"run", "text", "mse_nrm", "cos", "n_tokens", "finished",
                          "error_bucket", "claims": {field: "true"|"false"|"absent"} | null}],
        "teacher": {"text", "mse_nrm"} | null,
        "record": {latent: value} | null
      }]
    }

`explanations` lists only the runs that have the token; `error_bucket` is 0 (the
run's lowest-error fifth) to 4 (its highest).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nlakit.atomic import write_text

SCHEMA = "nlakit.explanations"
VERDICTS = {"t": "true", "f": "false", "a": "absent"}


def _claims(code: str | None, fields: list) -> dict | None:
    if code is None:
        return None
    return {field: VERDICTS[letter] for (field, _), letter in zip(fields, code, strict=True)}


def export_record(payload: dict, i: int) -> dict:
    """Token row `i` of the payload in the export schema."""
    rows = payload["rows"]
    doc = rows["doc"][i]
    explanations = []
    for run, scores in zip(payload["runs"], payload["scores"], strict=True):
        if scores["mse_nrm"][i] is None:
            continue
        explanations.append(
            {
                "run": run["name"],
                "text": scores["explanation"][i],
                "mse_nrm": scores["mse_nrm"][i],
                "cos": scores["cos"][i],
                "n_tokens": scores["n_tokens"][i],
                "finished": scores["finished"][i],
                "error_bucket": scores["bucket"][i],
                "claims": _claims(scores["claims"][i], payload["claim_fields"]),
            }
        )
    teacher = rows["teacher"][i]
    return {
        "doc_id": payload["docs"]["id"][doc],
        "position": rows["position"][i],
        "token": rows["token"][i],
        "token_type": payload["types"][rows["type"][i]],
        "source": payload["sources"][rows["source"][i]],
        "context": payload["docs"]["text"][doc][: rows["end"][i]],
        "explanations": explanations,
        "teacher": None
        if teacher is None
        else {"text": teacher, "mse_nrm": rows["teacher_mse"][i]},
        "record": rows["record"][i],
    }


def export_document(payload: dict, indices: list[int] | None = None) -> dict:
    """The export of token rows `indices` (default: all, in document order)."""
    indices = range(len(payload["rows"]["doc"])) if indices is None else indices
    runs = [
        {
            "name": r["name"],
            "path": r["path"],
            "n": r["n"],
            "baseline_variance": r["variance"],
            "fve": r["fve"],
        }
        for r in payload["runs"]
    ]
    return {
        "schema": SCHEMA,
        "schema_version": 1,
        "runs": runs,
        "records": [export_record(payload, i) for i in indices],
    }


def write_export(payload: dict, path: str | os.PathLike) -> Path:
    """Write every token of the payload as one JSON document (atomically)."""
    return write_text(path, json.dumps(export_document(payload), ensure_ascii=False, indent=1))
