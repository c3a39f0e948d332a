"""The batched explanation sampler (the rollout engine).

One AV prompt is rendered once; each row gets its own activation injected via
`inputs_embeds`; the whole batch is decoded together with a KV cache. Rows stop
at their first EOS; decoding ends when every row has stopped or the cap is hit.

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
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from nlakit import sites
from nlakit.config import Config, option
from nlakit.injection import check_vectors, marker_mask
from nlakit.models import ActivationVerbalizer

EXPLANATION_RE = re.compile(r"<explanation>(.*?)</explanation>", re.DOTALL)
# Talk about the marker character itself instead of the activation it stands for.
_LEAK = re.compile(r"\b(cjk|chinese|japanese|kanji|ideograph\w*|circled|unicode)\b", re.IGNORECASE)


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


def next_tokens(
    logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """Pick one token per row `[batch]` from `logits [batch, vocab]` (fp32)."""
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits / config.temperature
    if config.top_k > 0:
        scores = TopKLogitsWarper(config.top_k)(None, scores)
    if config.top_p < 1:
        scores = TopPLogitsWarper(config.top_p)(None, scores)
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


MARKER_MODES = ("vector", "own", "zero")


def marker_embeds(
    av: ActivationVerbalizer, input_ids: torch.Tensor, vectors: torch.Tensor, marker: str
) -> torch.Tensor:
    """The prompt's `inputs_embeds` with the marker holding what `marker` names."""
    if marker == "vector":
        return av.inputs_embeds(input_ids, vectors)
    embeds = sites.embedding(av.model)(input_ids)
    if marker == "own":
        return embeds
    if marker == "zero":
        at_marker = marker_mask(input_ids, av.meta.tokens).to(embeds.device)
        return embeds.masked_fill(at_marker.unsqueeze(-1), 0.0)
    raise ValueError(f"marker must be one of {MARKER_MODES}, got {marker!r}")


@torch.no_grad()
def _decode_batch(
    av: ActivationVerbalizer,
    vectors: torch.Tensor,
    config: SamplingConfig,
    stop_ids: torch.Tensor,
    generator: torch.Generator | None,
    marker: str = "vector",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids `[n, steps]`, their log-probs, and per-row lengths `[n]` (up to first EOS)."""
    n = vectors.shape[0]
    input_ids = av.prompt_batch(n)
    embeds = marker_embeds(av, input_ids, vectors, marker)
    out = av.model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    logits = out.logits[:, -1].float()
    pad = av.tokenizer.pad_token_id if av.tokenizer.pad_token_id is not None else int(stop_ids[0])
    done = torch.zeros(n, dtype=torch.bool, device=av.device)
    lengths = torch.full((n,), config.max_new_tokens, dtype=torch.long, device=av.device)
    tokens, logps = [], []
    for step in range(config.max_new_tokens):
        token = next_tokens(logits, config, generator)
        logp = torch.log_softmax(logits, dim=-1).gather(1, token[:, None]).squeeze(1)
        token = torch.where(done, torch.full_like(token, pad), token)
        tokens.append(token)
        logps.append(torch.where(done, torch.zeros_like(logp), logp))
        stopped = ~done & torch.isin(token, stop_ids)
        lengths = torch.where(stopped, torch.full_like(lengths, step + 1), lengths)
        done = done | stopped
        if bool(done.all()) or step == config.max_new_tokens - 1:
            break
        out = av.model(input_ids=token[:, None], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits = out.logits[:, -1].float()
    return torch.stack(tokens, 1), torch.stack(logps, 1), lengths


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
    samples: list[Sample] = []
    starts = range(0, vectors.shape[0], config.batch_size)
    for start in tqdm(starts, desc="explain", unit="batch", disable=not progress):
        chunk = vectors[start : start + config.batch_size].to(av.device)
        tokens, logps, lengths = _decode_batch(av, chunk, config, stop_ids, generator, marker)
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
