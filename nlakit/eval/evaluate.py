"""`nlakit eval --run RUN [--data eval.parquet]`: the run's AV explains held-out
activations, its AR reconstructs them, and the FVE is reported with its controls.

Writes `RUN/eval/`:

    rows.parquet    one row per activation: doc_id, position, token, context,
                    explanation, mse_nrm, cos, n_tokens, finished, source, the teacher's
                    explanation and its error, the raw activation_vector, and on the
                    toy world the latent record (JSON) — the input of every analysis
    summary.json    FVE with its bootstrap CI, median per-row FVE, baseline variance and n,
                    for the AV and for each control
    table.csv       the same, one row per condition;  plot.png  a bar chart of them

Controls (each scored by the same AR against the true vectors):
`common_ar` (the AV's explanations scored by the *common* AR — the SFT AR the run's
RL started from, or `--common-ar` — instead of the run's own co-trained AR, which
learns its AV's idiosyncrasies and flatters it; `fve_common_ar` in the summary),
`shuffled` (the AV's explanations paired with other rows' vectors), `mean_vector` /
`zero_vector` (the AV given the baseline mean or a zero vector), `no_injection` (the
marker keeps its own embedding), `teacher` (the teacher's explanations).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch

from nlakit.ar_context import CONTEXT_COLUMN
from nlakit.atomic import write_parquet
from nlakit.config import DEVICE_HELP, DTYPE_HELP, DTYPES, Config, option
from nlakit.errors import NLAKitError
from nlakit.eval.outputs import write_analysis
from nlakit.eval.plots import bar_with_ci
from nlakit.eval.runs import RunPaths, resolve_run, starting_ar
from nlakit.eval.stats import derangement, fve_summary
from nlakit.generation import SamplingConfig, marker_leak, sample_explanations
from nlakit.meta import ModelMeta, check_pair
from nlakit.metrics import FVEBaseline, cosine, mse_nrm
from nlakit.models import ActivationReconstructor, ActivationVerbalizer
from nlakit.store.names import BASELINE_FILE, table_file
from nlakit.store.readers import read_parquet_schema
from nlakit.store.runs import run_config
from nlakit.store.tables import Table, check_agrees, find_baseline, load_table
from nlakit.store.vectors import VECTOR_COLUMN, vector_column
from nlakit.toyworld.world import World

OPTIONAL_COLUMNS = (
    "doc_id",
    "position",
    "token",
    "detokenized_text_truncated",
    "source",
    "explanation",
)


@dataclass
class EvalConfig(Config):
    """What `nlakit eval` samples and scores, and with which controls."""

    run: str = option(help="run directory (its AV and AR are evaluated)")
    data: str | None = option(None, "eval table (default: the run's tables/eval.parquet)")
    n: int = option(512, "rows evaluated, the first n of the table (0 = all)", ge=0)
    control_samples: int = option(128, "explanations sampled for each input-free control", ge=1)
    max_new_tokens: int | None = option(
        None, "length cap (default: the run's training cap, else 200)", ge=1
    )
    temperature: float = option(1.0, "sampling temperature (1 = what RL optimised)", ge=0)
    batch_size: int = option(64, "rows decoded / reconstructed together", ge=1)
    common_ar: str | None = option(
        None, "AR scoring the AV beside its own (default: the run's SFT AR)"
    )
    controls: bool = option(True, "also run the control conditions")
    bootstrap: int = option(1000, "bootstrap resamples for the confidence intervals", ge=1)
    seed: int = option(0, "seeds the sampling and the bootstrap", ge=0)
    device: str | None = option(None, DEVICE_HELP)
    dtype: str | None = option(None, DTYPE_HELP, choices=DTYPES)


def data_path(paths: RunPaths, data: str | None) -> Path:
    if data is not None:
        return Path(data)
    if paths.tables is None:
        raise NLAKitError(
            f"{paths.root}: no tables directory found for this run; pass --data EVAL.parquet."
        )
    return paths.tables / table_file("eval")


def load_baseline(data: Path, tables: Path | None) -> FVEBaseline:
    """The frozen FVE baseline of the tables the data belongs to."""
    baseline = find_baseline(data.parent, tables)
    if baseline is None:
        raise NLAKitError(
            f"{data}: no {BASELINE_FILE} beside it (or in the run's tables); FVE needs the "
            "training split's baseline, which `nlakit build` writes."
        )
    return baseline


def load_eval_table(path: Path, n: int = 0) -> Table:
    """The eval table (vectors and the provenance columns it has), first `n` rows."""
    if not path.is_file():
        raise NLAKitError(f"{path}: no such eval table.")
    names = read_parquet_schema(path, "an eval table (`nlakit build`)").names
    table = load_table(path, tuple(c for c in OPTIONAL_COLUMNS if c in names))
    if n:
        table.vectors = table.vectors[:n]
        table.columns = {k: v[:n] for k, v in table.columns.items()}
    return table


def check_table_fits(meta: ModelMeta, table_meta, path: Path) -> None:
    """The eval table must come from the layer and width the pair reads."""
    try:
        check_agrees(meta, table_meta)
    except NLAKitError as exc:
        raise NLAKitError(f"{path}: {exc}") from None


def world_records(world_dir: Path, doc_ids: list[int | str], positions: list[int]) -> list[dict]:
    """The toy world's latent record (as a dict) of every (table doc_id, position)."""
    world = World(world_dir)
    oracle = world.oracle()
    cache: dict[int, list] = {}
    out = []
    for doc, position in zip(world.documents_for(doc_ids), positions, strict=True):
        if doc.doc_id not in cache:
            cache[doc.doc_id] = oracle.records(doc)
        out.append(cache[doc.doc_id][position].to_dict())
    return out


def evaluate(config: EvalConfig) -> dict:
    """Evaluate the run's pair on the eval table; returns the summary."""
    paths = resolve_run(config.run, need_ar=True, need_av=True)
    data = data_path(paths, config.data)
    table = load_eval_table(data, config.n)
    n = len(table)
    if n < 2:
        raise NLAKitError(f"{data}: {n} row(s); an evaluation needs at least 2.")
    av = ActivationVerbalizer.from_pretrained(paths.av, device=config.device, dtype=config.dtype)
    ar = ActivationReconstructor.from_pretrained(paths.ar, device=config.device, dtype=config.dtype)
    check_pair(av.meta, ar.meta)
    check_table_fits(ar.meta, table.meta, data)
    baseline = load_baseline(data, paths.tables)
    common_path = Path(config.common_ar) if config.common_ar else starting_ar(paths.root)
    common = None
    if common_path is not None:
        common = ActivationReconstructor.from_pretrained(
            common_path, device=config.device, dtype=config.dtype
        ).eval()
        check_pair(av.meta, common.meta)
    cap = config.max_new_tokens or _training_cap(paths) or 200
    sampling = SamplingConfig(config.temperature, 1.0, 0, cap, config.batch_size)
    scale = ar.meta.mse_scale_value
    vectors = table.vectors

    def sample(inputs: torch.Tensor, seed: int, marker: str = "vector") -> list:
        generator = torch.Generator(device=av.device).manual_seed(seed)
        return sample_explanations(av, inputs, sampling, generator, progress=True, marker=marker)

    # the text before each row's token, which a context AR reads (others ignore it)
    contexts = table.columns.get(CONTEXT_COLUMN)

    def errors_of(texts: list[str], gold: torch.Tensor) -> torch.Tensor:
        return mse_nrm(ar.reconstruct(texts, config.batch_size, contexts), gold, scale)

    av.eval()
    ar.eval()
    with torch.no_grad():
        samples = sample(vectors, config.seed)
        texts = [s.explanation or "" for s in samples]
        pred = ar.reconstruct(texts, config.batch_size, contexts)
        errors = mse_nrm(pred, vectors, scale)
        cos = cosine(pred, vectors)
        conditions = {"av": errors}
        common_errors = None
        if common is not None:
            common_pred = common.reconstruct(texts, config.batch_size, contexts)
            common_errors = mse_nrm(common_pred, vectors, common.meta.mse_scale_value)
            conditions["common_ar"] = common_errors
        teacher = table.columns.get("explanation")
        teacher_errors = errors_of(teacher, vectors) if teacher else None
        if config.controls:
            perm = derangement(n, config.seed)
            conditions["shuffled"] = errors_of([texts[j] for j in perm], vectors)
            # The AV's input is the same for every row here, so `control_samples`
            # explanations are drawn and row i is scored with sample i mod m.
            m = min(n, config.control_samples)
            mu = baseline.mu.to(vectors.dtype).expand(m, -1)
            for name, inputs, marker in (
                ("mean_vector", mu, "vector"),
                ("zero_vector", vectors[:m], "zero"),
                ("no_injection", vectors[:m], "own"),
            ):
                control = [s.explanation or "" for s in sample(inputs, config.seed + 1, marker)]
                conditions[name] = errors_of([control[i % m] for i in range(n)], vectors)
            if teacher_errors is not None:
                conditions["teacher"] = teacher_errors

    stats = {
        name: fve_summary(e, baseline, config.bootstrap, config.seed)
        for name, e in conditions.items()
    }
    marker = av.meta.tokens.injection_char
    summary = {
        "run": str(paths.root),
        "av": str(paths.av),
        "ar": str(paths.ar),
        "data": str(data),
        "layer": ar.layer,
        "base_model": table.meta.extraction.base_model,
        "n": n,
        "baseline_variance": baseline.variance,
        "baseline_n": baseline.n,
        "sampling": {"temperature": config.temperature, "max_new_tokens": cap},
        "fve": stats["av"]["fve"],
        "fve_ci": [stats["av"]["ci_low"], stats["av"]["ci_high"]],
        "common_ar": str(common_path) if common is not None else None,
        "fve_common_ar": stats["common_ar"]["fve"] if common is not None else None,
        "fve_common_ar_ci": (
            [stats["common_ar"]["ci_low"], stats["common_ar"]["ci_high"]]
            if common is not None
            else None
        ),
        "conditions": stats,
        "mean_tokens": sum(s.n_tokens for s in samples) / n,
        "extraction_rate": sum(s.finished for s in samples) / n,
        "marker_leak": sum(marker_leak(s.raw, marker) for s in samples) / n,
    }
    rows = _rows_table(table, paths, samples, texts, errors, cos, teacher, teacher_errors)
    if common_errors is not None:
        rows = rows.append_column("mse_nrm_common_ar", pa.array(common_errors.tolist()))
    write_parquet(paths.rows, rows)
    write_analysis(
        paths.eval_dir,
        [{"condition": k, **v} for k, v in stats.items()],
        summary,
        _figure(stats, summary),
    )
    return summary


def _training_cap(paths: RunPaths) -> int | None:
    for run_dir in (paths.root, paths.root / "rl"):
        cap = run_config(run_dir).get("max_new_tokens")
        if cap:
            return int(cap)
    return None


def _rows_table(table, paths, samples, texts, errors, cos, teacher, teacher_errors) -> pa.Table:
    n = len(texts)
    col = table.columns
    columns = {
        # Text, as in the released datasets (eval tables built before hold int64 ids).
        "doc_id": [str(d) for d in col.get("doc_id", range(n))],
        "position": col.get("position", [-1] * n),
        "token": col.get("token", [""] * n),
        "context": col.get("detokenized_text_truncated", [""] * n),
        "explanation": texts,
        "raw": [s.raw for s in samples],
        "mse_nrm": errors.tolist(),
        "cos": cos.tolist(),
        "n_tokens": [s.n_tokens for s in samples],
        "finished": [s.finished for s in samples],
        "source": col.get("source", ["unknown"] * n),
    }
    if teacher is not None:
        columns["teacher_explanation"] = teacher
        columns["teacher_mse_nrm"] = teacher_errors.tolist()
    if paths.world is not None and "doc_id" in col and "position" in col:
        records = world_records(paths.world, col["doc_id"], col["position"])
        columns["record"] = [json.dumps(r) for r in records]
    out = pa.table(columns)
    return out.append_column(VECTOR_COLUMN, vector_column(table.vectors))


LABELS = {
    "av": "AV",
    "common_ar": "AV, common AR",
    "shuffled": "shuffled vectors",
    "mean_vector": "mean vector",
    "zero_vector": "zero vector",
    "no_injection": "no injection",
    "teacher": "teacher's text",
}


def _figure(stats: dict, summary: dict):
    names = list(stats)
    return bar_with_ci(
        f"FVE of the AV and its controls (n = {summary['n']}, "
        f"baseline variance {summary['baseline_variance']:.3f})",
        [LABELS.get(k, k) for k in names],
        [stats[k]["fve"] for k in names],
        [stats[k]["ci_low"] for k in names],
        [stats[k]["ci_high"] for k in names],
    )


def print_eval(summary: dict) -> None:
    print(
        f"FVE on {summary['n']} rows (block {summary['layer']}; baseline variance "
        f"{summary['baseline_variance']:.4f}, n = {summary['baseline_n']})"
    )
    for name, s in summary["conditions"].items():
        print(
            f"  {LABELS.get(name, name):<18} {s['fve']:+.3f}  "
            f"[{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]  median row {s['median_row_fve']:+.3f}"
        )
    print(
        f"  mean tokens {summary['mean_tokens']:.1f}, extraction rate "
        f"{summary['extraction_rate']:.3f}, marker leak {summary['marker_leak']:.3f}"
    )
