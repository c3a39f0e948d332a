"""`nlakit sweep ordering --run RUN`: which reward makes an explanation say the most
important things first?

A plain RL reward scores the whole explanation, so tokens may come in any order. The
shapings of `nlakit.train.rewards` also score prefixes. Each method below is one RL run
from the run's warm start (its SFT pair), with the same steps, batch, group and rate:

    plain        the plain reward (λ = 0): the reference
    length       the plain reward with a length penalty λ (`--length-penalty`)
    matryoshka   the mean reconstruction over prefixes (`--prefix-lengths`, default
                 8 16 and the whole)
    random-k     the reconstruction from one prefix per sample, K uniform on
                 `--k-min` … `--k-max` (default: up to the length cap)
    separators   graded-prefix separators (nlakit/separators.py): the warm-start AV is
                 first taught to write a separator after each sentence (`--separator-steps`
                 of SFT on the run's tables so marked), then RL pays each nested prefix
                 the AV closes with one (`nlakit rl --reward separators`), with the length
                 method's λ; its warm start is scored too
    curriculum   the plain reward with a decreasing length penalty
                 (`--curriculum-lambdas`, default 0.04 0.02 0), the steps split over
                 the stages, each stage from the previous stage's AV; judged at its
                 last stage, with how much of the stage before opens its explanations

Then each method's AV (and the warm start) explains the first `n_eval` rows of the
run's eval table, and **one common AR** (the warm start's) scores the whole
explanations and their first 8 and 16 tokens (`nlakit.generation.prefix_text`). On
the toy world each is also scored for truth (the share of claims stated correctly,
averaged over the fields, and per field). The target the summary checks: a method whose
FVE from 16 tokens is ≥ 0.75 × its own whole-explanation FVE while that whole FVE is
within 0.03 of plain RL's.

Writes `RUN/eval/ordering/`:

    {method}/                  the method's RL run; a finished one (av/ and ar/ written,
                               same settings) is never trained again: resumable per method
    separators_warm_start/     the separator tables and the AV taught to write separators
    prefix_ar/                 with --prefix-ar-steps: the AR trained on prefixes
    rows_{method}.parquet      per row: doc_id, position, explanation, its 8- and 16-token
                               prefixes, the common AR's mse_nrm of each, n_tokens,
                               finished (`nlakit view RUN RUN/eval/ordering/rows_*.parquet`)
    table.csv, summary.json    one row per method (and the warm start): `fve_full`,
                               `fve_k8`, `fve_k16` (with CIs), `share_k16`, `mean_tokens`,
                               `mean_separators`, `truth_k8`, `truth_k16`, `truth_full`,
                               RL steps and seconds, and against plain RL the paired
                               `delta_{full,k8,k16}_vs_plain` (with CIs); the separators
                               warm start in `separators_warm_start`
    plot.png                   FVE against the tokens read, one line per method

Prefixes and truth are read from the words alone (separators stripped, as the AR reads
them); `mean_tokens` counts the separators the AV wrote.

`--prefix-ar-steps N` first trains the common AR to read prefixes (N SFT steps from the
warm start's AR with half the explanations cut to a random prefix: `nlakit sft ar
--prefix-augment 0.5`); that AR then scores every method and is their RL scorer.
`--ar` takes any other AR the same way (a linear one too), and `--judge` another AR to
judge with than the one RL is scored by. `--out` writes such a comparison elsewhere.
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
from nlakit.eval.outputs import write_analysis
from nlakit.eval.plots import figure
from nlakit.eval.prefix import prefix_agreement
from nlakit.eval.runs import RunPaths
from nlakit.eval.stats import fve_drop, fve_summary
from nlakit.eval.sweep import (
    SETTINGS,
    SweepConfig,
    explain_and_score,
    lambda_name,
    load_pair,
    parse_lambdas,
    prefix_ar,
    rows_table,
    separator_warm_start,
    sweep_inputs,
    train_run,
    training_record,
)
from nlakit.eval.truth import claims_summary
from nlakit.generation import prefix_texts
from nlakit.linear_ar import load_reconstructor
from nlakit.metrics import mse_nrm
from nlakit.separators import SEPARATOR, strip_separators
from nlakit.toyworld.truth import FIELDS

NAME = directory_of(__name__)  # RUN/eval/ordering/
METHODS = ("plain", "length", "matryoshka", "random-k", "separators", "curriculum")
PREFIXES = (8, 16)  # the prefix lengths every method is judged at
TARGET_SHARE, TARGET_TOLERANCE = 0.75, 0.03
# RL settings a finished method must have been trained with to be reused.
ORDERING_SETTINGS = (*SETTINGS, "reward", "prefix_lengths", "prefix_weights", "k_min", "k_max")


@dataclass
class OrderingConfig(SweepConfig):
    """RL from the run's warm start once per ordering method, and the comparison."""

    methods: str = option(" ".join(METHODS), "methods to compare, space-separated")
    length_penalty: float = option(0.01, "the length method's λ (reward per token)", ge=0)
    prefix_lengths: str = option(
        "8 16 0", "the matryoshka method's prefix lengths (0: the whole explanation)"
    )
    k_min: int = option(4, "the random-k method's shortest prefix", ge=1)
    k_max: int = option(0, "the random-k method's longest prefix (0: the length cap)", ge=0)
    curriculum_lambdas: str = option(
        "0.04 0.02 0", "the curriculum's length penalties, one stage each, largest first"
    )
    separator_steps: int = option(
        300, "the separators method: SFT steps teaching the warm-start AV separators", ge=1
    )
    prefix_ar_steps: int = option(
        0,
        "> 0: first train the common AR on prefixes (that many SFT steps from the warm "
        "start's AR, half the explanations cut: ORDERING/prefix_ar); it then scores every "
        "method and is their RL scorer",
        ge=0,
    )
    judge: str | None = option(
        None,
        "the AR that judges every method (default: the RL scorer, --ar or the warm start's); "
        "a judge other than the scorer shows what RL learned beyond pleasing its own reader",
    )
    out: str | None = option(None, "where the comparison is written (default RUN/eval/ordering)")

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_methods(self.methods)
        stages = curriculum_stages(self.curriculum_lambdas)
        if "curriculum" in self.methods.split() and self.steps < len(stages):
            raise ConfigError(
                f"steps {self.steps}: the curriculum needs at least one step per stage "
                f"({len(stages)} stages)."
            )


def curriculum_stages(text: str) -> list[float]:
    """The curriculum's λs, largest first (each a finite number ≥ 0, named once)."""
    try:
        values = parse_lambdas(text)
    except NLAKitError as e:
        raise ConfigError(f"curriculum_lambdas: {e}") from None
    return sorted(values, reverse=True)


def parse_methods(text: str) -> list[str]:
    """The methods of a space-separated string, each known and named once."""
    names = text.replace(",", " ").split()
    unknown = [m for m in names if m not in METHODS]
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigError(
            f"methods: expected distinct names among {' '.join(METHODS)}, got {text!r}."
        )
    return names


def method_fields(method: str, config: OrderingConfig, cap: int, lam: float = 0.0) -> dict:
    """The RLConfig fields that make a method what it is (`lam`: a curriculum stage's λ)."""
    fields = {"reward": "plain", "length_penalty": lam}
    if method == "length":
        fields["length_penalty"] = config.length_penalty
    elif method == "matryoshka":
        fields.update(reward="matryoshka", prefix_lengths=config.prefix_lengths)
    elif method == "random-k":
        fields.update(reward="random-k", k_min=config.k_min, k_max=config.k_max or cap)
    elif method == "separators":
        fields.update(reward="separators", length_penalty=config.length_penalty)
    return fields


def ordering_dir(config: OrderingConfig, paths: RunPaths) -> Path:
    """Where the comparison is written: `--out`, else RUN/eval/ordering/."""
    return Path(config.out) if config.out else paths.analysis_dir(NAME)


def separator_start(config: OrderingConfig, paths: RunPaths, av: Path) -> Path:
    """The separators method's warm-start AV (taught separators, reused when done)."""
    out = ordering_dir(config, paths) / "separators_warm_start"
    return separator_warm_start(config, paths, av, out, config.separator_steps)


def train_method(
    config: OrderingConfig, paths: RunPaths, start: tuple[Path, Path], method: str, cap: int
) -> list[Path]:
    """The method's RL run directories (a curriculum: one per stage, in order), each
    trained from the one before (the first from `start`) unless it finished."""
    out = ordering_dir(config, paths) / method
    if method == "separators":
        start = (separator_start(config, paths, start[0]), start[1])
    if method != "curriculum":
        fields = method_fields(method, config, cap)
        return [_train(config, paths, start, out, config.steps, cap, fields)]
    stages = curriculum_stages(config.curriculum_lambdas)
    runs = []
    for i, lam in enumerate(stages):
        stage_dir = out / f"stage{i}_{lambda_name(lam)}"
        fields = method_fields(method, config, cap, lam)
        runs.append(
            _train(config, paths, start, stage_dir, config.steps // len(stages), cap, fields)
        )
        start = (stage_dir / "av", start[1])
    return runs


def _train(config, paths, start, out: Path, steps: int, cap: int, fields: dict) -> Path:
    """One RL run from `start` to `out` (unless it finished there with these settings)."""
    return train_run(
        config, paths, start, out, cap, ORDERING_SETTINGS, steps=steps, freeze_ar=True, **fields
    )


@torch.no_grad()
def prefix_scores(common_ar, texts: list[str], vectors: torch.Tensor) -> dict:
    """{k: (prefix texts, the common AR's mse_nrm [n])} for every k of PREFIXES."""
    out = {}
    for k in PREFIXES:
        cut = prefix_texts(common_ar.tokenizer, texts, [k] * len(texts))
        out[k] = (cut, mse_nrm(common_ar.reconstruct(cut), vectors, common_ar.meta.mse_scale_value))
    return out


def truth_share(texts: list[str], records: list[dict] | None) -> tuple[float | None, dict]:
    """(the share of claims stated correctly, averaged over the fields; per field), or
    (None, {}) off the toy world."""
    if records is None:
        return None, {}
    fields = claims_summary(texts, records[: len(texts)])["fields"]
    correct = {f: fields[f]["correct"] for f in FIELDS}
    return sum(correct.values()) / len(correct), correct


def method_row(
    method: str, result: dict, prefixes: dict, baseline, seed: int, records, trained
) -> dict:
    """One line of the table: FVE of the whole and of each prefix (with CIs), the share
    the 16-token prefix keeps, length, and truth."""
    row: dict = {"method": method}
    for name, errors in (
        ("full", result["mse_nrm_common_ar"]),
        *((f"k{k}", prefixes[k][1]) for k in PREFIXES),
    ):
        s = fve_summary(errors, baseline, seed=seed)
        row.update({f"fve_{name}": s["fve"], f"fve_{name}_ci_low": s["ci_low"],
                    f"fve_{name}_ci_high": s["ci_high"]})  # fmt: skip
    row["share_k16"] = row["fve_k16"] / row["fve_full"] if row["fve_full"] > 0 else None
    n = len(result["n_tokens"])
    row["mean_tokens"] = sum(result["n_tokens"]) / n
    row["extraction_rate"] = sum(result["finished"]) / n
    row["n"] = n
    for name, texts in (
        ("full", result["explanation"]),
        *((f"k{k}", prefixes[k][0]) for k in PREFIXES),
    ):
        share, fields = truth_share(texts, records)
        row[f"truth_{name}"] = share
        row.update({f"truth_{name}_{f}": v for f, v in fields.items()})
    row["rl_steps"], row["rl_seconds"] = trained[0], round(trained[1], 1)
    return row


def paired_gain(errors: dict, plain: dict, baseline, seed: int) -> dict:
    """Per part (whole, each prefix), the method's FVE less plain RL's on the same rows
    and sampling seed, with its paired bootstrap 95% CI: `delta_{part}_vs_plain`."""
    out = {}
    for part, own in errors.items():
        d = fve_drop(own, plain[part], baseline, seed=seed)  # plain's drop from the method's
        out.update({f"delta_{part}_vs_plain": d["fve_drop"],
                    f"delta_{part}_vs_plain_ci_low": d["ci_low"],
                    f"delta_{part}_vs_plain_ci_high": d["ci_high"]})  # fmt: skip
    return out


def target(rows: list[dict]) -> dict:
    """Which methods keep ≥ 0.75 of their whole FVE in 16 tokens while their whole FVE
    is within 0.03 of plain RL's (None without a plain run)."""
    plain = next((r for r in rows if r["method"] == "plain"), None)
    if plain is None:
        return {"plain_fve_full": None, "methods_meeting": None, "met": None}
    meeting = [
        r["method"]
        for r in rows
        if r["share_k16"] is not None
        and r["share_k16"] >= TARGET_SHARE
        and r["fve_full"] >= plain["fve_full"] - TARGET_TOLERANCE
    ]
    return {"plain_fve_full": plain["fve_full"], "methods_meeting": meeting, "met": bool(meeting)}


def rows_file(result: dict, prefixes: dict, rows, n: int) -> pa.Table:
    """A method's per-row file: the length sweep's columns (the viewer reads it) plus
    each prefix's text and the common AR's mse_nrm of it."""
    table = rows_table(result, rows, n)
    for k in PREFIXES:
        table = table.append_column(f"prefix_k{k}", pa.array(prefixes[k][0], pa.string()))
        table = table.append_column(f"mse_nrm_k{k}", pa.array(prefixes[k][1].tolist()))
    return table


def ordering_sweep(config: OrderingConfig) -> dict:
    """Train and evaluate one RL run per method; returns the summary (also summary.json)."""
    started = time.perf_counter()
    methods = parse_methods(config.methods)
    inputs = sweep_inputs(config)
    rows, paths, av, ar, cap, n = (
        inputs.rows, inputs.paths, inputs.av, inputs.ar, inputs.cap, inputs.n
    )  # fmt: skip
    if config.prefix_ar_steps:
        ar = prefix_ar(
            config, paths, ar, ordering_dir(config, paths) / "prefix_ar", config.prefix_ar_steps
        )
    if config.k_max and config.k_max < config.k_min:
        raise NLAKitError(f"k_max {config.k_max} is below k_min {config.k_min}.")
    vectors, records, out_dir = inputs.vectors, inputs.records, ordering_dir(config, paths)
    start_av, common_ar = load_pair(av, ar, config)
    if config.judge:  # another AR judges than the one RL is scored by
        common_ar = load_reconstructor(config.judge, device=config.device, dtype=config.dtype)

    def explain(method_av) -> dict:
        return explain_and_score(method_av, common_ar, common_ar, vectors, cap, config.seed)

    errors: dict[str, dict] = {}  # per method, the common AR's per-row errors of each part

    def evaluate(name: str, result: dict, trained=(0, 0.0)) -> dict:
        words = {**result, "explanation": [strip_separators(e) for e in result["explanation"]]}
        prefixes = prefix_scores(common_ar, words["explanation"], vectors)
        errors[name] = {
            "full": result["mse_nrm_common_ar"],
            **{f"k{k}": prefixes[k][1] for k in PREFIXES},
        }
        write_parquet(out_dir / f"rows_{name}.parquet", rows_file(result, prefixes, rows, n))
        row = method_row(name, words, prefixes, rows.baseline, config.seed, records, trained)
        row["mean_separators"] = sum(e.count(SEPARATOR) for e in result["explanation"]) / n
        return row

    warm = evaluate("start", explain(start_av))
    warm["method"] = "warm start (no RL)"
    table, extra = [], []
    for method in tqdm(methods, desc="ordering sweep", unit="method", disable=not config.progress):
        run_dirs = train_method(config, paths, (av, ar), method, cap)
        records_of = [training_record(d) for d in run_dirs]
        trained = (sum(r[0] for r in records_of), sum(r[1] for r in records_of))
        result = explain(load_pair(run_dirs[-1] / "av", run_dirs[-1] / "ar", config)[0])
        row = evaluate(method, result, trained)
        if len(run_dirs) > 1:  # a curriculum: how much of the stage before opens the last's
            before = explain(load_pair(run_dirs[-2] / "av", run_dirs[-2] / "ar", config)[0])
            row["prefix_agreement"] = prefix_agreement(
                common_ar.tokenizer, before["explanation"], result["explanation"]
            )["mean"]
        if method == "separators":  # what RL started from: the AV taught separators
            taught = explain(load_pair(separator_start(config, paths, av), ar, config)[0])
            extra.append(evaluate("separators_start", taught))
            extra[-1]["method"] = "separators warm start (no RL)"
        table.append(row)
    if "plain" in errors:
        named = [*(("separators_start", r) for r in extra), *zip(methods, table, strict=True)]
        for name, row in named:
            if name != "plain":
                row.update(paired_gain(errors[name], errors["plain"], rows.baseline, config.seed))
    summary = {
        "run": str(paths.root),
        "av_start": str(av),
        "common_ar": config.judge or str(ar),
        "rl_scorer": str(ar),
        "steps": config.steps,
        "batch_size": config.batch_size,
        "group_size": config.group_size,
        "lr": config.lr,
        "length_penalty": config.length_penalty,
        "prefix_lengths": config.prefix_lengths,
        "k_range": [config.k_min, config.k_max or cap],
        "curriculum_lambdas": curriculum_stages(config.curriculum_lambdas),
        "max_new_tokens": cap,
        "n": n,
        "baseline_variance": rows.baseline.variance,
        "baseline_n": rows.baseline.n,
        "warm_start": warm,
        "separators_warm_start": extra[0] if extra else None,
        "methods": table,
        "target": target(table),
        "wall_seconds": round(time.perf_counter() - started, 1),  # this call (a resume: less)
    }
    every = [warm, *extra, *table]
    write_analysis(out_dir, every, summary, ordering_figure(every, n))
    return summary


def ordering_figure(table: list[dict], n: int):
    """FVE from the first 8 and 16 tokens and from the whole, against the tokens read."""
    fig, ax = figure(
        f"Ordering: FVE from the first k tokens, by RL method\n(n = {n} eval rows, one common AR)",
        "tokens read (k, or the mean length for the whole explanation)",
        "FVE",
    )
    for row in table:
        x = [*PREFIXES, row["mean_tokens"]]
        y = [row["fve_k8"], row["fve_k16"], row["fve_full"]]
        style = "k*--" if row["method"].startswith("warm") else "o-"
        ax.plot(x, y, style, label=row["method"])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend(loc="best")
    return fig
