"""AR search: ranking by centred cosine, precision@k, query files, the files it writes,
and (slow) on the demo run the headline fact: a genre query's top rows are mostly of
that genre, far above the base rate and random directions."""

from __future__ import annotations

import pytest
import torch

from nlakit.errors import NLAKitError
from nlakit.eval.search import SearchConfig, precision_at_k, rank, search, toy_queries


def test_rank_orders_by_centred_cosine():
    mu = torch.tensor([10.0, 10.0])
    vectors = mu + torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
    order = rank(mu + torch.tensor([[1.0, 0.1]]), vectors, mu)
    assert order[0].tolist() == [0, 3, 1, 2]
    # Without centring every raw vector points along the shared mean.
    assert rank(torch.tensor([[1.0, 0.1]]), vectors, None)[0, 0].item() == 0


def test_precision_at_k_counts_hits_in_the_top_rows():
    order = torch.tensor([[2, 0, 1, 3]])
    hits = torch.tensor([[True, False, True, False]])
    assert precision_at_k(order, hits, 2).item() == 1.0
    assert precision_at_k(order, hits, 4).item() == 0.5


def test_search_writes_its_files_and_reads_query_files(eval_run, tmp_path):
    summary = search(SearchConfig(run=str(eval_run), k=5, random_queries=10, bootstrap=200))
    assert summary["genre_queries"] >= 2 and 0 <= summary["genre_precision"] <= 1
    assert abs(summary["genre_random_precision"] - summary["genre_base_rate"]) < 0.2
    out = eval_run / "eval" / "search"
    assert {p.name for p in out.iterdir()} >= {"table.csv", "summary.json", "plot.png", "hits.csv"}
    queries = tmp_path / "q.yaml"
    queries.write_text("- {text: 'Python code.', label: genre, value: code}\n")
    one = search(SearchConfig(run=str(eval_run), queries=str(queries), k=3, bootstrap=200))
    assert [q["value"] for q in one["queries"]] == ["code"]
    queries.write_text("- {text: 'Python code.', label: genre}\n")
    with pytest.raises(NLAKitError, match=r"entry 0 lacks \['value'\]"):
        search(SearchConfig(run=str(eval_run), queries=str(queries)))
    queries.write_text("text: 'not a list'\n")
    with pytest.raises(NLAKitError, match="queries file"):
        search(SearchConfig(run=str(eval_run), queries=str(queries)))


def test_toy_queries_cover_every_genre_and_topic():
    queries = toy_queries()
    assert sum(q["label"] == "genre" for q in queries) == 9
    assert all("/" in q["value"] for q in queries if q["label"] == "topic")


@pytest.mark.slow
def test_genre_queries_find_their_genre(demo_eval_run):
    summary = search(SearchConfig(run=str(demo_eval_run)))
    assert summary["genre_precision"] >= summary["genre_base_rate"] + 0.3, summary
    assert summary["topic_precision"] >= summary["topic_base_rate"] + 0.1, summary
