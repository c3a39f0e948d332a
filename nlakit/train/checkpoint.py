"""Step checkpoints: `RUN/step_000123/`, written atomically, enough to resume exactly.

A checkpoint holds, per trained module, its *trainable* parameters
(`{name}.safetensors`: the full weights for a full fine-tune, the adapters for
LoRA — frozen weights are rebuilt from the run's starting checkpoint), each
optimizer and scheduler state, the RNG states and `state.json` (the step, the data
sampler positions, counters). It is written to a temporary directory and renamed
into place, so a crash leaves either the whole checkpoint or none.

Every rank calls `save_checkpoint` and `load_checkpoint`: sharded (FSDP) modules
gather their weights and optimizer states to rank 0, which alone writes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from nlakit.errors import CheckpointError
from nlakit.store.readers import read_json, read_pt, read_safetensors
from nlakit.train.distributed import (
    assign,
    is_sharded,
    load_optimizer_state,
    optimizer_state,
    whole,
)

_STEP = re.compile(r"^step_(\d{6,})$")
# A checkpoint's files besides {name}.safetensors, .optimizer.pt and .scheduler.pt.
RNG_FILE, STATE_FILE = "rng.pt", "state.json"


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters, whole (sharded ones gathered: every rank must call)."""
    return {
        n: whole(p.detach()).cpu().contiguous()
        for n, p in module.named_parameters()
        if p.requires_grad
    }


def load_trainable(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    expected = {n for n, p in module.named_parameters() if p.requires_grad}
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors))[:3], sorted(set(tensors) - expected)[:3]
        raise CheckpointError(
            f"{where}: does not fit this run's trainable parameters (missing {missing}, "
            f"unexpected {extra}); resume with the settings the run was started with."
        )
    with torch.no_grad():
        for name, value in tensors.items():
            assign(module.get_parameter(name), value)


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    state.update({f"gen_{k}": g.get_state() for k, g in generators.items()})
    return state


def restore_rng(state: dict[str, torch.Tensor], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    for k, g in generators.items():
        if f"gen_{k}" not in state:
            raise KeyError(f"no saved state for the generator {k!r} (saved: {sorted(state)})")
        g.set_state(state[f"gen_{k}"])


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    modules: dict,
    optimizers: dict,
    schedulers: dict,
    state: dict,
    generators: dict | None = None,
    keep: int | None = None,
    rng_states: dict[str, torch.Tensor] | None = None,
    main: bool = True,
) -> Path:
    """Write `RUN/step_{step}/` atomically; keep only the newest `keep` checkpoints.

    `generators` are saved by name; `rng_states` adds states gathered elsewhere (other
    ranks' generators, as `gen_NAME`). Optimizers are named as their modules. Under
    several ranks every rank calls it, and only the `main` one writes."""
    run_dir = Path(run_dir)
    weights = {
        name: trainable_state(module)
        for name, module in modules.items()
        if main or is_sharded(module)
    }
    optimizer_states = {
        name: optimizer_state(modules[name], optimizer)
        for name, optimizer in optimizers.items()
        if main or is_sharded(modules[name])
    }
    final = run_dir / step_name(step)
    if not main:
        return final
    tmp = run_dir / f".{step_name(step)}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, tensors in weights.items():
        save_file(tensors, str(tmp / f"{name}.safetensors"))
    for name, saved in optimizer_states.items():
        torch.save(saved, tmp / f"{name}.optimizer.pt")
    for name, scheduler in schedulers.items():
        torch.save(scheduler.state_dict(), tmp / f"{name}.scheduler.pt")
    torch.save({**rng_state(generators or {}), **(rng_states or {})}, tmp / RNG_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep is not None:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and _STEP.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(
    path: Path, modules: dict, optimizers: dict, schedulers: dict, generators: dict | None = None
) -> dict:
    """Restore everything `save_checkpoint` wrote; returns `state.json`."""
    fix = f"The checkpoint is damaged: delete {path} to resume from an earlier one (or the start)."
    for name, module in modules.items():
        weights = read_safetensors(path / f"{name}.safetensors", f"the {name}'s weights", fix)
        load_trainable(module, weights, str(path / name))
    for name, optimizer in optimizers.items():
        state = read_pt(path / f"{name}.optimizer.pt", f"the {name} optimizer's state", fix)
        load_optimizer_state(modules[name], optimizer, state)
    for name, scheduler in schedulers.items():
        state = read_pt(path / f"{name}.scheduler.pt", f"the {name} scheduler's state", fix)
        scheduler.load_state_dict(state)
    try:
        restore_rng(read_pt(path / RNG_FILE, "the RNG states", fix), generators or {})
    except KeyError as exc:
        raise CheckpointError(
            f"{path / RNG_FILE}: {exc.args[0]}; resume with the number of ranks (and the "
            "nlakit version) the run was started with."
        ) from None
    return read_json(path / STATE_FILE, "the checkpoint's state (step, sampler)", fix)
