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


def test_prompt_variants_write_sets_of_their_own(acts, tmp_path, capsys):
    """`--prompt` for the oracle: each layout is its own set, named after the teacher and
    the prompt; the plain set keeps its name and its bytes; the prompt's version is in the
    report and in the sidecars of the tables built from the set, and reads back."""
    import shutil

    from nlakit.data.teach import TeachConfig, explanation_set_name
    from nlakit.layouts import follows_many_short, follows_structured
    from nlakit.meta import read_meta

    data = tmp_path / "acts"
    shutil.copytree(acts, data, ignore=shutil.ignore_patterns("explanations", "*.sqlite"))
    folder = data / "explanations"
    assert main(["teach", "--data", str(data), "--teacher", "toyworld"]) == 0
    plain_bytes = (folder / "toyworld.parquet").read_bytes()
    for prompt in ("structured", "many-short"):
        assert (
            main(["teach", "--data", str(data), "--teacher", "toyworld", "--prompt", prompt]) == 0
        )
    assert main(["teach", "--data", str(data), "--teacher", "toyworld", "--prompt", "plain"]) == 0
    assert (folder / "toyworld.parquet").read_bytes() == plain_bytes
    assert sorted(p.name for p in folder.glob("*.parquet")) == [
        "toyworld.parquet",
        "toyworld_many-short.parquet",
        "toyworld_structured.parquet",
    ]
    assert (
        explanation_set_name(
            TeachConfig(data="d", teacher="toyworld", prompt="many-short", separators=True)
        )
        == "toyworld_many-short_separators"
    )
    reports = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert {k: r["prompt"] for k, r in reports.items()} == {
        "toyworld": "plain@v1",
        "toyworld_structured": "structured@v1",
        "toyworld_many-short": "many-short@v1",
    }
    texts = {
        stem: pq.read_table(folder / f"{stem}.parquet")["explanation"].to_pylist()
        for stem in reports
    }
    assert all(map(follows_structured, texts["toyworld_structured"]))
    assert all(map(follows_many_short, texts["toyworld_many-short"]))
    assert not any(map(follows_structured, texts["toyworld"]))

    out = tmp_path / "tables"
    argv = ["build", "--data", str(data), "--teacher", "toyworld_structured", "--out", str(out)]
    assert main(argv) == 0
    meta = read_meta(out / "ar_sft.parquet")
    assert meta.extraction.extra["teacher_prompt"] == "structured@v1"
    assert meta.extraction.extra["teacher_explanations"] == "toyworld_structured.parquet"
    assert json.loads((out / "build.json").read_text())["teacher_prompt"] == "structured@v1"
    explanation = pq.read_table(out / "ar_sft.parquet")["explanation"][0].as_py()
    assert follows_structured(explanation)


def test_an_unknown_prompt_is_refused_before_anything_is_written(acts, tmp_path, capsys):
    import shutil

    from nlakit.config import ConfigError
    from nlakit.data.teach import TeachConfig

    data = tmp_path / "acts"
    shutil.copytree(acts, data, ignore=shutil.ignore_patterns("explanations", "*.sqlite"))
    argv = ["teach", "--data", str(data), "--teacher", "toyworld", "--prompt", "bullets"]
    with pytest.raises(SystemExit) as info:  # a usage error from the parser
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "'bullets'" in err and "'plain', 'structured', 'many-short'" in err
    assert not (data / "explanations").exists()
    with pytest.raises(ConfigError, match="prompt must be one of 'plain', 'structured'"):
        TeachConfig(data=str(data), teacher="toyworld", prompt="bullets")
    with pytest.raises(ConfigError, match="--separators with --prompt structured"):
        TeachConfig(data=str(data), teacher="toyworld", prompt="structured", separators=True)


def test_api_teacher_is_sent_the_chosen_prompt(acts, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data = tmp_path / "acts"
    shutil.copytree(acts, data, ignore=shutil.ignore_patterns("explanations", "*.sqlite"))
    reply = '<explanation>\nGenre: Story\nTopic: a walk\nToken: " the", a word\nNext: a noun\n</explanation>'
    with FakeLLM() as fake:
        fake.reply(reply, times=40)
        spec = f"openai:local-model@{fake.openai_url}"
        argv = [
            "teach",
            "--data",
            str(data),
            "--teacher",
            spec,
            "--prompt",
            "structured",
            "--concurrency",
            "1",
            "--limit",
            "3",
        ]
        assert main(argv) == 0
        prompts = [r.prompt for r in fake.requests]
    assert len(prompts) == 3
    assert all("\nTopic: what the text is about" in p for p in prompts)
    (path,) = (data / "explanations").glob("*_structured.parquet")
    table = pq.read_table(path).to_pylist()
    assert [r["status"] for r in table] == ["ok"] * 3
    assert json.loads(path.with_suffix(".json").read_text())["prompt"] == "structured@v1"
