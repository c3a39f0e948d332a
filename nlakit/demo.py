"""`nlakit demo` (`make demo`): a whole NLA trained and evaluated on the toy world,
offline, on a laptop CPU.

    toy world → extract → teach (oracle) → build tables → AR SFT → AV SFT → RL → evaluation

Every stage is the toolkit's own (the same functions the CLI verbs call), run at
sizes that fit in about ten minutes on 2 cores. The recipe and why each number is
what it is: docs/training.md. The result is `RUN/summary.json` and a printed table
(`nlakit.demo_eval`): the FVE of the teacher's explanations and of the SFT and RL AVs,
all scored by the SFT AR (the common AR), the RL gain with its paired interval, the
shuffled control, the RL AV scored by its own AR, and the truth of each claim field
— plus five AV explanations beside the oracle's for the same tokens.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nlakit.atomic import write_json
from nlakit.config import Config, option
from nlakit.store.names import SUMMARY_FILE

# Short prompts: on 2 CPU cores every prompt token costs training time.
DEMO_AV_TEMPLATE = "Explain <concept>{injection_char}</concept>"
DEMO_AR_TEMPLATE = "{explanation}\n<activation>"
ORACLE_CONTEXT = 0.0  # the demo's oracle writes two features: genre/topic and the final token


@dataclass
class DemoConfig(Config):
    """The demo: a toy world, its data, SFT of both halves, RL and the evaluation."""

    out: str = option("runs/demo", "run directory")
    size: str = option(
        "demo", "toy world size: small (seconds, for tests) or demo", choices=("small", "demo")
    )
    seed: int = option(0, "seeds the world, the data, training and evaluation", ge=0)
    writing_share: float = option(
        0.0, "share of the world's chats that ask for a piece of writing (toyworld build)",
        ge=0, le=1,
    )  # fmt: skip
    docs: int = option(6000, "documents extracted (the whole demo world)", ge=1)
    positions_per_doc: int = option(
        8, "rows per document: more rows, less repetition per epoch", ge=1
    )
    ar_steps: int = option(
        1400,
        "AR SFT steps (the AR is the scorer: an undertrained AR hides the AV)",
        ge=1,
    )
    av_steps: int = option(1800, "AV SFT steps", ge=1)
    rl_steps: int = option(90, "GRPO steps", ge=1)
    ar_batch: int = option(32, "AR SFT rows per step", ge=1)
    av_batch: int = option(16, "AV SFT rows per step", ge=1)
    ar_lr: float = option(1e-3, "AR SFT learning rate", gt=0)
    av_lr: float = option(
        2e-3, "AV SFT learning rate (1e-3 and 4e-3 both read the vector worse)", gt=0
    )
    rl_batch: int = option(8, "activations per RL step", ge=1)
    group_size: int = option(8, "explanations sampled per activation in RL", ge=2)
    rl_lr: float = option(
        3e-4, "RL learning rate of the AV (higher rates let the sampling noise undo the SFT)", ge=0
    )
    rl_ar_lr: float = option(1e-4, "the AR's rate while co-trained on the RL explanations", ge=0)
    freeze_ar: bool = option(True, "keep the SFT AR fixed in RL, so every gain is the AV's")
    kl_coef: float = option(0.0, "β of the KL penalty (0: no reference forward, faster)", ge=0)
    length_penalty: float = option(0.0, "λ: the RL reward loses λ per explanation token", ge=0)
    max_new_tokens: int = option(64, "length cap of an explanation, in tokens", ge=1)
    n_eval: int = option(512, "held-out activations in the final evaluation", ge=1)


SMALL = dict(
    docs=200,
    positions_per_doc=3,
    ar_steps=20,
    av_steps=30,
    rl_steps=4,
    ar_batch=16,
    av_batch=8,
    rl_batch=4,
    group_size=4,
    max_new_tokens=32,
    n_eval=32,
)


def _stage(n: int, title: str) -> float:
    print(f"\n[{n}/8] {title}", flush=True)
    return time.perf_counter()


def _done(since: float, what: str) -> None:
    print(f"      {what} ({time.perf_counter() - since:.0f} s)", flush=True)


def run_demo(config: DemoConfig | None = None) -> dict:
    # The pipeline is imported here, not at the top: `nlakit demo --help` reads
    # DemoConfig alone and should not load every stage (transformers, the toy world).
    from nlakit.data.extract import ExtractConfig, extract
    from nlakit.data.tables import BuildConfig, build_tables
    from nlakit.data.teach import TeachConfig, teach
    from nlakit.demo_eval import evaluate_demo, print_summary
    from nlakit.toyworld.build import build_world, world_config
    from nlakit.train.rl import RLConfig, rl
    from nlakit.train.sft import SFTConfig, sft

    config = config or DemoConfig()
    if config.size == "small":  # the small preset, except where a field was set
        default = DemoConfig()
        preset = {k: v for k, v in SMALL.items() if getattr(config, k) == getattr(default, k)}
        config = dataclasses.replace(config, **preset)
    start = time.perf_counter()
    run = Path(config.out)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)

    t = _stage(1, f"toy world ({config.size}): corpus, tokenizer, target LM")
    world = build_world(
        run / "world", world_config(config.size, config.seed, writing_share=config.writing_share)
    )
    _done(
        t,
        f"{world['sizes']['parameters']:,} parameters, LM loss {world['losses']['final']:.3f} "
        f"vs unigram {world['losses']['unigram']:.3f}" + (" — cached" if world["cached"] else ""),
    )
    layer = world["default_layer"]

    t = _stage(2, f"extract block-{layer} activations")
    manifest = extract(
        ExtractConfig(
            model=str(run / "world" / "model"),
            layer=layer,
            corpus=f"toyworld:{run / 'world'}",
            out=str(run / "data"),
            positions_per_doc=config.positions_per_doc,
            max_docs=config.docs,
            seed=config.seed,
        )
    )
    _done(
        t,
        f"{manifest['result']['rows']} rows, injection_scale {manifest['result']['injection_scale']:g}",
    )

    t = _stage(3, "teach: the toy world's oracle explains every row")
    report = teach(
        TeachConfig(data=str(run / "data"), teacher="toyworld", oracle_context=ORACLE_CONTEXT),
        progress=False,
    )
    _done(t, f"{report['status_counts']['ok']} explanations")

    t = _stage(4, "build the training tables")
    tables = build_tables(
        BuildConfig(
            data=str(run / "data"),
            out=str(run / "tables"),
            av_template=DEMO_AV_TEMPLATE,
            ar_template=DEMO_AR_TEMPLATE,
        )
    )
    _done(t, ", ".join(f"{k} {v}" for k, v in tables["rows"].items()))

    common = dict(
        data=str(run / "tables"),
        seed=config.seed,
        warmup=20,
        eval_every=0,
        save_every=0,
        keep_checkpoints=1,
        resume=True,  # a second `nlakit demo` reuses finished stages, continues a killed one
    )
    t = _stage(5, "AR SFT: predict the activation from the teacher's explanation")
    sft(
        SFTConfig(
            role="ar",
            out=str(run / "ar_sft"),
            steps=config.ar_steps,
            batch_size=config.ar_batch,
            lr=config.ar_lr,
            **common,
        )
    )
    _done(t, f"AR at {run / 'ar_sft' / 'ar'}")
    t = _stage(6, "AV SFT: write the teacher's explanation of an injected activation")
    sft(
        SFTConfig(
            role="av",
            out=str(run / "av_sft"),
            steps=config.av_steps,
            batch_size=config.av_batch,
            lr=config.av_lr,
            **common,
        )
    )
    _done(t, f"AV at {run / 'av_sft' / 'av'}")

    t = _stage(7, "RL (GRPO): explanations the live AR can reconstruct from")
    rl(
        RLConfig(
            data=str(run / "tables"),
            av=str(run / "av_sft" / "av"),
            ar=str(run / "ar_sft" / "ar"),
            out=str(run / "rl"),
            steps=config.rl_steps,
            batch_size=config.rl_batch,
            group_size=config.group_size,
            max_new_tokens=config.max_new_tokens,
            lr=config.rl_lr,
            ar_lr=config.rl_ar_lr,
            freeze_ar=config.freeze_ar,
            kl_coef=config.kl_coef,
            length_penalty=config.length_penalty,
            warmup=5,
            eval_every=0,
            save_every=0,
            eval_rows=32,
            seed=config.seed,
            keep_checkpoints=1,
            resume=True,
        )
    )
    _done(t, f"AV and AR at {run / 'rl'}")

    t = _stage(8, "evaluation on held-out activations")
    summary = evaluate_demo(run, config.n_eval, config.max_new_tokens, config.seed, ORACLE_CONTEXT)
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_json(run / SUMMARY_FILE, summary)
    _done(t, f"n = {summary['n_eval']}")
    print_summary(summary)
    print(
        f"\nrun directory: {run.resolve()}  (summary.json, world/, tables/, ar_sft/, av_sft/, rl/)"
    )
    print(f"analyse it:    nlakit eval --run {run} && nlakit analyze all --run {run}")
    print(f"browse it:     nlakit view {run}   (after nlakit eval)")
    return summary
