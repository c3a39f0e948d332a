import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from nlakit.cli import format_table, load_vectors, main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_acceptance_command_prints_one_row_per_position(tmp_path):
    """`nlakit tiny --out T && nlakit explain --av T/av --ar T/ar --model T/target --text ...`"""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    exe = [sys.executable, "-m", "nlakit"]
    subprocess.run([*exe, "tiny", "--out", tmp_path], check=True, env=env, capture_output=True)
    out = subprocess.run(
        [
            *exe,
            "explain",
            "--av",
            tmp_path / "av",
            "--ar",
            tmp_path / "ar",
            "--model",
            tmp_path / "target",
            "--text",
            "The quick brown fox",
            "--max-new-tokens",
            "8",
        ],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    from transformers import AutoTokenizer

    n_tokens = (
        len(AutoTokenizer.from_pretrained(tmp_path / "target")("The quick brown fox")["input_ids"])
        - 1
    )
    rows = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) == n_tokens
    assert "mse_nrm" in out and "' quick'" in out


def test_info_ok_and_drift(capsys, tiny_dirs, tmp_path):
    code, out, _ = run(capsys, "info", tiny_dirs["av"])
    assert code == 0 and "validation against" in out and ": ok" in out and "role: av" in out
    import shutil

    drifted = tmp_path / "av"
    shutil.copytree(tiny_dirs["av"], drifted)
    text = (drifted / "nla_meta.yaml").read_text()
    (drifted / "nla_meta.yaml").write_text(
        text.replace("injection_right_neighbor_id: ", "injection_right_neighbor_id: 1")
    )
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, "info", drifted)
    assert exit_info.value.code == 1
    assert "FAILED" in capsys.readouterr().out


def test_explain_vectors_to_jsonl(capsys, tiny_dirs, tmp_path):
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32))
    code, out, _ = run(
        capsys,
        "explain",
        "--av",
        tiny_dirs["av"],
        "--ar",
        tiny_dirs["ar"],
        "--vectors",
        tmp_path / "v.npy",
        "--max-new-tokens",
        4,
        "--out",
        tmp_path / "o.jsonl",
        "--seed",
        0,
        "--temperature",
        0,
    )
    assert code == 0 and "wrote 3 rows" in out
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert set(rows[0]) == {
        "index",
        "token",
        "explanation",
        "raw",
        "n_tokens",
        "finished",
        "mse_nrm",
        "cos",
    }


def test_reconstruct(capsys, tiny_dirs, tmp_path):
    code, out, _ = run(
        capsys,
        "reconstruct",
        "--ar",
        tiny_dirs["ar"],
        "--text",
        "a recipe",
        "--text",
        "a poem",
        "--out",
        tmp_path / "p.npy",
    )
    assert code == 0 and out.count("norm") == 2
    assert np.load(tmp_path / "p.npy").shape == (2, 64)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "{tmp}"], "no sidecar found"),
        (["explain", "--av", "{av}", "--vectors", "{tmp}/missing.npy"], "no such file"),
        (["explain", "--av", "{av}"], "exactly one of --vectors"),
        (["explain", "--av", "{ar}", "--vectors", "{tmp}/v.npy"], "reconstructor"),
        (["explain", "--av", "{av}", "--vectors", "{tmp}/wide.npy"], r"expected shape [n, 64]"),
        (["explain", "--av", "{av}", "--text", "hi"], "--text needs --model"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, tiny_dirs, tmp_path, argv, message):
    np.save(tmp_path / "v.npy", np.ones((1, 64), np.float32))
    np.save(tmp_path / "wide.npy", np.ones((1, 65), np.float32))
    argv = [a.format(tmp=tmp_path, av=tiny_dirs["av"], ar=tiny_dirs["ar"]) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_load_vectors_formats(tmp_path):
    v = torch.randn(4, 8)
    np.save(tmp_path / "a.npy", v.numpy())
    save_file({"vectors": v}, str(tmp_path / "a.safetensors"))
    torch.save(v, tmp_path / "a.pt")
    column = pa.FixedSizeListArray.from_arrays(pa.array(v.flatten().numpy()), 8)
    pq.write_table(pa.table({"activation_vector": column}), tmp_path / "a.parquet")
    for name in ("a.npy", "a.safetensors", "a.pt", "a.parquet"):
        assert torch.allclose(load_vectors(tmp_path / name), v), name


def test_table_wraps_long_explanations():
    row = {
        "index": 0,
        "token": " fox",
        "explanation": "word " * 80,
        "raw": "",
        "mse_nrm": 0.5,
        "cos": 0.75,
    }
    table = format_table([row], width=80)
    assert "0.500" in table and "0.750" in table and len(table.splitlines()) > 3
    assert max(map(len, table.splitlines())) <= 80


def test_info_on_a_dataset_sidecar(capsys, tiny_dirs, tmp_path):
    from nlakit import meta as M

    model_meta = M.read_meta(tiny_dirs["av"])
    table = tmp_path / "eval.parquet"
    extraction = M.ExtractionMeta(base_model="tiny", d_model=64, layer_index=2)
    M.write_meta(
        M.DatasetMeta(
            stage="eval",
            row_count=0,
            extraction=extraction,
            tokens=model_meta.tokens,
            av_template=model_meta.av_template,
        ),
        table,
    )
    code, out, _ = run(capsys, "info", table)
    assert code == 0 and "validation: skipped" in out and "kind: nla_dataset" in out
    code, out, _ = run(capsys, "info", table, "--tokenizer", tiny_dirs["av"])
    assert code == 0 and ": ok" in out


def test_list_prints_every_released_nla(capsys):
    from nlakit.registry import load_registry

    code, out, _ = run(capsys, "list")
    assert code == 0 and all(name in out for name in load_registry())
    assert "published FVE" in out and "—" in out and "kitft/nla-qwen2.5-7b-L20-av" in out
    code, out, _ = run(capsys, "list", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == list(load_registry())
    assert rows[1]["published_fve"] is None


@pytest.fixture
def tiny_registry(monkeypatch, tiny_dirs):
    """The registry with an entry `tiny-L2` whose ids are the local tiny pair."""
    from nlakit import registry

    entry = registry.RegisteredNLA(
        name="tiny-L2",
        base_model=str(tiny_dirs["target"]),
        layer=2,
        d_model=64,
        av=str(tiny_dirs["av"]),
        ar=str(tiny_dirs["ar"]),
        injection_scale=8.0,
    )
    monkeypatch.setattr(registry, "_packaged", lambda: {"tiny-L2": entry})
    return entry


def test_explain_a_released_nla_by_name(capsys, tiny_registry, tmp_path):
    np.save(tmp_path / "v.npy", np.ones((2, 64), np.float32))
    code, out, _ = run(
        capsys,
        "explain",
        "--nla",
        "tiny-L2",
        "--vectors",
        tmp_path / "v.npy",
        "--max-new-tokens",
        2,
    )
    assert code == 0 and "mse_nrm" in out  # the AR came with the name
    # --text without --model reads the entry's base model.
    code, out, _ = run(
        capsys, "explain", "--nla", "tiny-L2", "--text", "The fox", "--max-new-tokens", 2
    )
    assert code == 0 and "' fox'" in out


def test_explain_an_unknown_name_suggests_the_closest(capsys, tiny_registry, tmp_path):
    np.save(tmp_path / "v.npy", np.ones((1, 64), np.float32))
    code, _, err = run(capsys, "explain", "--nla", "tiny-l2", "--vectors", tmp_path / "v.npy")
    assert code == 2 and "Did you mean 'tiny-L2'?" in err and "Traceback" not in err
