"""Where an RL step's time goes: generation, scoring, update (on the toy world).

    make demo && python bench/rl_step.py --run runs/demo [--steps 6] [--device cuda]
    python bench/rl_step.py --tables T --av AV_DIR --ar AR_DIR

Runs `nlakit rl` for a few steps from the run's SFT pair (into a temporary
directory, so the run is untouched), reads the per-step timings the loop logs in
`metrics.jsonl`, and prints each phase's mean seconds and share of the step; the
first step (warm-up) is left out of the means.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from nlakit.store.runs import read_metrics
from nlakit.train.rl import RLConfig, rl

PHASES = ("generate", "score", "update")


def phase_means(records: list[dict], skip: int = 1) -> dict[str, float]:
    """Mean seconds per phase over `records` (after the first `skip` steps)."""
    timed = records[skip:] or records
    return {p: sum(r[f"seconds_{p}"] for r in timed) / len(timed) for p in PHASES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="a demo run (tables/, av_sft/, ar_sft/)")
    ap.add_argument("--tables")
    ap.add_argument("--av")
    ap.add_argument("--ar")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8, help="activations per step")
    ap.add_argument("--group", type=int, default=8, help="samples per activation (G)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    run = Path(args.run)
    tables = Path(args.tables or run / "tables")
    av = Path(args.av or run / "av_sft" / "av")
    ar = Path(args.ar or run / "ar_sft" / "ar")
    for path in (tables, av, ar):
        if not path.exists():
            raise SystemExit(f"{path}: missing; run `make demo` first or pass --tables/--av/--ar")

    with tempfile.TemporaryDirectory() as out:
        rl(
            RLConfig(
                data=str(tables),
                av=str(av),
                ar=str(ar),
                out=out,
                steps=args.steps,
                batch_size=args.batch,
                group_size=args.group,
                max_new_tokens=args.max_new_tokens,
                eval_every=args.steps + 1,
                eval_rows=2,
                save_every=0,
                device=args.device,
                progress=False,
            )
        )
        records = [r for r in read_metrics(out) if "seconds_generate" in r]
    means = phase_means(records)
    total = sum(means.values())
    print(
        f"RL step on {args.device}: {args.batch} activations × {args.group} samples, "
        f"cap {args.max_new_tokens} tokens, mean of {max(len(records) - 1, 1)} steps"
    )
    for phase in PHASES:
        print(f"  {phase:<9} {means[phase]:7.3f} s  {means[phase] / total:6.1%}")
    print(f"  {'step':<9} {total:7.3f} s")
    print(f"generation / update ratio: {means['generate'] / means['update']:.2f}×")


if __name__ == "__main__":
    main()
