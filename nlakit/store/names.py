"""The fixed file names of nlakit's artifacts. Every stage writes and reads them by
these names, so a name is changed here or nowhere.

    MODEL_DIR/      config.json, *.safetensors, tokenizer files, nla_meta.yaml,
                    value_head.safetensors (an AR), injection_basis.safetensors (a split AV)
    DATA_DIR/       manifest.json, shard_*.parquet, nla_meta.yaml, explanations/   (extract, teach)
    TABLES/         {stage}.parquet + {stage}.parquet.nla_meta.yaml, baseline.json,
                    build.json                                                      (build)
    RUN/            config.json, metrics.jsonl, step_*/, av/, ar/                   (sft, rl)
    RUN/eval/       rows.parquet, summary.json, table.csv, plot.png, NAME/          (eval, analyze)
    WORLD/          build.json, ...                                                 (toyworld)

This module imports nothing, so every module can use it (the sidecar code included).
"""

from __future__ import annotations

# Sidecars: a model directory's, and a table's (`{file}.nla_meta.yaml`).
SIDECAR_NAME = "nla_meta.yaml"
DATASET_SIDECAR_SUFFIX = ".nla_meta.yaml"

# A model directory (Hugging Face layout; the AR adds its value head).
MODEL_CONFIG = "config.json"
VALUE_HEAD_FILE = "value_head.safetensors"
INJECTION_BASIS_FILE = "injection_basis.safetensors"  # an AV's split-injection basis

# An extraction directory (`nlakit extract`, `nlakit teach`).
MANIFEST = "manifest.json"
EXPLANATIONS_DIR = "explanations"

# A tables directory (`nlakit build`).
BASELINE_FILE = "baseline.json"  # the frozen FVE baseline (mu, variance, n)
BUILD_RECORD = "build.json"  # what a directory was built with (tables, toy world)


def table_file(stage: str) -> str:
    """The table of one stage: `av_sft.parquet`, `ar_sft.parquet`, `rl.parquet`, `eval.parquet`."""
    return f"{stage}.parquet"


# A run directory (`nlakit sft`, `nlakit rl`, `nlakit demo`).
RUN_CONFIG = "config.json"  # the resolved config snapshot
METRICS_FILE = "metrics.jsonl"
ROLLOUT_SNAPSHOTS = "rollout_av"  # RL with the vllm engine: the synced policy snapshot

# A run's evaluation (`nlakit eval`) and each analysis's directory under it.
EVAL_DIR = "eval"
ROWS_FILE = "rows.parquet"  # the per-row table, input of every analysis and of the viewer
SUMMARY_FILE = "summary.json"  # headline numbers (FVE with baseline variance and n)
TABLE_FILE = "table.csv"  # one row per group / condition / setting
PLOT_FILE = "plot.png"
