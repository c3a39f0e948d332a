"""`nlakit <verb>`: the command line. Each verb calls a Python function of the package.

nlakit info DIR                      sidecar + validation against the tokenizer
nlakit list [--json]                 the released NLAs, loadable by name
nlakit explain --av DIR [--ar DIR] (--vectors FILE | --model DIR --text TEXT)
nlakit explain --nla NAME --text TEXT   a released NLA on its own base model
nlakit reconstruct --ar DIR --text TEXT [--text TEXT ...]
nlakit tiny --out DIR [--arch qwen3|llama|gemma3]
nlakit demo                          the default end-to-end run
nlakit eval --run RUN                evaluation with controls (see nlakit/eval/cli.py)
nlakit analyze NAME --run RUN        the analyses; nlakit report RUN assembles them
nlakit view RUN [RUN ...]            browse tokens, explanations and errors in the browser
nlakit steer --ar AR --model M --text TEXT [--alpha A] [--prompt P]   AR steering
nlakit diff --av AV --base M0 --tuned M1 --data CORPUS --out DIR   explain a fine-tune's change

Verbs with a config dataclass (sft, rl, eval, extract, …) take one `--field-name`
option per field and `--config RECIPE` (a YAML file of field → value, see
`recipes/`); options given on the command line override the recipe. Bad input is
one line on stderr and exit code 2 (see nlakit/config_cli.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

from nlakit.config import DEVICE_HELP, DTYPES
from nlakit.config_cli import Parser, add_config, config_from_args
from nlakit.errors import NLAKitError
from nlakit.store.guard import check_output_dir, check_output_file

# --------------------------------------------------------------------------- verbs as functions


def info(path: str | os.PathLike, tokenizer_path: str | os.PathLike | None = None) -> dict:
    """The sidecar at `path` and whether it holds against its tokenizer.

    Returns `{"sidecar": str, "meta": ModelMeta|DatasetMeta, "problems": [str],
    "validated_with": str|None}`; a model directory is validated against its own
    tokenizer, a dataset sidecar only when `tokenizer_path` is given.
    """
    from nlakit.meta import ModelMeta, check, read_meta, sidecar_path
    from nlakit.models import load_tokenizer

    meta = read_meta(path)
    tok_dir = tokenizer_path
    if tok_dir is None and isinstance(meta, ModelMeta):
        tok_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    problems: list[str] = []
    if tok_dir is not None:
        problems = check(meta, load_tokenizer(tok_dir))
    if isinstance(meta, ModelMeta):
        problems += model_config_problems(
            meta, Path(path) if Path(path).is_dir() else Path(path).parent
        )
    return {
        "sidecar": str(sidecar_path(path)),
        "meta": meta,
        "problems": problems,
        "validated_with": None if tok_dir is None else str(tok_dir),
    }


def model_config_problems(meta, model_dir: Path) -> list[str]:
    """Where a model sidecar disagrees with its model's `config.json` (width, depth)."""
    from transformers import AutoConfig

    from nlakit.sites import text_config
    from nlakit.store.names import MODEL_CONFIG

    if not (model_dir / MODEL_CONFIG).is_file():
        return []
    try:
        config = text_config(AutoConfig.from_pretrained(str(model_dir)))
    except (OSError, ValueError, KeyError) as exc:
        return [f"{model_dir / MODEL_CONFIG}: not a readable model config ({exc})"]
    problems = []
    width = getattr(config, "hidden_size", None)
    if width is not None and width != meta.d_model:
        problems.append(
            f"{meta.source}: field `d_model`: expected {width} (the model's hidden size), "
            f"got {meta.d_model}"
        )
    depth = getattr(config, "num_hidden_layers", None)
    if meta.role == "av" and depth is not None and meta.layer is not None and meta.layer >= depth:
        problems.append(
            f"{meta.source}: field `extraction_layer_index`: expected a block index below "
            f"{depth} (the model's depth), got {meta.layer}"
        )
    return problems


def load_vectors(path: str | os.PathLike):
    """Activation vectors `[n, d]` from .npy, .safetensors, .pt or a parquet
    `activation_vector` column (see `nlakit.store.vectors.read_vectors`)."""
    from nlakit.store.vectors import read_vectors

    return read_vectors(path)


def explanation_rows(
    av: str | os.PathLike,
    ar: str | os.PathLike | None = None,
    vectors=None,
    model: str | os.PathLike | None = None,
    text: str | None = None,
    positions: list[int] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    vectors_source: str | None = None,
    **sampling,
) -> list[dict]:
    """Explain `vectors`, or the tokens of `text` under the target `model`; one dict per row."""
    from nlakit.nla import NLA

    nla = NLA.from_pretrained(av=av, ar=ar, device=device, dtype=dtype)
    if (vectors is None) == (text is None):
        raise NLAKitError("pass either vectors or a target model and a text")
    if text is not None:
        if model is None:
            raise NLAKitError("--text needs --model (the target model the activations come from)")
        rows = nla.explain_text(model, text, positions=positions, **sampling)
        return [_row(r.position, r.token, r.explanation, r.mse_nrm, r.cos) for r in rows]
    if vectors.shape[-1] != nla.d_model:
        raise NLAKitError(
            f"{vectors_source or 'vectors'}: vectors are {vectors.shape[-1]} wide, but this NLA "
            f"reads d_model {nla.d_model}; were they extracted from another model?"
        )
    explanations = nla.explain(vectors, **sampling)
    scores = nla.score(vectors, [e.text for e in explanations]) if nla.ar else None
    return [
        _row(
            i,
            None,
            e,
            None if scores is None else float(scores.mse_nrm[i]),
            None if scores is None else float(scores.cos[i]),
        )
        for i, e in enumerate(explanations)
    ]


def _row(index, token, explanation, mse, cos) -> dict:
    return {
        "index": index,
        "token": token,
        "explanation": explanation.text,
        "raw": explanation.raw,
        "n_tokens": explanation.n_tokens,
        "finished": explanation.finished,
        "mse_nrm": mse,
        "cos": cos,
    }


# --------------------------------------------------------------------------- printing


def format_table(rows: list[dict], width: int | None = None) -> str:
    """A readable table: index, token, explanation (wrapped), mse_nrm, cos."""
    width = width or shutil.get_terminal_size((110, 20)).columns
    text_width = max(30, width - 38)
    lines = [f"{'#':>4}  {'token':<12} {'explanation':<{text_width}} {'mse_nrm':>7} {'cos':>6}"]
    lines.append("-" * min(width, text_width + 38))
    for row in rows:
        shown = row["explanation"] or f"[no closing tag] {row['raw']}"
        wrapped = textwrap.wrap(" ".join(shown.split()), text_width) or [""]
        token = "" if row["token"] is None else repr(row["token"])[:12]
        mse = "" if row["mse_nrm"] is None else f"{row['mse_nrm']:.3f}"
        cos = "" if row["cos"] is None else f"{row['cos']:.3f}"
        lines.append(f"{row['index']:>4}  {token:<12} {wrapped[0]:<{text_width}} {mse:>7} {cos:>6}")
        lines.extend(f"{'':>4}  {'':<12} {more}" for more in wrapped[1:4])
    return "\n".join(lines)


def write_jsonl(rows: list[dict], path: str | os.PathLike) -> Path:
    from nlakit.atomic import write_text

    return write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


# --------------------------------------------------------------------------- commands


def _cmd_info(args) -> None:
    from nlakit.meta import dump_meta

    report = info(args.path, args.tokenizer)
    print(f"# {report['sidecar']}")
    print(dump_meta(report["meta"]).rstrip())
    if report["validated_with"] is None:
        print("\nvalidation: skipped (dataset sidecar; pass --tokenizer DIR to check it)")
    elif report["problems"]:
        print(f"\nvalidation against {report['validated_with']}: FAILED")
        for problem in report["problems"]:
            print(f"  - {problem}")
        raise NLAKitError(
            f"{report['sidecar']}: validation failed ({len(report['problems'])} problem(s): "
            + "; ".join(report["problems"])
            + "); see the list above"
        )
    else:
        print(f"\nvalidation against {report['validated_with']}: ok")


def _check_runtime(args) -> None:
    """--device names a device this machine has (before any model loads)."""
    from nlakit.config import device_problem

    problem = device_problem(getattr(args, "device", None))
    if problem is not None:
        raise NLAKitError(f"--device {problem}.")


def _sampling(args) -> dict:
    from nlakit.generation import SamplingConfig

    sampling = config_from_args(SamplingConfig, args, dest="sampling")
    return {**dataclasses.asdict(sampling), "seed": args.seed, "progress": True}


def _cmd_list(args) -> None:
    from nlakit.registry import format_nlas, list_nlas

    rows = list_nlas()
    print(json.dumps(rows, indent=2, ensure_ascii=False) if args.json else format_nlas(rows))


def _cmd_explain(args) -> None:
    from nlakit.registry import resolve

    if (args.vectors is None) == (args.text is None):
        raise NLAKitError("pass exactly one of --vectors FILE or --model DIR --text TEXT")
    sampling = _sampling(args)
    _check_runtime(args)
    if args.out:
        check_output_file(args.out, args.force)
    vectors = load_vectors(args.vectors) if args.vectors else None
    av = args.nla or args.av
    released = resolve(av)
    model = args.model
    if model is None and released is not None and args.text is not None:
        model = released.base_model  # a released NLA reads its own base model
    rows = explanation_rows(
        av,
        args.ar,
        vectors=vectors,
        model=model,
        text=args.text,
        positions=args.positions,
        device=args.device,
        dtype=args.dtype,
        vectors_source=args.vectors,
        **sampling,
    )
    print(format_table(rows))
    if args.out:
        print(f"\nwrote {len(rows)} rows to {write_jsonl(rows, args.out)}")


def _cmd_reconstruct(args) -> None:
    import numpy as np

    from nlakit.nla import NLA

    _check_runtime(args)
    if args.out:
        if Path(args.out).suffix != ".npy":
            raise NLAKitError(
                f"--out {args.out}: predictions are written as .npy; name a .npy file"
            )
        check_output_file(args.out, args.force)
    nla = NLA.from_pretrained(ar=args.ar, device=args.device, dtype=args.dtype)
    pred = nla.reconstruct(args.text)
    for text, vector in zip(args.text, pred, strict=True):
        head = ", ".join(f"{x:.3f}" for x in vector[:6].tolist())
        print(f"norm {vector.norm():9.3f}  [{head}, …]  ← {text[:60]!r}")
    if args.out:
        from nlakit.atomic import write_atomic

        def save(path: Path) -> None:
            with open(path, "wb") as f:  # a file object: np.save would add `.npy` to a name
                np.save(f, pred.numpy())

        write_atomic(args.out, save)
        print(f"wrote {tuple(pred.shape)} predictions to {args.out}")


def _cmd_tiny(args) -> None:
    from nlakit.tiny import write_tiny

    check_output_dir(args.out)
    paths = write_tiny(args.out, arch=args.arch, layer=args.layer, seed=args.seed)
    for name, path in paths.items():
        print(f"{name:>6}: {path}")


def _cmd_demo(args) -> None:
    from nlakit.demo import DemoConfig, run_demo

    run_demo(config_from_args(DemoConfig, args))


def _positionals(argv: list[str]) -> list[str]:
    return [a for a in argv if not a.startswith("-")]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; verbs other than the one in `argv` get no options (so that `nlakit
    --help` and simple verbs do not import every stage's dependencies)."""
    words = _positionals(sys.argv[1:] if argv is None else argv)
    chosen = words[0] if words else None
    parser = Parser(prog="nlakit", description="Natural Language Autoencoders.")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("info", help="show a sidecar and validate it against the tokenizer")
    p.add_argument("path", help="model directory, parquet table, or nla_meta.yaml")
    p.add_argument("--tokenizer", help="tokenizer directory to validate a dataset sidecar against")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("list", help="the released NLAs that load by name")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=_cmd_list)

    def add_runtime(p):
        p.add_argument("--device", help=DEVICE_HELP)
        p.add_argument("--dtype", choices=DTYPES, help="default: bf16 on GPU, fp32 on CPU")

    p = sub.add_parser("explain", help="explain activation vectors or the tokens of a text")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--nla",
        metavar="NAME",
        help="a released NLA by name (`nlakit list`): its AV and AR (--ar overrides); "
        "a local path spelled the same wins and loads as the AV",
    )
    which.add_argument("--av", help="AV directory, Hub id, or released NLA name")
    p.add_argument("--ar", help="AR directory, Hub id or released NLA name (adds mse_nrm and cos)")
    p.add_argument("--vectors", help=".npy, .safetensors, .pt or .parquet of raw activations")
    p.add_argument(
        "--model",
        help="target model directory or Hub id (with --text; default for --nla: its base model)",
    )
    p.add_argument("--text", help="text whose tokens to explain (with --model, or --nla)")
    p.add_argument(
        "--positions",
        type=int,
        nargs="+",
        help="token positions, negative counting from the end (default: all)",
    )
    p.add_argument("--seed", type=int, help="sampling seed (default: unseeded)")
    p.add_argument("--out", help="also write the rows as JSONL")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_runtime(p)
    p.set_defaults(func=_cmd_explain)
    if chosen == "explain":
        from nlakit.generation import SamplingConfig

        add_config(p, SamplingConfig, dest="sampling")

    p = sub.add_parser("reconstruct", help="predict activations from explanation texts")
    p.add_argument("--ar", required=True, help="AR directory, Hub id, or released NLA name")
    p.add_argument("--text", required=True, action="append", help="explanation (repeatable)")
    p.add_argument("--out", help="write the predictions [n, d] as .npy")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_runtime(p)
    p.set_defaults(func=_cmd_reconstruct)

    p = sub.add_parser("tiny", help="write a tiny random target model and a fresh AV/AR pair")
    p.add_argument("--out", required=True, help="directory to write target/, av/ and ar/ to")
    p.add_argument(
        "--arch",
        default="qwen3",
        choices=["qwen3", "llama", "gemma3"],
        help="architecture of the tiny target (default: qwen3)",
    )
    p.add_argument("--layer", type=int, help="block index K (default: the middle block)")
    p.add_argument("--seed", type=int, default=0, help="seeds the random weights (default: 0)")
    p.set_defaults(func=_cmd_tiny)

    from nlakit.data.cli import register as register_data
    from nlakit.diff import register as register_diff
    from nlakit.eval.cli import register as register_eval
    from nlakit.steer import register as register_steer
    from nlakit.toyworld.cli import register as register_toyworld
    from nlakit.train.cli import register as register_train
    from nlakit.viewer.cli import register as register_viewer

    register_data(sub, chosen)
    register_train(sub, chosen)
    register_eval(sub, chosen, words[1] if len(words) > 1 else None)
    register_toyworld(sub, words[1] if chosen == "toyworld" and len(words) > 1 else None)
    register_viewer(sub, chosen)
    register_steer(sub, chosen)
    register_diff(sub, chosen)

    p = sub.add_parser("demo", help="train and evaluate an NLA on the toy world (offline)")
    p.set_defaults(func=_cmd_demo)
    if chosen == "demo":
        from nlakit.demo import DemoConfig

        add_config(p, DemoConfig)
    return parser


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def os_error_message(exc: OSError) -> str:
    """An `OSError` (disk full, permissions, a file where a directory should be) as one
    line naming the path and what to do."""
    if exc.filename is None:  # libraries raise OSError with only a message
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    where = exc.filename
    reason = exc.strerror or type(exc).__name__
    fixes = {
        "ENOSPC": "free some space (completed files are kept; --resume continues)",
        "EACCES": "fix the permissions or choose another path",
        "EROFS": "choose a path on a writable file system",
        "ENOTDIR": "a file stands where a directory is needed; choose another path",
        "EISDIR": "a directory stands where a file is needed; choose another path",
    }
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{where}: {reason}; {fixes.get(name, 'check the path and try again')}."


def main(argv: list[str] | None = None) -> int:
    """Run one verb; bad input (an `NLAKitError`) is one line on stderr and exit code 2.

    Usage errors exit 2 from the parser itself (`SystemExit`), also in one line. An
    operating-system error (disk full, no permission) is one line and exit 2 too; an
    unexpected exception is a bug: one line and exit 1, the traceback with
    `NLAKIT_DEBUG=1`."""
    args = build_parser(argv).parse_args(argv)
    verb = " ".join(v for v in (args.verb, getattr(args, "toyworld_verb", None)) if v)
    try:
        args.func(args)
    except NLAKitError as exc:
        print(f"nlakit {verb}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if os.environ.get("NLAKIT_DEBUG"):
            raise
        print(f"nlakit {verb}: error: {_one_line(os_error_message(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nlakit {verb}: interrupted (finished work is kept; --resume continues)",
              file=sys.stderr)  # fmt: skip
        return 130
    except Exception as exc:
        if os.environ.get("NLAKIT_DEBUG"):
            raise
        print(
            f"nlakit {verb}: internal error ({type(exc).__name__}: {_one_line(exc)[:300]}); "
            "this is a bug in nlakit: please report it with the command, and run it again "
            "with NLAKIT_DEBUG=1 for the traceback",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
