"""`nlakit sft ar --reconstructor linear`: fit the linear AR (`nlakit.linear_ar`) on the
tables' AR SFT explanations, its ridge strength chosen on the held-out table, and write
it to `RUN/ar`, with `RUN/config.json` and `RUN/fit.json`: the held-out error of each
ridge strength, the evaluation, and per principal direction of the (normalised)
activations the n-grams that move the prediction furthest along it, each way."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from nlakit.atomic import write_json
from nlakit.linear_ar import fit_linear_ar
from nlakit.metrics import cosine, fve, mse_nrm, normalize
from nlakit.models import load_tokenizer, local_dir
from nlakit.store.names import RUN_CONFIG, table_file
from nlakit.store.tables import find_baseline, load_table
from nlakit.train import modules as M


def principal_directions(vectors: torch.Tensor, k: int) -> torch.Tensor:
    """The first `k` principal axes `[k, d]` (unit vectors) of `vectors [n, d]`."""
    centred = vectors.float() - vectors.float().mean(0)
    return torch.linalg.svd(centred, full_matrices=False).Vh[:k]


def fit_linear_run(config) -> dict:
    """Fit, evaluate on the first `eval_rows` held-out rows, export; returns the
    evaluation (`eval_loss`, `eval_cos`, `eval_fve`) as AR SFT does."""
    started = time.perf_counter()
    tables, out = Path(config.data), Path(config.out)
    train = load_table(tables / table_file("ar_sft"), ("explanation",))
    held = load_table(tables / table_file("eval"), ("explanation",))
    init = config.model or train.meta.extraction.base_model
    tokenizer = load_tokenizer(local_dir(init))
    n = min(config.eval_rows, len(held))
    held_out = (held.columns["explanation"][:n], held.vectors[:n])
    ar, record = fit_linear_ar(
        tokenizer,
        M.meta_for(train.meta, "ar"),
        train.columns["explanation"],
        train.vectors,
        held_out,
        ngram=config.ngram,
        max_features=config.max_features,
    )
    pred = ar.reconstruct(held_out[0])
    errors = mse_nrm(pred, held_out[1], ar.meta.mse_scale_value)
    result = {
        "eval_loss": float(errors.mean()),
        "eval_cos": float(cosine(pred, held_out[1]).mean()),
    }
    directions = principal_directions(normalize(train.vectors, ar.meta.mse_scale_value), 5)
    record["top_ngrams_by_direction"] = ar.top_ngrams(directions, k=8)
    baseline = find_baseline(tables)
    if baseline is not None:
        result["eval_fve"] = fve(errors, baseline)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RUN_CONFIG, dataclasses.asdict(config))
    ar.save_pretrained(out / "ar")
    write_json(
        out / "fit.json", {**record, **result, "seconds": round(time.perf_counter() - started, 1)}
    )
    return result
