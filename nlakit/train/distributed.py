"""Data parallelism with `torchrun`: one process per device, gradients averaged over ranks.

    torchrun --nproc_per_node 4 -m nlakit sft av --data tables --out runs/av
    torchrun --nproc_per_node 8 -m nlakit rl ... --parallel fsdp

Each optimizer step takes one *global* batch; rank r trains on rows r, r + W, r + 2W,
… of it (W = world size), so a run gives the same result on any number of ranks.
Losses are normalised by global counts (`global_sum`), which makes the gradient
average over ranks equal to the single-process gradient. On CPU the gloo backend is
used; rank 0 alone logs and writes checkpoints.

Two ways to spread a model (`--parallel`):

- `ddp`: every rank holds the whole model; `DistributedDataParallel` averages the
  gradients.
- `fsdp`: FSDP2 (`fully_shard`): each decoder block is its own unit and the rest of
  the module (embedding, final norm, LM head or value head) the root unit, so a rank
  holds 1/W of every weight, gradient and optimizer state, and gathers one block at a
  time. The AV, its frozen reference and the AR are sharded alike. Code that touches
  weights outside the module's own forward (generation builds the injected prompt
  embeddings itself) runs inside `gathered(...)`; checkpoints gather the trainable
  weights (`full_tensor`) and the optimizer state (`torch.distributed.checkpoint`'s
  full state dicts) to rank 0.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from nlakit.models import resolve_device

PARALLEL = ("ddp", "fsdp")


@dataclass
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, rows: list[int]) -> list[int]:
        """This rank's part of a global batch."""
        return rows[self.rank :: self.world]

    def global_sum(self, value: float) -> float:
        """The sum of `value` over ranks."""
        if not self.active:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return float(t.item())

    def mean_over_ranks(self, value: float) -> float:
        return self.global_sum(value) / self.world

    def any_over_ranks(self, flag: bool) -> bool:
        return self.global_sum(1.0 if flag else 0.0) > 0

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def gather_objects(self, value) -> list:
        """`value` of every rank, in rank order (on every rank)."""
        if not self.active:
            return [value]
        out = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_distributed(device: str | None = None) -> Dist:
    """Join the process group when launched by `torchrun` (else a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(0, 1, resolve_device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, dev)


def wrap(
    module: nn.Module, ctx: Dist, parallel: str = "ddp", blocks: Iterable[nn.Module] = ()
) -> nn.Module:
    """`module` ready for several ranks (itself on one): under DDP its wrapper (call
    that for training forwards); under FSDP the module itself, sharded in place —
    each of `blocks` one unit, the rest the root unit."""
    if not ctx.active:
        return module
    if parallel == "fsdp":
        return shard(module, blocks, ctx)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def shard(module: nn.Module, blocks: Iterable[nn.Module], ctx: Dist) -> nn.Module:
    """FSDP2 over `ctx`'s ranks: each block a unit, then `module` as the root. On GPU
    the weights are gathered in bf16 and gradients reduced in fp32 (so adapters kept
    in fp32 beside a bf16 base gather as one dtype)."""
    policy = MixedPrecisionPolicy()
    if ctx.device.type == "cuda":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(module, mp_policy=policy)
    return module


def is_sharded(module: nn.Module) -> bool:
    return isinstance(module, FSDPModule)


def _units(module: nn.Module) -> list[FSDPModule]:
    return [m for m in module.modules() if isinstance(m, FSDPModule)]


@contextmanager
def gathered(module: nn.Module) -> Iterator[None]:
    """Inside the block every weight of a sharded `module` is whole on every rank (a
    no-op for a module that is not sharded), and on leaving it every weight is sharded
    again. For generation, which builds prompt embeddings outside the module's forward
    and would otherwise gather every block again at every decoding step. Every rank
    must enter it."""
    units = _units(module)
    if units:
        # FSDP sets itself up on the root's first forward; a generation may reach the
        # blocks first, so the root is set up here (FSDP's own private step)
        module._get_fsdp_state()._lazy_init()
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            # the root keeps FSDP's own default: not resharded between forward and backward
            unit.set_reshard_after_forward(unit is not module, recurse=False)
            unit.reshard()


@contextmanager
def forward_only(module: nn.Module) -> Iterator[None]:
    """Around forwards that no backward follows (scoring, the KL reference,
    evaluation) of a sharded `module`: FSDP keeps the root unit gathered after a
    forward, for the backward it expects; on leaving, it is sharded again."""
    try:
        yield
    finally:
        if isinstance(module, FSDPModule):
            module.reshard()


def accumulating(module: nn.Module, ctx: Dist, sync: bool):
    """A context for one micro-batch's backward: gradients are averaged over ranks only
    when `sync` (the last micro-batch of a step)."""
    if not ctx.active or sync:
        return nullcontext()
    if isinstance(module, nn.parallel.DistributedDataParallel):
        return module.no_sync()
    return _no_gradient_sync(module)


@contextmanager
def _no_gradient_sync(module: FSDPModule) -> Iterator[None]:
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """The full tensor of a sharded parameter or gradient (a collective); else itself."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def assign(param: torch.Tensor, value: torch.Tensor) -> None:
    """Copy a full `value` into a parameter, this rank's shard of it when sharded."""
    if isinstance(param, DTensor):
        value = distribute_tensor(
            value.to(param.to_local().device), param.device_mesh, param.placements
        )
    param.copy_(value)


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state to save: whole (on rank 0) when `module` is sharded —
    every rank must call it then."""
    if not is_sharded(module):
        return optimizer.state_dict()
    return get_optimizer_state_dict(module, optimizer, options=_FULL)


def load_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Restore what `optimizer_state` returned (every rank passes the whole state)."""
    if not is_sharded(module):
        optimizer.load_state_dict(state)
    else:
        set_optimizer_state_dict(
            module, optimizer, state, options=StateDictOptions(full_state_dict=True)
        )


def shutdown(ctx: Dist) -> None:
    if ctx.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
