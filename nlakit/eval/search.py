"""`nlakit analyze search --run RUN`: the AR as a search engine over activations.

The AR turns a query text ("Rhyming poem.") into the activation it would explain; the
eval rows are ranked by the cosine of their activation with it, both centred on the
training split's mean activation (the FVE baseline's μ, which every raw activation
shares). A query names the label value it looks for; precision@k is the share of the
top k rows carrying it, beside the base rate (the share of all rows carrying it) and a
random-direction control (the same ranking for random Gaussian queries).

Queries: `--queries FILE` (YAML or JSON: a list of {text, label, value}; labels as in
`nlakit analyze classify`), or on a toy-world run one query per genre and one per
topic, written the way the world's explanations name them. Writes
`RUN/eval/search/{table.csv, summary.json, plot.png}` and `hits.csv` (each query's top
rows with their context).

    from nlakit.eval.search import SearchConfig, search
    summary = search(SearchConfig(run="runs/demo", k=10))
    order = rank(ar.reconstruct(["Rhyming poem."]), vectors, mu)   # [1, n] row indices
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nlakit.atomic import write_text
from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.classify import label_values
from nlakit.eval.outputs import csv_text, write_analysis
from nlakit.eval.plots import pyplot
from nlakit.eval.rows import load_rows
from nlakit.eval.stats import bootstrap_mean
from nlakit.store.readers import read_yaml

NAME = directory_of(__name__)  # RUN/eval/search/
HITS_FILE = "hits.csv"


@dataclass
class SearchConfig(Config):
    """Rank activations by their cosine with the AR's vector for a query text."""

    run: str = option(help="run directory (after nlakit eval)")
    queries: str | None = option(
        None, "YAML/JSON list of {text, label, value} (default: the toy world's genres and topics)"
    )
    labels: str | None = option(
        None, "a parquet or CSV table with doc_id, position and the queries' label columns"
    )
    k: int = option(10, "precision at the top k rows", ge=1)
    random_queries: int = option(100, "random Gaussian queries of the control", ge=1)
    center: bool = option(True, "subtract the mean activation before taking cosines")
    bootstrap: int = option(1000, "bootstrap resamples of the mean precision's CI", ge=100)
    seed: int = option(0, "seeds the random queries and the bootstrap", ge=0)
    device: str | None = option(None, "device of the AR")


def rank(queries: torch.Tensor, vectors: torch.Tensor, mu: torch.Tensor | None) -> torch.Tensor:
    """Row indices `[q, n]` of `vectors [n, d]` by decreasing cosine with each of
    `queries [q, d]`, both centred on `mu [d]` when given."""
    if mu is not None:
        queries, vectors = queries - mu, vectors - mu
    queries = torch.nn.functional.normalize(queries.float(), dim=-1)
    vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
    return (queries @ vectors.T).argsort(dim=-1, descending=True)


def precision_at_k(order: torch.Tensor, hits: torch.Tensor, k: int) -> torch.Tensor:
    """Share `[q]` of each query's top `k` rows (`order [q, n]`) that are hits
    (`hits [q, n]` bool: row j carries query i's value)."""
    return hits.gather(1, order[:, :k]).float().mean(dim=1)


def toy_queries() -> list[dict]:
    """One query per genre and per topic, in the words the toy world's explanations use."""
    from nlakit.toyworld.labels import GENRE_NAMES, TOPICS

    out = [
        {"text": f"{names[0]}.", "label": "genre", "value": g} for g, names in GENRE_NAMES.items()
    ]
    for genre, topics in TOPICS.items():
        for topic, aliases in topics.items():
            text = f"{GENRE_NAMES[genre][0]} about {aliases[0]}."
            out.append({"text": text, "label": "topic", "value": f"{genre}/{topic}"})
    return out


def read_queries(path: Path) -> list[dict]:
    """The queries of a YAML or JSON file: a list of {text, label, value}."""
    fix = "Write a YAML or JSON list of {text: ..., label: ..., value: ...}."
    data = read_yaml(path, "a queries file (--queries)", fix, expect=list)
    if not data:
        raise NLAKitError(f"--queries {path}: the list of queries is empty. {fix}")
    for i, query in enumerate(data):
        missing = [
            k for k in ("text", "label", "value") if not isinstance(query, dict) or k not in query
        ]
        if missing:
            raise NLAKitError(f"--queries {path}: entry {i} lacks {missing}. {fix}")
    return [
        {"text": str(q["text"]), "label": str(q["label"]), "value": str(q["value"])} for q in data
    ]


def _row_values(rows, label: str, labels: str | None) -> list[str | None]:
    records = rows.records if "record" in rows.columns else None
    values = label_values(rows.columns, label, labels, records, rows.paths.rows)
    if label == "topic" and records is not None and labels is None:  # topics within genres
        values = [f"{r['genre']}/{r['topic']}" for r in records()]
    return values


def search(config: SearchConfig) -> dict:
    """Rank the eval rows for every query; write and return the summary."""
    from nlakit.models import ActivationReconstructor

    rows = load_rows(config.run)
    if config.queries is not None:
        queries = read_queries(Path(config.queries))
    elif "record" in rows.columns:
        queries = toy_queries()
    else:
        raise NLAKitError(
            f"{rows.paths.root}: not a toy-world run, so there are no built-in queries; pass "
            "--queries FILE (a list of {text, label, value})."
        )
    values = {q["label"]: _row_values(rows, q["label"], config.labels) for q in queries}
    hits = torch.tensor([[v == q["value"] for v in values[q["label"]]] for q in queries])
    ar = ActivationReconstructor.from_pretrained(rows.paths.ar, device=config.device).eval()
    with torch.no_grad():
        query_vectors = ar.reconstruct([q["text"] for q in queries])
    mu = rows.baseline.mu.float() if config.center else None
    order = rank(query_vectors, rows.vectors, mu)
    precision = precision_at_k(order, hits, config.k)
    generator = torch.Generator().manual_seed(config.seed)
    random = torch.randn(config.random_queries, rows.vectors.shape[1], generator=generator)
    random_order = rank(random + (0 if mu is None else mu), rows.vectors, mu)
    table, hit_rows = [], []
    for i, query in enumerate(queries):
        repeated = hits[i].expand(config.random_queries, -1)
        table.append(
            {
                **query,
                "k": config.k,
                "precision": float(precision[i]),
                "random_precision": float(precision_at_k(random_order, repeated, config.k).mean()),
                "base_rate": float(hits[i].float().mean()),
                "n_with_value": int(hits[i].sum()),
            }
        )
        for rank_i, j in enumerate(order[i, : config.k].tolist()):
            hit_rows.append(
                {
                    "query": query["text"],
                    "rank": rank_i + 1,
                    "row": j,
                    "value": values[query["label"]][j],
                    "hit": bool(hits[i, j]),
                    "context": (rows.columns.get("context") or [""] * len(rows))[j],
                }
            )
    summary = {"run": str(rows.paths.root), "n": len(rows), "k": config.k, "center": config.center}
    for label in dict.fromkeys(q["label"] for q in queries):
        mine = [t for t in table if t["label"] == label and t["n_with_value"] > 0]
        for key in ("precision", "random_precision", "base_rate"):
            stat = bootstrap_mean(
                torch.tensor([t[key] for t in mine]), config.bootstrap, config.seed
            )
            summary[f"{label}_{key}"] = stat["mean"]
            summary[f"{label}_{key}_ci"] = [stat["ci_low"], stat["ci_high"]]
        summary[f"{label}_queries"] = len(mine)
    summary["queries"] = table
    out = rows.paths.analysis_dir(NAME)
    write_analysis(out, table, summary, _figure(summary, queries, config.k))
    write_text(out / HITS_FILE, csv_text(hit_rows))
    return summary


def _figure(summary: dict, queries: list[dict], k: int):
    plt = pyplot()
    labels = list(dict.fromkeys(q["label"] for q in queries))
    keys = (
        ("precision", "AR query"),
        ("random_precision", "random direction"),
        ("base_rate", "base rate"),
    )
    fig, ax = plt.subplots(figsize=(max(5.0, 2.2 * len(labels) + 2), 4.2))
    width = 0.8 / len(keys)
    for j, (key, name) in enumerate(keys):
        means = [summary[f"{label}_{key}"] for label in labels]
        cis = [summary[f"{label}_{key}_ci"] for label in labels]
        pairs = list(zip(means, cis, strict=True))
        errors = [[m - c[0] for m, c in pairs], [c[1] - m for m, c in pairs]]
        ax.bar(np.arange(len(labels)) + j * width, means, width, yerr=errors, capsize=3, label=name)
    ax.set_xticks(np.arange(len(labels)) + width)
    ax.set_xticklabels([f"{label} ({summary[f'{label}_queries']} queries)" for label in labels])
    ax.set_ylabel(f"precision@{k} (mean over queries, 95% CI)")
    ax.set_xlabel("what the queries look for")
    ax.set_title(f"AR search over {summary['n']} activations")
    ax.legend(loc="best")
    return fig
