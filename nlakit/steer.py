"""`nlakit steer`: the AR as a steering tool.

The AR reads a text and predicts the activation it would explain. The difference
between its prediction for a text and for a reference (by default the empty
explanation, the AR's "nothing said" guess, which sits near the mean activation) is a
direction in the residual stream at block K. Added to every position's block-K
output while the target model generates, it pushes the model toward what the text
describes.

    nlakit steer --ar RUN/rl/ar --model RUN/world/model --text "Rhyming poem: a poem about the moon." \\
        --alpha 1 --prompt "" -n 4

Normalisation: the direction is scaled to unit length, then to `alpha` times the
median norm of the target model's block-K activations on the text's own tokens
(the first position, an attention sink in many models, left out). So `alpha = 1` adds
a vector as long as a typical activation, whatever the model's width or scale.
`--control` also generates with a random Gaussian direction of the same length and
the same sampling seeds: the baseline any steering effect must beat.

    from nlakit.steer import SteerConfig, steer
    result = steer(SteerConfig(ar="runs/demo/rl/ar", model="runs/demo/world/model",
                               text="Python code: a function about sorting.", prompt=[""]))
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from nlakit import sites
from nlakit.config import DEVICE_HELP, Config, option


@dataclass
class SteerConfig(Config):
    """Generate from a target model with the AR's vector for a text added at block K."""

    ar: str = option(help="AR directory or Hub id (its block K is where the vector is added)")
    model: str = option(help="target model directory or Hub id")
    text: str = option(help="what to steer toward, written as an explanation")
    against: str = option("", "the reference text subtracted (default: the empty explanation)")
    alpha: float = option(1.0, "added length, in median block-K activation norms")
    prompt: list[str] = option(
        help="texts to continue (--prompt, repeatable)", factory=lambda: [""]
    )
    n: int = option(4, "continuations per prompt", ge=1)
    max_new_tokens: int = option(40, "tokens generated per continuation", ge=1)
    temperature: float = option(1.0, "sampling temperature (0 = greedy)", ge=0)
    layer: int | None = option(None, "block K (default: the AR's)", ge=0)
    control: bool = option(False, "also generate with a random direction of the same length")
    seed: int = option(0, "seeds the sampling (the same seeds steered and control)", ge=0)
    out: str | None = option(None, "also write the continuations as JSONL")
    device: str | None = option(None, DEVICE_HELP)


def steering_direction(ar, text: str, against: str = "") -> torch.Tensor:
    """Unit vector `[d]` from the AR's prediction for `against` to its prediction for
    `text`."""
    with torch.no_grad():
        pred = ar.reconstruct([text, against])
    direction = pred[0] - pred[1]
    norm = direction.norm()
    if norm == 0:
        raise ValueError(f"the AR predicts the same vector for {text!r} and {against!r}")
    return direction / norm


def random_direction(d: int, seed: int) -> torch.Tensor:
    """A unit Gaussian direction `[d]` (the control)."""
    vector = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return vector / vector.norm()


@torch.no_grad()
def activation_norm(model: nn.Module, tokenizer, text: str, layer: int) -> float:
    """Median norm of the block-`layer` outputs of `text`'s tokens, the first left out
    (unless it is the only one)."""
    ids = tokenizer(text or " ", return_tensors="pt")["input_ids"].to(model.device)
    hidden = sites.extract_layer(model, ids, None, layer)[0].float()
    norms = hidden.norm(dim=-1)
    return float((norms[1:] if norms.shape[0] > 1 else norms).median())


@contextmanager
def added_at(model: nn.Module, layer: int, vector: torch.Tensor) -> Iterator[None]:
    """Within the block, block `layer`'s output gets `vector [d]` added at every position."""
    sites.check_layer(model, layer)

    def hook(_module, _args, output):
        if isinstance(output, tuple):
            return (output[0] + vector.to(output[0].dtype), *output[1:])
        return output + vector.to(output.dtype)

    handle = sites.blocks(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer,
    prompts: list[str],
    n: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
) -> list[list[str]]:
    """`n` continuations of every prompt (the prompt itself not repeated); seeded, so that
    the same call with and without `added_at` draws comparable samples."""
    out = []
    for i, prompt in enumerate(prompts):
        encoded = tokenizer(prompt, return_tensors="pt").to(model.device)
        torch.manual_seed(seed + i)
        sampled = model.generate(
            **encoded,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_p=None,
            top_k=None,
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
        start = encoded["input_ids"].shape[1]
        out.append(tokenizer.batch_decode(sampled[:, start:], skip_special_tokens=True))
    return out


def steered(model, tokenizer, direction, scale: float, layer: int, prompts, config) -> list:
    """`generate` with `scale * direction` added at block `layer`."""
    vector = (scale * direction).to(model.device)
    with added_at(model, layer, vector):
        return generate(
            model, tokenizer, prompts, config.n, config.max_new_tokens, config.temperature,
            config.seed,
        )  # fmt: skip


def steer(config: SteerConfig) -> dict:
    """Steered (and, with `control`, random-direction) continuations of every prompt."""
    from nlakit.loading import load_causal_lm
    from nlakit.models import ActivationReconstructor
    from nlakit.store.guard import check_output_file

    if config.out is not None:
        check_output_file(config.out, force=True)
    ar = ActivationReconstructor.from_pretrained(config.ar, device=config.device).eval()
    model, tokenizer = load_causal_lm(config.model, device=config.device)
    layer = config.layer if config.layer is not None else ar.meta.layer
    if layer is None:
        from nlakit.errors import NLAKitError

        raise NLAKitError(f"{config.ar}: the AR records no layer; pass --layer K.")
    direction = steering_direction(ar, config.text, config.against)
    scale = config.alpha * activation_norm(model, tokenizer, config.text, layer)
    result = {
        "text": config.text,
        "against": config.against,
        "alpha": config.alpha,
        "layer": layer,
        "added_norm": scale,
        "prompts": config.prompt,
        "steered": steered(model, tokenizer, direction, scale, layer, config.prompt, config),
    }
    if config.control:
        control = random_direction(direction.shape[0], config.seed).to(direction)
        result["control"] = steered(model, tokenizer, control, scale, layer, config.prompt, config)
    if config.out is not None:
        from nlakit.atomic import write_text

        lines = [
            json.dumps({"prompt": p, "kind": kind, "continuation": c})
            for kind in ("steered", "control")
            if kind in result
            for p, continuations in zip(config.prompt, result[kind], strict=True)
            for c in continuations
        ]
        write_text(config.out, "\n".join(lines) + "\n")
    return result


def _cmd_steer(args) -> None:
    from nlakit.config_cli import config_from_args

    prompts = args.prompt_text or [""]
    result = steer(config_from_args(SteerConfig, args, prompt=prompts))
    print(f"steering toward {result['text']!r} at block {result['layer']}, "
          f"added norm {result['added_norm']:.3g} (alpha {result['alpha']:g})")  # fmt: skip
    for kind in [k for k in ("steered", "control") if k in result]:
        for prompt, continuations in zip(result["prompts"], result[kind], strict=True):
            print(f"\n{kind}, prompt {prompt!r}:")
            for text in continuations:
                print("  " + text.replace("\n", "\n  "))


def register(sub, chosen: str | None) -> None:
    p = sub.add_parser("steer", help="generate with the AR's vector for a text added at block K")
    p.set_defaults(func=_cmd_steer)
    if chosen == "steer":
        from nlakit.config_cli import add_config

        p.add_argument(
            "--prompt", dest="prompt_text", action="append",
            help="text to continue (repeatable; default: the empty prompt)",
        )  # fmt: skip
        add_config(p, SteerConfig, skip=("prompt",))
