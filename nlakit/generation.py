"""The batched explanation sampler.

One AV prompt is rendered once; each row gets its own activation injected via
`inputs_embeds`; the whole batch is decoded together by a rollout engine
(`nlakit/engines.py`: transformers' `generate`). Rows stop at their first EOS;
decoding ends when every row has stopped or the cap is hit.

Sampling settings are explicit and default to the training ones (temperature 1,
top-p 1, top-k 0: raw logits), so evaluation samples what RL optimised. The
returned log-probs are those of the sampled tokens under the raw (temperature 1,
unfiltered) model distribution — what the policy gradient needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from nlakit.config import Config, option
from nlakit.engines import (  # noqa: F401  (re-exported: the sampling rule, marker modes)
    MARKER_MODES,
    engine_problem,
    get_engine,
    marker_embeds,
    next_tokens,
)
from nlakit.errors import NLAKitError
from nlakit.injection import check_vectors
from nlakit.models import ActivationVerbalizer

WHOLE = 0  # as a prefix length: the whole explanation
EXPLANATION_RE = re.compile(r"<explanation>(.*?)</explanation>", re.DOTALL)
# Talk about the marker character itself instead of the activation it stands for.
_LEAK = re.compile(r"\b(cjk|chinese|japanese|kanji|ideograph\w*|circled|unicode)\b", re.IGNORECASE)


def prefix_text(tokenizer, text: str, k: int) -> str:
    """The first `k` tokens of `text` as text (`k` = `WHOLE`, or ≥ its length: all of it)."""
    if k == WHOLE:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if k >= len(ids) else tokenizer.decode(ids[:k])


def prefix_texts(tokenizer, texts: list[str], ks: list[int]) -> list[str]:
    """`prefix_text` of each text, with its own `k` (`ks[i]` for `texts[i]`)."""
    return [prefix_text(tokenizer, t, k) for t, k in zip(texts, ks, strict=True)]


def parse_explanation(text: str) -> str | None:
    """The stripped text between `<explanation>` tags; None when the closing tag is missing."""
    match = EXPLANATION_RE.search(text)
    return match.group(1).strip() if match else None


def wrap_explanation(text: str) -> str:
    """The AV's response format for an explanation (the SFT target)."""
    return f"<explanation>\n{text}\n</explanation>"


def marker_leak(text: str, marker: str) -> bool:
    """Whether an AV output talks about the marker character rather than the vector."""
    return marker in text or bool(_LEAK.search(text))


@dataclass
class SamplingConfig(Config):
    """How explanations are sampled. Defaults are the training settings."""

    temperature: float = option(1.0, "sampling temperature (0 = greedy)", ge=0)
    top_p: float = option(
        1.0, "nucleus sampling: keep the top tokens of this mass (1 = off)", gt=0, le=1
    )
    top_k: int = option(0, "keep the k most likely tokens (0 = off)", ge=0)
    max_new_tokens: int = option(200, "length cap of an explanation, in tokens", ge=1)
    batch_size: int = option(64, "rows decoded together", ge=1)
    engine: str = option(
        "hf", "rollout engine: hf (transformers) or vllm (the vllm extra)", choices=("hf", "vllm")
    )
    compile: bool = option(True, "on CUDA: a static KV cache and a compiled decode step")

    def __post_init__(self) -> None:
        super().__post_init__()
        if (problem := engine_problem(self.engine)) is not None:
            raise NLAKitError(problem)


@dataclass
class SnapshotSampling(SamplingConfig):
    """Sampling with the vllm engine from a saved snapshot of an AV being trained (RL),
    rather than from the AV's own directory."""

    weights: str | None = option(None, "the directory the vllm engine loads the AV from")


@dataclass
class Sample:
    """One sampled AV response.

    `token_ids` ends at the first EOS (included, when one was sampled);
    `n_tokens = len(token_ids)` is the true length; `logprobs [n_tokens]` are the
    sampled tokens' log-probs; `explanation` is None when the closing tag is missing.
    """

    token_ids: list[int]
    raw: str
    explanation: str | None
    hit_cap: bool
    logprobs: torch.Tensor = field(repr=False)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def finished(self) -> bool:
        """Stopped on its own with a complete `<explanation>…</explanation>`."""
        return self.explanation is not None and not self.hit_cap


def stop_token_ids(av: ActivationVerbalizer) -> list[int]:
    """EOS ids: the tokenizer's plus the generation config's (e.g. end-of-turn tokens)."""
    ids: set[int] = set()
    if av.tokenizer.eos_token_id is not None:
        ids.add(int(av.tokenizer.eos_token_id))
    gen = getattr(av.model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    if eos is not None:
        ids.update([int(eos)] if isinstance(eos, int) else [int(e) for e in eos])
    if not ids:
        raise ValueError("the AV tokenizer has no EOS token; cannot tell when an explanation ends")
    return sorted(ids)


def sample_explanations(
    av: ActivationVerbalizer,
    vectors: torch.Tensor,
    config: SamplingConfig | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    marker: str = "vector",
) -> list[Sample]:
    """One sampled explanation per row of `vectors [n, d_model]` (raw activations).

    `marker` says what the marker position holds: "vector" (the row's activation,
    the normal case), or for controls "own" (the marker's own embedding: no
    injection) or "zero" (a zero embedding); the vectors then only set the count."""
    config = config or SamplingConfig()
    vectors = check_vectors(vectors, av.meta.d_model)
    stops = stop_token_ids(av)
    stop_ids = torch.tensor(stops, device=av.device)
    decode = get_engine(config.engine)
    samples: list[Sample] = []
    starts = range(0, vectors.shape[0], config.batch_size)
    for start in tqdm(starts, desc="explain", unit="batch", disable=not progress):
        chunk = vectors[start : start + config.batch_size].to(av.device)
        tokens, logps, lengths = decode(av, chunk, config, stop_ids, generator, marker)
        tokens, logps, lengths = tokens.cpu(), logps.float().cpu(), lengths.cpu()
        for row in range(chunk.shape[0]):
            n = int(lengths[row])
            ids = tokens[row, :n].tolist()
            ended = bool(ids) and ids[-1] in stops
            text_ids = ids[:-1] if ended else ids
            raw = av.tokenizer.decode(text_ids, skip_special_tokens=False)
            samples.append(
                Sample(
                    token_ids=ids,
                    raw=raw,
                    explanation=parse_explanation(raw),
                    hit_cap=not ended,
                    logprobs=logps[row, :n].clone(),
                )
            )
    return samples
