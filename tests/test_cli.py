import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from nlakit.cli import build_parser, format_table, load_vectors, main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow  # two fresh interpreters: about 35 s
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
    code, out, err = run(capsys, "info", drifted)
    assert code == 2 and "FAILED" in out
    assert "validation failed" in err and len(err.strip().splitlines()) == 1


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
        (["explain", "--av", "{av}", "--vectors", "{tmp}/wide.npy"], "reads d_model 64"),
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


# --------------------------------------------------------------------------- options and recipes

ROOT = Path(__file__).resolve().parents[1]


def subparsers(parser):
    """(name, parser) of each verb below `parser`, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in subparsers(sub))


def every_verb() -> list[list[str]]:
    from nlakit.eval.cli import ANALYSES, SWEEPS

    verbs = [name.split() for name, _ in subparsers(build_parser(["--help"]))]
    verbs += [["analyze", name] for name in ANALYSES] + [["sweep", kind] for kind in SWEEPS]
    return verbs


def test_every_option_of_every_verb_has_help():
    verbs = every_verb()
    assert ["rl"] in verbs and ["toyworld", "build"] in verbs and ["analyze", "stego"] in verbs
    for words in verbs:
        sub = build_parser([*words, "--help"])
        for word in words:
            sub = dict(subparsers(sub)).get(word, sub)
        sub.print_help(io.StringIO())  # simple-parsing adds the config options here
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help and action.help.strip(), f"nlakit {' '.join(words)} {name}"


@pytest.fixture
def captured(monkeypatch):
    """The config each training or eval verb would run with (nothing runs)."""
    import nlakit.eval.sweep
    import nlakit.train.rl
    import nlakit.train.sft

    seen = []
    monkeypatch.setattr(nlakit.train.rl, "rl", lambda c: seen.append(c) or {})
    monkeypatch.setattr(nlakit.train.sft, "sft", lambda c: seen.append(c) or {})
    monkeypatch.setattr(nlakit.eval.sweep, "length_sweep", lambda c: seen.append(c) or {})
    return seen


RL_ARGS = ["rl", "--data", "t", "--av", "a", "--ar", "r", "--out", "o"]


def test_boolean_and_none_spellings(capsys, captured):
    for extra, freeze in (
        (["--freeze-ar", "false"], False),
        (["--freeze-ar", "False"], False),
        (["--freeze-ar", "true"], True),
        (["--freeze-ar"], True),
        (["--no-freeze-ar"], False),
        ([], True),
    ):
        assert main([*RL_ARGS, *extra]) == 0
        assert captured[-1].freeze_ar is freeze, extra
    assert main([*RL_ARGS, "--device", "none", "--lora-rank", "16", "--rslora", "true"]) == 0
    assert captured[-1].device is None and captured[-1].rslora and captured[-1].lora_rank == 16


def test_the_demo_rl_recipe_with_an_override(capsys, captured, monkeypatch):
    """`nlakit rl --config recipes/demo-rl.yaml --steps 5` (from the repo root)."""
    monkeypatch.chdir(ROOT)
    assert main(["rl", "--config", "recipes/demo-rl.yaml", "--steps", "5"]) == 0
    config = captured[-1]
    assert config.steps == 5 and config.data == "runs/demo/tables"
    assert config.av == "runs/demo/av_sft/av" and config.group_size == 8 and config.kl_coef == 0
    assert main(["sft", "--config", "recipes/demo-sft-ar.yaml"]) == 0
    assert captured[-1].role == "ar" and captured[-1].steps == 1400
    assert main(["sft", "av", "--config", "recipes/demo-sft-ar.yaml", "--lr", "0.5"]) == 0
    assert captured[-1].role == "av" and captured[-1].lr == 0.5 and captured[-1].steps == 1400


def test_a_recipe_supplies_required_fields_and_a_run_snapshot_is_one(tmp_path, captured):
    import dataclasses

    from nlakit.train.rl import RLConfig

    ran = RLConfig(data="t", av="a", ar="r", out="o", steps=9, freeze_ar=False)
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(ran)))
    assert main(["rl", "--config", str(tmp_path / "config.json"), "--out", "o2"]) == 0
    assert captured[-1] == dataclasses.replace(ran, out="o2")


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        ([*RL_ARGS, "--kl-coef", "-1"], "kl_coef"),
        ([*RL_ARGS, "--clip-eps", "-0.2"], "clip_eps"),
        ([*RL_ARGS, "--length-penalty", "-0.5"], "length_penalty"),
        ([*RL_ARGS, "--group-size", "1"], "group_size"),
        ([*RL_ARGS, "--lr", "nan"], "lr"),
        ([*RL_ARGS, "--temperature", "-1"], "temperature"),
        ([*RL_ARGS, "--top-p", "1.5"], "top_p"),
        ([*RL_ARGS, "--max-new-tokens", "0"], "max_new_tokens"),
        (["sft", "av", "--data", "t", "--out", "o", "--lora-rank", "-4"], "lora_rank"),
        (["eval", "--run", "r", "--n", "-1"], "n must"),
        (["sweep", "length", "--run", "r", "--steps", "0"], "steps"),
        (["sweep", "length", "--run", "r", "--lambdas", "0", "-1"], "lambdas"),
        (["explain", "--av", "a", "--vectors", "v.npy", "--temperature", "nan"], "temperature"),
        (["explain", "--av", "a", "--vectors", "v.npy", "--top-p", "1.5"], "top_p"),
        (["toyworld", "build", "--out", "{tmp}/w", "--n-docs", "0"], "n_docs"),
        (["toyworld", "probe", "--world", "{tmp}", "--test-fraction", "1"], "test_fraction"),
        (["view", "{tmp}", "--port", "70000"], "port"),
        (["extract", "--model", "m", "--layer", "-1", "--corpus", "c", "--out", "o"], "layer"),
        (["demo", "--out", "{tmp}/d", "--group-size", "1"], "group_size"),
        (["rl", "--data", "t"], "missing required --out, --av, --ar"),
    ],
)
def test_bad_values_are_refused_before_anything_runs(capsys, tmp_path, captured, argv, field):
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2 and field in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not captured
    assert not (tmp_path / "w").exists() and not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rl", "--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
        (["rl", "--freeze-ar", "maybe"], "--freeze-ar"),
        (["rl", "--kl-coeff", "1"], "unrecognized arguments: --kl-coeff"),
        (["demo", "--size", "huge"], "invalid choice: 'huge'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_recipe_errors_are_one_line(capsys, tmp_path):
    (tmp_path / "r.yaml").write_text("kl_coeff: 0.1\n")
    code, _, err = run(capsys, "rl", "--config", tmp_path / "r.yaml")
    assert code == 2 and f"{tmp_path / 'r.yaml'}: unknown key `kl_coeff`" in err
    assert "did you mean `kl_coef`" in err and len(err.strip().splitlines()) == 1


def documented_commands() -> list[str]:
    """Every full `nlakit ...` command line of the README and docs/."""
    commands = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines, in_code = iter(path.read_text().splitlines()), False
        for line in lines:
            line = line.strip().removeprefix("$ ")
            in_code ^= line.startswith("```")
            if not (in_code and line.startswith("nlakit ")):
                continue
            while line.endswith("\\"):
                line = line[:-1] + next(lines).strip()
            command = line.split("  #")[0].strip()
            if not any(c in command for c in "[…<") and "..." not in command:
                commands.append(command)
    return commands


# Option spellings the docs give on their own (`--freeze-ar false` …), with a verb.
DOCUMENTED_OPTIONS = [
    "rl --data t --av a --ar r --out o --freeze-ar false --resume true --tensorboard true",
    "rl --data t --av a --ar r --out o --wandb true --max-seconds 300 --kl-coef 0",
    "sft av --data t --out o --lora-rank 16 --rslora true --eval-every 0",
    "sweep length --run r --budget equal-time --lambdas 0 0.01 0.02 0.04",
    "toyworld build --out w --size small",
    "build --data acts --out t --injection-scale 150",
    "extract --model m --layer 1 --corpus c --out o --min-pos 8 --positions-per-doc 3",
    "extract --model m --layer 1 --corpus c --out o --messages-field messages --regenerate-assistant true",
    "teach --data acts --teacher toyworld --max-requests 10",
    "view runs/demo --no-serve --port 8765 --export e.json --context-chars 100 --title T",
    "explain --av a --vectors v.npy --temperature 0 --device cuda",
    "demo --size small",
]


def test_documented_commands_still_parse():
    import shlex

    commands = documented_commands()
    assert len(commands) > 20 and any(c.startswith("nlakit rl ") for c in commands)
    for command in [*commands, *(f"nlakit {c}" for c in DOCUMENTED_OPTIONS)]:
        argv = shlex.split(command)[1:]
        args = build_parser(argv).parse_args(argv)  # a usage error exits here
        assert callable(args.func), command


def test_a_full_disk_is_one_line(capsys, tmp_path, monkeypatch):
    import errno

    import nlakit.tiny

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "t" / "x"))

    monkeypatch.setattr(nlakit.tiny, "write_tiny", full)
    code, _, err = run(capsys, "tiny", "--out", tmp_path / "t")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "No space left on device; free some space" in err and str(tmp_path) in err


def test_a_bug_is_one_line_and_exit_1_unless_debugging(capsys, tmp_path, monkeypatch):
    import nlakit.tiny

    def broken(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(nlakit.tiny, "write_tiny", broken)
    code, _, err = run(capsys, "tiny", "--out", tmp_path / "t")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "internal error (ZeroDivisionError: oops)" in err and "NLAKIT_DEBUG=1" in err
    monkeypatch.setenv("NLAKIT_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["tiny", "--out", str(tmp_path / "t")])
