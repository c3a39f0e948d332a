"""`nlakit extract`, `nlakit teach` and `nlakit build`."""

from __future__ import annotations

from nlakit.config_cli import add_config, config_from_args
from nlakit.errors import NLAKitError


def _cmd_extract(args) -> None:
    from nlakit.data.extract import ExtractConfig, extract

    config = config_from_args(ExtractConfig, args)
    manifest = extract(config)
    stats, result = manifest["stats"], manifest["result"]
    print(
        f"extracted {result['rows']} rows from {stats.get('docs', 0)} documents "
        f"({stats.get('records_read', 0)} records read, {stats.get('empty', 0)} empty, "
        f"{stats.get('short', 0)} shorter than min_pos={result['min_pos']}) into "
        f"{len(manifest['shards'])} shard(s) at {config.out}"
    )
    print(
        f"mean activation norm {result['mean_norm']:.3f} → suggested injection_scale "
        f"{result['injection_scale']:g} (recorded in {config.out}/nla_meta.yaml)"
    )


def _cmd_teach(args) -> None:
    from nlakit.data.teach import TeachConfig, teach

    report = teach(config_from_args(TeachConfig, args))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report["status_counts"].items()))
    cost = report.get("cost_usd")
    print(
        f"teacher {report['teacher']}: {report['requests']} rows ({counts}); "
        f"{report['calls']} paid calls, {report['cache_hits']} from the cache; "
        f"{report['input_tokens']} input + {report['output_tokens']} output tokens"
        + (f", ${cost:.4f}" if cost is not None else ", cost unknown (pass --price-*)")
    )
    print(f"wrote {report['explanations']}")
    failures = report.get("failures") or {}
    if failures:
        causes = ", ".join(f"{cause} {n}" for cause, n in failures.items())
        raise NLAKitError(
            f"--teacher {report['teacher']}: {sum(failures.values())} of {report['requests']} "
            f"requests failed ({causes}); the rest are written. Fix the cause and run the same "
            "command again: finished answers come from the cache, only the failed are asked."
        )


def _cmd_build(args) -> None:
    from nlakit.data.tables import BuildConfig, build_tables

    config = config_from_args(BuildConfig, args)
    record = build_tables(config)
    rows = ", ".join(f"{k} {v}" for k, v in record["rows"].items())
    state = " (cached)" if record["cached"] else ""
    print(
        f"tables at {config.out}{state}: {rows}; {record['rows_without_explanation']} rows "
        f"dropped for lack of an ok explanation"
    )
    print(
        f"FVE baseline: variance {record['baseline']['variance']:.4f} over n={record['baseline']['n']}"
        f" training rows (baseline.json); marker {record['injection_char']!r}"
    )


def _config_class(name: str):
    import importlib

    module, _, cls = name.partition(":")
    return getattr(importlib.import_module(module), cls)


VERBS = {  # verb: (help, config class, command)
    "extract": (
        "sample positions and extract layer-K activations",
        "nlakit.data.extract:ExtractConfig",
        _cmd_extract,
    ),
    "teach": (
        "have a teacher explain every extracted row",
        "nlakit.data.teach:TeachConfig",
        _cmd_teach,
    ),
    "build": (
        "write the av_sft / ar_sft / rl / eval tables",
        "nlakit.data.tables:BuildConfig",
        _cmd_build,
    ),
}


def register(sub, chosen: str | None) -> None:
    """Add the data verbs; only the `chosen` one imports its module to get its options."""
    for name, (text, config, command) in VERBS.items():
        p = sub.add_parser(name, help=text)
        p.set_defaults(func=command)
        if name == chosen:
            add_config(p, _config_class(config))
