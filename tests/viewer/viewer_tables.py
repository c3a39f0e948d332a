"""Synthetic per-row eval tables for the viewer tests (the columns `nlakit eval` writes)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

WORDS = [
    "the",
    "moon",
    "rain",
    "night",
    "ocean",
    "love",
    "autumn",
    "sky",
    "falls",
    "over",
    "quiet",
    "water",
    "and",
    "light",
]
# A toy-world record and an explanation whose every claim is true of it.
RECORD = {
    "genre": "poem",
    "topic": "love",
    "entity": "Owen Pike",
    "tone": "formal",
    "section": "verse",
    "role": "verse",
    "next_kind": "word",
    "token": " love",
    "context": "…",
    "end_of_line": False,
}
TRUE_EXPLANATION = (
    "Poem: a formal poem on love, written by Owen Pike.\n"
    'The last token, " love", is a word in a verse line. It must be followed by another word.'
)
WRONG_EXPLANATION = (
    "Poem: a gloomy poem on ocean, written by June Marsh.\n"
    'The last token, " love", is a word in a verse line. It must be followed by a number.'
)


def document_tokens(rng: random.Random, n_tokens: int) -> list[str]:
    tokens = []
    for k in range(n_tokens):
        tokens.append("\n" if k % 9 == 8 else " " + rng.choice(WORDS))
    return tokens


def rows_columns(
    n_docs: int,
    per_doc: int,
    seed: int = 0,
    context_chars: int = 2000,
    doc_tokens: int = 60,
    explanation_words: int = 40,
    records: bool = False,
    first_doc: int = 0,
    doc_id_format: str | None = None,
) -> dict[str, list]:
    """Columns of a per-row eval table: `per_doc` evaluated positions per document.

    Doc ids are ints (as nlakit wrote them before string ids), or with `doc_id_format`
    strings such as the released datasets' ("fineweb:train:{}" → "fineweb:train:3")."""
    rng = random.Random(seed)
    cols: dict[str, list] = {
        k: []
        for k in (
            "doc_id",
            "position",
            "token",
            "context",
            "explanation",
            "raw",
            "mse_nrm",
            "cos",
            "n_tokens",
            "finished",
            "source",
        )
    }
    if records:
        cols["record"] = []
    for doc in range(first_doc, first_doc + n_docs):
        tokens = document_tokens(rng, doc_tokens)
        for position in sorted(rng.sample(range(doc_tokens), per_doc)):
            words = " ".join(rng.choice(WORDS) for _ in range(explanation_words))
            explanation = f"Text about {rng.choice(WORDS)}.\nThe token ends {words}."
            if records:
                explanation = TRUE_EXPLANATION if position % 2 else WRONG_EXPLANATION
                cols["record"].append(json.dumps(RECORD))
            cols["doc_id"].append(doc if doc_id_format is None else doc_id_format.format(doc))
            cols["position"].append(position)
            cols["token"].append(tokens[position])
            cols["context"].append("".join(tokens[: position + 1])[-context_chars:])
            cols["explanation"].append(explanation)
            cols["raw"].append(f"<explanation>\n{explanation}\n</explanation>")
            cols["mse_nrm"].append(rng.uniform(0.05, 2.0))
            cols["cos"].append(rng.uniform(0.0, 1.0))
            cols["n_tokens"].append(rng.randint(20, 80))
            cols["finished"].append(rng.random() > 0.05)
            cols["source"].append("chat" if doc % 3 == 0 else "text")
    return cols


def write_run(
    root: Path, columns: dict[str, list], variance: float | None = 0.95, vectors: bool = True
) -> Path:
    """A run directory holding only `eval/rows.parquet` (and its summary)."""
    eval_dir = Path(root) / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    table = pa.table(columns)
    if vectors:  # the real table carries the activations; the viewer must not read them
        n = table.num_rows
        flat = pa.array([float(i % 7) for i in range(n * 4)], pa.float32())
        table = table.append_column("activation_vector", pa.FixedSizeListArray.from_arrays(flat, 4))
    pq.write_table(table, eval_dir / "rows.parquet")
    if variance is not None:
        (eval_dir / "summary.json").write_text(json.dumps({"baseline_variance": variance}))
    return Path(root)
