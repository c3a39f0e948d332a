"""A training run's directory, checked before the first write (both loops call this).

    latest = prepare_run(config, kind="sft av")   # None: a new run; else the checkpoint to resume
    with run_lock(out, ctx):                      # one writer while training
        ...

A directory that holds a run (its `config.json`, `metrics.jsonl` or a step checkpoint)
is only continued with `--resume`, only by a run of the same kind, and only with the
settings it was started with: a changed setting is refused by name unless
`--allow-changes` lists it. Nothing is written before these checks pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from nlakit.errors import NLAKitError
from nlakit.store.guard import changed_settings, check_output_dir, locked
from nlakit.store.names import METRICS_FILE, RUN_CONFIG
from nlakit.store.runs import run_config
from nlakit.train import checkpoint as ckpt

# Settings that may differ on --resume without being named: they change how a run is
# watched or where it runs, not what it computes.
RUNTIME_FIELDS = ("resume", "allow_changes", "progress", "device", "tensorboard", "wandb")


def run_kind(config: dict) -> str:
    """'sft av', 'sft ar' or 'rl', from a config snapshot."""
    return f"sft {config['role']}" if "role" in config else "rl"


def holds_run(out: Path) -> bool:
    return (
        (out / RUN_CONFIG).is_file()
        or (out / METRICS_FILE).is_file()
        or ckpt.latest_checkpoint(out) is not None
    )


def allowed_changes(text: str) -> list[str]:
    return [name.strip().replace("-", "_") for name in text.split(",") if name.strip()]


def prepare_run(config) -> Path | None:
    """Check `config.out` for this run; returns the checkpoint to resume from (None: start)."""
    out = check_output_dir(config.out, "--out")
    new = dataclasses.asdict(config)
    unknown = [n for n in allowed_changes(config.allow_changes) if n not in new]
    if unknown:
        raise NLAKitError(
            f"--allow-changes: no setting named {', '.join(unknown)}; name fields such as "
            "steps,lr (the options without their dashes)."
        )
    if not holds_run(out):
        return None
    latest = ckpt.latest_checkpoint(out)
    where = latest.name if latest is not None else "no checkpoint yet"
    if not config.resume:
        raise NLAKitError(
            f"--out {out}: holds a run already ({where}); pass --resume to continue it, "
            "or choose another --out."
        )
    old = run_config(out)
    if old and run_kind(old) != run_kind(new):
        raise NLAKitError(
            f"{out / RUN_CONFIG}: holds an `nlakit {run_kind(old)}` run, not an "
            f"`nlakit {run_kind(new)}` one; choose another --out."
        )
    diff = changed_settings(
        old, new, allowed=allowed_changes(config.allow_changes), ignore=RUNTIME_FIELDS
    )
    if diff:
        names = ",".join(d.split(":")[0] for d in diff)
        raise NLAKitError(
            f"{out / RUN_CONFIG}: --resume with settings other than the run's "
            f"({'; '.join(diff)}); resume with the run's settings, or pass "
            f"--allow-changes {names} to change them."
        )
    return latest


@contextlib.contextmanager
def run_lock(out: str | Path, main: bool = True):
    """Hold the run directory's lock on the main rank (other ranks write nothing)."""
    if not main:
        yield
        return
    with locked(out, "run directory"):
        yield
