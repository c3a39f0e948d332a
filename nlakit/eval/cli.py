"""`nlakit eval`, `nlakit analyze NAME`, `nlakit sweep length|ordering|variants` and `nlakit report`.

nlakit eval --run RUN [--run RUN2 ...] [--data eval.parquet]   per-row table, FVE, controls
nlakit analyze tokens|format|ablation|stego|text-baseline|prefix|truth --run RUN
nlakit analyze all --run RUN                                   every analysis, then the report
nlakit sweep length --run RUN [--lambdas 0 0.01 0.02 0.04] [--budget equal-time]
nlakit sweep ordering --run RUN [--methods plain length matryoshka random-k]
nlakit sweep variants --run RUN [--variants plain control linear context]
nlakit report RUN                                              one page: Markdown and HTML
"""

from __future__ import annotations

import json

from nlakit.config import DEVICE_HELP
from nlakit.config_cli import add_config, config_from_args
from nlakit.errors import require
from nlakit.eval.analyses import ANALYSES, SWEEPS
from nlakit.eval.analyses import load as _load

# Sweep fields that take several words after their flag (joined with spaces).
LISTS = {
    "lambdas": "length penalties λ, reward per token",
    "methods": "the methods to compare",
    "variants": "the AR variants to compare",
}


def _headline(summary: dict, limit: int = 12) -> str:
    numbers = [
        f"{k} {v:+.4f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    return ", ".join(numbers[:limit])


def analyze_all(run: str, device: str | None = None, skip_missing: bool = True) -> dict:
    """Every analysis of `ANALYSES` that applies to the run, then the report."""
    from nlakit.errors import NLAKitError
    from nlakit.eval.report import ReportConfig, report

    done = {}
    for name, spec in ANALYSES.items():
        config_cls, entry = _load(spec)
        fields = config_cls.__dataclass_fields__
        options = {"device": device} if "device" in fields else {}
        try:
            done[name] = entry(config_cls(run=run, **options))
        except NLAKitError as exc:
            if not skip_missing:
                raise
            print(f"  {name}: skipped ({exc})")
            continue
        print(f"  {name}: {_headline(done[name], 6)}")
    done["report"] = report(ReportConfig(run=run))
    return done


def _cmd_eval(args) -> None:
    require("matplotlib", "plots", "`nlakit eval` (its plot.png)")  # before any work
    import dataclasses

    from nlakit.eval.cross import cross_table, print_cross
    from nlakit.eval.evaluate import EvalConfig, evaluate, print_eval

    runs = args.run
    base = config_from_args(EvalConfig, args, run=runs[0])
    for run in runs:
        summary = evaluate(dataclasses.replace(base, run=run))
        print(f"\n{run}")
        print_eval(summary)
        print(f"wrote {run}/eval/ (rows.parquet, summary.json, table.csv, plot.png)")
    if len(runs) > 1:
        summary = cross_table(runs, base.bootstrap, base.seed, base.device, base.dtype)
        print_cross(summary)
        print(f"wrote {runs[0]}/eval/cross/")


def _cmd_analyze(args) -> None:
    require("matplotlib", "plots", "`nlakit analyze` (its plot.png)")  # before any work
    if args.name == "all":
        analyze_all(args.run, getattr(args, "device", None))
        print(f"wrote {args.run}/eval/report/report.html")
        return
    spec = ANALYSES[args.name]
    config_cls, entry = _load(spec)
    config = config_from_args(config_cls, args)
    summary = entry(config)
    print(f"{args.name}: {_headline(summary)}")
    print(f"wrote {config.run}/eval/{spec.out_dir}/ (table.csv, summary.json, plot.png)")


def _cmd_sweep(args) -> None:
    require("matplotlib", "plots", "`nlakit sweep` (its plot.png)")  # before any work
    spec = SWEEPS[args.kind]
    config_cls, entry = _load(spec)
    given = {k: " ".join(getattr(args, k)) for k in LISTS if getattr(args, k, None)}
    config = config_from_args(config_cls, args, **given)
    summary = entry(config)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, list | dict)}))
    where = getattr(config, "out", None) or f"{config.run}/eval/{spec.out_dir}"
    if getattr(config, "curriculum", False):
        where += "/curriculum"
    print(f"wrote {where}/ (table.csv, summary.json, plot.png)")


def _cmd_report(args) -> None:
    from nlakit.eval.report import ReportConfig, report

    result = report(config_from_args(ReportConfig, args, run=args.run_dir))
    print(f"wrote {result['markdown']} and {result['html']}")


def register(sub, chosen: str | None, second: str | None) -> None:
    p = sub.add_parser("eval", help="evaluate a run: per-row table, FVE with CI and controls")
    p.set_defaults(func=_cmd_eval)
    if chosen == "eval":
        from nlakit.eval.evaluate import EvalConfig

        p.add_argument(
            "--run", action="append", required=True, help="run directory (repeat: cross table)"
        )
        add_config(p, EvalConfig, skip=("run",))

    p = sub.add_parser("analyze", help="one analysis of an evaluated run (or all of them)")
    p.add_argument("name", choices=[*ANALYSES, "all"], help="which analysis")
    p.set_defaults(func=_cmd_analyze)
    if chosen == "analyze":
        if second in ANALYSES:
            add_config(p, _load(ANALYSES[second])[0])
        else:
            p.add_argument("--run", required=True, help="run directory (after nlakit eval)")
            p.add_argument("--device", help=DEVICE_HELP)

    p = sub.add_parser("sweep", help="re-run RL over a setting and plot the trade-off")
    p.add_argument("kind", choices=list(SWEEPS), help="what to sweep")
    p.set_defaults(func=_cmd_sweep)
    if chosen == "sweep" and second in SWEEPS:
        config_cls = _load(SWEEPS[second])[0]
        fields = config_cls.__dataclass_fields__
        lists = [k for k in LISTS if k in fields]
        add_config(p, config_cls, skip=tuple(lists))
        for name in lists:  # several words after the flag: --lambdas 0 0.01
            p.add_argument(
                f"--{name}", nargs="+", help=f"{LISTS[name]} (default: {fields[name].default})"
            )

    p = sub.add_parser("report", help="one page (Markdown and HTML) of every analysis of a run")
    p.add_argument("run_dir", metavar="RUN", help="run directory")
    p.set_defaults(func=_cmd_report)
    if chosen == "report":
        from nlakit.eval.report import ReportConfig

        add_config(p, ReportConfig, skip=("run",))
