"""Rollout engines: what decodes a batch of AV prompts with injected activations.

An engine takes the AV, the activations `[n, d_model]` of one batch and the sampling
settings, and returns the sampled token ids `[n, steps]`, their log-probs under the raw
(temperature 1, unfiltered) policy, and each row's length up to its first stop token:

    tokens, logps, lengths = ENGINES["hf"](av, vectors, config, stop_ids, generator, marker)

`nlakit.generation.sample_explanations` batches the rows, calls the engine named by
`SamplingConfig.engine`, and turns its output into `Sample`s.

- `hf`: transformers' `generate` fed `inputs_embeds` (the injection is an embedding
  replacement). nlakit's own sampling rule runs as the logits processor: it draws each
  row's token with the caller's `torch.Generator` (so a run is reproducible and resumes
  exactly), records that token's raw log-prob, and leaves `generate` a one-hot choice to
  take greedily. On CUDA, `SamplingConfig.compile` turns on the static KV cache and a
  compiled decode step.
- `vllm`: not shipped; see docs/benchmarks.md for where it stands.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from nlakit import sites
from nlakit.errors import NLAKitError
from nlakit.injection import marker_mask
from nlakit.models import ActivationVerbalizer


def next_tokens(logits: torch.Tensor, config, generator: torch.Generator | None) -> torch.Tensor:
    """Pick one token per row `[batch]` from `logits [batch, vocab]` (fp32): greedy at
    temperature 0, else a draw from the temperature / top-k / top-p distribution."""
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    if config.temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits / config.temperature
    if config.top_k > 0:
        scores = TopKLogitsWarper(config.top_k)(None, scores)
    if config.top_p < 1:
        scores = TopPLogitsWarper(config.top_p)(None, scores)
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class ChooseAndRecord(LogitsProcessor):
    """nlakit's sampling rule as `generate`'s only logits processor: draws each row's
    token (`next_tokens`, with `generator`), records its raw log-prob, and returns scores
    that are 0 at that token and -inf elsewhere, so greedy `generate` takes it."""

    def __init__(self, config, generator: torch.Generator | None):
        self.config, self.generator = config, generator
        self.tokens: list[torch.Tensor] = []
        self.logps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float()
        token = next_tokens(logits, self.config, self.generator)
        self.tokens.append(token)
        self.logps.append(torch.log_softmax(logits, dim=-1).gather(1, token[:, None]).squeeze(1))
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, token[:, None], 0.0)


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


def lengths_to_first_stop(tokens: torch.Tensor, stop_ids: torch.Tensor) -> torch.Tensor:
    """Per row of `tokens [n, steps]`, the count up to and including its first stop token
    (`steps` when it has none)."""
    is_stop = torch.isin(tokens, stop_ids)
    steps = tokens.shape[1]
    first = torch.where(
        is_stop.any(1),
        is_stop.int().argmax(1),
        torch.full_like(is_stop[:, 0], steps, dtype=torch.long),
    )
    return torch.where(is_stop.any(1), first + 1, first).long()


@torch.no_grad()
def hf_decode(
    av: ActivationVerbalizer,
    vectors: torch.Tensor,
    config,
    stop_ids: torch.Tensor,
    generator: torch.Generator | None,
    marker: str = "vector",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids `[n, steps]`, their raw log-probs (0 after a row's stop) and lengths `[n]`."""
    n = vectors.shape[0]
    input_ids = av.prompt_batch(n)
    embeds = marker_embeds(av, input_ids, vectors, marker)
    pad = av.tokenizer.pad_token_id if av.tokenizer.pad_token_id is not None else int(stop_ids[0])
    generation = GenerationConfig(
        max_new_tokens=config.max_new_tokens,
        do_sample=False,  # the processor has already drawn the token
        eos_token_id=stop_ids.tolist(),
        pad_token_id=pad,
        use_cache=True,
    )
    if av.device.type == "cuda" and getattr(config, "compile", False):
        generation.cache_implementation = "static"
    choose = ChooseAndRecord(config, generator)
    av.model.generate(
        inputs_embeds=embeds,
        attention_mask=torch.ones(input_ids.shape, dtype=torch.long, device=embeds.device),
        generation_config=generation,
        logits_processor=LogitsProcessorList([choose]),
    )
    tokens = torch.stack(choose.tokens, 1)
    lengths = lengths_to_first_stop(tokens, stop_ids)
    steps = torch.arange(tokens.shape[1], device=tokens.device)[None]
    alive = steps < lengths[:, None]
    tokens = torch.where(alive, tokens, torch.full_like(tokens, pad))
    logps = torch.where(alive, torch.stack(choose.logps, 1), torch.zeros(()))
    return tokens, logps, lengths


Engine = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
ENGINES: dict[str, Engine] = {"hf": hf_decode}


def get_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise NLAKitError(f"--engine {name!r}: expected one of {', '.join(ENGINES)}.")
    return ENGINES[name]
