"""`nlakit analyze length_sweep --run RUN`: how the length penalty λ trades FVE for
shorter explanations.

For each λ, GRPO (`nlakit.train.rl.rl`) starts from the run's SFT pair with reward
`-mse_nrm - λ·n_tokens`; the λ's pair then explains the first `n_eval` rows of the
run's eval table (`RUN/eval/rows.parquet`). Each λ's explanations are scored twice:
by the λ's own AR, and by one common AR (the run's SFT AR) — an AR co-trained on its
own AV's outputs learns to read that AV's idiosyncrasies and flatters it, so the
common AR is the fairer comparison across λ. By default the AR is frozen (the two
scores then agree; `--freeze-ar false` co-trains it). The warm start itself is
scored too, as the point every λ moves away from.

`--curriculum` trains the λs as one sequence instead, largest first, each stage from
the previous stage's AV (in `length_sweep/curriculum/`): the seeds' hypothesis is that
each stage keeps its predecessor's explanation as its opening and appends the
next-most-important facts. Every row of the table says how much of the row before it
(the previous λ, or the warm start) opens its explanations (`prefix_agreement`, the
mean share of the earlier explanation's tokens kept as a prefix, same eval rows and
sampling seed), so an independent sweep over the same λs, listed largest first, is
the comparison.

Budgets: `--budget equal-steps` (the default) gives every λ the same `--steps`;
`--budget equal-time` gives every λ the same RL training time instead (`--seconds`,
or by default the time the first λ takes for `--steps` steps), so a λ whose
explanations are shorter gets more, cheaper steps. The defaults (RECIPE in
docs/training.md) converge on the demo run in about 40 minutes on 2 cores. Keep
λ · (typical length) below 2 − (typical mse_nrm): past that, a sample that never
closes its tag (reward −2) pays better than any explanation, and the AV learns to fail.

On the toy world each λ's explanations are also scored for truth (per claim field,
the share of rows stating it correctly and the share not stating it at all), which
says which claims a length penalty removes first.

Writes `RUN/eval/length_sweep/`:

    lambda_{λ}/                each λ's RL run (config.json, metrics.jsonl, av/, ar/);
                               a λ whose av/ and ar/ exist is never trained again, so a
                               crashed sweep continues where it stopped
    rows_lambda_{λ}.parquet    per row: explanation, doc_id, position, record (toy world),
                               mse_nrm (own AR), mse_nrm_common_ar, n_tokens, finished
    rows_start.parquet         the same for the warm start (scored by the common AR)
    table.csv                  one row per λ (and the warm start): FVE (with CI) by each
                               AR, mean explanation length in tokens, extraction rate, n,
                               RL steps and seconds, and on the toy world per claim field
                               the share stated correctly (`true_FIELD`) and not stated
                               (`absent_FIELD`)
    summary.json, plot.png     FVE against mean explanation length (the Pareto curve)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import torch
from tqdm.auto import tqdm

from nlakit.atomic import write_parquet
from nlakit.config import DEVICE_HELP, DTYPE_HELP, DTYPES, Config, ConfigError, option
from nlakit.data.tables import separator_tables
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.outputs import write_analysis
from nlakit.eval.plots import figure
from nlakit.eval.prefix import prefix_agreement
from nlakit.eval.rows import EvalRows, load_rows
from nlakit.eval.runs import RunPaths
from nlakit.eval.stats import fve_summary
from nlakit.eval.truth import claims_summary
from nlakit.generation import SamplingConfig, sample_explanations
from nlakit.linear_ar import load_reconstructor
from nlakit.metrics import mse_nrm
from nlakit.models import ActivationVerbalizer
from nlakit.store.names import RUN_CONFIG, SIDECAR_NAME
from nlakit.store.runs import read_metrics, run_config
from nlakit.train import rl as rl_module  # the sweeps train: the one eval → train import
from nlakit.train import sft as sft_module

NAME = directory_of(__name__)  # RUN/eval/length_sweep/
BUDGETS = ("equal-steps", "equal-time")
DEFAULT_LAMBDAS = "0 0.01 0.02 0.04"  # for 40–50-token explanations: docs/training.md
DEFAULT_CAP = 64  # length cap when the run does not record its RL's (the demo's cap)
# RL settings a finished λ must have been trained with to be reused.
SETTINGS = (
    "data", "av", "ar", "steps", "batch_size", "group_size", "max_new_tokens",
    "length_penalty", "lr", "ar_lr", "freeze_ar", "kl_coef", "warmup", "seed", "max_seconds",
)  # fmt: skip


@dataclass
class SweepConfig(Config):
    """What every sweep's RL runs share: the run, the warm start, the RL settings of
    each run, and the evaluation (subclassed by the length and ordering sweeps)."""

    run: str = option(help="run directory (after nlakit eval)")
    av: str | None = option(None, "AV every RL run starts from (default: RUN/av_sft/av)")
    ar: str | None = option(
        None, "AR every RL run starts from, also the common scorer (default: RUN/ar_sft/ar)"
    )
    steps: int = option(200, "RL steps per run", ge=1)
    batch_size: int = option(8, "activations per RL step", ge=1)
    group_size: int = option(8, "explanations sampled per activation", ge=2)
    lr: float = option(3e-4, "AV learning rate (0: scaled to the model's width)", ge=0)
    kl_coef: float = option(0.0, "β of the KL penalty to the SFT AV", ge=0)
    warmup: int = option(5, "warm-up steps of each RL run", ge=0)
    max_new_tokens: int | None = option(
        None, "length cap (default: the run's RL cap, else 64)", ge=1
    )
    n_eval: int = option(
        512, "eval rows each run explains (the first n of rows.parquet; 0 = all)", ge=0
    )
    seed: int = option(0, "seeds every RL run and the sampling", ge=0)
    device: str | None = option(None, DEVICE_HELP)
    dtype: str | None = option(None, DTYPE_HELP, choices=DTYPES)
    progress: bool = option(True, "show progress bars")


@dataclass
class LengthSweepConfig(SweepConfig):
    """RL from the run's warm start once per length penalty λ, and the trade-off."""

    lambdas: str = option(
        DEFAULT_LAMBDAS, "length penalties λ (reward per token), space-separated, each ≥ 0"
    )
    steps: int = option(200, "RL steps per λ (equal-steps), or of the first λ (equal-time)", ge=1)
    budget: str = option(
        "equal-steps",
        "equal-steps, or equal-time: the same RL time for every λ",
        choices=("equal-steps", "equal-time"),
    )
    seconds: float = option(
        0.0, "equal-time: RL seconds per λ (0: what the first λ takes for steps)", ge=0
    )
    freeze_ar: bool = option(
        True, "keep the AR fixed, so every λ is judged by the reader it trained on"
    )
    ar_lr: float = option(1e-4, "AR learning rate when co-trained (freeze_ar false)", ge=0)
    curriculum: bool = option(
        False,
        "train the λs as one sequence, largest first, each stage from the previous "
        "stage's AV (written to length_sweep/curriculum/)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            values = [float(x) for x in self.lambdas.split()]
        except ValueError:
            values = []
        if not values or not all(math.isfinite(v) and v >= 0 for v in values):
            raise ConfigError(
                f"LengthSweepConfig: lambdas must be numbers ≥ 0, got {self.lambdas!r}."
            )


def parse_lambdas(text: str) -> list[float]:
    """The λ values of a space- (or comma-) separated string, in the given order."""
    words = text.replace(",", " ").split()
    if not words:
        raise NLAKitError("lambdas: no values given; pass e.g. --lambdas '0 0.001 0.01'.")
    values = []
    for word in words:
        try:
            value = float(word)
        except ValueError:
            raise NLAKitError(
                f"lambdas: {word!r} is not a number; pass space-separated floats such as "
                f"'{DEFAULT_LAMBDAS}'."
            ) from None
        if not math.isfinite(value) or value < 0:
            raise NLAKitError(f"lambdas: {word!r} must be a finite number ≥ 0 (reward per token).")
        values.append(value)
    names = [lambda_name(v) for v in values]
    if len(set(names)) != len(names):
        raise NLAKitError(f"lambdas: {text!r} names the same value twice; list each λ once.")
    return values


def lambda_name(value: float) -> str:
    """The tag of a λ in file names: `lambda_0.001`."""
    return f"lambda_{value:g}"


def warm_start(paths: RunPaths, config: LengthSweepConfig) -> tuple[Path, Path]:
    """(AV, AR) every λ starts from: the config's, else the run's SFT pair."""
    av = Path(config.av) if config.av else paths.root / "av_sft" / "av"
    ar = Path(config.ar) if config.ar else paths.root / "ar_sft" / "ar"
    for role, path, field in (("AV", av, "av"), ("AR", ar, "ar")):
        if not (path / SIDECAR_NAME).is_file():
            raise NLAKitError(
                f"{path}: no SFT {role} to start the sweep from (no {SIDECAR_NAME}); "
                f"pass --{field} with the {role} directory RL should start from."
            )
    return av, ar


def run_cap(paths: RunPaths) -> int | None:
    """The length cap the run's RL used (RUN/rl/config.json, else RUN/config.json)."""
    for run_dir in (paths.root / "rl", paths.root):
        cap = run_config(run_dir).get("max_new_tokens")
        if cap:
            return int(cap)
    return None


def sweep_cap(config: SweepConfig, paths: RunPaths) -> int:
    """The length cap of a sweep's runs: the config's, else the run's RL cap, else 64."""
    return config.max_new_tokens or run_cap(paths) or DEFAULT_CAP


@dataclass
class SweepInputs:
    """What every sweep starts from (`sweep_inputs`)."""

    rows: EvalRows  # the run's evaluated rows
    paths: RunPaths
    av: Path  # the warm start every run trains from
    ar: Path
    cap: int  # the runs' length cap
    n: int  # rows each run's AV explains: the first n
    records: list[dict] | None  # their toy-world latent records (None for other data)

    @property
    def vectors(self) -> torch.Tensor:
        return self.rows.vectors[: self.n]


def sweep_inputs(config: SweepConfig) -> SweepInputs:
    """The run's eval rows, its warm-start pair and length cap, for a sweep of RL runs;
    a clear error when the run has no tables (RL trains on their rl.parquet)."""
    rows = load_rows(config.run, device=config.device, dtype=config.dtype)
    paths = rows.paths
    if paths.tables is None:
        raise NLAKitError(f"{paths.root}: no tables directory (RL needs its rl.parquet).")
    av, ar = warm_start(paths, config)
    return SweepInputs(
        rows=rows,
        paths=paths,
        av=av,
        ar=ar,
        cap=sweep_cap(config, paths),
        n=min(config.n_eval or len(rows), len(rows)),
        records=rows.records() if "record" in rows.columns else None,
    )


def is_finished(out: Path) -> bool:
    """Whether an RL run exported its final pair (the sidecar is written last)."""
    return (out / "av" / SIDECAR_NAME).is_file() and (out / "ar" / SIDECAR_NAME).is_file()


def check_same_settings(out: Path, rl_config, keys: tuple[str, ...] = SETTINGS) -> None:
    """A run directory from an earlier sweep must have been trained with these settings
    (`keys` of the RL config)."""
    path = out / RUN_CONFIG
    if not path.is_file():
        return
    old, new = run_config(out), asdict(rl_config)
    diff = [f"{k}: {old.get(k)!r} then, {new[k]!r} now" for k in keys if old.get(k) != new[k]]
    if diff:
        raise NLAKitError(
            f"{path}: this run was trained with other settings ({'; '.join(diff)}). Delete "
            f"{out} to train it again, or run the sweep with the settings it had."
        )


def sweep_dir(paths: RunPaths, config: LengthSweepConfig) -> Path:
    """Where the sweep writes: RUN/eval/length_sweep/, its curriculum in curriculum/."""
    out = paths.analysis_dir(NAME)
    return out / "curriculum" if config.curriculum else out


def train_lambda(
    config: LengthSweepConfig,
    paths: RunPaths,
    start: tuple[Path, Path],
    lam: float,
    cap: int,
    seconds: float = 0.0,
) -> Path:
    """The λ's RL run directory, trained from the `start` (AV, AR) unless it finished
    before: `config.steps` steps, or with `seconds` > 0 that much training time (at
    most 20 × `config.steps` steps)."""
    out = sweep_dir(paths, config) / lambda_name(lam)
    steps = config.steps * 20 if seconds > 0 else config.steps
    return train_run(
        config, paths, start, out, cap, steps=steps, max_seconds=seconds,
        length_penalty=lam, ar_lr=config.ar_lr, freeze_ar=config.freeze_ar,
    )  # fmt: skip


def train_run(config, paths: RunPaths, start, out: Path, cap: int, keys=SETTINGS, **fields):
    """One RL run of a sweep from `start` (AV, AR) into `out` with the sweep's shared
    settings (`config`: batch, group, rate, KL, warm-up, seed, device) and `fields`;
    a run that finished there before with the same settings (`keys`) is reused."""
    rl_config = rl_module.RLConfig(
        data=str(paths.tables), av=str(start[0]), ar=str(start[1]), out=str(out),
        batch_size=config.batch_size, group_size=config.group_size, max_new_tokens=cap,
        lr=config.lr, kl_coef=config.kl_coef, warmup=config.warmup, seed=config.seed,
        eval_every=0, eval_rows=8, save_every=25, keep_checkpoints=1, resume=True,
        device=config.device, dtype=config.dtype, progress=config.progress, **fields,
    )  # fmt: skip
    check_same_settings(out, rl_config, keys)
    if not is_finished(out):
        rl_module.rl(rl_config)
    return out


def sft_run(config, out: Path, role: str, **fields) -> Path:
    """One SFT run of a sweep into `out` (`fields`: data, model, steps, rate …) with the
    sweep's seed and device; returns the exported model's directory. A run that finished
    there before with the same settings is reused; other settings are refused."""
    sft_config = sft_module.SFTConfig(
        role=role, out=str(out), eval_every=0, save_every=100, keep_checkpoints=1,
        seed=config.seed, resume=True, device=config.device, dtype=config.dtype,
        progress=config.progress, **fields,
    )  # fmt: skip
    check_same_settings(out, sft_config, ("data", "model", *fields))
    done = out / role
    if not (done / SIDECAR_NAME).is_file():
        sft_module.sft(sft_config)
    return done


def separator_warm_start(config, paths: RunPaths, av: Path, out: Path, steps: int) -> Path:
    """An AV that writes graded-prefix separators: `av` fine-tuned (SFT, `steps` steps)
    on the run's tables with a separator after every sentence (`out/tables`), given the
    separator token first; returns its directory (`out/av_sft/av`), reused when done."""
    tables = separator_tables(paths.tables, out / "tables")
    return sft_run(
        config, out / "av_sft", "av", data=str(tables), model=str(av), steps=steps,
        batch_size=16, lr=1e-3, warmup=min(20, steps // 10), separator=True,
    )  # fmt: skip


def prefix_ar(config, paths: RunPaths, ar: Path, out: Path, steps: int) -> Path:
    """An AR that reads prefixes: `ar` fine-tuned (SFT, `steps` steps) on the run's
    tables with half the explanations cut to a random prefix (`--prefix-augment 0.5`);
    returns its directory (`out/ar`), reused when done."""
    return sft_run(
        config, out, "ar", data=str(paths.tables), model=str(ar), steps=steps,
        batch_size=32, lr=5e-4, warmup=min(20, steps // 10), prefix_augment=0.5,
    )  # fmt: skip


def training_record(run_dir: Path) -> tuple[int, float]:
    """(steps, RL training seconds) of a finished λ run, from its metrics.jsonl."""
    records = read_metrics(run_dir)
    if not records:
        return 0, 0.0
    return int(records[-1]["step"]), float(records[-1].get("train_seconds", 0.0))


@torch.no_grad()
def explain_and_score(av, own_ar, common_ar, vectors: torch.Tensor, cap: int, seed: int) -> dict:
    """One explanation per row of `vectors [n, d]` by `av`: the texts, their lengths,
    whether they finished, and the mse_nrm `[n]` of `own_ar`'s and `common_ar`'s
    reconstructions (an unfinished explanation is scored as the empty text)."""
    generator = torch.Generator(device=av.device).manual_seed(seed)
    samples = sample_explanations(av, vectors, SamplingConfig(max_new_tokens=cap), generator)
    texts = [s.explanation or "" for s in samples]
    scale = common_ar.meta.mse_scale_value
    common = mse_nrm(common_ar.reconstruct(texts), vectors, scale)
    own = common if own_ar is common_ar else mse_nrm(own_ar.reconstruct(texts), vectors, scale)
    return {
        "explanation": texts,
        "n_tokens": [s.n_tokens for s in samples],
        "finished": [s.finished for s in samples],
        "mse_nrm": own,
        "mse_nrm_common_ar": common,
    }


def load_pair(av_dir: Path, ar_dir: Path, config: LengthSweepConfig):
    """(AV, AR) loaded in eval mode."""
    kwargs = {"device": config.device, "dtype": config.dtype}
    av = ActivationVerbalizer.from_pretrained(av_dir, **kwargs)
    ar = load_reconstructor(ar_dir, **kwargs)  # a transformer AR, or a linear one
    return av.eval(), ar.eval()


def rows_table(result: dict, rows: EvalRows, n: int) -> pa.Table:
    """The per-row file of one λ (the columns truth analyses read)."""
    columns = {
        "explanation": result["explanation"],
        "doc_id": rows.columns["doc_id"][:n],
        "position": rows.columns["position"][:n],
        "mse_nrm": result["mse_nrm"].tolist(),
        "mse_nrm_common_ar": result["mse_nrm_common_ar"].tolist(),
        "n_tokens": result["n_tokens"],
        "finished": result["finished"],
    }
    if "record" in rows.columns:
        columns["record"] = rows.columns["record"][:n]
    return pa.table(columns)


def truth_columns(texts: list[str], records: list[dict] | None) -> dict:
    """Per claim field, the share of rows stating it correctly (`true_FIELD`) and not
    stating it at all (`absent_FIELD`); empty off the toy world (no records)."""
    if records is None:
        return {}
    fields = claims_summary(texts, records[: len(texts)])["fields"]
    out = {f"true_{f}": rates["correct"] for f, rates in fields.items()}
    out.update({f"absent_{f}": rates["absent"] for f, rates in fields.items()})
    return out


def table_row(
    lam: float | None,
    result: dict,
    rows: EvalRows,
    seed: int,
    records: list[dict] | None = None,
    trained: tuple[int, float] = (0, 0.0),
) -> dict:
    """One λ's line of the table (λ None: the warm start, before RL): FVE (with CI) by
    each AR, mean length in tokens, extraction rate, the RL steps and training seconds
    behind it, and on the toy world the truth of each claim field."""
    own = fve_summary(result["mse_nrm"], rows.baseline, seed=seed)
    common = fve_summary(result["mse_nrm_common_ar"], rows.baseline, seed=seed)
    n = len(result["n_tokens"])
    return {
        "lambda": lam,
        "pair": "warm start (no RL)" if lam is None else "rl",
        "fve_own_ar": own["fve"],
        "fve_own_ar_ci_low": own["ci_low"],
        "fve_own_ar_ci_high": own["ci_high"],
        "fve_common_ar": common["fve"],
        "fve_common_ar_ci_low": common["ci_low"],
        "fve_common_ar_ci_high": common["ci_high"],
        "mean_tokens": sum(result["n_tokens"]) / n,
        "extraction_rate": sum(result["finished"]) / n,
        "n": n,
        "rl_steps": trained[0],
        "rl_seconds": round(trained[1], 1),
        **truth_columns(result["explanation"], records),
    }


def length_sweep(config: LengthSweepConfig) -> dict:
    """Train and evaluate one RL run per λ; returns the summary (also summary.json)."""
    started = time.perf_counter()
    lambdas = parse_lambdas(config.lambdas)
    if config.budget not in BUDGETS:
        raise NLAKitError(f"budget: expected one of {BUDGETS}, got {config.budget!r}.")
    if config.steps < 1 or config.seconds < 0:
        raise NLAKitError(
            f"steps must be ≥ 1 and seconds ≥ 0, got steps {config.steps}, "
            f"seconds {config.seconds}."
        )
    inputs = sweep_inputs(config)
    rows, paths, av, ar, cap, n = (
        inputs.rows, inputs.paths, inputs.av, inputs.ar, inputs.cap, inputs.n
    )  # fmt: skip
    vectors, records, out_dir = inputs.vectors, inputs.records, sweep_dir(paths, config)
    # The warm start itself, scored the same way: the point every λ moves away from.
    start_av, common_ar = load_pair(av, ar, config)
    result = explain_and_score(start_av, common_ar, common_ar, vectors, cap, config.seed)
    write_parquet(out_dir / "rows_start.parquet", rows_table(result, rows, n))
    table = [table_row(None, result, rows, config.seed, records)]
    seconds = config.seconds if config.budget == "equal-time" else 0.0
    order = sorted(lambdas, reverse=True) if config.curriculum else lambdas
    start, before = (av, ar), result["explanation"]
    for lam in tqdm(order, desc="length sweep", unit="λ", disable=not config.progress):
        run_dir = train_lambda(config, paths, start, lam, cap, seconds)
        if config.curriculum:  # the next stage starts from this one's AV
            start = (run_dir / "av", ar)
        trained = training_record(run_dir)
        if config.budget == "equal-time" and seconds <= 0:
            seconds = trained[1]  # the first λ's time, by steps, is every later λ's budget
        lam_av, lam_ar = load_pair(run_dir / "av", run_dir / "ar", config)
        result = explain_and_score(lam_av, lam_ar, common_ar, vectors, cap, config.seed)
        write_parquet(out_dir / f"rows_{lambda_name(lam)}.parquet", rows_table(result, rows, n))
        row = table_row(lam, result, rows, config.seed, records, trained)
        # how much of the row before (the previous λ, or the warm start) opens this one's
        row["prefix_agreement"] = prefix_agreement(
            common_ar.tokenizer, before, result["explanation"]
        )["mean"]
        table.append(row)
        before = result["explanation"]
    summary = {
        "run": str(paths.root),
        "av_start": str(av),
        "ar_start": str(ar),
        "common_ar": str(ar),
        "lambdas": lambdas,
        "steps": config.steps,
        "budget": config.budget,
        "curriculum": config.curriculum,
        "seconds_per_lambda": seconds if config.budget == "equal-time" else None,
        "batch_size": config.batch_size,
        "group_size": config.group_size,
        "lr": config.lr,
        "max_new_tokens": cap,
        "n": n,
        "baseline_variance": rows.baseline.variance,
        "baseline_n": rows.baseline.n,
        "warm_start": table[0],
        "table": table[1:],
        "wall_seconds": round(time.perf_counter() - started, 1),  # this call (a resume: less)
    }
    write_analysis(out_dir, table, summary, sweep_figure(table, n))
    return summary


def sweep_figure(table: list[dict], n: int):
    """FVE against mean explanation length: a line through the λs (in order) for each
    scoring AR, and the warm start as a star."""
    fig, ax = figure(
        f"Length penalty sweep: FVE against explanation length\n(n = {n} eval rows per λ)",
        "mean explanation length (tokens)",
        "FVE",
    )
    start, points = table[0], sorted(table[1:], key=lambda r: r["lambda"])
    x = [r["mean_tokens"] for r in points]
    for key, label, style in (
        ("fve_own_ar", "scored by each λ's own AR", "o-"),
        ("fve_common_ar", "scored by the common SFT AR", "s--"),
    ):
        ax.plot(x, [r[key] for r in points], style, label=label)
    for r in points:  # one label per λ, above its higher point
        xy = (r["mean_tokens"], max(r["fve_own_ar"], r["fve_common_ar"]))
        ax.annotate(f"λ={r['lambda']:g}", xy, textcoords="offset points", xytext=(3, 5))
    ax.plot(
        [start["mean_tokens"]], [start["fve_common_ar"]], "k*", ms=12, label="warm start (no RL)"
    )
    ax.legend(loc="best")
    return fig
