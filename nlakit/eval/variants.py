"""`nlakit sweep variants --run RUN`: does a weaker or better-informed reader make
the AV say something other than the input?

AVs learn to quote the input token, because a strong AR rebuilds the activation from
a quote. The seeds propose changing the reader. Each variant below is an AR, and one
RL run from the run's warm-start AV is scored by it (frozen), with the same steps,
batch, group and rate:

    plain        the warm start's AR (RUN/ar_sft/ar): the reference
    control      that AR trained `--ar-steps` more steps on the same tables, unchanged:
                 what the extra training alone does
    regularised  the same steps with explanation-token dropout and input-embedding
                 noise (`--token-dropout`, `--input-noise`)
    prefix       the same steps with half the explanations cut to a random prefix
    linear       n-gram frequencies times one matrix, fitted in closed form
                 (nlakit/linear_ar.py): the seeds' "flow chart"
    smaller      the same steps with only its first `--ar-blocks` blocks (and its value
                 head): a reader of less depth
    context      the same steps reading also the last `--context` tokens of the text
                 before the token (nlakit/ar_context.py): only what the words add to
                 the text pays

Every AR but the plain and the linear one is the warm start's AR trained `--ar-steps`
more steps (batch 32, rate 5e-4), so each reader had the same training. Beside them, a
**text-only** AR (the same steps, the same context, the explanation always empty) is the
baseline of what the text alone rebuilds. Each variant's AV (and the warm start)
explains the first `n_eval` eval rows, and the explanations are judged four ways:
by the variant's own AR; by one **common AR** (the warm start's); as **gain over the
text**, the context AR's FVE on text + explanation less the text-only AR's on the text
(a paired bootstrap CI) — the information beyond the input, whoever wrote it; and on
the toy world for truth per field. Also the **quote rate** (the share of explanations
quoting words of the input, `nlakit.eval.formats.quotes_input`) and the mean length.

Writes `RUN/eval/variants/` (or `--out`):

    ar_{variant}/, ar_text_only/   the variants' ARs (reused when finished)
    {variant}/                     each variant's RL run (resumable, as every sweep's)
    rows_{variant}.parquet         per row: the explanation, each judge's mse_nrm
    table.csv, summary.json        one row per variant (and the warm start), with each
                                   variant's common-AR FVE less plain RL's, paired
                                   (`delta_common_vs_plain`, CI)
    plot.png                       common-AR FVE and gain over the text, per variant
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch
from tqdm.auto import tqdm

from nlakit.atomic import write_parquet
from nlakit.config import ConfigError, option
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.formats import quotes_input
from nlakit.eval.outputs import write_analysis
from nlakit.eval.plots import figure
from nlakit.eval.runs import RunPaths
from nlakit.eval.stats import fve_drop, fve_summary
from nlakit.eval.sweep import (
    SETTINGS,
    SweepConfig,
    load_pair,
    prefix_ar,
    sft_run,
    sweep_inputs,
    train_run,
    training_record,
    truth_columns,
)
from nlakit.generation import SamplingConfig, sample_explanations
from nlakit.linear_ar import load_reconstructor
from nlakit.meta import read_meta
from nlakit.metrics import mse_nrm

NAME = directory_of(__name__)  # RUN/eval/variants/
VARIANTS = ("plain", "control", "regularised", "prefix", "linear", "smaller", "context")
JUDGES = ("own", "common", "context", "text_only")


@dataclass
class VariantsConfig(SweepConfig):
    """RL from the run's warm start once per AR variant, and the comparison."""

    variants: str = option(" ".join(VARIANTS), "AR variants to compare, space-separated")
    ar_steps: int = option(
        700, "SFT steps the control, regularised and prefix ARs train on from the warm start's"
    )
    token_dropout: float = option(0.15, "the regularised AR's explanation-token dropout")
    input_noise: float = option(0.1, "the regularised AR's input noise (σ / embedding RMS)")
    ar_blocks: int = option(0, "the smaller AR's blocks (0: half of the K + 1, at least 1)", ge=0)
    context: int = option(64, "tokens of text the context and text-only ARs read", ge=1)
    out: str | None = option(None, "where the comparison is written (default RUN/eval/variants)")

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_variants(self.variants)


def parse_variants(text: str) -> list[str]:
    """The variants of a space-separated string, each known and named once."""
    names = text.replace(",", " ").split()
    unknown = [v for v in names if v not in VARIANTS]
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigError(
            f"variants: expected distinct names among {' '.join(VARIANTS)}, got {text!r}."
        )
    return names


def smaller_blocks(config: VariantsConfig, layer: int) -> int:
    """The smaller AR's blocks: the config's, else half of the K + 1 (at least 1)."""
    blocks = config.ar_blocks or max(1, (layer + 1) // 2)
    if blocks > layer + 1:
        raise NLAKitError(f"--ar-blocks {blocks}: an AR of block {layer} has 1 … {layer + 1}.")
    return blocks


def variant_ar(config: VariantsConfig, paths: RunPaths, ar: Path, name: str) -> Path:
    """The AR of a variant (trained unless finished): its directory. Every one but the
    plain and the linear AR is the warm start's AR trained `--ar-steps` more steps, the
    control as it was and the others changed: the same budget for every reader."""
    if name == "plain":
        return ar
    out = variants_dir(config, paths) / f"ar_{name}"
    data = str(paths.tables)
    if name == "linear":
        return sft_run(config, out, "ar", data=data, reconstructor="linear")
    if name == "prefix":
        return prefix_ar(config, paths, ar, out, config.ar_steps)
    more = dict(data=data, model=str(ar), steps=config.ar_steps, batch_size=32, lr=5e-4,
                warmup=min(20, config.ar_steps // 10))  # fmt: skip
    changes = {
        "control": {},
        "regularised": {"token_dropout": config.token_dropout, "input_noise": config.input_noise},
        "smaller": {"ar_blocks": smaller_blocks(config, read_meta(ar).layer)},
        "context": {"context": config.context},
        "text_only": {"context": config.context, "text_only": True},
    }
    if name not in changes:
        raise NLAKitError(f"unknown variant {name!r}")
    return sft_run(config, out, "ar", **more, **changes[name])


def variants_dir(config: VariantsConfig, paths: RunPaths) -> Path:
    return Path(config.out) if config.out else paths.analysis_dir(NAME)


@torch.no_grad()
def explain(av, vectors: torch.Tensor, cap: int, seed: int) -> dict:
    """One explanation per row by `av` (seeded): texts, lengths, finished."""
    generator = torch.Generator(device=av.device).manual_seed(seed)
    samples = sample_explanations(av, vectors, SamplingConfig(max_new_tokens=cap), generator)
    return {
        "explanation": [s.explanation or "" for s in samples],
        "n_tokens": [s.n_tokens for s in samples],
        "finished": [s.finished for s in samples],
    }


@torch.no_grad()
def judged(judges: dict, texts: list[str], contexts: list[str], vectors: torch.Tensor) -> dict:
    """{judge: mse_nrm [n]} of each AR's reconstruction (every AR is given the contexts;
    only a context AR reads them)."""
    return {
        name: mse_nrm(ar.reconstruct(texts, contexts=contexts), vectors, ar.meta.mse_scale_value)
        for name, ar in judges.items()
    }


def quote_rate(texts: list[str], contexts: list[str]) -> float:
    """The share of explanations quoting words of their input."""
    return sum(quotes_input(t, c) for t, c in zip(texts, contexts, strict=True)) / len(texts)


def variant_row(name: str, result: dict, errors: dict, rows, contexts, config, records) -> dict:
    """One line of the table: FVE by each judge (with CIs), gain over the text, quote
    rate, length, truth per field."""
    row: dict = {"variant": name}
    for judge in ("own", "common", "context"):
        s = fve_summary(errors[judge], rows.baseline, seed=config.seed)
        row.update({f"fve_{judge}_ar": s["fve"], f"fve_{judge}_ar_ci_low": s["ci_low"],
                    f"fve_{judge}_ar_ci_high": s["ci_high"]})  # fmt: skip
    gain = fve_drop(errors["context"], errors["text_only"], rows.baseline, seed=config.seed)
    row.update(gain_over_text=gain["fve_drop"], gain_over_text_ci_low=gain["ci_low"],
               gain_over_text_ci_high=gain["ci_high"])  # fmt: skip
    texts, n = result["explanation"], len(result["explanation"])
    row["quote_rate"] = quote_rate(texts, contexts)
    row["mean_tokens"] = sum(result["n_tokens"]) / n
    row["extraction_rate"] = sum(result["finished"]) / n
    row["n"] = n
    row.update(truth_columns(texts, records))
    return row


def rows_file(result: dict, errors: dict, rows, n: int) -> pa.Table:
    columns = {
        "doc_id": rows.columns["doc_id"][:n],
        "position": rows.columns["position"][:n],
        "explanation": result["explanation"],
        "n_tokens": result["n_tokens"],
        "finished": result["finished"],
        **{f"mse_nrm_{judge}": errors[judge].tolist() for judge in JUDGES},
    }
    return pa.table(columns)


def variants_sweep(config: VariantsConfig) -> dict:
    """Train each variant's AR and RL run, and judge them; returns the summary."""
    started = time.perf_counter()
    names = parse_variants(config.variants)
    inputs = sweep_inputs(config)
    rows, paths, av, ar, cap, n = (
        inputs.rows, inputs.paths, inputs.av, inputs.ar, inputs.cap, inputs.n
    )  # fmt: skip
    vectors, records, out_dir = inputs.vectors, inputs.records, variants_dir(config, paths)
    contexts = [c or "" for c in rows.columns["context"][:n]]
    load = dict(device=config.device, dtype=config.dtype)
    start_av, common = load_pair(av, ar, config)
    context_ar = load_reconstructor(variant_ar(config, paths, ar, "context"), **load)
    text_only = load_reconstructor(variant_ar(config, paths, ar, "text_only"), **load)
    judges = {"common": common, "context": context_ar, "text_only": text_only}

    common_errors: dict[str, torch.Tensor] = {}  # per variant, the common AR's per-row errors

    def evaluate(name: str, method_av, own, trained=(0, 0.0)) -> dict:
        result = explain(method_av, vectors, cap, config.seed)
        errors = judged({**judges, "own": own}, result["explanation"], contexts, vectors)
        common_errors[name] = errors["common"]
        write_parquet(out_dir / f"rows_{name}.parquet", rows_file(result, errors, rows, n))
        row = variant_row(name, result, errors, rows, contexts, config, records)
        row["rl_steps"], row["rl_seconds"] = trained[0], round(trained[1], 1)
        return row

    warm = evaluate("start", start_av, common)
    warm["variant"] = "warm start (no RL)"
    text_fve = fve_summary(
        judged({"t": text_only}, [""] * n, contexts, vectors)["t"], rows.baseline, seed=config.seed
    )
    table = []
    for name in tqdm(names, desc="variants sweep", unit="variant", disable=not config.progress):
        scorer = variant_ar(config, paths, ar, name)
        run_dir = train_run(config, paths, (av, scorer), out_dir / name, cap, SETTINGS,
                            steps=config.steps, freeze_ar=True)  # fmt: skip
        own = load_reconstructor(scorer, **load)
        method_av = load_pair(run_dir / "av", scorer, config)[0]
        table.append(evaluate(name, method_av, own, training_record(run_dir)))
    if "plain" in common_errors:  # paired against plain RL: same rows, same sampling seed
        for row, name in zip(table, names, strict=True):
            if name != "plain":
                d = fve_drop(common_errors["plain"], common_errors[name], rows.baseline,
                             seed=config.seed)  # fmt: skip
                row.update(delta_common_vs_plain=-d["fve_drop"],
                           delta_common_vs_plain_ci_low=-d["ci_high"],
                           delta_common_vs_plain_ci_high=-d["ci_low"])  # fmt: skip
    summary = {
        "run": str(paths.root),
        "av_start": str(av),
        "common_ar": str(ar),
        "context_tokens": config.context,
        "text_only_fve": text_fve["fve"],
        "text_only_fve_ci": [text_fve["ci_low"], text_fve["ci_high"]],
        "steps": config.steps,
        "batch_size": config.batch_size,
        "group_size": config.group_size,
        "lr": config.lr,
        "ar_steps": config.ar_steps,
        "max_new_tokens": cap,
        "n": n,
        "baseline_variance": rows.baseline.variance,
        "warm_start": warm,
        "variants": table,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    every = [warm, *table]
    write_analysis(out_dir, every, summary, variants_figure(every, n))
    return summary


def variants_figure(table: list[dict], n: int):
    """Common-AR FVE against gain over the text, one point per variant."""
    fig, ax = figure(
        f"AR variants: FVE (common AR) and gain over the text alone\n(n = {n} eval rows)",
        "FVE by the common AR",
        "gain over the text-only AR (context AR FVE − text-only FVE)",
    )
    for row in table:
        style = "k*" if row["variant"].startswith("warm") else "o"
        ax.plot([row["fve_common_ar"]], [row["gain_over_text"]], style, label=row["variant"])
    ax.legend(loc="best")
    return fig
