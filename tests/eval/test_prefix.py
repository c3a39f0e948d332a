"""The prefix curve: the pure pieces, and the analysis on the small eval run."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import Words

from nlakit.config import ConfigError
from nlakit.eval.prefix import (
    ALL,
    PrefixConfig,
    condition,
    curve_rows,
    cut_texts,
    kept_tokens,
    parse_ks,
    prefix_agreement,
    prefix_curve,
)
from nlakit.eval.rows import load_rows
from nlakit.viewer.inputs import read_input


def test_parse_ks_sorts_and_refuses_bad_lists():
    assert parse_ks("16 4 8") == [4, 8, 16]
    for bad in ("", "4 x", "0 8", "8 8"):
        with pytest.raises(ConfigError, match="ks"):
            parse_ks(bad)
    with pytest.raises(ConfigError):
        PrefixConfig(run="r", ks="4 -1")


def test_cut_texts_keeps_the_whole_first_then_each_prefix():
    texts = ["a b c d e", "x y"]
    out = cut_texts(Words(), texts, [1, 3])
    assert list(out) == [ALL, "k1", "k3"]
    assert out["k1"] == ["a", "x"] and out["k3"] == ["a b c", "x y"]
    assert condition(None) == ALL and condition(8) == "k8"


def test_kept_tokens_counts_within_k():
    assert kept_tokens([10, 4, 2], 4) == pytest.approx((4 + 4 + 2) / 3)
    assert kept_tokens([10, 4, 2], None) == pytest.approx(16 / 3)


def test_curve_rows_share_and_truth():
    def s(fve, drop):
        return {"fve": fve, "ci_low": fve - 0.1, "ci_high": fve + 0.1, "n": 4,
                "drop": {"fve_drop": drop, "ci_low": drop - 0.1, "ci_high": drop + 0.1}}  # fmt: skip

    stats = {ALL: s(0.5, 0.0), "k4": s(0.2, -0.3)}
    truth = {"k4": {"genre": {"correct": 0.75, "wrong": 0.0, "absent": 0.25}}}
    rows = curve_rows(stats, [4], truth, {"k4": 4.0, ALL: 9.0})
    assert [r["k"] for r in rows] == [4, ALL]
    assert rows[0]["share_of_whole"] == pytest.approx(0.4)
    assert rows[0]["true_genre"] == 0.75 and rows[0]["absent_genre"] == 0.25
    assert "true_genre" not in rows[1]


@pytest.fixture(scope="module")
def prefix_run(eval_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("prefix") / "run"
    shutil.copytree(eval_run, run)
    return run


def test_prefix_curve_writes_its_outputs(prefix_run):
    summary = prefix_curve(PrefixConfig(run=str(prefix_run), ks="2 8", column="teacher_explanation",
                                        bootstrap=100, device="cpu", progress=False))  # fmt: skip
    out = prefix_run / "eval" / "prefix"
    assert json.loads((out / "summary.json").read_text()) == summary
    assert {"table.csv", "plot.png", "rows_k2.parquet", "rows_k8.parquet"} <= {
        p.name for p in out.iterdir()
    }
    curve = summary["curve"]
    assert [r["k"] for r in curve] == [2, 8, ALL]
    assert curve[0]["mean_tokens"] <= 2 < curve[1]["mean_tokens"] <= 8 < curve[2]["mean_tokens"]
    # the teacher's first line names the genre: 8 tokens state it more often than 2
    assert curve[1]["true_genre"] >= curve[0]["true_genre"]
    assert curve[2]["true_role"] == 1.0 and curve[0]["absent_role"] == 1.0
    # the whole teacher explanation reconstructs better than its first 2 tokens
    assert summary["fve_whole"] > summary["fve_k2"]
    rows = pq.read_table(out / "rows_k8.parquet").to_pydict()
    assert {"doc_id", "position", "explanation", "mse_nrm", "n_tokens", "record"} <= set(rows)
    assert max(rows["n_tokens"]) <= 8
    whole = load_rows(prefix_run).columns["teacher_explanation"]
    pairs = zip(whole, rows["explanation"], strict=True)
    assert all(text.startswith(cut.strip()) for text, cut in pairs)
    # the viewer reads a prefix file as a column beside the run
    shown = read_input(out / "rows_k8.parquet")
    assert shown.name == "k8" and shown.variance == pytest.approx(summary["baseline_variance"])


def test_prefix_agreement_measures_the_kept_opening():
    words = Words()
    before = ["a b c d", "a b", "", "x y"]
    after = ["a b c d e f", "a c", "z", "q"]
    out = prefix_agreement(words, before, after)
    # rows: all 4 kept (1.0); 1 of 2 (0.5); empty before: skipped; 0 of 2 (0.0)
    assert out == {"mean": pytest.approx(0.5), "kept_whole": pytest.approx(1 / 3), "n": 3}
    assert prefix_agreement(words, ["a b"], ["a"])["mean"] == pytest.approx(0.5)
    assert prefix_agreement(words, [""], ["a"])["mean"] is None
