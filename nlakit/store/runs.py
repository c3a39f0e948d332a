"""A run directory's own files: the config snapshot and the metrics log, as the
training loops write them (`train/logger.py`) and eval and the model cards read them.

    run_config("runs/x")      # RUN/config.json as a dict ({} when the run has none)
    read_metrics("runs/x")    # RUN/metrics.jsonl, one dict per logged step ([] when none)
"""

from __future__ import annotations

import os
from pathlib import Path

from nlakit.store.names import METRICS_FILE, RUN_CONFIG
from nlakit.store.readers import read_json, read_jsonl


def run_config(run_dir: str | os.PathLike) -> dict:
    """The resolved config a run was started with; {} when it has none."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        return {}
    return read_json(
        path,
        what="the run's config snapshot",
        fix="It is written when a run starts; restore it or re-run the training command.",
    )


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """Every record of the run's metrics log, in order; [] when it has none."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return read_jsonl(
        path,
        what="one JSON record per logged step",
        fix="Delete the damaged lines (a resumed run rewrites them) or the file.",
    )
