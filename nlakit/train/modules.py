"""The trained modules: where an AV or AR starts, LoRA, the optimiser, and export.

A run starts from a *target model* (a fresh AV/AR made from it at layer K, with the
sidecar of the training tables) or from an *NLA checkpoint* (an AV or AR directory
in the released layout, e.g. the output of SFT). With `lora_rank > 0` the decoder
gets LoRA (or rsLoRA) adapters through `peft` and only those — and the AR's value
head — train. `export_av` / `export_ar` write the released layout with adapters
merged, with a model card (`README.md`) holding the run's measured figures.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import get_cosine_schedule_with_warmup

from nlakit import sites
from nlakit.ar_context import ContextSpec, context_spec, with_context
from nlakit.card import CardFigures, write_card
from nlakit.errors import NLAKitError
from nlakit.injection_layout import (
    SINGLE,
    InjectionLayout,
    check_checkpoint_layout,
    with_layout,
)
from nlakit.linear_ar import LinearAR, is_linear_ar
from nlakit.meta import DatasetMeta, ModelMeta, read_meta, with_role
from nlakit.models import (
    ActivationReconstructor,
    ActivationVerbalizer,
    load_causal_lm,
    local_dir,
)
from nlakit.separators import add_separator_token
from nlakit.store.names import SIDECAR_NAME
from nlakit.train.checkpoint import load_trainable, trainable_state
from nlakit.train.distributed import is_sharded, whole
from nlakit.train.run_figures import run_figures


@dataclass(frozen=True)
class ARShape:
    """How a transformer AR is cut and what it reads: `blocks` (None: all it has, K + 1
    for a fresh one; fewer make a smaller AR that still predicts block K), and `context`
    tokens of the text before the token (0: none; `nlakit.ar_context`), `text_only` its
    baseline twin. A fresh AR is made so; an AR checkpoint is reshaped (`reshape`)."""

    blocks: int | None = None
    context: int = 0
    text_only: bool = False

    @classmethod
    def of(cls, config) -> ARShape:
        """The shape a training config asks for (SFT's ar_blocks/context/text_only)."""
        return cls(
            getattr(config, "ar_blocks", None),
            getattr(config, "context", 0),
            getattr(config, "text_only", False),
        )

    def apply(self, meta: ModelMeta) -> ModelMeta:
        """`meta` (a fresh AR's sidecar) made to read the context, when one is asked for."""
        if self.context:
            with_context(meta, ContextSpec(self.context, self.text_only))
        return meta

    def reshape(self, init: str, ar: ActivationReconstructor) -> ActivationReconstructor:
        """An AR checkpoint given the shape asked for: fewer blocks (its first ones, and
        its value head), and a context slot when it has none (it learns to read it);
        another context than the one it reads is refused."""
        spec = context_spec(ar.meta)
        asked = (self.context, self.text_only)
        if any(asked) and spec is None:
            with_context(ar.meta, ContextSpec(*asked))
        elif any(asked) and asked != (spec.tokens, spec.text_only):
            raise NLAKitError(
                f"{init}: this AR reads {spec.tokens} tokens of context (text only: "
                f"{spec.text_only}); it cannot train on as --context {self.context} "
                f"--text-only {self.text_only}. Start from a plain AR or the target model."
            )
        if self.blocks is not None and self.blocks != ar.blocks:
            ar.keep_blocks(self.blocks)
        return ar


# peft is imported where LoRA is set up: it is the optional `train` extra
# (pip install 'nlakit[train]'), needed only with lora_rank > 0.


@dataclass
class LoraSettings:
    rank: int = 0  # 0 = full fine-tune
    alpha: float = 16.0
    targets: str = "all-linear"  # comma-separated module names, or all-linear
    rslora: bool = False

    @classmethod
    def of(cls, config) -> LoraSettings:
        """The settings of a training config (`TrainingConfig`'s lora_* fields)."""
        return cls(config.lora_rank, config.lora_alpha, config.lora_targets, config.rslora)


def meta_for(tables: DatasetMeta, role: str) -> ModelMeta:
    """A model sidecar from the training tables' sidecar."""
    ex = tables.extraction
    meta = ModelMeta(
        role="av",
        d_model=ex.d_model,
        tokens=tables.tokens,
        av_template=tables.av_template,
        ar_template=tables.ar_template,
        injection_scale=ex.injection_scale,
        mse_scale=ex.mse_scale,
        layer_index=ex.layer_index,
        base_model=ex.base_model,
    )
    return with_role(meta, role) if role == "ar" else meta


def is_nla_checkpoint(path: str | os.PathLike, role: str) -> bool:
    p = Path(path)
    if not (p / SIDECAR_NAME).is_file():
        return False
    meta = read_meta(p)
    return isinstance(meta, ModelMeta) and meta.role == role


def start_av(
    init: str,
    tables: DatasetMeta,
    device,
    dtype,
    load_in_4bit: bool = False,
    injection: InjectionLayout = SINGLE,
) -> ActivationVerbalizer:
    """An AV from an AV checkpoint (its own injection layout), or a fresh one from a
    target model reading the activation through `injection`."""
    if is_nla_checkpoint(init, "av"):
        av = ActivationVerbalizer.from_pretrained(
            init, device=device, dtype=dtype, load_in_4bit=load_in_4bit
        )
        check_checkpoint_layout(init, av.layout, injection)
        return av
    model, tokenizer = load_causal_lm(local_dir(init), device, dtype, load_in_4bit=load_in_4bit)
    meta = with_layout(meta_for(tables, "av"), injection)
    return ActivationVerbalizer.from_base(model, tokenizer, tables.layer, meta)


def start_ar(
    init: str,
    tables: DatasetMeta,
    device,
    dtype,
    load_in_4bit: bool = False,
    shape: ARShape = ARShape(),
) -> ActivationReconstructor:
    """An AR from an AR checkpoint (a linear one too), or a fresh one (blocks 0..K, or
    the `shape` asked for) from a target model."""
    if is_linear_ar(init):
        return LinearAR.from_pretrained(init)
    if is_nla_checkpoint(init, "ar"):
        ar = ActivationReconstructor.from_pretrained(
            init, device=device, dtype=dtype, load_in_4bit=load_in_4bit
        )
        return shape.reshape(init, ar)
    model, tokenizer = load_causal_lm(local_dir(init), device, dtype, load_in_4bit=load_in_4bit)
    meta = shape.apply(meta_for(tables, "ar"))
    return ActivationReconstructor.from_base(model, tokenizer, tables.layer, meta, shape.blocks)


def start(
    role: str,
    init: str,
    tables: DatasetMeta,
    device,
    dtype,
    lora: LoraSettings,
    attention: str | None = None,
    load_in_4bit: bool = False,
    separator: bool = False,
    shape: ARShape = ARShape(),
    injection: InjectionLayout = SINGLE,
) -> ActivationVerbalizer | ActivationReconstructor:
    """The AV or AR a run trains: from `init` (`start_av`/`start_ar`), with its adapters
    and, when given, the `attention` kernel (transformers' `attn_implementation`);
    `load_in_4bit`: QLoRA, the frozen base in NF4 under the adapters; `separator`: an
    AV given the graded-prefix separator token (`nlakit.separators`); `shape`: a fresh
    AR's blocks and context (`ARShape`); `injection`: a fresh AV's injection layout
    (`nlakit.injection_layout`)."""
    if role == "av":
        module = start_av(init, tables, device, dtype, load_in_4bit, injection)
    else:
        module = start_ar(init, tables, device, dtype, load_in_4bit, shape)
    if separator:
        add_separator_token(module)
    if attention is not None:
        decoder = module.model if role == "av" else module.backbone
        sites.unwrap(decoder).set_attn_implementation(attention)
    (add_lora_av if role == "av" else add_lora_ar)(module, lora)
    return module


# Attention kernels that run packed rows (position ids restarting) in time linear in
# the rows; others (sdpa, eager) run a packed row as one long masked sequence.
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")


def packing_on(setting: str, module: torch.nn.Module) -> bool:
    """Whether AV SFT packs its rows: `on`/`off`, or `auto` = where the model's
    attention kernel is a variable-length one (`VARLEN_ATTENTION`). Measured on CPU
    with sdpa, packing was 3-4x slower than length-bucketed padding (docs/benchmarks.md)."""
    if setting != "auto":
        return setting == "on"
    config = getattr(sites.unwrap(getattr(module, "model", module)), "config", None)
    return getattr(config, "_attn_implementation", None) in VARLEN_ATTENTION


def rebuilt(
    role: str,
    init: str,
    tables: DatasetMeta,
    dtype,
    lora: LoraSettings,
    trained: dict,
    separator: bool = False,
    shape: ARShape = ARShape(),
    injection: InjectionLayout = SINGLE,
) -> ActivationVerbalizer | ActivationReconstructor:
    """A whole, full-precision copy on the CPU of a module trained sharded (FSDP) or
    over a 4-bit base (QLoRA), to export: made again from `init` as `start` made it,
    with the `trained` parameters (`checkpoint.trainable_state`) loaded; the frozen
    ones are `init`'s, which training never changes."""
    made_as = dict(separator=separator, shape=shape, injection=injection)
    module = start(role, init, tables, "cpu", dtype, lora, **made_as)
    load_trainable(module, trained, f"the trained {role}")
    return module


def for_export(
    module: ActivationVerbalizer | ActivationReconstructor,
    role: str,
    init: str,
    tables: DatasetMeta,
    config,
    main: bool,
) -> ActivationVerbalizer | ActivationReconstructor | None:
    """What a run exports: the trained module itself, or — when it was trained sharded
    or over a 4-bit base — a whole full-precision copy (`rebuilt`, on the `main` rank;
    `None` elsewhere). Every rank must call it (a sharded module's weights are gathered)."""
    if not (is_sharded(module) or config.load_in_4bit):
        return module
    trained = trainable_state(module)
    if not main:
        return None
    separator = getattr(config, "separator", False)
    lora = LoraSettings.of(config)
    shape, injection = ARShape.of(config), InjectionLayout.of_config(config)
    return rebuilt(role, init, tables, config.dtype, lora, trained, separator, shape, injection)


def blocks_of(module: ActivationVerbalizer | ActivationReconstructor) -> torch.nn.ModuleList:
    """The decoder blocks of an AV or AR (the units FSDP shards one at a time; a linear
    AR has none)."""
    if isinstance(module, LinearAR):
        return torch.nn.ModuleList()
    return sites.blocks(
        module.model if isinstance(module, ActivationVerbalizer) else module.backbone
    )


def _lora_config(settings: LoraSettings):
    from peft import LoraConfig

    targets = settings.targets
    targets = targets if targets == "all-linear" else [t.strip() for t in targets.split(",")]
    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        target_modules=targets,
        lora_dropout=0.0,
        use_rslora=settings.rslora,
        bias="none",
    )


def add_lora_av(av: ActivationVerbalizer, settings: LoraSettings) -> None:
    """Adapters on the AV's decoder; everything else frozen."""
    if settings.rank > 0:
        from peft import get_peft_model

        av.model = get_peft_model(av.model, _lora_config(settings))


def add_lora_ar(ar: ActivationReconstructor, settings: LoraSettings) -> None:
    """Adapters on the AR's backbone; the value head stays fully trainable."""
    if settings.rank > 0 and not isinstance(ar, LinearAR):
        from peft import get_peft_model

        ar.backbone = get_peft_model(ar.backbone, _lora_config(settings))
        ar.value_head.requires_grad_(True)


def has_adapters(module: torch.nn.Module) -> bool:
    return hasattr(module, "disable_adapter") and hasattr(module, "merge_and_unload")


def optimizer_for(module: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))


def cosine_schedule(optimizer, warmup: int, steps: int):
    return get_cosine_schedule_with_warmup(optimizer, warmup, max(steps, warmup + 1))


def width_scaled_lr(d_model: int, base: float = 3e-4, base_width: int = 128) -> float:
    """The RL learning rate when none is given: `base` at width `base_width`, scaled
    by 1/d_model as Adam rates are across widths (µP) — 3e-4 on the toy world's
    128-wide model, ≈1e-5 at d_model 4096 (7–8B models)."""
    return base * base_width / d_model


def lr_factor(step: int, warmup: int, progress: float) -> float:
    """The learning-rate multiplier at optimizer step `step` (0-based): a linear
    warm-up over the first `warmup` steps, then a cosine decay from 1 to 0 as the
    run's `progress` goes from 0 to 1 (a share of its steps, or of its time budget)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def clip_gradients(module: torch.nn.Module, max_norm: float) -> tuple[float, bool]:
    """Clip the gradient norm; (norm before clipping, whether every gradient is finite)."""
    params = [p for p in module.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.tensor(0.0)
    norm = whole(norm)  # a sharded model's norm is a DTensor
    return float(norm), bool(torch.isfinite(norm))


def export_av(
    av: ActivationVerbalizer, out: str | os.PathLike, figures: CardFigures | None = None
) -> Path:
    """The AV in the released layout (adapters merged into a copy) with its model card.

    The card's figures are `figures`, or else what the run directory holding `out`
    measured (its `metrics.jsonl`; nothing when it has none)."""
    model = av.model
    if has_adapters(model):
        model = copy.deepcopy(model).merge_and_unload()
    path = ActivationVerbalizer(model, av.tokenizer, av.meta, av.layout).save_pretrained(out)
    write_card(path, av.meta, figures if figures is not None else run_figures(path.parent, "av"))
    return path


def export_ar(
    ar: ActivationReconstructor, out: str | os.PathLike, figures: CardFigures | None = None
) -> Path:
    """The AR in the released layout (adapters merged into a copy) with its model card
    (figures as in `export_av`); a linear AR in its own layout."""
    if isinstance(ar, LinearAR):
        return ar.save_pretrained(out)
    backbone = ar.backbone
    if has_adapters(backbone):
        backbone = copy.deepcopy(backbone).merge_and_unload()
    head = copy.deepcopy(ar.value_head)
    exported = ActivationReconstructor(backbone, head, ar.tokenizer, ar.meta, ar.final_norm_state)
    path = exported.save_pretrained(out)
    write_card(path, ar.meta, figures if figures is not None else run_figures(path.parent, "ar"))
    return path


@contextlib.contextmanager
def embedding_noise(decoder: torch.nn.Module, sigma: float, generator: torch.Generator):
    """Within the block, `decoder`'s input embeddings get Gaussian noise of standard
    deviation `sigma` × their root mean square (drawn on the CPU from `generator`, so a
    resumed run draws the same); nothing when `sigma` is 0."""
    if not sigma:
        yield
        return

    def add_noise(module, args, output):
        rms = output.detach().float().pow(2).mean().sqrt()
        noise = torch.randn(output.shape, generator=generator).to(output.device, output.dtype)
        return output + noise * (sigma * rms).to(output.dtype)

    handle = sites.embedding(decoder).register_forward_hook(add_noise)
    try:
        yield
    finally:
        handle.remove()


def frozen_copy(module: torch.nn.Module) -> torch.nn.Module:
    copied = copy.deepcopy(module).eval()
    copied.requires_grad_(False)
    return copied


def autocast(device: torch.device):
    """bf16 autocast on GPU; a no-op on CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def param_count(module: torch.nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in module.parameters())
    return total, sum(p.numel() for p in module.parameters() if p.requires_grad)
