"""`nlakit teach` with an API teacher: the real OpenAI SDK against the local fake
server, through the extraction's rows, then `nlakit build` on its explanations."""

import json

import pyarrow.parquet as pq
import pytest
from fake_llm import FakeLLM

from nlakit.cli import main
from nlakit.data.extract import ExtractConfig, extract


@pytest.fixture(scope="module")
def acts(small_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("teach") / "acts"
    extract(
        ExtractConfig(
            model=str(small_world / "model"),
            layer=1,
            corpus=f"toyworld:{small_world}",
            out=str(out),
            positions_per_doc=2,
            max_docs=20,
        ),
        progress=False,
    )
    return out


def test_api_teacher_end_to_end(capsys, acts, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeLLM() as fake:
        fake.reply("No tags here.", times=2)
        fake.reply("I'm sorry, but I can't help with that.")
        fake.fail(429, times=1, retry_after=0.05)
        spec = f"openai:local-model@{fake.openai_url}"
        argv = ["teach", "--data", str(acts), "--teacher", spec, "--concurrency", "1"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert (
            "40 rows" in out and "missing_tags 2" in out and "refusal 1" in out and "ok 37" in out
        )
        assert "40 paid calls, 0 from the cache" in out
        first_calls = len(fake.requests)
        assert main(argv) == 0  # a re-run pays for nothing
        assert "0 paid calls, 40 from the cache" in capsys.readouterr().out
        assert len(fake.requests) == first_calls
    (path,) = (acts / "explanations").glob("*.parquet")
    table = pq.read_table(path).to_pylist()
    rows = pq.read_table(acts / "shard_00000.parquet", columns=["token"]).to_pylist()
    assert len(table) == 40
    for answer, row in zip(table, rows, strict=True):  # each row got its own answer
        if answer["status"] == "ok":
            assert json.dumps(row["token"], ensure_ascii=False) in answer["explanation"]
    prompt = fake.requests[-1].prompt
    assert "<explanation>" in prompt and "final token" in prompt.lower()
    assert main(["build", "--data", str(acts), "--out", str(tmp_path / "tables")]) == 0
    assert "3 rows dropped" in capsys.readouterr().out


def test_failed_requests_exit_2_with_a_count_per_cause(capsys, acts, tmp_path, monkeypatch):
    """HTTP 500s, garbage JSON and a refused connection: the run says how many of each
    failed, exits 2, keeps what succeeded, and a re-run asks only for the failed rows."""
    import socket

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data = tmp_path / "acts"
    import shutil

    shutil.copytree(acts, data, ignore=shutil.ignore_patterns("explanations", "*.sqlite"))
    with FakeLLM() as fake:
        fake.fail(500, times=3)
        fake.malformed(times=2)
        spec = f"openai:local-model@{fake.openai_url}"
        argv = ["teach", "--data", str(data), "--teacher", spec, "--concurrency", "1"]
        assert main([*argv, "--max-retries", "0"]) == 2
        err = capsys.readouterr().err.splitlines()[-1]  # after the progress bar
        assert err.startswith("nlakit teach: error: --teacher")
        assert "5 of 40 requests failed" in err and "HTTP 500 3" in err
        assert "malformed response 2" in err
        report = json.loads((data / "explanations").glob("*.json").__next__().read_text())
        assert report["failures"] == {"HTTP 500": 3, "malformed response": 2}
        assert main(argv) == 0  # the cache answers the 35; the 5 are asked again
        assert "5 paid calls, 35 from the cache" in capsys.readouterr().out
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = f"openai:local-model@http://127.0.0.1:{port}/v1"
    fresh = tmp_path / "fresh"
    shutil.copytree(acts, fresh, ignore=shutil.ignore_patterns("explanations", "*.sqlite"))
    argv = ["teach", "--data", str(fresh), "--teacher", closed, "--max-retries", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "40 of 40 requests failed (connection failed 40)" in err


def test_the_oracle_with_separators_writes_a_set_of_its_own(acts, tmp_path, capsys):
    import shutil

    from nlakit.separators import SEPARATOR, strip_separators

    data = tmp_path / "acts"
    shutil.copytree(acts, data, ignore=shutil.ignore_patterns("explanations", "*.sqlite"))
    assert main(["teach", "--data", str(data), "--teacher", "toyworld"]) == 0
    assert main(["teach", "--data", str(data), "--teacher", "toyworld", "--separators"]) == 0
    plain = pq.read_table(data / "explanations" / "toyworld.parquet")["explanation"].to_pylist()
    marked = pq.read_table(data / "explanations" / "toyworld_separators.parquet")
    marked = marked["explanation"].to_pylist()
    assert all(SEPARATOR in t for t in marked)  # every oracle explanation has ≥ 2 sentences
    assert [strip_separators(t) for t in marked] == plain
    out = str(tmp_path / "tables")
    assert (
        main(["build", "--data", str(data), "--teacher", "toyworld_separators", "--out", out]) == 0
    )
    response = pq.read_table(tmp_path / "tables" / "av_sft.parquet")["response"][0].as_py()
    assert SEPARATOR in response
