"""`nlakit demo` (`make demo`): a whole NLA trained and evaluated on the toy world,
offline, on a laptop CPU.

    toy world → extract → teach (oracle) → build tables → AR SFT → AV SFT → RL → evaluation

Every stage is the toolkit's own (the same functions the CLI verbs call), run at
sizes that fit in minutes on 2 cores. The result is `RUN/summary.json` and a
printed table: the FVE of the AR on the teacher's explanations, of the SFT and RL
AVs, of shuffled explanations (the control), and how often the AV's stated genre
is true — plus five AV explanations beside the oracle's for the same tokens.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

# Short prompts: on 2 CPU cores every prompt token costs training time.
DEMO_AV_TEMPLATE = "Explain <concept>{injection_char}</concept>"
DEMO_AR_TEMPLATE = "{explanation}\n<activation>"
ORACLE_CONTEXT = 0.0  # the demo's oracle writes two features: genre/topic and the final token


@dataclass
class DemoConfig:
    out: str = "runs/demo"  # run directory
    size: str = "demo"  # toy world size: small (seconds, for tests) or demo
    seed: int = 0
    docs: int = 4000  # documents extracted
    positions_per_doc: int = 4
    ar_steps: int = 600  # AR SFT steps
    av_steps: int = 1400  # AV SFT steps (many small batches learn to read the vector sooner)
    rl_steps: int = 40  # GRPO steps
    ar_batch: int = 32
    av_batch: int = 16
    ar_lr: float = 1e-3
    av_lr: float = 6e-3
    rl_batch: int = 8  # activations per RL step
    group_size: int = 8
    rl_lr: float = 3e-5
    rl_ar_lr: float = 2e-4
    kl_coef: float = 0.02
    length_penalty: float = 0.001
    max_new_tokens: int = 64
    n_eval: int = 256  # held-out activations in the final evaluation


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
    from nlakit.data.extract import ExtractConfig, extract
    from nlakit.data.tables import BuildConfig, build_tables
    from nlakit.data.teach import TeachConfig, teach
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
    world = build_world(run / "world", world_config(config.size, config.seed))
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
            kl_coef=config.kl_coef,
            length_penalty=config.length_penalty,
            warmup=5,
            eval_every=0,
            save_every=0,
            eval_rows=32,
            seed=config.seed,
            keep_checkpoints=1,
        )
    )
    _done(t, f"AV and AR at {run / 'rl'}")

    t = _stage(8, "evaluation on held-out activations")
    summary = evaluate_demo(run, config)
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    _done(t, f"n = {summary['n_eval']}")
    print_summary(summary)
    print(
        f"\nrun directory: {run.resolve()}  (summary.json, world/, tables/, ar_sft/, av_sft/, rl/)"
    )
    print(f"analyse it:    nlakit eval --run {run} && nlakit analyze all --run {run}")
    print(f"browse it:     nlakit view {run}   (after nlakit eval)")
    return summary


def evaluate_demo(run: Path, config: DemoConfig) -> dict:
    """The summary: FVEs of the pipeline's stages and their controls, and truth."""
    from nlakit.generation import SamplingConfig
    from nlakit.metrics import FVEBaseline, fve, mse_nrm
    from nlakit.models import ActivationReconstructor, ActivationVerbalizer
    from nlakit.toyworld.truth import score_claims
    from nlakit.toyworld.world import World
    from nlakit.train.data import load_table
    from nlakit.train.evaluation import evaluate_pair

    table = load_table(run / "tables" / "eval.parquet", ("doc_id", "position", "explanation"))
    n = min(config.n_eval, len(table))
    vectors = table.vectors[:n]
    baseline = FVEBaseline.load(run / "tables" / "baseline.json")
    sampling = SamplingConfig(max_new_tokens=config.max_new_tokens)
    ar_sft = ActivationReconstructor.from_pretrained(run / "ar_sft" / "ar", device="cpu")
    av_sft = ActivationVerbalizer.from_pretrained(run / "av_sft" / "av", device="cpu")
    ar_rl = ActivationReconstructor.from_pretrained(run / "rl" / "ar", device="cpu")
    av_rl = ActivationVerbalizer.from_pretrained(run / "rl" / "av", device="cpu")
    scale = ar_sft.meta.mse_scale_value

    teacher_errors = mse_nrm(ar_sft.reconstruct(table.columns["explanation"][:n]), vectors, scale)
    sft_metrics, _ = evaluate_pair(av_sft, ar_sft, vectors, baseline, sampling, config.seed)
    rl_metrics, rl_samples = evaluate_pair(av_rl, ar_rl, vectors, baseline, sampling, config.seed)
    texts = [s.explanation or "" for s in rl_samples]
    shuffled = list(range(n))
    random.Random(config.seed).shuffle(shuffled)
    shuffled_errors = mse_nrm(ar_rl.reconstruct([texts[i] for i in shuffled]), vectors, scale)

    world = World(run / "world")
    oracle = world.oracle()
    docs = {d.doc_id: d for d in world.documents()}
    records, oracle_texts = [], []
    for doc_id, position in zip(
        table.columns["doc_id"][:n], table.columns["position"][:n], strict=True
    ):
        text, record = oracle.explain(docs[doc_id], position, ORACLE_CONTEXT)
        records.append(record)
        oracle_texts.append(text)
    genre_true = [
        score_claims(t, r)["genre"] == "correct" for t, r in zip(texts, records, strict=True)
    ]
    first_of_genre: dict[str, int] = {}
    for i, record in enumerate(records):
        first_of_genre.setdefault(record.genre, i)
    examples = [
        {
            "token": records[i].token,
            "genre": records[i].genre,
            "av": texts[i] or rl_samples[i].raw,
            "oracle": oracle_texts[i],
        }
        for i in list(first_of_genre.values())[:5]
    ]
    return {
        "fve_ar_on_teacher": fve(teacher_errors, baseline),
        "fve_sft": sft_metrics["fve"],
        "fve_rl": rl_metrics["fve"],
        "fve_shuffled": fve(shuffled_errors, baseline),
        "baseline_variance": baseline.variance,
        "baseline_n": baseline.n,
        "n_eval": n,
        "genre_recovery": sum(genre_true) / n,
        "mean_tokens_sft": sft_metrics["mean_tokens"],
        "mean_tokens_rl": rl_metrics["mean_tokens"],
        "extraction_rate_sft": sft_metrics["extraction_rate"],
        "extraction_rate_rl": rl_metrics["extraction_rate"],
        "marker_leak_rl": rl_metrics["marker_leak"],
        "layer": ar_rl.layer,
        "examples": examples,
    }


def print_summary(summary: dict) -> None:
    rows = [
        ("AR on the teacher's explanations", "fve_ar_on_teacher"),
        ("AV after SFT (scored by the SFT AR)", "fve_sft"),
        ("AV after RL (scored by the RL AR)", "fve_rl"),
        ("control: RL explanations, shuffled", "fve_shuffled"),
    ]
    print(
        f"\nFVE on {summary['n_eval']} held-out activations (block {summary['layer']}; "
        f"baseline variance {summary['baseline_variance']:.4f}, n = {summary['baseline_n']})"
    )
    for label, key in rows:
        print(f"  {label:<40} {summary[key]:+.3f}")
    print(f"  {'genre stated correctly (RL AV)':<40} {summary['genre_recovery']:.3f}")
    print(
        f"  {'mean explanation tokens, SFT → RL':<40} {summary['mean_tokens_sft']:.1f} → "
        f"{summary['mean_tokens_rl']:.1f}"
    )
    print("\nfive tokens: the AV's explanation (after RL) beside the oracle's")
    for example in summary["examples"]:
        print(f"\n  token {example['token']!r} ({example['genre']})")
        print("    AV:     " + example["av"].replace("\n", "\n            "))
        print("    oracle: " + example["oracle"].replace("\n", "\n            "))
