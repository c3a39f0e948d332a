"""The JSON export: one record per token, in the documented schema."""

from __future__ import annotations

import json

import pytest
from viewer_tables import RECORD, rows_columns, write_run

from nlakit.viewer.export import SCHEMA, export_document, write_export
from nlakit.viewer.inputs import read_inputs
from nlakit.viewer.payload import build_payload

RECORD_KEYS = {
    "doc_id", "position", "token", "token_type", "source", "context", "explanations", "teacher",
    "record",
}  # fmt: skip
EXPLANATION_KEYS = {
    "run", "text", "mse_nrm", "cos", "n_tokens", "finished", "error_bucket", "claims",
}  # fmt: skip


@pytest.fixture
def two_runs(tmp_path):
    a = rows_columns(n_docs=4, per_doc=3, seed=7, records=True)
    a["teacher_explanation"] = [f"teacher {i}" for i in range(12)]
    a["teacher_mse_nrm"] = [0.25] * 12
    b = {k: v[:9] for k, v in rows_columns(n_docs=4, per_doc=3, seed=7, records=True).items()}
    return read_inputs([write_run(tmp_path / "a", a), write_run(tmp_path / "b", b)]), a


def test_every_token_is_one_record(two_runs, tmp_path):
    inputs, cols = two_runs
    path = write_export(build_payload(inputs), tmp_path / "out" / "explanations.json")
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA and doc["schema_version"] == 1
    assert [r["name"] for r in doc["runs"]] == ["a", "b"]
    assert doc["runs"][0]["n"] == 12 and doc["runs"][1]["n"] == 9
    assert len(doc["records"]) == 12
    for k, record in enumerate(doc["records"]):
        assert set(record) == RECORD_KEYS
        assert record["doc_id"] == str(cols["doc_id"][k])  # doc ids are exported as text
        assert record["position"] == cols["position"][k]
        assert record["context"].endswith(record["token"])
        assert record["context"] == cols["context"][k]  # short documents are kept whole
        assert record["teacher"] == {"text": f"teacher {k}", "mse_nrm": 0.25}
        assert record["record"] == {k: v for k, v in RECORD.items() if k != "context"}
        assert [e["run"] for e in record["explanations"]] == (["a", "b"] if k < 9 else ["a"])
        first = record["explanations"][0]
        assert set(first) == EXPLANATION_KEYS
        assert first["text"] == cols["explanation"][k]
        assert first["mse_nrm"] == pytest.approx(cols["mse_nrm"][k], abs=1e-6)
        assert first["claims"]["genre"] == "true"
        assert set(first["claims"].values()) <= {"true", "false", "absent"}
        assert 0 <= first["error_bucket"] <= 4


def test_a_subset_in_a_given_order(two_runs):
    payload = build_payload(two_runs[0])
    doc = export_document(payload, [5, 0])
    assert [r["position"] for r in doc["records"]] == [
        payload["rows"]["position"][5],
        payload["rows"]["position"][0],
    ]


def test_string_doc_ids_and_other_records_are_exported_as_they_are(tmp_path):
    cols = rows_columns(n_docs=2, per_doc=1, doc_id_format="HuggingFaceFW/fineweb:train:{}")
    cols["record"] = [json.dumps({"label": "x"})] * 2
    doc = export_document(build_payload(read_inputs([write_run(tmp_path / "a", cols)])))
    assert [r["doc_id"] for r in doc["records"]] == cols["doc_id"]
    assert [r["record"] for r in doc["records"]] == [{"label": "x"}] * 2
    assert doc["records"][0]["explanations"][0]["claims"] is None
