"""Warm-start SFT of the AV (cross-entropy on the response) and of the AR (mse_nrm).

    nlakit sft ar --data TABLES --out RUN/ar_sft [--model TARGET] [--lora-rank 16]
    nlakit sft av --data TABLES --out RUN/av_sft
    torchrun --nproc_per_node 2 -m nlakit sft av ...        # data-parallel

The AV learns to write the teacher's explanation of an injected activation
(`av_sft.parquet`); the AR learns to predict the activation from the explanation
(`ar_sft.parquet`, value head starting at the identity). AdamW with a cosine
schedule after warm-up, gradient accumulation and clipping, bf16 autocast on GPU,
length-bucketed batches, held-out evaluation every `eval_every` steps (loss; for
the AR also FVE against `baseline.json`), step checkpoints, and at the end the
model in the released layout at `RUN/av` or `RUN/ar`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from nlakit.ar_context import CONTEXT_COLUMN, reads_context_at
from nlakit.config import option
from nlakit.errors import NLAKitError
from nlakit.injection_layout import MODES, InjectionLayout
from nlakit.meta import read_meta
from nlakit.metrics import FVEBaseline, cosine, fve, mse_nrm
from nlakit.separators import SEPARATOR, check_separators
from nlakit.store.names import table_file
from nlakit.store.tables import check_agrees, find_baseline, load_table
from nlakit.train import checkpoint as ckpt
from nlakit.train import modules as M
from nlakit.train.config import TrainingConfig
from nlakit.train.data import (
    BatchSampler,
    drop_tokens,
    pad_responses,
    response_ids,
    response_logprobs,
    truncate_explanations,
)
from nlakit.train.distributed import (
    accumulating,
    forward_only,
    init_distributed,
    is_sharded,
    shutdown,
    wrap,
)
from nlakit.train.logger import RunLogger
from nlakit.train.losses import ar_loss
from nlakit.train.run_dir import prepare_run, run_lock


@dataclass
class SFTConfig(TrainingConfig):
    """Warm-start SFT of the AV or the AR (the shared fields: `TrainingConfig`)."""

    role: str = option(help="which half to train: av or ar", choices=("av", "ar"), positional=True)
    model: str | None = option(
        None, "start from: a target model or an NLA checkpoint (default: the tables' model)"
    )
    steps: int = option(1000, "optimizer steps", ge=1)
    batch_size: int = option(32, "rows per optimizer step (global, over all ranks)", ge=1)
    grad_accum: int = option(1, "micro-batches per optimizer step (per rank)", ge=1)
    lr: float = option(1e-4, "peak learning rate (cosine decay after warm-up)", gt=0)
    warmup: int = option(50, "warm-up steps", ge=0)
    eval_every: int = option(200, "steps between held-out evaluations (0 = only at the end)", ge=0)
    eval_rows: int = option(256, "held-out rows per evaluation", ge=1)
    save_every: int = option(500, "steps between checkpoints (0 = only at the end)", ge=0)
    packing: str = option(
        "auto",
        "AV rows packed into one sequence without padding (position ids restart per row): "
        "on, off, or auto (on with a variable-length attention kernel, see --attention)",
        choices=("auto", "on", "off"),
    )
    separator: bool = option(
        False,
        f"AV: add the graded-prefix separator {SEPARATOR} to the vocabulary (embedding: the "
        "mean input embedding) before training; the tables' explanations must contain it "
        "(`nlakit teach --separators`)",
    )
    injection_tokens: int = option(
        1,
        "AV: marker positions the activation fills (1 = the released single marker; "
        "nlakit/injection_layout.py)",
        ge=1,
    )
    injection_mode: str = option(
        "repeat",
        "AV, with --injection-tokens > 1: repeat (the vector at every marker) or split (its "
        "projections onto k subspaces of a fixed random orthogonal basis, drawn from --seed)",
        choices=MODES,
    )
    prefix_augment: float = option(
        0.0,
        "AR: the share of rows whose explanation is cut to its first k tokens, k uniform on "
        "1 … its length (an AR that reads prefixes, for `nlakit analyze prefix` and the "
        "ordering rewards)",
        ge=0,
        le=1,
    )
    reconstructor: str = option(
        "transformer",
        "AR: transformer (blocks 0..K and a value head), or linear (n-gram frequencies times "
        "a matrix, fitted in closed form: nlakit/linear_ar.py)",
        choices=("transformer", "linear"),
    )
    ngram: int = option(2, "linear AR: the longest n-gram, in tokens", ge=1)
    max_features: int = option(4096, "linear AR: the most frequent n-grams it reads", ge=1)
    token_dropout: float = option(
        0.0, "AR: the share of explanation tokens deleted at random in training", ge=0, lt=1
    )
    ar_blocks: int | None = option(
        None,
        "AR: a smaller AR of only the first N blocks (1 … K + 1), still predicting block K "
        "(default: K + 1)",
        ge=1,
    )
    context: int = option(
        0,
        "AR: also read the last N tokens of the text before the token (a context AR, "
        "nlakit/ar_context.py; 0 = none)",
        ge=0,
    )
    text_only: bool = option(
        False, "AR with --context: read the text alone, the explanation left empty (the baseline)"
    )
    input_noise: float = option(
        0.0,
        "AR: Gaussian noise added to the input embeddings in training, its σ as a share of "
        "their root mean square",
        ge=0,
    )


def _context(config: SFTConfig) -> tuple[str, ...]:
    """The tables' context column, when the AR trained reads it (a fresh context AR, or
    a context AR trained on)."""
    reads = config.context or reads_context_at(config.model)
    return (CONTEXT_COLUMN,) if config.role == "ar" and reads else ()


def _check(config: SFTConfig) -> None:
    if config.role not in ("av", "ar"):
        raise NLAKitError(f"sft role must be 'av' or 'ar', got {config.role!r}")
    if config.separator and config.role != "av":
        raise NLAKitError("--separator is an AV setting (the AR strips separators); drop it.")
    if config.role != "av" and (config.injection_tokens != 1 or config.injection_mode != "repeat"):
        raise NLAKitError(
            "--injection-tokens/--injection-mode: AV settings (how the activation enters the "
            "AV's prompt; the AR reads text); drop them for `nlakit sft ar`."
        )
    ar_fields = ("prefix_augment", "token_dropout", "input_noise", "ar_blocks", "context")
    ar_only = [f for f in ar_fields if getattr(config, f)]
    if config.reconstructor != "transformer":
        ar_only.append("reconstructor")
    if ar_only and config.role != "ar":
        names = ", ".join("--" + f.replace("_", "-") for f in ar_only)
        raise NLAKitError(
            f"{names}: AR settings (a regularised AR); drop them for `nlakit sft av`."
        )
    if config.text_only and not config.context:
        raise NLAKitError("--text-only is the context AR's baseline: give --context N too.")
    if config.reconstructor == "linear" and (config.context or config.ar_blocks):
        raise NLAKitError(
            "--context and --ar-blocks shape a transformer AR; the linear AR reads the "
            "explanation's n-grams alone. Drop them, or --reconstructor linear."
        )
    if config.batch_size < 1 or config.grad_accum < 1 or config.steps < 1:
        raise NLAKitError("steps, batch_size and grad_accum must be ≥ 1")


class _Task:
    """What differs between AV and AR SFT: the data and the loss of a micro-batch."""

    def __init__(self, config: SFTConfig, model, table, ctx):
        self.config, self.model, self.table, self.ctx = config, model, table, ctx
        self.forward = wrap(model, ctx, config.parallel, M.blocks_of(model))
        if config.role == "av":
            self.targets = response_ids(model, table.columns["response"])
            self.lengths = [len(t) for t in self.targets]
            self.packed = M.packing_on(config.packing, model)
        else:
            self.texts = table.columns["explanation"]
            self.contexts = table.columns.get(CONTEXT_COLUMN)
            self.lengths = [len(t) for t in self.texts]

    def units(self, rows: list[int]) -> float:
        """What a step's loss is averaged over: response tokens (AV) or rows (AR)."""
        return float(sum(self.lengths[i] for i in rows)) if self.config.role == "av" else len(rows)

    def loss_sum(self, rows: list[int], step: int) -> torch.Tensor:
        vectors = self.table.vectors[rows]
        if self.config.role == "av":
            ids, mask = pad_responses(
                [self.targets[i] for i in rows], self.model.tokenizer.pad_token_id
            )
            logp = response_logprobs(
                self.model, vectors, ids, mask, forward=self.forward, packed=self.packed
            )
            return -(logp * mask.to(logp.device)).sum()
        texts = [self.texts[i] for i in rows]
        c = self.config
        # one draw per (step, micro-batch), the same after a resume
        generator = torch.Generator().manual_seed((c.seed * 1_000_003 + step) * 7919 + rows[0])
        if c.prefix_augment:
            texts = truncate_explanations(self.model.tokenizer, texts, c.prefix_augment, generator)
        if c.token_dropout:
            texts = drop_tokens(self.model.tokenizer, texts, c.token_dropout, generator)
        contexts = None if self.contexts is None else [self.contexts[i] for i in rows]
        enc = self.model.tokenize(texts, contexts)
        with M.embedding_noise(self.model.backbone, c.input_noise, generator):
            pred = self.forward(**enc)
        scale = self.model.meta.mse_scale_value
        return ar_loss(pred, vectors.to(pred.device), scale) * len(rows)


@torch.no_grad()
def evaluate(config: SFTConfig, model, tables: Path, baseline: FVEBaseline | None) -> dict:
    """Held-out loss on `eval.parquet` (for the AR also FVE and mean cosine)."""
    table = load_table(tables / table_file("eval"), ("response", "explanation", *_context(config)))
    n = min(config.eval_rows, len(table))
    model.eval()
    if config.role == "av":
        targets = response_ids(model, table.columns["response"][:n])
        total, count = 0.0, 0.0
        for start in range(0, n, 32):
            ids, mask = pad_responses(targets[start : start + 32], model.tokenizer.pad_token_id)
            logp = response_logprobs(model, table.vectors[start : min(start + 32, n)], ids, mask)
            total += float(-(logp * mask.to(logp.device)).sum())
            count += float(mask.sum())
        model.train()
        return {"eval_loss": total / count}
    contexts = table.columns.get(CONTEXT_COLUMN)
    pred = model.reconstruct(
        table.columns["explanation"][:n], contexts=None if contexts is None else contexts[:n]
    )
    gold = table.vectors[:n]
    errors = mse_nrm(pred, gold, model.meta.mse_scale_value)
    model.train()
    out = {"eval_loss": float(errors.mean()), "eval_cos": float(cosine(pred, gold).mean())}
    if baseline is not None:
        out["eval_fve"] = fve(errors, baseline)
    return out


def sft(config: SFTConfig) -> dict:
    """Run (or resume) SFT; returns the final evaluation."""
    _check(config)
    if config.separator:  # the tables must use the separator the AV is given
        path = Path(config.data) / table_file("av_sft")
        check_separators(load_table(path, ("response",)).columns["response"], path)
    if config.ar_blocks:  # a smaller AR: at most the K + 1 blocks an AR of layer K has
        layer = read_meta(Path(config.data) / table_file("ar_sft")).layer
        if config.ar_blocks > layer + 1:
            raise NLAKitError(
                f"--ar-blocks {config.ar_blocks}: the tables read block {layer}, so an AR has "
                f"1 … {layer + 1} blocks."
            )
    latest = prepare_run(config)  # before anything is written
    if config.reconstructor == "linear":
        from nlakit.train.linear import fit_linear_run

        return fit_linear_run(config)
    ctx = init_distributed(config.device)
    with run_lock(config.out, ctx.main):
        return _sft(config, ctx, latest)


def _sft(config: SFTConfig, ctx, latest: Path | None) -> dict:
    tables, out = Path(config.data), Path(config.out)
    table = load_table(
        tables / table_file(f"{config.role}_sft"),
        ("response",) if config.role == "av" else ("explanation", *_context(config)),
    )
    init = config.model or table.meta.extraction.base_model
    torch.manual_seed(config.seed)
    lora = M.LoraSettings.of(config)
    model = M.start(
        config.role,
        init,
        table.meta,
        ctx.device,
        config.dtype,
        lora,
        config.attention,
        separator=config.separator,
        shape=M.ARShape.of(config),
        injection=InjectionLayout.of_config(config),
    )
    check_agrees(model.meta, table.meta)
    model.train()
    task = _Task(config, model, table, ctx)
    sampler = BatchSampler(task.lengths, config.batch_size, config.seed)
    optimizer = M.optimizer_for(model, config.lr, config.weight_decay)
    scheduler = M.cosine_schedule(optimizer, config.warmup, config.steps)
    baseline = find_baseline(tables)
    logger = RunLogger(
        out,
        ctx.main,
        config.tensorboard,
        config.wandb,
        dataclasses.asdict(config),
        f"nlakit-sft-{config.role}",
    )
    step, skipped = 0, 0
    if latest is not None:
        state = ckpt.load_checkpoint(
            latest, {config.role: model}, {config.role: optimizer}, {config.role: scheduler}
        )
        step, skipped = state["step"], state["skipped_steps"]
        sampler.load_state(state["sampler"])
    logger.truncate_after(step)
    bar = tqdm(
        total=config.steps,
        initial=step,
        desc=f"sft {config.role}",
        disable=not (config.progress and ctx.main),
    )
    last_eval: dict = {}
    while step < config.steps:
        t0 = time.perf_counter()
        global_rows = sampler.next()
        rows = ctx.shard(global_rows)
        units = ctx.global_sum(task.units(rows))
        micro = [rows[i :: config.grad_accum] for i in range(config.grad_accum)]
        loss_total = 0.0
        for i, part in enumerate(micro):
            with accumulating(task.forward, ctx, i == len(micro) - 1), M.autocast(ctx.device):
                loss = task.loss_sum(part, step) / units * ctx.world
                loss.backward()
            loss_total += loss.detach().item() / ctx.world
        grad_norm, finite = M.clip_gradients(model, config.max_grad_norm)
        if ctx.any_over_ranks(not finite):
            skipped += 1
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        metrics = {
            "loss": ctx.global_sum(loss_total),
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": grad_norm,
            "skipped_steps": skipped,
            "step_seconds": time.perf_counter() - t0,
        }
        if (config.eval_every and step % config.eval_every == 0) or step == config.steps:
            # a sharded model needs every rank in its forwards
            if ctx.main or is_sharded(model):
                with forward_only(model):
                    last_eval = evaluate(config, model, tables, baseline)
            metrics.update(last_eval)
        logger.log(step, metrics)
        bar.update(1)
        bar.set_postfix(
            loss=f"{metrics['loss']:.3f}", **{k: f"{v:.3f}" for k, v in last_eval.items()}
        )
        if (config.save_every and step % config.save_every == 0) or step == config.steps:
            ckpt.save_checkpoint(
                out,
                step,
                {config.role: model},
                {config.role: optimizer},
                {config.role: scheduler},
                {"sampler": sampler.state(), "skipped_steps": skipped},
                keep=config.keep_checkpoints,
                main=ctx.main,
            )
            ctx.barrier()
    bar.close()
    model = M.for_export(model, config.role, init, table.meta, config, ctx.main)
    if ctx.main:
        (M.export_av if config.role == "av" else M.export_ar)(model, out / config.role)
    logger.close()
    shutdown(ctx)
    return last_eval
