"""The viewer's data: documents laid out from contexts, runs joined, claims scored."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from viewer_tables import RECORD, TRUE_EXPLANATION, WRONG_EXPLANATION, rows_columns, write_run

from nlakit.errors import NLAKitError
from nlakit.toyworld.truth import score_claims
from nlakit.viewer.inputs import read_input, read_inputs
from nlakit.viewer.payload import (
    GAP,
    bucket_edges,
    build_payload,
    claims_code,
    continuation,
    document_layout,
    quintile_thresholds,
    threshold_buckets,
)

DOC = "The moon falls.\nOver the quiet water, light."


def prefix_upto(text: str, word: str) -> str:
    return text[: text.index(word) + len(word)]


def test_continuation_of_untruncated_contexts():
    assert continuation("The moon", "The moon falls") == " falls"


def test_continuation_of_contexts_cut_to_the_same_length():
    full = "abcdefghijklmnopqrstuvwxyz" * 3
    a, b = full[:50][-30:], full[:58][-30:]  # both cut to their last 30 characters
    assert continuation(a, b) == full[50:58]


def test_continuation_refuses_a_short_accidental_overlap():
    assert continuation("x" * 40 + " the", " the cat sat on the mat, and on and on") is None


def test_layout_places_every_token_span():
    tokens = [" moon", ".", "\n", " water", " light"]
    contexts = [prefix_upto(DOC, " moon"), "The moon falls.", "The moon falls.\n"]
    contexts += [prefix_upto(DOC, " water"), prefix_upto(DOC, " light")]
    text, spans = document_layout(contexts, tokens, max_chars=1000)
    assert text == DOC[:-1]
    assert [text[s:e] for s, e in spans] == tokens


def test_layout_cuts_the_leading_text():
    context = "word " * 100 + "moon"
    text, spans = document_layout([context], ["moon"], max_chars=20)
    assert text.startswith("…") and len(text) == 1 + 20 + 4
    assert text[spans[0][0] : spans[0][1]] == "moon"


def test_layout_marks_a_gap_between_unrelated_contexts():
    text, spans = document_layout(
        ["first part of it", "something else entirely"], ["it", "entirely"], 100
    )
    assert GAP in text
    assert [text[s:e] for s, e in spans] == ["it", "entirely"]


def test_layout_gives_an_empty_span_to_a_token_its_context_lacks():
    text, spans = document_layout(["abc\ufffd"], ["\u00e9"], 100)  # a byte piece decoded alone
    assert spans == [(len(text), len(text))]


def test_bucket_edges():
    errors = np.array([0.1, 0.5, 0.2, 0.9])
    buckets = np.array([0, 1, 0, 4])
    assert bucket_edges(errors, buckets) == [[0.1, 0.2], [0.5, 0.5], None, None, [0.9, 0.9]]


def test_a_fixed_scale_of_quintiles():
    errors = np.arange(10, dtype=float)  # 0 … 9
    thresholds = quintile_thresholds(errors)
    assert thresholds == pytest.approx([1.8, 3.6, 5.4, 7.2])
    assert threshold_buckets([0.0, 1.8, 4.0, None, 100.0], thresholds) == [0, 1, 2, -1, 4]


def test_the_shared_scale_is_the_first_runs_quintiles(tmp_path):
    a = rows_columns(n_docs=5, per_doc=2, seed=9)
    b = dict(a, mse_nrm=[m / 2 for m in a["mse_nrm"]])  # every token better in run b
    payload = build_payload(
        read_inputs([write_run(tmp_path / "a", a), write_run(tmp_path / "b", b)])
    )
    first, second = payload["scores"]
    assert second["bucket"] == first["bucket"]  # the same ranks within each run …
    assert sum(second["shared_bucket"]) < sum(first["shared_bucket"])  # … but b is greener
    assert first["shared_bucket"] == threshold_buckets(
        first["mse_nrm"], payload["shared_thresholds"]
    )


def test_claims_code_follows_the_truth_scorer():
    assert claims_code(TRUE_EXPLANATION, RECORD) == "ttttt"
    verdicts = score_claims(WRONG_EXPLANATION, RECORD)
    assert verdicts["topic"] == "wrong" and verdicts["continuation"] == "wrong"
    assert claims_code(WRONG_EXPLANATION, RECORD) == "tfftf"
    assert claims_code("", RECORD) is None and claims_code(TRUE_EXPLANATION, None) is None


def test_payload_of_one_run(tmp_path):
    cols = rows_columns(n_docs=6, per_doc=4, seed=1, records=True)
    payload = build_payload([read_input(write_run(tmp_path / "a", cols))])
    rows, scores = payload["rows"], payload["scores"][0]
    assert len(rows["doc"]) == 24 and len(payload["docs"]["id"]) == 6
    # every token span holds the token, in position order within its document
    for i in range(24):
        text = payload["docs"]["text"][rows["doc"][i]]
        assert text[rows["start"][i] : rows["end"][i]] == rows["token"][i]
    assert payload["sources"] == ["chat", "text"]
    assert sorted(np.bincount(scores["bucket"]).tolist()) == [4, 5, 5, 5, 5]
    run = payload["runs"][0]
    assert run["fve"] == pytest.approx(1 - np.mean(cols["mse_nrm"]) / 0.95, abs=1e-5)
    assert set(scores["claims"]) == {"ttttt", "tfftf"}
    assert "context" not in rows["record"][0]  # the page shows the context already


def test_payload_joins_runs_by_token(tmp_path):
    a = rows_columns(n_docs=4, per_doc=3, seed=2)
    b = {k: list(reversed(v[2:])) for k, v in a.items()}  # other order, two tokens fewer
    b["explanation"] = [e.upper() for e in b["explanation"]]
    inputs = read_inputs([write_run(tmp_path / "run", a), write_run(tmp_path / "x" / "run", b)])
    assert [i.name for i in inputs] == ["run", "run (2)"]
    payload = build_payload(inputs)
    first, second = payload["scores"]
    assert first["explanation"][:2] == a["explanation"][:2]
    assert second["mse_nrm"][:2] == [None, None] and second["bucket"][:2] == [-1, -1]
    assert second["explanation"][2:] == [e.upper() for e in a["explanation"][2:]]
    assert payload["runs"][1]["n"] == 10


def test_a_sweep_file_borrows_tokens_from_the_run(tmp_path):
    cols = rows_columns(n_docs=3, per_doc=2, seed=3)
    run = write_run(tmp_path / "run", cols)
    sweep = tmp_path / "run" / "eval" / "length_sweep"
    sweep.mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    keep = ("doc_id", "position", "explanation", "mse_nrm", "n_tokens", "finished")
    pq.write_table(pa.table({k: cols[k] for k in keep}), sweep / "rows_lambda_0.01.parquet")
    inputs = read_inputs([run, sweep / "rows_lambda_0.01.parquet"])
    assert inputs[1].name == "lambda_0.01"
    assert inputs[1].variance == 0.95  # from RUN/eval/summary.json, one level up
    payload = build_payload(inputs)
    assert payload["rows"]["token"] == cols["token"]
    assert payload["scores"][1]["cos"] == [None] * 6


def test_duplicate_tokens_are_refused(tmp_path):
    cols = rows_columns(n_docs=2, per_doc=2, seed=4)
    cols = {k: v + v[:1] for k, v in cols.items()}
    with pytest.raises(NLAKitError, match=r"doc 0 position \d+ appears twice"):
        build_payload([read_input(write_run(tmp_path / "run", cols))])


def test_without_contexts_the_tokens_make_the_document(tmp_path):
    cols = rows_columns(n_docs=1, per_doc=3, seed=5)
    del cols["context"]
    payload = build_payload([read_input(write_run(tmp_path / "run", cols))])
    assert payload["docs"]["text"] == [GAP.join(cols["token"])]


# Records of tables that are not the toy world's: shown as key/values, never scored.
OTHER_RECORDS = {
    "json": [json.dumps({"label": "x", "k": k}) for k in range(4)],
    "struct": pa.array([{"label": "x", "k": k} for k in range(4)]),
    "map": pa.array(
        [[("label", "x"), ("k", str(k))] for k in range(4)], pa.map_(pa.string(), pa.string())
    ),
    "no_genre": [json.dumps({k2: v for k2, v in RECORD.items() if k2 != "genre"})] * 4,
    "other_genre": [json.dumps({**RECORD, "genre": "legal"})] * 4,
}


@pytest.mark.parametrize("kind", list(OTHER_RECORDS))
def test_string_doc_ids_and_a_record_that_is_not_the_toy_worlds(tmp_path, kind):
    """A released dataset's table: official string doc ids and a `record` column of
    arbitrary keys load; the record is shown as it is, with no claims scored."""
    cols = rows_columns(n_docs=2, per_doc=2, doc_id_format="HuggingFaceFW/fineweb:train:{}")
    cols["explanation"] = [TRUE_EXPLANATION] * 4
    cols["record"] = OTHER_RECORDS[kind]
    payload = build_payload([read_input(write_run(tmp_path / "run", cols))])
    assert payload["docs"]["id"] == [
        "HuggingFaceFW/fineweb:train:0",
        "HuggingFaceFW/fineweb:train:1",
    ]
    rows = payload["rows"]
    assert rows["world_record"] == [False] * 4
    assert payload["scores"][0]["claims"] == [None] * 4
    if kind in ("json", "struct", "map"):
        assert [r["label"] for r in rows["record"]] == ["x"] * 4
        assert [str(r["k"]) for r in rows["record"]] == ["0", "1", "2", "3"]
    else:
        assert rows["record"][0]["topic"] == "love"


def test_a_record_of_other_keys_is_not_judged(tmp_path):
    """The claims scorer needs a toy-world record; others are shown, never judged."""
    cols = rows_columns(n_docs=1, per_doc=2)
    cols["explanation"] = [TRUE_EXPLANATION] * 2
    cols["record"] = [json.dumps({"label": "x"})] * 2
    payload = build_payload([read_input(write_run(tmp_path / "run", cols))])
    assert payload["rows"]["record"] == [{"label": "x"}] * 2
    assert payload["scores"][0]["claims"] == [None, None]
    assert claims_code(TRUE_EXPLANATION, {"label": "x"}) is None


def test_a_record_that_is_not_an_object_is_a_clear_error(tmp_path):
    cols = rows_columns(n_docs=1, per_doc=2)
    cols["record"] = ["[1, 2]", "not json"]
    with pytest.raises(NLAKitError, match=r"column `record`: expected a JSON object"):
        build_payload([read_input(write_run(tmp_path / "run", cols))])


def test_a_toy_world_record_is_flagged_and_scored(tmp_path):
    cols = rows_columns(n_docs=2, per_doc=2, records=True, doc_id_format="{}")
    payload = build_payload([read_input(write_run(tmp_path / "run", cols))])
    assert payload["docs"]["id"] == ["0", "1"]
    assert payload["rows"]["world_record"] == [True] * 4
    assert set(payload["scores"][0]["claims"]) <= {"ttttt", "tfftf"}


def test_old_int_doc_ids_join_new_string_ones(tmp_path):
    """A run written before doc ids were strings sits beside a new one: one document each."""
    old = rows_columns(n_docs=2, per_doc=2, seed=6)
    new = dict(old, doc_id=[str(d) for d in old["doc_id"]])
    payload = build_payload(
        read_inputs([write_run(tmp_path / "old", old), write_run(tmp_path / "new", new)])
    )
    assert payload["docs"]["id"] == ["0", "1"] and len(payload["rows"]["doc"]) == 4
    assert None not in payload["scores"][1]["mse_nrm"]
