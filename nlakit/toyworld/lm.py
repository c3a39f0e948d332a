"""The toy world's target LM: a small standard Hugging Face decoder trained from scratch.

Documents are tokenized as `BOS + text + EOS`; batches of whole documents are
padded on the right and the loss ignores padding. The held-out loss is reported
beside the unigram baseline (the cross-entropy of add-one-smoothed token
frequencies from the training split), both in nats per token.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from nlakit.batching import pad_right
from nlakit.config import Config, option
from nlakit.tiny import tiny_model


@dataclass
class LMConfig(Config):
    """The toy world's target LM and how it is trained."""

    arch: str = option("llama", "architecture: llama or qwen3", choices=("llama", "qwen3"))
    hidden_size: int = option(128, "d_model", ge=1)
    num_layers: int = option(4, "decoder blocks", ge=1)
    steps: int = option(300, "optimiser steps", ge=1)
    batch_size: int = option(32, "documents per step", ge=1)
    lr: float = option(3e-3, "peak AdamW learning rate (cosine decay after warm-up)", gt=0)
    warmup: int = option(30, "warm-up steps", ge=0)
    weight_decay: float = option(0.01, "AdamW weight decay", ge=0)
    max_len: int = option(160, "tokens per document (longer ones are truncated)", ge=2)


def make_model(config: LMConfig, tokenizer, seed: int):
    return tiny_model(
        config.arch,
        tokenizer,
        seed=seed,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
    )


def lm_loss(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    labels = ids.masked_fill(mask == 0, -100)
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


@torch.no_grad()
def eval_loss(model, sequences: list[list[int]], pad_id: int, batch_size: int = 64) -> float:
    """Mean next-token loss (nats/token) over `sequences`."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(sequences), batch_size):
        ids, mask = pad_right(sequences[start : start + batch_size], pad_id)
        n = int((mask[:, 1:] == 1).sum())
        total += float(lm_loss(model, ids, mask)) * n
        count += n
    return total / max(count, 1)


def unigram_loss(train: list[list[int]], held_out: list[list[int]], vocab_size: int) -> float:
    """Cross-entropy (nats/token) of held-out next tokens under train unigram frequencies."""
    counts = torch.ones(vocab_size)
    for seq in train:
        counts += torch.bincount(torch.tensor(seq[1:]), minlength=vocab_size).float()
    logp = torch.log(counts / counts.sum())
    targets = torch.tensor([t for seq in held_out for t in seq[1:]])
    return float(-logp[targets].mean())


def lr_at(step: int, config: LMConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train_lm(
    model, train: list[list[int]], config: LMConfig, pad_id: int, seed: int, progress: bool = True
) -> dict:
    """Train in place; returns the loss curve and timing."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95)
    )
    model.train()
    curve, start = [], time.perf_counter()
    bar = tqdm(range(config.steps), desc="train LM", disable=not progress, unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        pick = torch.randint(len(train), (config.batch_size,), generator=generator).tolist()
        ids, mask = pad_right([train[i] for i in pick], pad_id)
        loss = lm_loss(model, ids, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        curve.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(curve[-10:]) / len(curve[-10:]):.3f}")
    model.eval()
    return {"curve": curve, "seconds": time.perf_counter() - start}
