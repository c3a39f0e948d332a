"""Run logging: `metrics.jsonl` always; TensorBoard and Weights & Biases when asked.

Both optional backends are off by default and need no network when off. On ranks
other than 0 every method does nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nlakit.atomic import write_json
from nlakit.errors import NLAKitError
from nlakit.store.names import METRICS_FILE, RUN_CONFIG

# TensorBoard and wandb are imported only when asked for: both are optional packages.


class RunLogger:
    def __init__(
        self,
        run_dir: str | os.PathLike,
        enabled: bool = True,
        tensorboard: bool = False,
        wandb: bool = False,
        config: dict | None = None,
        name: str = "nlakit",
    ):
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE  # read back by `nlakit.store.read_metrics`
        self._tb = self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if config is not None:  # the resolved config snapshot (what `nlakit eval` reads)
            write_json(Path(run_dir) / RUN_CONFIG, {k: _plain(v) for k, v in config.items()})
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise NLAKitError(
                    "--tensorboard needs the `tensorboard` package: pip install tensorboard"
                ) from None
            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError:
                raise NLAKitError("--wandb needs the `wandb` package: pip install wandb") from None
            self._wandb = wandb_module.init(project=name, config=config or {}, dir=str(run_dir))

    def log(self, step: int, metrics: dict) -> None:
        """Append one record `{"step": step, **metrics}`."""
        if not self.enabled:
            return
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        numbers = {k: v for k, v in record.items() if isinstance(v, int | float) and k != "step"}
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run writes them again)."""
        if not self.enabled or not self.path.exists():
            return
        keep = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= step
        ]
        self.path.write_text("".join(line + "\n" for line in keep))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value
