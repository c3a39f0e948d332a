"""A linear reconstructor (the "flow chart" AR): an explanation's n-gram frequencies
times one matrix.

    features(text)  the frequency of each of F n-grams of its tokens (1 … `ngram` tokens,
                    the F most frequent in the training explanations), counts over the
                    number of n-grams in the text
    prediction      features · W + b     (W: [F, d], b: [d])

It reads words, not sentences: no order beyond `ngram` tokens, no composition. An AV
scored by it can only pay by saying things with words that move the vector on their
own — the seeds' "an AR simple enough that the AV must lay things out plainly". Its
weights say which words move the vector where (`top_ngrams`).

The fit is ridge regression on the normalised vectors (the targets mse_nrm compares),
in closed form: the sums of XᵀX and XᵀY are accumulated over batches, then one
eigendecomposition of the centred XᵀX gives W for every ridge strength of a grid at the
cost of one, and the strength with the best held-out error is kept.

A checkpoint is a directory with the tokenizer, `linear_ar.safetensors` (W, b and the
n-grams as token ids) and the AR sidecar, whose `reconstructor:` key says it is this
kind (`kind`, `ngram`, `n_features`, `ridge`). Separators are stripped as by the
transformer AR.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from nlakit.errors import CheckpointError, NLAKitError
from nlakit.meta import ModelMeta, read_meta, write_meta
from nlakit.metrics import mse_nrm, normalize
from nlakit.separators import strip_separators

KIND = "linear"
META_KEY = "reconstructor"
WEIGHTS_FILE = "linear_ar.safetensors"
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # × the mean diagonal of the centred XᵀX


def ngrams(ids: list[int], n: int) -> list[tuple[int, ...]]:
    """Every run of 1 … n consecutive ids, shortest first at each start."""
    return [
        tuple(ids[i : i + k]) for i in range(len(ids)) for k in range(1, n + 1) if i + k <= len(ids)
    ]


def token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """The ids of each text's words (separators stripped, no special tokens)."""
    return [tokenizer(strip_separators(t), add_special_tokens=False)["input_ids"] for t in texts]


def choose_features(ids: list[list[int]], n: int, max_features: int) -> list[tuple[int, ...]]:
    """The `max_features` most frequent n-grams of the texts (ties: the shorter, then the
    smaller ids first, so the choice does not depend on the order of the texts)."""
    counts = Counter(g for row in ids for g in ngrams(row, n))
    ranked = sorted(counts, key=lambda g: (-counts[g], len(g), g))
    return ranked[:max_features]


def featurize(ids: list[list[int]], index: dict[tuple[int, ...], int], n: int) -> torch.Tensor:
    """`[len(ids), F]` n-gram frequencies (counts over the text's number of n-grams)."""
    out = torch.zeros(len(ids), len(index))
    for row, seq in enumerate(ids):
        grams = ngrams(seq, n)
        for g in grams:
            j = index.get(g)
            if j is not None:
                out[row, j] += 1.0 / len(grams)
    return out


class LinearAR(torch.nn.Module):
    """Explanation texts → activations `[n, d]` through n-gram frequencies and one matrix.

    A module (its W and b are parameters, kept on the CPU) so that RL can hold it as
    its frozen scorer like a transformer AR (`nlakit rl --ar DIR`, with `--freeze-ar`)."""

    def __init__(
        self,
        tokenizer: Any,
        meta: ModelMeta,
        features: list[tuple[int, ...]],
        weight: torch.Tensor,
        bias: torch.Tensor,
        ngram: int,
        ridge: float,
    ):
        if weight.shape != (len(features), meta.d_model) or bias.shape != (meta.d_model,):
            raise CheckpointError(
                f"linear AR: weight {list(weight.shape)} and bias {list(bias.shape)} do not fit "
                f"{len(features)} features and d_model {meta.d_model}."
            )
        super().__init__()
        self.tokenizer, self.features, self.ngram, self.ridge = tokenizer, features, ngram, ridge
        self.weight = torch.nn.Parameter(weight.float().cpu())
        self.bias = torch.nn.Parameter(bias.float().cpu())
        self.index = {g: i for i, g in enumerate(features)}
        self.meta = meta
        meta.extra[META_KEY] = {
            "kind": KIND, "ngram": ngram, "n_features": len(features), "ridge": ridge,
        }  # fmt: skip

    @property
    def device(self) -> torch.device:
        return self.weight.device

    @property
    def layer(self) -> int | None:
        """The block index K whose output it predicts."""
        return self.meta.layer

    @torch.no_grad()
    def reconstruct(
        self, explanations: list[str], batch_size: int = 1024, contexts: list[str] | None = None
    ) -> torch.Tensor:
        """Predicted activations `[n, d]` in fp32 on the CPU, in the input order (it reads
        the explanations alone; `contexts` is accepted as every reconstructor's is)."""
        out = torch.empty(len(explanations), self.meta.d_model)
        for start in range(0, len(explanations), batch_size):
            ids = token_ids(self.tokenizer, explanations[start : start + batch_size])
            out[start : start + len(ids)] = (
                featurize(ids, self.index, self.ngram) @ self.weight + self.bias
            )
        return out

    def top_ngrams(self, directions: torch.Tensor, k: int = 8) -> list[dict]:
        """Per direction `[m, d]` (unit vectors, e.g. the data's principal axes), the
        n-grams whose weight moves the prediction furthest along it, each way, as text."""
        scores = self.weight.detach() @ directions.float().T  # [F, m]
        out = []
        for j in range(directions.shape[0]):
            order = torch.argsort(scores[:, j], descending=True).tolist()
            name = [self.tokenizer.decode(list(self.features[i])) for i in order]
            out.append({"positive": name[:k], "negative": name[::-1][:k]})
        return out

    def save_pretrained(self, out_dir: str | os.PathLike) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        grams = torch.full((len(self.features), self.ngram), -1, dtype=torch.long)
        for i, g in enumerate(self.features):
            grams[i, : len(g)] = torch.tensor(g)
        tensors = {
            "weight": self.weight.detach().contiguous(), "bias": self.bias.detach(), "ngrams": grams,
        }  # fmt: skip
        save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
        self.tokenizer.save_pretrained(str(out))
        write_meta(self.meta, out)
        return out

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> LinearAR:
        from nlakit.models import load_tokenizer
        from nlakit.store.readers import read_safetensors

        path = Path(path)
        meta = read_meta(path)
        record = meta.extra.get(META_KEY) if isinstance(meta, ModelMeta) else None
        if not isinstance(record, dict) or record.get("kind") != KIND:
            raise CheckpointError(
                f"{path}: not a linear AR (its sidecar has no `{META_KEY}: {{kind: {KIND}}}`); "
                "load a transformer AR with ActivationReconstructor.from_pretrained."
            )
        state = read_safetensors(
            path / WEIGHTS_FILE,
            what="the linear AR's weights",
            fix="Fit it again (`nlakit sft ar --reconstructor linear`).",
        )
        features = [tuple(int(i) for i in row if i >= 0) for row in state["ngrams"].tolist()]
        tokenizer = load_tokenizer(path)
        return cls(
            tokenizer,
            meta,
            features,
            state["weight"],
            state["bias"],
            int(record["ngram"]),
            float(record["ridge"]),
        )


def load_reconstructor(path: str | os.PathLike, **kwargs):
    """The AR at `path`: a `LinearAR` when its sidecar says so, else a transformer
    `ActivationReconstructor` (`kwargs`: its loading options, device, dtype …)."""
    if is_linear_ar(path):
        return LinearAR.from_pretrained(path)
    from nlakit.models import ActivationReconstructor

    return ActivationReconstructor.from_pretrained(path, **kwargs)


def is_linear_ar(path: str | os.PathLike) -> bool:
    """Whether `path` holds a linear AR (its sidecar says so)."""
    try:
        meta = read_meta(path)
    except NLAKitError:  # no sidecar, or an unreadable one: not a linear AR
        return False
    record = meta.extra.get(META_KEY) if isinstance(meta, ModelMeta) else None
    return isinstance(record, dict) and record.get("kind") == KIND


def ridge_solutions(
    x_batches, y_batches, grid: tuple[float, ...] = RIDGE_GRID
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Ridge regressions of Y on X with an intercept, one per strength of `grid` (each ×
    the mean diagonal of the centred XᵀX): `[(W [F, d], b [d])]` and that scale. The
    batches (`[b, F]`, `[b, d]`) are read once; sums in float64."""
    n, xtx, xty, sx, sy = 0, None, None, None, None
    for x, y in zip(x_batches, y_batches, strict=True):
        x, y = x.double(), y.double()
        if xtx is None:
            xtx, xty = (
                torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64),
                torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64),
            )
            sx, sy = (
                torch.zeros(x.shape[1], dtype=torch.float64),
                torch.zeros(y.shape[1], dtype=torch.float64),
            )
        n += x.shape[0]
        xtx += x.T @ x
        xty += x.T @ y
        sx += x.sum(0)
        sy += y.sum(0)
    mx, my = sx / n, sy / n
    cxx = xtx - n * torch.outer(mx, mx)
    cxy = xty - n * torch.outer(mx, my)
    scale = cxx.diagonal().mean().clamp_min(1e-12)
    values, vectors = torch.linalg.eigh(cxx)
    projected = vectors.T @ cxy
    out = []
    for strength in grid:
        w = vectors @ (projected / (values.clamp_min(0) + strength * scale).unsqueeze(1))
        out.append((w.float(), (my - mx @ w).float()))
    return out, scale


def fit_linear_ar(
    tokenizer: Any,
    meta: ModelMeta,
    texts: list[str],
    vectors: torch.Tensor,
    held_out: tuple[list[str], torch.Tensor],
    ngram: int = 2,
    max_features: int = 4096,
    batch_size: int = 2048,
) -> tuple[LinearAR, dict]:
    """Fit a linear AR on (texts, vectors); the ridge strength is the one of `RIDGE_GRID`
    with the lowest mse_nrm on `held_out`. Returns the AR and the fit's record."""
    ids = token_ids(tokenizer, texts)
    features = choose_features(ids, ngram, max_features)
    index = {g: i for i, g in enumerate(features)}
    scale = meta.mse_scale_value
    targets = normalize(vectors, scale)
    spans = range(0, len(ids), batch_size)
    x_batches = (featurize(ids[s : s + batch_size], index, ngram) for s in spans)
    y_batches = (targets[s : s + batch_size] for s in spans)
    solutions, _ = ridge_solutions(x_batches, y_batches)
    eval_x = featurize(token_ids(tokenizer, held_out[0]), index, ngram)
    errors = [float(mse_nrm(eval_x @ w + b, held_out[1], scale).mean()) for w, b in solutions]
    best = min(range(len(errors)), key=errors.__getitem__)
    weight, bias = solutions[best]
    ar = LinearAR(tokenizer, meta, features, weight, bias, ngram, RIDGE_GRID[best])
    record = {
        "n_features": len(features),
        "ridge": RIDGE_GRID[best],
        "held_out_mse_nrm": dict(zip(map(str, RIDGE_GRID), errors, strict=True)),
    }
    return ar, record
