"""Data parallelism with `torchrun`: one process per device, gradients averaged by DDP.

    torchrun --nproc_per_node 4 -m nlakit sft av --data tables --out runs/av

Each optimizer step takes one *global* batch; rank r trains on rows r, r + W, r + 2W,
… of it (W = world size), so a run gives the same result on any number of ranks.
Losses are normalised by global counts (`global_sum`), which makes DDP's gradient
average equal to the single-process gradient. On CPU the gloo backend is used; rank
0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nlakit.models import resolve_device


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


def wrap(module: torch.nn.Module, ctx: Dist) -> torch.nn.Module:
    """`module` wrapped for DDP when running on several ranks (else itself)."""
    if not ctx.active:
        return module
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def shutdown(ctx: Dist) -> None:
    if ctx.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
