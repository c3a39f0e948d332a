"""The demo's final evaluation: every stage of the pipeline scored on held-out rows.

Each AV (the SFT one and the RL one) explains the first `n` rows of
`tables/eval.parquet` once, with the training sampling settings. Every explanation
is reconstructed by the **SFT AR** — the common AR, so that the SFT and RL AVs are
judged by the same reader — and the RL AV also by its own co-trained AR (which has
learnt to read its AV and flatters it). Reported with 95% bootstrap intervals over
rows, beside the baseline variance and n: the teacher's explanations, both AVs, the
shuffled control, the RL gain (paired), and on the toy world the truth of each
claim field.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from nlakit.eval.stats import fve_drop, fve_summary
from nlakit.generation import SamplingConfig, marker_leak, sample_explanations
from nlakit.metrics import FVEBaseline, mse_nrm
from nlakit.models import ActivationReconstructor, ActivationVerbalizer
from nlakit.store.names import BASELINE_FILE, table_file
from nlakit.store.tables import load_table
from nlakit.toyworld.truth import FIELDS, score_claims, truth_rates
from nlakit.toyworld.world import World


def _fve(errors: torch.Tensor, baseline: FVEBaseline, seed: int) -> dict:
    s = fve_summary(errors, baseline, seed=seed)
    return {"fve": s["fve"], "ci": [s["ci_low"], s["ci_high"]]}


@torch.no_grad()
def evaluate_demo(
    run: Path,
    n_eval: int,
    max_new_tokens: int,
    seed: int,
    oracle_context: float,
    rl_run: Path | None = None,
) -> dict:
    """The summary of a demo run (see the module docstring); `rl_run` evaluates
    another RL run from the same warm start in place of `run/rl`."""
    rl_run = rl_run or run / "rl"
    table = load_table(run / "tables" / table_file("eval"), ("doc_id", "position", "explanation"))
    n = min(n_eval, len(table))
    vectors = table.vectors[:n]
    baseline = FVEBaseline.load(run / "tables" / BASELINE_FILE)
    sampling = SamplingConfig(max_new_tokens=max_new_tokens)
    common = ActivationReconstructor.from_pretrained(run / "ar_sft" / "ar", device="cpu").eval()
    own = ActivationReconstructor.from_pretrained(rl_run / "ar", device="cpu").eval()

    def errors(ar: ActivationReconstructor, texts: list[str]) -> torch.Tensor:
        return mse_nrm(ar.reconstruct(texts), vectors, ar.meta.mse_scale_value)

    samples = {}
    for stage, path in (("av_sft", run / "av_sft"), ("rl", rl_run)):
        av = ActivationVerbalizer.from_pretrained(path / "av", device="cpu").eval()
        generator = torch.Generator().manual_seed(seed)
        samples[stage] = sample_explanations(av, vectors, sampling, generator)
    marker = av.meta.tokens.injection_char
    texts = {k: [s.explanation or "" for s in v] for k, v in samples.items()}
    teacher = table.columns["explanation"][:n]
    shuffled = list(range(n))
    random.Random(seed).shuffle(shuffled)
    err = {
        "teacher": errors(common, teacher),
        "sft": errors(common, texts["av_sft"]),
        "rl_common_ar": errors(common, texts["rl"]),
        "rl_own_ar": errors(own, texts["rl"]),
        "shuffled": errors(common, [texts["rl"][i] for i in shuffled]),
    }
    # FVE(RL) − FVE(SFT), paired over rows (both AVs sampled with the same random stream)
    gain = fve_drop(err["rl_common_ar"], err["sft"], baseline, seed=seed)

    world = World(run / "world")
    oracle = world.oracle()
    docs = world.documents_for(table.columns["doc_id"][:n])
    records, oracle_texts = [], []
    for doc, position in zip(docs, table.columns["position"][:n], strict=True):
        text, record = oracle.explain(doc, position, oracle_context)
        records.append(record)
        oracle_texts.append(text)

    def truth(explanations: list[str]) -> dict[str, float]:
        rates = truth_rates(score_claims(t, r) for t, r in zip(explanations, records, strict=True))
        return {field: rates[field]["correct"] for field in FIELDS}

    first_of_genre: dict[str, int] = {}
    for i, record in enumerate(records):
        first_of_genre.setdefault(record.genre, i)
    examples = [
        {
            "token": records[i].token,
            "genre": records[i].genre,
            "av": texts["rl"][i] or samples["rl"][i].raw,
            "oracle": oracle_texts[i],
        }
        for i in list(first_of_genre.values())[:5]
    ]
    stats = {name: _fve(e, baseline, seed) for name, e in err.items()}
    return {
        "n_eval": n,
        "layer": common.layer,
        "baseline_variance": baseline.variance,
        "baseline_n": baseline.n,
        "fve_teacher": stats["teacher"]["fve"],
        "fve_sft": stats["sft"]["fve"],
        "fve_rl": stats["rl_own_ar"]["fve"],
        "fve_common_ar": stats["rl_common_ar"]["fve"],
        "fve_shuffled": stats["shuffled"]["fve"],
        "ci": {name: s["ci"] for name, s in stats.items()},
        "rl_gain_common_ar": {"gain": gain["fve_drop"], "ci": [gain["ci_low"], gain["ci_high"]]},
        "truth": {
            "teacher": truth(teacher),
            "sft": truth(texts["av_sft"]),
            "rl": truth(texts["rl"]),
        },
        "mean_tokens_sft": sum(s.n_tokens for s in samples["av_sft"]) / n,
        "mean_tokens_rl": sum(s.n_tokens for s in samples["rl"]) / n,
        "extraction_rate_sft": sum(s.finished for s in samples["av_sft"]) / n,
        "extraction_rate_rl": sum(s.finished for s in samples["rl"]) / n,
        "marker_leak_rl": sum(marker_leak(s.raw, marker) for s in samples["rl"]) / n,
        "examples": examples,
    }


def print_summary(summary: dict) -> None:
    ci = summary["ci"]
    rows = [
        ("the teacher's explanations", "fve_teacher", "teacher"),
        ("AV after SFT", "fve_sft", "sft"),
        ("AV after RL", "fve_common_ar", "rl_common_ar"),
        ("control: RL explanations, shuffled", "fve_shuffled", "shuffled"),
    ]
    print(
        f"\nFVE on {summary['n_eval']} held-out activations (block {summary['layer']}; "
        f"baseline variance {summary['baseline_variance']:.4f}, n = {summary['baseline_n']}; "
        "95% bootstrap CI)\nscored by the SFT AR (the common AR):"
    )
    for label, key, name in rows:
        lo, hi = ci[name]
        print(f"  {label:<40} {summary[key]:+.3f}  [{lo:+.3f}, {hi:+.3f}]")
    gain = summary["rl_gain_common_ar"]
    print(
        f"  {'RL gain (paired)':<40} {gain['gain']:+.3f}  "
        f"[{gain['ci'][0]:+.3f}, {gain['ci'][1]:+.3f}]"
    )
    lo, hi = ci["rl_own_ar"]
    print(
        f"scored by the RL AR (co-trained with its AV):\n"
        f"  {'AV after RL':<40} {summary['fve_rl']:+.3f}  [{lo:+.3f}, {hi:+.3f}]"
    )
    truth = summary["truth"]
    print("\nclaims stated correctly (share of rows)  " + "  ".join(f"{f:>12}" for f in FIELDS))
    for name, label in (
        ("teacher", "teacher (oracle)"),
        ("sft", "AV after SFT"),
        ("rl", "AV after RL"),
    ):
        print(f"  {label:<38}" + "  ".join(f"{truth[name][f]:>12.3f}" for f in FIELDS))
    print(
        f"\n  {'mean explanation tokens, SFT → RL':<40} {summary['mean_tokens_sft']:.1f} → "
        f"{summary['mean_tokens_rl']:.1f}"
    )
    print("\nfive tokens: the AV's explanation (after RL) beside the oracle's")
    for example in summary["examples"]:
        print(f"\n  token {example['token']!r} ({example['genre']})")
        print("    AV:     " + example["av"].replace("\n", "\n            "))
        print("    oracle: " + example["oracle"].replace("\n", "\n            "))
