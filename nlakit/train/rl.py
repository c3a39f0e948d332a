"""GRPO: the AV learns to write explanations the AR can reconstruct the activation from.

    nlakit rl --data TABLES --av RUN/av_sft/av --ar RUN/ar_sft/ar --out RUN/rl
    torchrun --nproc_per_node 8 -m nlakit rl ...          # data-parallel

Each step, top to bottom:

1. sample: B activations from `rl.parquet`, G explanations each from the batched
   sampler (temperature 1, top-p 1, top-k 0 by default), trimmed at the first EOS;
2. score: reward `-mse_nrm(AR(explanation), v) - λ·n_tokens` with the live AR and
   the true per-sample lengths; `-2` for a sample without a closing tag or cut at
   the length cap (`--reward matryoshka|random-k` score prefixes too: rewards.py);
3. advantages: normalised within each activation's group of G;
4. update the AV: clipped surrogate on per-token log-probs plus a k3 KL penalty to
   the frozen SFT AV (with LoRA, the AV with its adapters switched off *is* that
   reference: no second copy); a step whose gradients are not finite is skipped;
5. update the AR on the on-policy explanations (unless `freeze_ar`);
6. log (`metrics.jsonl`, timings of each phase), evaluate every `eval_every`
   steps, checkpoint every `save_every` steps.

`updates_per_batch` (μ) optimizer steps per batch of samples: the first has ratio 1
(the "old" policy is the current one), the later ones reuse the samples under the
clipped ratio to the policy that sampled them, as PPO's epochs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from nlakit.ar_context import CONTEXT_COLUMN, reads_context_at
from nlakit.card import CardFigures
from nlakit.config import ConfigError, option
from nlakit.engines import engine_problem, release_vllm
from nlakit.errors import NLAKitError
from nlakit.generation import SnapshotSampling, sample_explanations
from nlakit.linear_ar import is_linear_ar
from nlakit.meta import check_pair, read_meta
from nlakit.metrics import FVEBaseline, fve, mse_nrm
from nlakit.models import ActivationVerbalizer, check_role_at
from nlakit.separators import SEPARATOR, separator_of
from nlakit.store.names import BASELINE_FILE, ROLLOUT_SNAPSHOTS, SIDECAR_NAME, table_file
from nlakit.store.tables import check_agrees, load_table
from nlakit.train import checkpoint as ckpt
from nlakit.train import modules as M
from nlakit.train.config import TrainingConfig
from nlakit.train.data import BatchSampler, pad_responses, response_logprobs
from nlakit.train.distributed import (
    forward_only,
    gathered,
    init_distributed,
    is_sharded,
    shard,
    shutdown,
    wrap,
)
from nlakit.train.evaluation import evaluate_pair
from nlakit.train.logger import RunLogger
from nlakit.train.losses import (
    ADVANTAGE_NORMS,
    ar_loss,
    group_advantages,
    grpo_loss,
    moving_average,
    truncated_is_weights,
)
from nlakit.train.rewards import SHAPINGS, Shaping, shaped_rewards
from nlakit.train.run_dir import prepare_run, run_lock


@dataclass
class RLConfig(TrainingConfig):
    """GRPO of the AV against the AR (the shared fields: `TrainingConfig`)."""

    av: str = option(help="AV to start from (e.g. the SFT output RUN/av_sft/av)")
    ar: str = option(help="AR to start from (e.g. RUN/ar_sft/ar)")
    steps: int = option(200, "RL steps (the most, when max_seconds is set)", ge=1)
    max_seconds: float = option(
        0.0, "time budget: stop after this much training time, in seconds (0 = none)", ge=0
    )
    batch_size: int = option(8, "activations per step (global, over all ranks)", ge=1)
    group_size: int = option(
        8, "explanations sampled per activation (G; advantages are normalised within it)", ge=2
    )
    max_new_tokens: int = option(120, "length cap of a sample, in tokens", ge=1)
    temperature: float = option(
        1.0,
        "sampling temperature, training and evaluation (> 0: a greedy group cannot learn)",
        gt=0,
    )
    top_p: float = option(1.0, "nucleus sampling mass (1 = off)", gt=0, le=1)
    top_k: int = option(0, "sample among the k most likely tokens (0 = off)", ge=0)
    length_penalty: float = option(0.0, "λ: the reward loses λ per explanation token", ge=0)
    reward: str = option(
        "plain",
        "reward shaping (nlakit/train/rewards.py): plain (the whole explanation), "
        "matryoshka (a weighted mean over the prefixes of --prefix-lengths), random-k "
        "(one prefix per sample, of K tokens uniform on --k-min … --k-max), or separators "
        "(each nested prefix the AV closes with its separator token; needs an AV trained "
        "with `nlakit sft av --separator`)",
        choices=SHAPINGS,
    )
    prefix_lengths: str = option(
        "8 16 0", "matryoshka: prefix lengths in tokens, space-separated (0: the whole)"
    )
    prefix_weights: str = option(
        "", "matryoshka: a weight ≥ 0 per prefix length, space-separated (empty: equal)"
    )
    k_min: int = option(4, "random-k: the shortest prefix K, in tokens", ge=1)
    k_max: int = option(64, "random-k: the longest prefix K, in tokens", ge=1)
    kl_coef: float = option(
        0.02, "β of the k3 KL penalty to the SFT AV (0: no reference forward)", ge=0
    )
    clip_eps: float = option(0.2, "ε of the clipped surrogate", gt=0)
    advantage_norm: str = option(
        "std",
        "std: (r - group mean) / group std (GRPO); mean: r - group mean",
        choices=ADVANTAGE_NORMS,
    )
    lr: float = option(0.0, "AV learning rate (0: 3e-4 × 128 / d_model, see width_scaled_lr)", ge=0)
    ar_lr: float = option(1e-4, "AR learning rate (when co-trained: freeze_ar false)", ge=0)
    freeze_ar: bool = option(True, "keep the AR fixed (false: co-train it, as the official recipe)")
    warmup: int = option(10, "warm-up steps", ge=0)
    update_batch: int = option(64, "samples per forward/backward chunk", ge=1)
    updates_per_batch: int = option(
        1,
        "AV optimizer steps on each batch of samples (GRPO's μ): after the first, the "
        "clipped ratio to the sampling policy keeps the reused samples in bounds",
        ge=1,
    )
    engine: str = option(
        "hf",
        "rollout engine: hf (the trained AV itself) or vllm (a merged snapshot of it served "
        "by vLLM, synced every --sync-every steps; the update reweights those samples by "
        "truncated importance sampling)",
        choices=("hf", "vllm"),
    )
    sync_every: int = option(1, "vllm engine: steps between policy snapshots", ge=1)
    is_cap: float = option(
        2.0, "vllm engine: cap of the importance weights π_trainer / π_vllm per token", gt=0
    )
    eval_every: int = option(50, "steps between held-out evaluations (0 = only at the end)", ge=0)
    eval_rows: int = option(128, "held-out activations per evaluation", ge=1)
    save_every: int = option(50, "steps between checkpoints (0 = only at the end)", ge=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.shaping(SEPARATOR)  # a bad prefix list or K range is a ConfigError now
        if (problem := engine_problem(self.engine)) is not None:
            raise ConfigError(problem)
        if self.engine == "vllm" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError(
                "--engine vllm runs in a single process (vLLM holds the device beside "
                "the trainer); launch without torchrun, or use --engine hf."
            )

    def shaping(self, separator: str | None = None) -> Shaping:
        """The reward shaping these fields describe (`separator`: the AV's)."""
        try:
            lengths = tuple(int(x) for x in self.prefix_lengths.split())
            weights = tuple(float(x) for x in self.prefix_weights.split()) or None
            return Shaping(
                self.reward,
                lengths,
                weights,
                self.k_min,
                self.k_max,
                self.length_penalty,
                separator if self.reward == "separators" else None,
            )
        except ValueError as e:
            raise ConfigError(
                f"RLConfig: {e} (prefix_lengths {self.prefix_lengths!r}, prefix_weights "
                f"{self.prefix_weights!r}, k_min {self.k_min}, k_max {self.k_max})."
            ) from None


def _reference(av: ActivationVerbalizer):
    """The frozen SFT policy: the adapter-less AV (LoRA) or a frozen copy."""
    if M.has_adapters(av.model):
        return lambda: av.model.disable_adapter(), av
    return contextlib.nullcontext, ActivationVerbalizer(
        M.frozen_copy(av.model), av.tokenizer, av.meta
    )


def sampling_key(rank: int) -> str:
    """The name rank `rank`'s sampling generator is checkpointed under."""
    return f"sampling_rank{rank}"


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def rl(config: RLConfig) -> dict:
    """Run (or resume) GRPO; returns the last held-out evaluation."""
    if config.advantage_norm not in ADVANTAGE_NORMS:
        raise NLAKitError(
            f"advantage_norm: expected one of {ADVANTAGE_NORMS}, got {config.advantage_norm!r}."
        )
    if not config.lr >= 0:
        raise NLAKitError(f"lr: expected ≥ 0 (0 = scaled to the model's width), got {config.lr}.")
    check_role_at(config.av, "av")
    check_role_at(config.ar, "ar")
    if is_linear_ar(config.ar) and not config.freeze_ar:
        raise NLAKitError(
            f"{config.ar}: a linear AR is fitted in closed form, not co-trained; keep it "
            "frozen (--freeze-ar true), or refit it on new explanations with `nlakit sft ar "
            "--reconstructor linear`."
        )
    if config.reward == "separators" and separator_of(read_meta(config.av)) is None:
        raise NLAKitError(
            f"{config.av}: this AV has no separator token (its {SIDECAR_NAME} records none), "
            "so --reward separators has nothing to read. Train one with `nlakit sft av "
            "--separator` on explanations taught with `nlakit teach --separators`."
        )
    latest = prepare_run(config)  # before anything is written
    ctx = init_distributed(config.device)
    with run_lock(config.out, ctx.main):
        return _rl(config, ctx, latest)


def _rl(config: RLConfig, ctx, latest: Path | None) -> dict:
    tables, out = Path(config.data), Path(config.out)
    if config.batch_size % ctx.world:
        raise NLAKitError(f"batch_size {config.batch_size} must divide over {ctx.world} ranks")
    # a context AR reads the text before each row's token too
    context = (CONTEXT_COLUMN,) if reads_context_at(config.ar) else ()
    table = load_table(tables / table_file("rl"), context)
    held_table = load_table(tables / table_file("eval"), context)
    held_out = held_table.vectors[: config.eval_rows]
    held_contexts = held_table.columns[context[0]][: config.eval_rows] if context else None
    baseline = FVEBaseline.load(tables / BASELINE_FILE)
    torch.manual_seed(config.seed)
    lora = M.LoraSettings.of(config)
    settings = (ctx.device, config.dtype, lora, config.attention, config.load_in_4bit)
    av = M.start("av", config.av, table.meta, *settings)
    ar = M.start("ar", config.ar, table.meta, *settings)
    check_pair(av.meta, ar.meta)
    check_agrees(av.meta, table.meta)
    reference_mode, reference = _reference(av) if config.kl_coef > 0 else (None, None)
    av.train()
    ar.train()
    av_step = wrap(av, ctx, config.parallel, M.blocks_of(av))
    ar_step = wrap(ar, ctx, config.parallel, M.blocks_of(ar))
    if is_sharded(av) and reference is not None and reference is not av:
        shard(reference, M.blocks_of(reference), ctx)  # the frozen copy of a full fine-tune
    lr = config.lr or M.width_scaled_lr(table.meta.d_model)
    av_opt = M.optimizer_for(av, lr, config.weight_decay)
    clock = {"seconds": 0.0}  # training time so far (sample + score + update), resumed

    def progress(step: int) -> float:
        """How far the run is, 0 → 1: by steps, or by time when there is a budget."""
        done = (step - config.warmup) / max(config.steps - config.warmup, 1)
        if config.max_seconds > 0:
            done = max(done, clock["seconds"] / config.max_seconds)
        return done

    av_sched = torch.optim.lr_scheduler.LambdaLR(
        av_opt, lambda s: M.lr_factor(s, config.warmup, progress(s))
    )
    ar_opt = M.optimizer_for(ar, config.ar_lr, config.weight_decay)
    modules, opts, scheds = {"av": av, "ar": ar}, {"av": av_opt, "ar": ar_opt}, {"av": av_sched}
    sampler = BatchSampler([1] * len(table), config.batch_size, config.seed)
    generator = torch.Generator(device=ctx.device).manual_seed(config.seed * 1000 + ctx.rank)
    sampling = SnapshotSampling(
        config.temperature,
        config.top_p,
        config.top_k,
        config.max_new_tokens,
        batch_size=config.update_batch,
        engine=config.engine,
    )
    snapshots = out / ROLLOUT_SNAPSHOTS
    shutil.rmtree(snapshots, ignore_errors=True)  # a crashed run's; remade from the policy

    def sync(step: int) -> None:
        """vLLM serves a merged snapshot of the policy as it is at `step`."""
        nonlocal sampling
        if sampling.weights is not None:
            release_vllm(sampling.weights)
            shutil.rmtree(sampling.weights, ignore_errors=True)
        snapshot = M.for_export(av, "av", config.av, table.meta, config, True)
        path = M.export_av(snapshot, snapshots / ckpt.step_name(step), CardFigures())
        sampling = dataclasses.replace(sampling, weights=str(path))

    logger = RunLogger(
        out, ctx.main, config.tensorboard, config.wandb, dataclasses.asdict(config), "nlakit-rl"
    )
    step, skipped, reward_avg = 0, 0, None
    if latest is not None:
        state = ckpt.load_checkpoint(
            latest, modules, opts, scheds, {sampling_key(ctx.rank): generator}
        )
        step, skipped = state["step"], state["skipped_steps"]
        reward_avg = state.get("reward_avg")
        clock["seconds"] = state.get("train_seconds", 0.0)
        sampler.load_state(state["sampler"])
    logger.truncate_after(step)
    G, scale, shaping = (
        config.group_size,
        ar.meta.mse_scale_value,
        config.shaping(separator_of(av.meta)),
    )
    bar = tqdm(
        total=config.steps, initial=step, desc="rl", disable=not (config.progress and ctx.main)
    )
    last_eval: dict = {}
    while step < config.steps and not (0 < config.max_seconds <= clock["seconds"]):
        # 1. sample --------------------------------------------------------------------
        t0 = time.perf_counter()
        if config.engine == "vllm" and (sampling.weights is None or step % config.sync_every == 0):
            sync(step)
        batch_rows = ctx.shard(sampler.next())
        vectors = table.vectors[batch_rows].repeat_interleave(G, dim=0)
        contexts = None  # one per sample, for a context AR
        if context:
            contexts = [table.columns[context[0]][r] for r in batch_rows for _ in range(G)]
        av.eval()
        with gathered(av):
            samples = sample_explanations(av, vectors, sampling, generator)
        av.train()
        t1 = time.perf_counter()
        # 2. score ---------------------------------------------------------------------
        finished = torch.tensor([s.finished for s in samples])
        lengths = torch.tensor([s.n_tokens for s in samples], dtype=torch.float32)
        texts = [s.explanation or "" for s in samples]

        def score(batch: list[str], rows=None, vectors=vectors, contexts=contexts):
            gold = vectors if rows is None else vectors[rows]  # text i against gold[i]
            if contexts is not None and rows is not None:
                contexts = [contexts[i] for i in rows]
            return mse_nrm(ar.reconstruct(batch, contexts=contexts), gold, scale)

        with torch.no_grad(), forward_only(ar):
            reward, mse = shaped_rewards(
                shaping, texts, lengths, finished, score, av.tokenizer, generator
            )
        advantage = group_advantages(reward, G, config.advantage_norm)
        t2 = time.perf_counter()
        # 3. update the AV, `updates_per_batch` times on these samples ---------------------
        responses, mask = pad_responses([s.token_ids for s in samples], av.tokenizer.pad_token_id)
        total = ctx.global_sum(float(mask.sum())) / ctx.world  # DDP averages over ranks
        behaviour = None  # the sampler's own log-probs, when it is not the trainer
        if config.engine != "hf":
            behaviour = torch.nn.utils.rnn.pad_sequence(
                [s.logprobs for s in samples], batch_first=True
            )
        # per chunk: the log-probs of the policy that sampled (the ratio's "old") and of
        # the KL reference, both taken at the first update
        frozen: list[tuple[torch.Tensor, torch.Tensor]] = []
        for update in range(config.updates_per_batch):
            kl_sum = clip_sum = loss_sum = is_sum = 0.0
            for k, part in enumerate(_chunks(len(samples), config.update_batch)):
                with M.autocast(ctx.device):
                    logp = response_logprobs(
                        av, vectors[part], responses[part], mask[part], av_step
                    )
                if update == 0:
                    ref_logp = logp.detach()  # no KL penalty: the reference forward is skipped
                    if config.kl_coef > 0:
                        with torch.no_grad(), reference_mode(), forward_only(reference):
                            ref_logp = response_logprobs(
                                reference, vectors[part], responses[part], mask[part]
                            )
                    frozen.append((logp.detach(), ref_logp))
                old_logp, ref_logp = frozen[k]
                is_weights = None
                if behaviour is not None:
                    is_weights = truncated_is_weights(
                        logp, behaviour[part].to(logp.device), config.is_cap
                    )
                with M.autocast(ctx.device):
                    m = mask[part].to(logp.device)
                    loss, parts = grpo_loss(
                        logp,
                        old_logp,
                        ref_logp,
                        advantage[part].to(logp.device),
                        m,
                        config.clip_eps,
                        config.kl_coef,
                        total,
                        is_weights,
                    )
                loss.backward()
                weight = float(m.sum()) / max(float(mask.sum()), 1.0)
                if is_weights is not None:
                    is_sum += float((is_weights * m).sum()) / max(float(mask.sum()), 1.0)
                kl_sum += parts["kl"] * weight
                clip_sum += parts["clip_frac"] * weight
                loss_sum += loss.detach().item()
            av_norm, av_finite = M.clip_gradients(av, config.max_grad_norm)
            if ctx.any_over_ranks(not av_finite):
                skipped += 1
            else:
                av_opt.step()
            av_opt.zero_grad(set_to_none=True)
        av_sched.step()
        # 4. update the AR on the on-policy explanations ----------------------------------
        ar_loss_value = float("nan")
        usable = [i for i, s in enumerate(samples) if s.finished]
        n_usable = ctx.global_sum(len(usable))
        if not config.freeze_ar and n_usable > 0:
            # Weighted so that DDP's average over ranks is the mean over all usable
            # samples; a rank without any still joins the backward, with weight 0.
            weight = len(usable) / (n_usable / ctx.world)
            rows = usable or [0]
            with M.autocast(ctx.device):
                enc = ar.tokenize(
                    [texts[i] for i in rows],
                    None if contexts is None else [contexts[i] for i in rows],
                )
                loss = ar_loss(ar_step(**enc), vectors[rows].to(ar.device), scale)
                (loss * weight).backward()
            _, ar_finite = M.clip_gradients(ar, config.max_grad_norm)
            if not ctx.any_over_ranks(not ar_finite):
                ar_opt.step()
            ar_opt.zero_grad(set_to_none=True)
            ar_loss_value = loss.item()
        step += 1
        t3 = time.perf_counter()
        clock["seconds"] += ctx.mean_over_ranks(t3 - t0)  # one clock for every rank
        # 5. log, evaluate, checkpoint ---------------------------------------------------
        mean_reward = ctx.mean_over_ranks(float(reward.mean()))
        reward_avg = moving_average(reward_avg, mean_reward)
        metrics = {
            "reward": mean_reward,
            "reward_avg": reward_avg,  # exponential moving average (decay 0.9)
            "mse_nrm": ctx.mean_over_ranks(float(mse.mean())),
            "fve": fve(mse, baseline),
            "mean_tokens": float(lengths.mean()),
            "finished": float(finished.float().mean()),
            "kl": kl_sum,
            "clip_frac": clip_sum,
            **({"is_weight": is_sum} if behaviour is not None else {}),
            "loss": loss_sum,
            "ar_loss": ar_loss_value,
            "grad_norm": av_norm,
            "lr": av_sched.get_last_lr()[0],
            "skipped_steps": skipped,
            "seconds_generate": t1 - t0,
            "seconds_score": t2 - t1,
            "seconds_update": t3 - t2,
            "train_seconds": clock["seconds"],
        }
        last = step == config.steps or 0 < config.max_seconds <= clock["seconds"]
        evaluate_now = (config.eval_every and step % config.eval_every == 0) or last
        if evaluate_now and (ctx.main or is_sharded(av)):  # sharded: every rank takes part
            with gathered(av), forward_only(ar):
                # the policy as it is now (the vllm engine's snapshot may be older)
                now = dataclasses.replace(sampling, engine="hf", weights=None)
                result, _ = evaluate_pair(
                    av, ar, held_out, baseline, now, config.seed, held_contexts
                )
            last_eval = {f"eval_{k}": v for k, v in result.items()}
            metrics.update(last_eval)
        logger.log(step, metrics)
        bar.update(1)
        bar.set_postfix(
            reward=f"{reward_avg:.3f}",
            fve=f"{metrics['fve']:.3f}",
            tokens=f"{metrics['mean_tokens']:.0f}",
            kl=f"{kl_sum:.4f}",
        )
        if (config.save_every and step % config.save_every == 0) or last:
            # every rank's sampling stream, so that each resumes with its own
            streams = ctx.gather_objects(generator.get_state())
            ckpt.save_checkpoint(
                out,
                step,
                modules,
                opts,
                scheds,
                {
                    "sampler": sampler.state(),
                    "skipped_steps": skipped,
                    "reward_avg": reward_avg,
                    "train_seconds": clock["seconds"],
                },
                keep=config.keep_checkpoints,
                rng_states={f"gen_{sampling_key(r)}": st for r, st in enumerate(streams)},
                main=ctx.main,
            )
            ctx.barrier()
    bar.close()
    if sampling.weights is not None:
        release_vllm(sampling.weights)
        shutil.rmtree(snapshots, ignore_errors=True)
    av = M.for_export(av, "av", config.av, table.meta, config, ctx.main)
    ar = M.for_export(ar, "ar", config.ar, table.meta, config, ctx.main)
    if ctx.main:
        M.export_av(av, out / "av")
        M.export_ar(ar, out / "ar")
    logger.close()
    shutdown(ctx)
    return last_eval
