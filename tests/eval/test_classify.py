"""Classification from explanations: the pure fitting helpers, the label sources, the
files it writes, and (slow) on the demo run the headline fact: the AV's explanations
tell the genre about as well as a linear probe on the activation, and far better than
explanations of shuffled vectors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.classify import (
    ClassifyConfig,
    classify,
    fit_right,
    fold_ids,
    keep_rows,
    majority,
    out_of_fold,
    text_classifier,
    vector_probe,
)


def test_fitting_helpers_learn_separable_labels_and_fail_on_noise():
    rng = np.random.default_rng(0)
    y = np.array(["a", "b"] * 40)
    x = rng.normal(size=(80, 6)) + np.where(y == "a", 3.0, -3.0)[:, None]
    right = fit_right(lambda: vector_probe(0), x[:60], y[:60], x[60:], y[60:])
    assert right.all()
    texts = np.array([f"this is about {v} things" for v in y], dtype=object)
    folds = fold_ids(y, [str(i // 4) for i in range(80)], 4, 0)
    assert set(folds) == {0, 1, 2, 3}
    # every document's rows share one fold
    assert all(len(set(folds[i : i + 4])) == 1 for i in range(0, 80, 4))
    assert out_of_fold(lambda: text_classifier(0), texts, y, folds).all()
    noise = np.array(["the same words"] * 80, dtype=object)
    assert out_of_fold(lambda: text_classifier(0), noise, y, folds).mean() <= 0.6
    assert majority(np.array(["a", "a", "b"]), np.array(["a", "b"])).tolist() == [True, False]
    assert keep_rows(["a", "a", "b", None], 2).tolist() == [True, True, False, False]


def test_teacher_explanations_tell_the_genre(eval_run):
    """The oracle states the genre on its first line: a classifier of its words learns it
    from a few dozen rows, the shuffled control stays near chance; files land and the
    summary names them."""
    summary = classify(
        ClassifyConfig(
            run=str(eval_run), column="teacher_explanation", train_rows=0, folds=3,
            min_count=3, bootstrap=200,
        )
    )  # fmt: skip
    assert summary["accuracy_explanations"] >= 0.7, summary
    assert summary["accuracy_shuffled"] <= 0.4, summary
    assert summary["explanations_minus_shuffled"] >= 0.3
    assert "cross-validation" in summary["scheme"]
    out = eval_run / "eval" / "classify"
    assert {p.name for p in out.iterdir()} >= {"table.csv", "summary.json", "plot.png"}
    assert json.loads((out / "summary.json").read_text())["label"] == "genre"


def test_training_rows_are_explained_by_the_run_av(eval_run):
    summary = classify(ClassifyConfig(run=str(eval_run), train_rows=64, min_count=3, bootstrap=200))
    assert summary["scheme"].startswith("fitted on 64 training-table rows")
    assert "accuracy_teacher_explanations" in summary and "accuracy_probe" in summary


def test_labels_from_a_table_and_clear_errors(eval_run, tmp_path):
    rows = pq.read_table(eval_run / "eval" / "rows.parquet", columns=["doc_id", "position"])
    first_half = [i % 2 for i in range(rows.num_rows)]
    labels = tmp_path / "labels.parquet"
    pq.write_table(rows.append_column("half", pa.array([str(v) for v in first_half])), labels)
    summary = classify(
        ClassifyConfig(run=str(eval_run), label="half", labels=str(labels), train_rows=0,
                       folds=3, bootstrap=200)
    )  # fmt: skip
    assert summary["classes"] == 2 and summary["n"] == rows.num_rows
    with pytest.raises(NLAKitError, match="--label colour: not a column"):
        classify(ClassifyConfig(run=str(eval_run), label="colour", train_rows=0))
    with pytest.raises(NLAKitError, match=r"no column\(s\) \['colour'\]"):
        classify(ClassifyConfig(run=str(eval_run), label="colour", labels=str(labels)))
    with pytest.raises(NLAKitError, match="no such file"):
        classify(ClassifyConfig(run=str(eval_run), labels=str(tmp_path / "none.csv")))


@pytest.mark.slow
def test_explanations_classify_genre_like_the_probe(demo_eval_run):
    """Issue acceptance: within 0.1 of the probe, ≥ 0.3 above shuffled."""
    summary = classify(ClassifyConfig(run=str(demo_eval_run)))
    assert abs(summary["explanations_minus_probe"]) <= 0.1, summary
    assert summary["explanations_minus_shuffled"] >= 0.3, summary
