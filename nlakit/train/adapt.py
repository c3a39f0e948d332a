"""An AV adapted to a fine-tune of its target model: the NLA of the model under audit.

The run's AV reads its target model's activations. A fine-tune of that model (the model
an auditor studies) moves them; `adapt_av` continues the AV's SFT on the fine-tune's own
activations at the rows the AV was trained on, with the same explanations. Nothing is
asked of the teacher again: an explanation is of a text position, and the positions do
not change, so the run's explanations serve (a real teacher's as well as the oracle's).

    av_dir = adapt_av(paths, "worlds/tuned/model", "runs/demo/eval/audit/adapted/x", steps=300)

The steps are the run's own, in order: extract (`nlakit extract`, the run's settings and
another model), the run's explanations, `nlakit build` (its templates), `nlakit sft av`
from the run's AV. Each is skipped when its output is there, so a killed adaptation
resumes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from nlakit.errors import NLAKitError
from nlakit.store.names import BUILD_RECORD, EXPLANATIONS_DIR, MANIFEST, SIDECAR_NAME


def run_data_dir(paths) -> Path:
    """The extraction directory the run's tables were built from."""
    record = Path(paths.tables) / BUILD_RECORD
    recorded = json.loads(record.read_text())["config"]["data"] if record.is_file() else None
    candidates = [Path(recorded)] if recorded else []
    candidates += [Path(paths.tables).parent / "data", Path(paths.root) / "data"]
    for path in candidates:
        if (path / MANIFEST).is_file():
            return path
    raise NLAKitError(
        f"{paths.root}: cannot find the extraction its tables were built from (tried "
        f"{', '.join(map(str, candidates))}); adapting the AV re-extracts at the same rows, "
        "so it needs that directory (its manifest.json and explanations)."
    )


def adapt_av(
    paths, model_dir, dest, steps: int, lr: float = 1e-3, seed: int = 0, device=None
) -> Path:
    """The run's AV after `steps` more SFT steps on `model_dir`'s activations at the run's
    rows (same explanations); returns the adapted AV's directory (cached in `dest`)."""
    from nlakit.data.extract import ExtractConfig, extract
    from nlakit.data.tables import BuildConfig, build_tables
    from nlakit.train.sft import SFTConfig, sft

    dest = Path(dest)
    av = dest / "av" / "av"
    if (av / SIDECAR_NAME).is_file():
        return av
    source = run_data_dir(paths)
    settings = json.loads((source / MANIFEST).read_text())["config"]
    if paths.world is not None:  # the toy world as the run found it, wherever it now is
        settings["corpus"] = f"toyworld:{paths.world}"
    data = dest / "data"
    known = {f.name for f in dataclasses.fields(ExtractConfig)}
    extract(
        ExtractConfig(**{
            **{k: v for k, v in settings.items() if k in known},
            "model": str(model_dir), "out": str(data), "device": device,
        }),
        progress=False,
    )  # fmt: skip
    if not (data / EXPLANATIONS_DIR).exists():
        shutil.copytree(source / EXPLANATIONS_DIR, data / EXPLANATIONS_DIR)
    built = json.loads((Path(paths.tables) / BUILD_RECORD).read_text())["config"]
    tables = dest / "tables"
    if not (tables / BUILD_RECORD).is_file():
        known = {f.name for f in dataclasses.fields(BuildConfig)}
        build_tables(
            BuildConfig(**{
                **{k: v for k, v in built.items() if k in known},
                "data": str(data), "out": str(tables),
            })
        )  # fmt: skip
    sft(
        SFTConfig(
            role="av", model=str(paths.av), data=str(tables), out=str(dest / "av"),
            steps=steps, batch_size=16, lr=lr, warmup=min(20, steps // 10), eval_every=0,
            save_every=0, keep_checkpoints=1, resume=True, seed=seed, device=device,
        )
    )  # fmt: skip
    return av
