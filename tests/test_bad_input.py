"""The bad-input catalogue: commands a user might type with something wrong in them.

Every case must end in exit code 2 with one line on stderr that names the file or the
option at fault (and says what was expected), no traceback, and every file the
command could reach byte-identical before and after. The cases run in-process through
`nlakit.cli.main`, so an exception that escapes the CLI fails the test with its
traceback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from safetensors.torch import save_file

from nlakit.cli import main
from nlakit.store.guard import LOCK_FILE


@dataclass
class Case:
    id: str
    argv: str  # placeholders: {tmp} (this case's directory), {target} {av} {ar} (a tiny
    # pair), {tables} {data} {world} (a small toy world's tables, extraction and world)
    names: tuple[str, ...]  # what the one-line message must mention (file, option, field)
    setup: Callable[[Path, dict], None] | None = None


# --------------------------------------------------------------------------- bad files


def _vectors(n: int = 3, d: int = 64) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)


def _write(name: str, data: bytes) -> Callable[[Path, dict], None]:
    return lambda tmp, _: (tmp / name).write_bytes(data)


def _npy(name: str, array: np.ndarray, allow_pickle: bool = False):
    return lambda tmp, _: np.save(tmp / name, array, allow_pickle=allow_pickle)


def _truncated(name: str, make: Callable[[Path], None], keep: float = 0.5):
    def setup(tmp: Path, _) -> None:
        make(tmp / name)
        data = (tmp / name).read_bytes()
        (tmp / name).write_bytes(data[: int(len(data) * keep)])

    return setup


def _vector_parquet(path: Path, rows: list | None = None, kind=None) -> None:
    rows = _vectors().tolist() if rows is None else rows
    pq.write_table(pa.table({"activation_vector": pa.array(rows, kind)}), path)


def _flipped_parquet(tmp: Path, _) -> None:
    path = tmp / "flipped.parquet"
    table = pa.table({"activation_vector": pa.array(_vectors(64).tolist())})
    pq.write_table(table, path, write_page_checksum=True, compression="none")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # a float in the middle of the data page
    path.write_bytes(bytes(data))


def _pickled_pt(tmp: Path, _) -> None:
    torch.save({"vectors": torch.zeros(2, 64), "payload": Path("x")}, tmp / "pickled.pt")


def _recipe(text: str):
    return lambda tmp, _: (tmp / "recipe.yaml").write_text(text)


def _sidecar_edit(key: str, value) -> Callable[[Path, dict], None]:
    """A copy of the tiny AV at {tmp}/av with one sidecar field changed."""

    def setup(tmp: Path, ctx: dict) -> None:
        shutil.copytree(ctx["av"], tmp / "av")
        path = tmp / "av" / "nla_meta.yaml"
        meta = yaml.safe_load(path.read_text())
        meta[key] = value
        path.write_text(yaml.safe_dump(meta))
        np.save(tmp / "vectors.npy", _vectors())

    return setup


def _existing_out(tmp: Path, _) -> None:
    (tmp / "vectors.npy").write_bytes(b"")
    np.save(tmp / "vectors.npy", _vectors())
    (tmp / "out.jsonl").write_text("precious\n")
    (tmp / "out.npy").write_text("precious\n")
    (tmp / "a_file").write_text("precious\n")
    rows = {"doc_id": ["d0"], "position": [3], "explanation": ["a poem"], "mse_nrm": [0.5]}
    pq.write_table(pa.table(rows), tmp / "rows.parquet")


def _fake_run(kind: str = "sft") -> Callable[[Path, dict], None]:
    """{tmp}/run: a directory holding another run (its config, a log, a checkpoint)."""

    def setup(tmp: Path, ctx: dict) -> None:
        run = tmp / "run"
        (run / "step_000010").mkdir(parents=True)
        (run / "step_000010" / "state.json").write_text("{}")
        config = {"data": str(ctx["tables"]), "out": str(run), "lr": 0.001, "steps": 10}
        config.update({"role": "av"} if kind == "sft" else {"av": ctx["av"], "ar": ctx["ar"]})
        (run / "config.json").write_text(__import__("json").dumps(config))
        (run / "metrics.jsonl").write_text('{"step": 10, "loss": 1.0}\n')

    return setup


def _nan_tables(tmp: Path, ctx: dict) -> None:
    shutil.copytree(ctx["tables"], tmp / "tables")
    path = tmp / "tables" / "ar_sft.parquet"
    table = pq.read_table(path)
    vectors = np.stack(table.column("activation_vector").to_numpy(zero_copy_only=False))
    vectors[:, 0] = np.nan
    column = pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.astype(np.float32).ravel()), vectors.shape[1]
    )
    index = table.column_names.index("activation_vector")
    pq.write_table(table.set_column(index, "activation_vector", column), path)


def _read_only(tmp: Path, _) -> None:
    (tmp / "ro").mkdir()
    os.chmod(tmp / "ro", 0o555)


def _hold_lock(tmp: Path, ctx: dict) -> None:
    from filelock import FileLock

    (tmp / "out").mkdir()
    lock = FileLock(tmp / "out" / LOCK_FILE, timeout=0)
    lock.acquire()
    ctx["held"] = lock  # released when the case ends (see `test_bad_input`)


def _deep_yaml(depth: int = 20_000) -> str:
    return "a: " + "[" * depth + "]" * depth + "\n"


SFT = "sft av --data {tables} --out {tmp}/run"
RL = "rl --data {tables} --av {av} --ar {ar} --out {tmp}/run"
EXPLAIN = "explain --av {av} --vectors {tmp}/vectors.npy"
EXTRACT = "extract --model {target} --layer 1 --corpus toyworld:{world} --out {tmp}/out"

CASES = [
    # ---- option values: checked by the config classes before anything loads
    Case("rl-kl-negative", RL + " --kl-coef -1", ("--kl-coef",)),
    Case("rl-clip-negative", RL + " --clip-eps -0.2", ("--clip-eps",)),
    Case("rl-length-penalty-negative", RL + " --length-penalty -0.5", ("--length-penalty",)),
    Case("rl-group-size-1", RL + " --group-size 1", ("--group-size",)),
    Case("rl-temperature-nan", RL + " --temperature nan", ("--temperature",)),
    Case("rl-top-p", RL + " --top-p 1.5", ("--top-p",)),
    Case("rl-lr-inf", RL + " --lr inf", ("--lr",)),
    Case("rl-max-new-tokens-0", RL + " --max-new-tokens 0", ("--max-new-tokens",)),
    Case("sft-lora-rank-negative", SFT + " --lora-rank -4", ("--lora-rank",)),
    Case("sft-4bit-without-lora", SFT + " --load-in-4bit true", ("--load-in-4bit", "--lora-rank")),
    Case(
        "rl-4bit-fsdp",
        RL + " --load-in-4bit true --lora-rank 4 --parallel fsdp",
        ("--load-in-4bit", "--parallel fsdp"),
    ),
    Case("sft-parallel-unknown", SFT + " --parallel zero3", ("--parallel",)),
    Case("rl-sync-every-0", RL + " --sync-every 0", ("--sync-every",)),
    Case("rl-is-cap-0", RL + " --is-cap 0", ("--is-cap",)),
    Case("sft-packing-unknown", SFT + " --packing yes", ("--packing",)),
    Case("sft-lr-nan", SFT + " --lr nan", ("--lr",)),
    Case("sft-lr-negative", SFT + " --lr -1", ("--lr",)),
    Case("sft-batch-size-0", SFT + " --batch-size 0", ("--batch-size",)),
    Case("sft-steps-0", SFT + " --steps 0", ("--steps",)),
    Case("sft-steps-not-a-number", SFT + " --steps many", ("--steps",)),
    Case("sft-role", "sft xx --data {tables} --out {tmp}/run", ("role",)),
    Case("sft-device-cuda", SFT + " --device cuda", ("--device",)),
    Case("sft-device-unknown", SFT + " --device toaster", ("--device",)),
    Case("eval-n-negative", "eval --run {tmp}/run --n -1", ("--n",)),
    Case("sweep-steps-0", "sweep length --run {tmp}/run --steps 0", ("--steps",)),
    Case("explain-temperature-negative", EXPLAIN + " --temperature -1", ("--temperature",)),
    Case("explain-temperature-nan", EXPLAIN + " --temperature nan", ("--temperature",)),
    Case("explain-top-p", EXPLAIN + " --top-p 1.5", ("--top-p",)),
    Case("explain-max-new-tokens-0", EXPLAIN + " --max-new-tokens 0", ("--max-new-tokens",)),
    Case("explain-device-cuda", EXPLAIN + " --device cuda", ("--device",)),
    Case("toyworld-n-docs-0", "toyworld build --out {tmp}/w --n-docs 0", ("--n-docs",)),
    Case("view-port-range", "view {tmp}/run --port 70000", ("--port",)),
    Case("extract-positions-0", EXTRACT + " --positions-per-doc 0", ("--positions-per-doc",)),
    Case("extract-layer-range", EXTRACT.replace("--layer 1", "--layer 99"), ("layer",)),
    # ---- recipes
    Case("recipe-missing", SFT + " --config {tmp}/nope.yaml", ("nope.yaml",)),
    Case("recipe-deep", SFT + " --config {tmp}/recipe.yaml", ("recipe.yaml",), _recipe(_deep_yaml())),
    Case("recipe-unknown-key", SFT + " --config {tmp}/recipe.yaml", ("recipe.yaml", "stepz"), _recipe("stepz: 3\n")),
    Case("recipe-list", SFT + " --config {tmp}/recipe.yaml", ("recipe.yaml",), _recipe("- 1\n- 2\n")),
    Case("recipe-python-tag", SFT + " --config {tmp}/recipe.yaml", ("recipe.yaml",), _recipe("steps: !!python/object/apply:os.system ['touch pwned']\n")),
    Case("recipe-syntax", SFT + " --config {tmp}/recipe.yaml", ("recipe.yaml",), _recipe("steps: [1, 2\n")),
    Case("recipe-wrong-type", SFT + " --config {tmp}/recipe.yaml", ("recipe.yaml", "steps"), _recipe("steps: many\n")),
    Case("recipe-out-of-range", SFT + " --config {tmp}/recipe.yaml", ("recipe.yaml", "lr"), _recipe("lr: -1\n")),
    # ---- activation-vector files
    Case("vectors-missing", EXPLAIN, ("vectors.npy",)),
    Case("vectors-npy-truncated", EXPLAIN, ("vectors.npy",), _truncated("vectors.npy", lambda p: np.save(p, _vectors()))),
    Case("vectors-npy-empty", EXPLAIN, ("vectors.npy",), _write("vectors.npy", b"")),
    Case("vectors-npy-strings", EXPLAIN, ("vectors.npy",), _npy("vectors.npy", np.array([["a", "b"]]))),
    Case("vectors-npy-objects", EXPLAIN, ("vectors.npy",), _npy("vectors.npy", np.array([[1, None]], dtype=object), True)),
    Case("vectors-npy-nan", EXPLAIN, ("vectors.npy",), _npy("vectors.npy", np.full((2, 64), np.nan, np.float32))),
    Case("vectors-npy-3d", EXPLAIN, ("vectors.npy",), _npy("vectors.npy", np.zeros((2, 2, 64), np.float32))),
    Case("vectors-npy-bool", EXPLAIN, ("vectors.npy",), _npy("vectors.npy", np.ones((2, 64), bool))),
    Case("vectors-npy-wrong-width", EXPLAIN, ("vectors.npy", "64"), _npy("vectors.npy", _vectors(d=7))),
    Case("vectors-safetensors-truncated", EXPLAIN.replace(".npy", ".safetensors"), ("vectors.safetensors",), _truncated("vectors.safetensors", lambda p: save_file({"vectors": torch.zeros(4, 64)}, p))),
    Case("vectors-safetensors-empty", EXPLAIN.replace(".npy", ".safetensors"), ("vectors.safetensors",), _write("vectors.safetensors", b"")),
    Case("vectors-safetensors-two-tensors", EXPLAIN.replace(".npy", ".safetensors"), ("vectors.safetensors",), lambda tmp, _: save_file({"a": torch.zeros(1, 64), "b": torch.zeros(1, 64)}, tmp / "vectors.safetensors")),
    Case("vectors-parquet-truncated", EXPLAIN.replace(".npy", ".parquet"), ("vectors.parquet",), _truncated("vectors.parquet", _vector_parquet)),
    Case("vectors-parquet-empty", EXPLAIN.replace(".npy", ".parquet"), ("vectors.parquet",), _write("vectors.parquet", b"")),
    Case("vectors-parquet-bit-flip", "explain --av {av} --vectors {tmp}/flipped.parquet", ("flipped.parquet",), _flipped_parquet),
    Case("vectors-parquet-ragged", EXPLAIN.replace(".npy", ".parquet"), ("vectors.parquet", "activation_vector"), lambda tmp, _: _vector_parquet(tmp / "vectors.parquet", [[0.5] * 192, [0.5] * 64, [0.5] * 128, [0.5] * 128])),
    Case("vectors-parquet-strings", EXPLAIN.replace(".npy", ".parquet"), ("vectors.parquet", "activation_vector"), lambda tmp, _: _vector_parquet(tmp / "vectors.parquet", [["a"] * 64])),
    Case("vectors-parquet-inf", EXPLAIN.replace(".npy", ".parquet"), ("vectors.parquet", "activation_vector"), lambda tmp, _: _vector_parquet(tmp / "vectors.parquet", [[float("inf")] * 64])),
    Case("vectors-parquet-no-column", EXPLAIN.replace(".npy", ".parquet"), ("vectors.parquet", "activation_vector"), lambda tmp, _: pq.write_table(pa.table({"x": [1.0]}), tmp / "vectors.parquet")),
    Case("vectors-pt-pickled", "explain --av {av} --vectors {tmp}/pickled.pt", ("pickled.pt",), _pickled_pt),
    Case("vectors-pt-empty", EXPLAIN.replace(".npy", ".pt"), ("vectors.pt",), _write("vectors.pt", b"")),
    Case("vectors-pt-truncated", EXPLAIN.replace(".npy", ".pt"), ("vectors.pt",), _truncated("vectors.pt", lambda p: torch.save(torch.zeros(4, 64), p))),
    Case("vectors-unknown-suffix", EXPLAIN.replace(".npy", ".txt"), ("vectors.txt",), _write("vectors.txt", b"1 2 3")),
    # ---- sidecars
    Case("info-layer-out-of-range", "info {tmp}/av", ("layer", "9"), _sidecar_edit("extraction_layer_index", 9)),
    Case("info-wrong-d-model", "info {tmp}/av", ("d_model",), _sidecar_edit("d_model", 4096)),
    Case("explain-layer-out-of-range", "explain --av {tmp}/av --vectors {tmp}/vectors.npy", ("layer",), _sidecar_edit("extraction_layer_index", 9)),
    Case("info-sidecar-not-yaml", "info {tmp}/nla_meta.yaml", ("nla_meta.yaml",), _write("nla_meta.yaml", b"a: [1,\n")),
    Case("info-sidecar-deep", "info {tmp}/nla_meta.yaml", ("nla_meta.yaml",), _write("nla_meta.yaml", _deep_yaml().encode())),
    Case("info-missing", "info {tmp}/nowhere", ("nowhere",)),
    # ---- roles mixed up
    Case("rl-av-as-ar", "rl --data {tables} --av {av} --ar {av} --out {tmp}/run", ("--ar",)),
    Case("rl-ar-as-av", "rl --data {tables} --av {ar} --ar {ar} --out {tmp}/run", ("--av",)),
    Case("explain-ar-as-av", "explain --av {ar} --vectors {tmp}/vectors.npy", ("--av",), _existing_out),
    Case("explain-av-as-ar", "explain --av {av} --ar {av} --vectors {tmp}/vectors.npy", ("--ar",), _existing_out),
    Case("reconstruct-av-as-ar", "reconstruct --ar {av} --text hello", ("--ar",)),
    # ---- outputs: nothing overwritten, nothing written where it cannot be
    Case("explain-out-exists", EXPLAIN + " --out {tmp}/out.jsonl", ("--out", "out.jsonl"), _existing_out),
    Case("reconstruct-out-exists", "reconstruct --ar {ar} --text hi --out {tmp}/out.npy", ("--out", "out.npy"), _existing_out),
    Case("view-export-exists", "view {tmp}/rows.parquet --out {tmp}/v --export {tmp}/out.jsonl --no-serve", ("--export", "out.jsonl"), _existing_out),
    Case("sft-out-is-a-file", "sft av --data {tables} --out {tmp}/a_file", ("--out", "a_file"), _existing_out),
    Case("sft-out-read-only", "sft av --data {tables} --out {tmp}/ro/run", ("--out", "ro"), _read_only),
    Case("tiny-out-is-a-file", "tiny --out {tmp}/a_file", ("a_file",), _existing_out),
    Case("toyworld-out-is-a-file", "toyworld build --out {tmp}/a_file", ("a_file",), _existing_out),
    Case("extract-out-is-a-file", EXTRACT.replace("{tmp}/out", "{tmp}/a_file"), ("a_file",), _existing_out),
    Case("sft-into-another-run", SFT, ("run", "--resume"), _fake_run("sft")),
    Case("rl-into-an-sft-run", RL, ("run",), _fake_run("sft")),
    Case("sft-resume-changed-lr", SFT + " --resume --lr 0.5", ("config.json", "lr", "--allow-changes"), _fake_run("sft")),
    Case("rl-resume-an-sft-run", RL + " --resume", ("config.json",), _fake_run("sft")),
    Case("extract-locked", EXTRACT, ("out", "another nlakit command"), _hold_lock),
    Case("extract-other-layer", "extract --model {world}/model --layer 0 --corpus toyworld:{world} --out {data}", ("layer",)),
    # ---- data and tables
    Case("build-ar-template", "build --data {data} --out {tmp}/tables --ar-template 'no placeholder'", ("--ar-template", "{explanation}")),
    Case("build-av-template", "build --data {data} --out {tmp}/tables --av-template 'no marker'", ("--av-template",)),
    Case("build-other-tokenizer", "build --data {data} --out {tmp}/tables --tokenizer {target}", ("--tokenizer",)),
    Case("build-data-missing", "build --data {tmp}/nowhere --out {tmp}/tables", ("nowhere",)),
    Case("build-out-locked", "build --data {data} --out {tmp}/out", ("out", "another nlakit command"), _hold_lock),
    Case("sft-ar-nan-table", "sft ar --data {tmp}/tables --out {tmp}/run", ("ar_sft.parquet", "NaN"), _nan_tables),
    Case("sft-no-tables", "sft av --data {tmp} --out {tmp}/run", ("av_sft.parquet",)),
    Case("teach-data-missing", "teach --data {tmp}/nowhere --teacher toyworld", ("nowhere",)),
    Case("teach-unknown-teacher", "teach --data {data} --teacher martian:x", ("--teacher", "martian")),
    # ---- runs to evaluate that are not there
    Case("eval-run-missing", "eval --run {tmp}/nowhere", ("nowhere",)),
    Case("report-run-missing", "report {tmp}/nowhere", ("nowhere",)),
    Case("analyze-run-missing", "analyze format --run {tmp}/nowhere", ("nowhere",)),
    Case("view-run-missing", "view {tmp}/nowhere --no-serve", ("nowhere",)),
    # ---- more options, paths and verbs
    Case("explain-positions-negative", "explain --av {av} --model {target} --text hi --positions -9", ("--positions",)),
    Case("explain-positions-out-of-range", "explain --av {av} --model {target} --text hi --positions 99", ("--positions",)),
    Case("explain-model-missing", "explain --av {av} --model {tmp}/nowhere --text hi", ("nowhere",)),
    Case("explain-av-missing", "explain --av {tmp}/nowhere --vectors {tmp}/vectors.npy", ("nowhere",), _existing_out),
    Case("explain-nla-unknown", "explain --nla no-such-nla --text hi", ("no-such-nla",)),
    Case("reconstruct-out-not-npy", "reconstruct --ar {ar} --text hi --out {tmp}/x.txt", ("--out",)),
    Case("reconstruct-ar-missing", "reconstruct --ar {tmp}/nowhere --text hi", ("nowhere",)),
    Case("extract-max-docs-0", EXTRACT + " --max-docs 0", ("--max-docs",)),
    Case("extract-frac-negative", EXTRACT + " --frac-eval -0.1", ("frac",)),
    Case("extract-shard-rows-0", EXTRACT + " --shard-rows 0", ("--shard-rows",)),
    Case("extract-model-missing", EXTRACT.replace("{target}", "{tmp}/nowhere"), ("nowhere",)),
    Case("extract-corpus-missing", EXTRACT.replace("toyworld:{world}", "{tmp}/nowhere.jsonl"), ("nowhere.jsonl",)),
    Case("extract-corpus-scheme", EXTRACT.replace("toyworld:{world}", "martian:x"), ("martian",)),
    Case("teach-concurrency-0", "teach --data {data} --teacher toyworld --concurrency 0", ("--concurrency",)),
    Case("teach-limit-negative", "teach --data {data} --teacher toyworld --limit -1", ("--limit",)),
    Case("rl-max-seconds-negative", RL + " --max-seconds -1", ("--max-seconds",)),
    Case("rl-update-batch-0", RL + " --update-batch 0", ("--update-batch",)),
    Case("rl-eval-rows-0", RL + " --eval-rows 0", ("--eval-rows",)),
    Case("rl-keep-checkpoints-0", RL + " --keep-checkpoints 0", ("--keep-checkpoints",)),
    Case("rl-advantage-norm", RL + " --advantage-norm foo", ("advantage",)),
    Case("rl-av-missing", "rl --data {tables} --av {tmp}/nowhere --ar {ar} --out {tmp}/run", ("nowhere",)),
    Case("rl-data-missing", "rl --data {tmp}/nowhere --av {av} --ar {ar} --out {tmp}/run", ("nowhere",)),
    Case("sft-model-missing", SFT + " --model {tmp}/nowhere", ("nowhere",)),
    Case("sft-dtype", SFT + " --dtype float8", ("--dtype",)),
    Case("eval-not-a-run", "eval --run {tmp}", ("run",)),
    Case("report-not-a-run", "report {tmp}", ("eval",)),
    Case("analyze-unknown", "analyze nosuch --run {tmp}", ("nosuch",)),
    Case("sweep-lambdas-words", "sweep length --run {tmp} --lambdas abc", ("lambdas",)),
    Case("sweep-lambdas-negative", "sweep length --run {tmp} --lambdas -1", ("lambda",)),
    Case("view-port-negative", "view {tmp} --port -1", ("--port",)),
    Case("view-context-negative", "view {tmp} --context-chars -5", ("--context-chars",)),
    Case("toyworld-size", "toyworld build --out {tmp}/w --size huge", ("size",)),
    Case("toyworld-eval-fraction", "toyworld build --out {tmp}/w --eval-fraction 1.5", ("--eval-fraction",)),
    Case("toyworld-hidden-size-0", "toyworld build --out {tmp}/w --hidden-size 0", ("--hidden-size",)),
    Case("tiny-arch", "tiny --out {tmp}/t --arch foo", ("--arch",)),
    Case("tiny-layer-range", "tiny --out {tmp}/t --layer 99", ("layer",)),
    Case("info-parquet-without-sidecar", "info {tmp}/rows.parquet", ("rows.parquet",), _existing_out),
    Case("info-tokenizer-missing", "info {data} --tokenizer {tmp}/nowhere", ("nowhere",)),
    Case("recipe-of-another-verb", SFT + " --config {repo}/recipes/demo-rl.yaml", ("demo-rl.yaml",)),
    Case("recipe-binary", SFT + " --config {tmp}/recipe.yaml", ("recipe.yaml",), _write("recipe.yaml", bytes(range(256)))),
    Case("toyworld-sample-n", "toyworld sample --world {world} -n -1", ("-n",)),
    Case("toyworld-sample-missing", "toyworld sample --world {tmp}/nowhere", ("nowhere",)),
    Case("toyworld-probe-missing", "toyworld probe --world {tmp}/nowhere", ("nowhere",)),
    Case("toyworld-probe-layer", "toyworld probe --world {world} --layer 99", ("layer",)),
    Case("explain-engine-vllm-missing", EXPLAIN + " --engine vllm", ("--engine vllm", "pip install")),
    Case("rl-engine-vllm-missing", RL + " --engine vllm", ("--engine vllm", "pip install")),
]  # fmt: skip


def _argv(template: str, ctx: dict) -> list[str]:
    import shlex

    return [part.format(**ctx) for part in shlex.split(template)]


def snapshot(roots: list[Path]) -> dict[str, str]:
    """Path → content hash (or 'dir') of everything under `roots`."""
    seen = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                seen[str(path)] = "dir"
    return seen


@pytest.fixture(scope="module")
def context(tiny_dirs, small_tables, small_world) -> dict:
    return {
        "target": str(tiny_dirs["target"]),
        "av": str(tiny_dirs["av"]),
        "ar": str(tiny_dirs["ar"]),
        "tables": str(small_tables),
        "data": str(small_tables.parent / "data"),
        "world": str(small_world),
        "repo": str(Path(__file__).resolve().parents[1]),
    }


def test_the_catalogue_is_large_and_distinct():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, context, tmp_path, capsys, monkeypatch):
    if case.id == "sft-out-read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    monkeypatch.chdir(tmp_path)  # a payload that would write, writes here (and is seen)
    ctx = {**context, "tmp": str(tmp_path)}
    if case.setup is not None:
        case.setup(tmp_path, ctx)
    roots = [tmp_path, *(Path(context[k]) for k in ("av", "ar", "tables", "data", "world"))]
    before = snapshot(roots)
    capsys.readouterr()
    try:
        try:
            code = main(_argv(case.argv, ctx))
        except SystemExit as exc:  # a usage error from the parser
            code = exc.code
    finally:
        if "held" in ctx:
            ctx["held"].release()
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit code {code}; stderr: {err!r}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert "Traceback" not in err + out
    for name in case.names:
        assert name in lines[0], f"{name!r} not in the message: {lines[0]}"
    after = snapshot(roots)
    if case.id in ("extract-locked", "build-out-locked"):  # the lock file is the holder's
        before = {k: v for k, v in before.items() if not k.endswith(LOCK_FILE)}
        after = {k: v for k, v in after.items() if not k.endswith(LOCK_FILE)}
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"files touched: {changed[:5]}"
