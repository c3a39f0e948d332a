"""The fields `nlakit sft` and `nlakit rl` share: data, output, optimiser, LoRA,
checkpoints and runtime. `SFTConfig` and `RLConfig` inherit them (same names, same
defaults) and add their own."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from nlakit.config import DEVICE_HELP, DTYPE_HELP, DTYPES, Config, ConfigError, option


@dataclass(kw_only=True)
class TrainingConfig(Config):
    """Fields shared by SFT and RL training runs."""

    data: str = option(help="tables directory written by `nlakit build`")
    out: str = option(help="run directory")
    weight_decay: float = option(0.0, "AdamW weight decay", ge=0)
    max_grad_norm: float = option(1.0, "clip the gradient norm to this", gt=0)
    lora_rank: int = option(
        0, "0 = full fine-tune (RL: a frozen copy is the KL reference); else the LoRA rank", ge=0
    )
    lora_alpha: float = option(
        16.0, "LoRA α: adapters scale by α / rank (α / √rank with rslora)", gt=0
    )
    lora_targets: str = option(
        "all-linear", "modules that get adapters: all-linear or comma-separated names"
    )
    rslora: bool = option(False, "rank-stabilised LoRA scaling (α / √rank)")
    load_in_4bit: bool = option(
        False,
        "QLoRA: the frozen base weights in 4-bit NF4 through bitsandbytes, under the LoRA "
        "adapters (needs --lora-rank > 0; pip install 'nlakit[qlora]'); exports are merged "
        "into the full-precision weights",
    )
    keep_checkpoints: int = option(2, "newest step checkpoints kept", ge=1)
    seed: int = option(0, "seeds the data order, sampling and new weights", ge=0)
    resume: bool = option(False, "continue from the newest checkpoint in `out`")
    allow_changes: str = option(
        "", "with --resume: settings that may differ from the run's, comma-separated (steps,lr)"
    )
    parallel: str = option(
        "ddp",
        "how several ranks (torchrun) share the models: ddp (each holds all of them) or fsdp "
        "(FSDP2: each holds 1/W of every weight, gradient and optimizer state)",
        choices=("ddp", "fsdp"),
    )
    attention: str | None = option(
        None,
        "attention kernel of the trained models: sdpa, eager, flash_attention_2, "
        "flash_attention_3 or flex_attention (default: transformers' choice, sdpa)",
        choices=("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"),
    )
    device: str | None = option(None, DEVICE_HELP)
    dtype: str | None = option(None, DTYPE_HELP, choices=DTYPES)
    tensorboard: bool = option(False, "also log to TensorBoard (RUN/tensorboard)")
    wandb: bool = option(False, "also log to Weights & Biases")
    progress: bool = option(True, "show progress bars")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.load_in_4bit:
            if self.lora_rank == 0:
                raise ConfigError(
                    "--load-in-4bit: a 4-bit base cannot be fine-tuned itself; give LoRA "
                    "adapters to train over it (--lora-rank 16), or drop --load-in-4bit."
                )
            if self.parallel == "fsdp":
                raise ConfigError(
                    "--load-in-4bit with --parallel fsdp is not supported (the 4-bit weights "
                    "cannot be sharded); use --parallel ddp, or a full-precision base."
                )
            if importlib.util.find_spec("bitsandbytes") is None:  # before any model loads
                raise ConfigError(
                    "--load-in-4bit needs the `bitsandbytes` package, which is not installed: "
                    "pip install 'nlakit[qlora]'"
                )
