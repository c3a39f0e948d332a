"""Truth analysis: the oracle's claims are all true, ablated texts state less, a length
sweep's rows are picked up, non-toy runs get a clear error; on the demo run, the AV's
genre claims are mostly true and truth does not track reconstruction."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nlakit.errors import NLAKitError
from nlakit.eval.truth import TruthConfig, claims_summary, truth_analysis
from nlakit.toyworld.truth import FIELDS

RECORD = {
    "genre": "poem",
    "topic": "moon",
    "entity": "Elsa Grey",
    "role": "rhyme",
    "next_kind": "newline",
}
GENRE_LINE = "Rhyming poem: verses about the moon by Elsa Grey."
TOKEN_LINE = 'The final token " below" is the rhyming word of a line. Next must come a new line.'


def test_claims_summary_counts_stated_claims():
    wrong_topic = GENRE_LINE.replace("moon", "ocean")
    summary = claims_summary(
        [f"{GENRE_LINE}\n{TOKEN_LINE}", f"{wrong_topic}\n{TOKEN_LINE}"], [RECORD, RECORD]
    )
    assert summary["n"] == 2
    assert summary["fields"]["topic"] == {"correct": 0.5, "wrong": 0.5, "absent": 0.0}
    assert summary["stated_claims"] == 10 and summary["stated_true_share"] == 0.9
    # A lone final-token line is read as a final-token line, not as a genre line.
    alone = claims_summary([TOKEN_LINE], [RECORD], last_line_only=True)["fields"]
    assert alone["role"]["correct"] == 1.0 and alone["genre"]["absent"] == 1.0
    assert claims_summary([""], [RECORD])["stated_true_share"] is None


def test_teacher_claims_are_true(eval_run):
    """The oracle writes its explanations from the latent record: every claim it makes
    is correct, so no claim is wrong in any condition that keeps its own lines."""
    summary = truth_analysis(
        TruthConfig(run=str(eval_run), column="teacher_explanation", progress=False)
    )
    conditions = summary["conditions"]
    full = conditions["full"]["fields"]
    assert full["genre"]["correct"] == 1.0
    assert all(full[f]["wrong"] == 0 for f in FIELDS)
    for name in ("full", "without_last", "last_only"):
        assert conditions[name]["stated_true_share"] == 1.0, name
    assert conditions["without_last"]["fields"]["role"]["absent"] == 1.0
    assert conditions["last_only"]["fields"]["genre"]["absent"] == 1.0
    assert conditions["last_only"]["fields"]["role"]["correct"] == 1.0
    # Another row's final-token line makes claims about another token: some are wrong.
    assert conditions["replaced_last"]["fields"]["role"]["wrong"] > 0
    out = eval_run / "eval" / "truth"
    assert json.loads((out / "summary.json").read_text()) == summary
    table = (out / "table.csv").read_text().splitlines()
    assert table[0].startswith("condition,field,correct,wrong,absent")
    assert len(table) == 1 + len(conditions) * len(FIELDS)
    assert (out / "plot.png").stat().st_size > 0


def test_length_sweep_rows_become_conditions(eval_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(eval_run, run)
    rows = pq.read_table(run / "eval" / "rows.parquet")
    sweep = run / "eval" / "length_sweep"
    sweep.mkdir()
    for lam, column in ((0.05, "teacher_explanation"), (0.0, "explanation")):
        table = pa.table(
            {
                "explanation": rows[column],
                "doc_id": rows["doc_id"],
                "position": rows["position"],
                "record": rows["record"],
                "mse_nrm": rows["mse_nrm"],
                "n_tokens": rows["n_tokens"],
            }
        )
        pq.write_table(table, sweep / f"rows_lambda_{lam:g}.parquet")
    (sweep / "rows_lambda_notanumber.parquet").write_bytes(b"ignored")
    summary = truth_analysis(TruthConfig(run=str(run), progress=False))
    names = list(summary["conditions"])
    assert names[-2:] == ["lambda=0", "lambda=0.05"]  # by increasing λ
    assert summary["conditions"]["lambda=0.05"]["stated_true_share"] == 1.0  # the oracle's
    assert summary["conditions"]["lambda=0"] == summary["conditions"]["full"]  # the AV's
    pq.write_table(pa.table({"explanation": ["x"]}), sweep / "rows_lambda_1.parquet")
    with pytest.raises(NLAKitError, match=r"rows_lambda_1\.parquet: .* record"):
        truth_analysis(TruthConfig(run=str(run), progress=False))


def test_runs_without_records_are_refused(eval_run, monkeypatch):
    import nlakit.eval.truth as truth_module

    load_rows = truth_module.load_rows

    def without_records(run, *args, **kwargs):
        rows = load_rows(run, *args, **kwargs)
        rows.columns.pop("record")
        return rows

    monkeypatch.setattr(truth_module, "load_rows", without_records)
    with pytest.raises(NLAKitError, match="needs a toy-world run"):
        truth_analysis(TruthConfig(run=str(eval_run), progress=False))


@pytest.mark.slow
def test_truth_on_demo_run(demo_eval_run):
    """Measured on the demo run (AV explanations, n = 512): genre correct 0.95, role 0.67,
    continuation 0.90, topic 0.18, entity 0.07; share of stated claims true 0.58.

    What must hold, and why:
    - The AV's genre claims are mostly true (≥ 0.85): the genre is the most important
      feature of the teacher's explanations and is linearly readable from the activation.
    - Truth does not track reconstruction: the last-only text states no genre (absent
      for ≥ 95% of rows) though it keeps more FVE than the genre line alone (see the
      ablation test), and its stated claims are at least as often true as the full
      explanation's, since it drops the error-prone topic and entity claims.
    - A donor's final-token line states more wrong roles than the row's own line.
    """
    summary = truth_analysis(TruthConfig(run=str(demo_eval_run), progress=False))
    conditions = summary["conditions"]
    full = conditions["full"]
    assert full["fields"]["genre"]["correct"] >= 0.85
    assert conditions["last_only"]["fields"]["genre"]["absent"] >= 0.95
    assert conditions["last_only"]["stated_true_share"] >= full["stated_true_share"]
    replaced_wrong = conditions["replaced_last"]["fields"]["role"]["wrong"]
    assert replaced_wrong > full["fields"]["role"]["wrong"]
