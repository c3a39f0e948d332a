"""`nlakit adapt`: an AV adapted to a fine-tune of its target model — the NLA of the model
under study, for diffing and audits.

    nlakit adapt --av runs/demo/rl/av --tables runs/demo/tables \\
        --model worlds/tuned/model --out runs/demo-tuned-av --steps 300
    nlakit diff --av runs/demo-tuned-av/av/av --base runs/demo/world/model \\
        --tuned worlds/tuned/model --data ...

An AV reads its target model's activations. A fine-tune of that model moves them;
`adapt` continues the AV's SFT on the fine-tune's own activations at the rows the AV
was trained on, with the same explanations. Nothing is asked of the teacher again: an
explanation is of a text position, and the positions do not change, so the run's
explanations serve (a real teacher's as well as the oracle's).

The steps are the run's own, in order: extract (the run's extraction settings, another
model), the run's explanations, build (the run's templates), `sft av` from the AV. Each
is skipped when its output is there, so a killed adaptation resumes; the adapted AV is
`OUT/av/av`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from nlakit.config import DEVICE_HELP, Config, from_dict, option
from nlakit.errors import NLAKitError
from nlakit.store.names import BUILD_RECORD, EXPLANATIONS_DIR, MANIFEST, SIDECAR_NAME


@dataclass
class AdaptConfig(Config):
    """Continue an AV's SFT on a fine-tuned model's activations (same rows, same
    explanations)."""

    av: str = option(help="the AV to adapt (a run's rl/av or av_sft/av)")
    tables: str = option(help="the tables the AV was trained on (`nlakit build` output)")
    model: str = option(help="the fine-tuned model: a local directory or a Hub id")
    out: str = option(help="output directory (the adapted AV lands in OUT/av/av)")
    steps: int = option(300, "AV SFT steps on the fine-tuned model's activations", ge=1)
    lr: float = option(1e-3, "learning rate", gt=0)
    batch_size: int = option(16, "rows per step", ge=1)
    corpus: str | None = option(
        None, "the corpus the run extracted from, where its recorded path moved (toyworld:DIR …)"
    )
    seed: int = option(0, "batch order", ge=0)
    device: str | None = option(None, DEVICE_HELP)


def data_dir_of(tables: str | Path) -> Path:
    """The extraction directory the tables were built from."""
    tables = Path(tables)
    record = tables / BUILD_RECORD
    if not record.is_file():
        raise NLAKitError(
            f"--tables {tables}: no {BUILD_RECORD}; pass the directory `nlakit build` wrote."
        )
    recorded = json.loads(record.read_text())["config"]["data"]
    candidates = [Path(recorded), tables.parent / "data"]
    for path in candidates:
        if (path / MANIFEST).is_file() and (path / EXPLANATIONS_DIR).is_dir():
            return path
    raise NLAKitError(
        f"--tables {tables}: cannot find the extraction the tables were built from (tried "
        f"{', '.join(map(str, candidates))}); adapting the AV re-extracts at the same rows "
        "with the same explanations, so it needs that directory (manifest.json, explanations/)."
    )


def adapt(config: AdaptConfig) -> Path:
    """The AV after `steps` more SFT steps on the fine-tuned model's activations at the
    tables' rows (same explanations); returns the adapted AV's directory."""
    from nlakit.data.extract import ExtractConfig, extract
    from nlakit.data.tables import BuildConfig, build_tables
    from nlakit.train.sft import SFTConfig, sft

    dest = Path(config.out)
    av = dest / "av" / "av"
    if (av / SIDECAR_NAME).is_file():
        return av
    if not (Path(config.av) / SIDECAR_NAME).is_file():
        raise NLAKitError(f"--av {config.av}: not an AV directory (no {SIDECAR_NAME}).")
    source = data_dir_of(config.tables)  # checked before anything is written
    manifest = source / MANIFEST
    settings = json.loads(manifest.read_text())["config"]
    data = dest / "data"
    mine = {"model": config.model, "out": str(data), "device": config.device}
    if config.corpus:
        mine["corpus"] = config.corpus
    extract(from_dict(ExtractConfig, {**settings, **mine}, str(manifest)), progress=False)
    if not (data / EXPLANATIONS_DIR).exists():
        shutil.copytree(source / EXPLANATIONS_DIR, data / EXPLANATIONS_DIR)
    tables = dest / "tables"
    if not (tables / BUILD_RECORD).is_file():
        record = Path(config.tables) / BUILD_RECORD
        built = {**json.loads(record.read_text())["config"], "data": str(data), "out": str(tables)}
        build_tables(from_dict(BuildConfig, built, str(record)))
    sft(
        SFTConfig(
            role="av", model=config.av, data=str(tables), out=str(dest / "av"),
            steps=config.steps, batch_size=config.batch_size, lr=config.lr,
            warmup=min(20, config.steps // 10), eval_every=0, save_every=0,
            keep_checkpoints=1, resume=True, seed=config.seed, device=config.device,
        )
    )  # fmt: skip
    return av
