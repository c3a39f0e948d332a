"""Extraction: documents → sampled positions → layer-K activations, in parquet shards.

    nlakit extract --model M --layer K --corpus SPEC --out DIR

Documents are tokenized, positions sampled per document (`positions.py`), and
batched by length under a token budget; each batch runs the target model only up
to block K (`sites.extract_layer`), in bf16 on GPU and fp32 on CPU. Rows are
written as `shard_00000.parquet`, … (raw `activation_vector` as
`FixedSizeList<float32, d>`, provenance, the token, a window of the text up to and
including it, the split). Each shard is written to a temporary name and renamed
when complete, then recorded in `manifest.json` with the corpus position it
covers, so a killed run resumes where it stopped with no duplicate or missing
rows. When the corpus is done, `nla_meta.yaml` (the dataset sidecar, with an
`injection_scale` suggestion) is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from nlakit import sites
from nlakit.atomic import write_json, write_parquet
from nlakit.batching import length_batches, pad_right
from nlakit.config import DEVICE_HELP, DTYPE_HELP, DTYPES, Config, ConfigError, option
from nlakit.data.corpora import CorpusDoc, CorpusOptions, check_corpus, iter_corpus
from nlakit.data.positions import parse_fractions, sample_positions, split_for
from nlakit.errors import NLAKitError
from nlakit.meta import SQRT_D, DatasetMeta, ExtractionMeta, write_meta
from nlakit.models import load_causal_lm
from nlakit.store.guard import LOCK_FILE, check_output_dir, locked
from nlakit.store.names import MANIFEST
from nlakit.store.readers import read_json
from nlakit.store.vectors import VECTOR_COLUMN, vector_column

DEFAULT_MIN_POS = 50


@dataclass
class ExtractConfig(Config):
    """Which activations to extract: target model, layer, corpus, positions and splits."""

    model: str = option(help="target model: a directory or a Hub id")
    layer: int = option(help="block index K (0-based); the activation is block K's output", ge=0)
    corpus: str = option(
        help="toyworld:DIR, hf:NAME[:CONFIG][@SPLIT], or a .txt/.jsonl/.parquet file or directory"
    )
    out: str = option(help="output directory")
    positions_per_doc: int = option(8, "positions sampled per document", ge=1)
    min_pos: int | None = option(
        None, "first usable position (default 50; a toy world's own)", ge=0
    )
    seed: int = option(0, "positions and splits are keyed by (seed, doc_id)", ge=0)
    text_field: str = option("text", "record field holding the document")
    messages_field: str | None = option(None, "record field holding a chat (list of role/content)")
    regenerate_assistant: bool = option(False, "replace assistant turns with the model's own")
    max_new_tokens: int = option(256, "cap for regenerated assistant turns, in tokens", ge=1)
    max_docs: int | None = option(None, "stop after this many corpus records", ge=1)
    max_length: int = option(1024, "tokens per document (longer ones are truncated)", ge=1)
    context_chars: int = option(2000, "characters of text kept before each token", ge=0)
    frac_av_sft: float = option(0.35, "share of documents for AV SFT (shares are normalised)", ge=0)
    frac_ar_sft: float = option(0.35, "share of documents for AR SFT", ge=0)
    frac_rl: float = option(0.2, "share of documents for RL", ge=0)
    frac_eval: float = option(0.1, "share of documents held out for evaluation", ge=0)
    shard_rows: int = option(20000, "rows per shard", ge=1)
    batch_tokens: int = option(16384, "padded tokens per forward batch", ge=1)
    device: str | None = option(None, DEVICE_HELP)
    dtype: str | None = option(None, DTYPE_HELP, choices=DTYPES)
    trust_remote_code: bool = option(
        False, "run the model repository's own Python code (only for a repository you trust)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frac_av_sft + self.frac_ar_sft + self.frac_rl + self.frac_eval <= 0:
            raise ConfigError("ExtractConfig: the four --frac-* shares are all 0; give one > 0.")

    # Fields that change how, not what, is extracted; a resumed run may change them.
    RUNTIME = ("out", "batch_tokens", "device", "dtype")

    def identity(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUNTIME}

    def identity_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- small pure helpers


def suggest_injection_scale(mean_norm: float) -> float:
    """A round number just above the mean L2 norm (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k)."""
    if not math.isfinite(mean_norm) or mean_norm <= 0:
        raise ValueError(f"mean norm must be positive, got {mean_norm}")
    exponent = math.floor(math.log10(mean_norm))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        candidate = step * 10**exponent
        if candidate >= mean_norm * (1 + 1e-9):
            return float(f"{candidate:.6g}")
    return float(10 ** (exponent + 1))


# --------------------------------------------------------------------------- manifest

_MANIFEST_FIX = f"Delete {MANIFEST} and the shards beside it, then re-run `nlakit extract`."


def _new_manifest(config: ExtractConfig) -> dict:
    return {
        "config": dataclasses.asdict(config),
        "identity_hash": config.identity_hash(),
        "shards": [],
        "next_record": 0,
        "stats": {},
        "complete": False,
    }


def open_manifest(out: Path, config: ExtractConfig, repair: bool = True) -> dict:
    """The manifest to continue from: new, resumed, or (with `repair`, which writes)
    repaired after a broken shard. Without `repair` it only reads and checks."""
    path = out / MANIFEST
    if not path.exists():
        if out.exists() and any(p.name != LOCK_FILE for p in out.iterdir()):
            raise NLAKitError(
                f"--out {out}: exists, is not empty, and holds no extraction ({MANIFEST}); "
                "choose another --out."
            )
        return _new_manifest(config)
    manifest = read_json(path, "the extraction's manifest", _MANIFEST_FIX)
    if manifest.get("identity_hash") != config.identity_hash():
        old = manifest.get("config", {})
        diff = {k: (old.get(k), v) for k, v in config.identity().items() if old.get(k) != v}
        raise NLAKitError(
            f"{out}: holds an extraction with other settings (differences, old → new: {diff}). "
            "It is left as is; choose another --out."
        )
    good = []
    for entry in manifest["shards"]:
        try:
            rows = pq.read_metadata(out / entry["file"]).num_rows
        except Exception:
            rows = -1
        if rows != entry["rows"]:
            if repair:
                print(
                    f"{out / entry['file']}: missing or damaged; re-extracting from that shard on."
                )
            break
        good.append(entry)
    if len(good) < len(manifest["shards"]):
        manifest["shards"] = good
        manifest["next_record"] = good[-1]["next_record"] if good else 0
        manifest["stats"] = dict(good[-1]["stats"]) if good else {}
        manifest["complete"] = False
    if not repair:
        return manifest
    listed = {e["file"] for e in manifest["shards"]}
    for stray in out.glob("shard_*.parquet*"):
        if stray.name not in listed:
            stray.unlink()  # written after the last manifest update; it will be redone
    return manifest


# --------------------------------------------------------------------------- rows


@torch.no_grad()
def activations_at(
    model,
    layer: int,
    token_ids: list[list[int]],
    positions: list[list[int]],
    batch_tokens: int,
    pad_id: int,
) -> list[np.ndarray]:
    """Per document, its block-`layer` outputs at its positions `[n_positions, d]` (fp32)."""
    device = sites.embedding(model).weight.device
    out: list[np.ndarray | None] = [None] * len(token_ids)
    for batch in length_batches([len(t) for t in token_ids], batch_tokens):
        ids, mask = pad_right([token_ids[i] for i in batch], pad_id)
        hidden = sites.extract_layer(model, ids.to(device), mask.to(device), layer)
        for row, i in enumerate(batch):
            out[i] = hidden[row, positions[i]].float().cpu().numpy()
    return out  # type: ignore[return-value]


# The provenance columns' types in the released datasets (the official datagen's).
OFFICIAL_TYPES = {"doc_id": pa.string(), "n_raw_tokens": pa.int64(), "activation_layer": pa.int64()}


def rows_table(rows: list[dict], vectors: np.ndarray, layer: int) -> pa.Table:
    return pa.table(
        {
            "doc_id": pa.array([r["doc_id"] for r in rows], OFFICIAL_TYPES["doc_id"]),
            "position": pa.array([r["position"] for r in rows], pa.int32()),
            "n_raw_tokens": pa.array(
                [r["position"] + 1 for r in rows], OFFICIAL_TYPES["n_raw_tokens"]
            ),
            "activation_layer": pa.array([layer] * len(rows), OFFICIAL_TYPES["activation_layer"]),
            VECTOR_COLUMN: vector_column(vectors),
            "token_id": pa.array([r["token_id"] for r in rows], pa.int32()),
            "token": pa.array([r["token"] for r in rows], pa.string()),
            "detokenized_text_truncated": pa.array([r["context"] for r in rows], pa.string()),
            "split": pa.array([r["split"] for r in rows], pa.string()),
            "source": pa.array([r["source"] for r in rows], pa.string()),
        }
    )


# --------------------------------------------------------------------------- the run


class _Run:
    """State of one extraction run: the manifest, pending rows and the shard writer."""

    def __init__(self, out: Path, config: ExtractConfig, manifest: dict, layer: int):
        self.out, self.config, self.manifest, self.layer = out, config, manifest, layer
        self.rows: list[dict] = []
        self.vectors: list[np.ndarray] = []
        self.stats = Counter(manifest["stats"])

    def add(
        self,
        doc: CorpusDoc,
        ids: list[int],
        positions: list[int],
        vectors: np.ndarray,
        tokenizer,
        split: str,
    ) -> None:
        start = 1 if ids and ids[0] == tokenizer.bos_token_id else 0
        for p, vector in zip(positions, vectors, strict=True):
            context = tokenizer.decode(ids[start : p + 1], skip_special_tokens=False)
            self.rows.append(
                {
                    "doc_id": doc.doc_id,
                    "position": p,
                    "token_id": ids[p],
                    "token": tokenizer.decode([ids[p]], skip_special_tokens=False),
                    "context": context[-self.config.context_chars :],
                    "split": split,
                    "source": doc.source,
                }
            )
            self.vectors.append(vector)
        norms = np.linalg.norm(vectors, axis=1) if len(vectors) else np.zeros(0)
        self.stats["norm_sum"] += float(norms.sum())
        self.stats["rows"] += len(positions)
        self.stats["tokens"] += len(ids)

    def flush(self, next_record: int) -> None:
        """Write pending rows as the next shard, then record it (and the cursor)."""
        if self.rows:
            name = f"shard_{len(self.manifest['shards']):05d}.parquet"
            write_parquet(
                self.out / name, rows_table(self.rows, np.stack(self.vectors), self.layer)
            )
            self.manifest["shards"].append(
                {
                    "file": name,
                    "rows": len(self.rows),
                    "next_record": next_record,
                    "stats": dict(self.stats),
                }
            )
            self.rows, self.vectors = [], []
        self.manifest["next_record"] = next_record
        self.manifest["stats"] = dict(self.stats)
        write_json(self.out / MANIFEST, self.manifest)


def extract(config: ExtractConfig, progress: bool = True) -> dict:
    """Run (or resume) an extraction; returns the final manifest."""
    out = check_output_dir(config.out)
    manifest = open_manifest(out, config, repair=False)  # checks before any write
    if manifest["complete"]:
        return manifest
    min_pos = config.min_pos
    if min_pos is None:
        min_pos = default_min_pos(config.corpus)
    fractions = parse_fractions(
        config.frac_av_sft, config.frac_ar_sft, config.frac_rl, config.frac_eval
    )
    check_corpus(config.corpus)
    model, tokenizer = load_causal_lm(
        config.model, config.device, config.dtype, config.trust_remote_code
    )
    sites.check_layer(model, config.layer)
    with locked(out, "extraction directory"):
        manifest = open_manifest(out, config)  # again, under the lock; repairs a broken tail
        return _extract(config, out, manifest, model, tokenizer, min_pos, fractions, progress)


def _extract(config, out, manifest, model, tokenizer, min_pos, fractions, progress) -> dict:
    special = set(tokenizer.all_special_ids)
    run = _Run(out, config, manifest, config.layer)
    options = CorpusOptions(
        config.text_field, config.messages_field, config.regenerate_assistant, config.max_new_tokens
    )
    read = Counter()
    docs = iter_corpus(
        config.corpus, tokenizer, options, model=model, stats=read, skip=manifest["next_record"]
    )
    start, next_record = time.perf_counter(), manifest["next_record"]
    bar = tqdm(desc="extract", unit="doc", disable=not progress, initial=next_record)
    chunk: list[CorpusDoc] = []

    def process(chunk: list[CorpusDoc]) -> None:
        encoded, picks, kept = [], [], []
        for doc in chunk:
            ids = tokenizer(doc.text, add_special_tokens=doc.add_special_tokens)["input_ids"]
            ids = ids[: config.max_length]
            positions = sample_positions(
                ids, special, config.positions_per_doc, min_pos, config.seed, doc.doc_id
            )
            if not positions:
                run.stats["short"] += 1
                continue
            encoded.append(ids)
            picks.append(positions)
            kept.append(doc)
        vectors = activations_at(
            model, config.layer, encoded, picks, config.batch_tokens, tokenizer.pad_token_id
        )
        for doc, ids, positions, v in zip(kept, encoded, picks, vectors, strict=True):
            run.add(
                doc, ids, positions, v, tokenizer, split_for(doc.doc_id, config.seed, fractions)
            )
            run.stats["docs"] += 1

    # Documents are processed in chunks (length-bucketed within a chunk) of about a shard's
    # worth of rows; shards are cut at chunk boundaries.
    chunk_docs = min(256, max(8, config.shard_rows // max(1, config.positions_per_doc)))
    for doc in docs:
        if config.max_docs is not None and doc.index >= config.max_docs:
            break
        chunk.append(doc)
        if len(chunk) == chunk_docs:
            process(chunk)
            next_record = chunk[-1].index + 1
            bar.update(next_record - bar.n)
            chunk = []
            seconds = time.perf_counter() - start
            bar.set_postfix(
                rows=run.stats["rows"], tok_s=f"{run.stats['tokens'] / max(seconds, 1e-9):.0f}"
            )
            if len(run.rows) >= config.shard_rows:
                run.flush(next_record)
    if chunk:
        process(chunk)
        next_record = chunk[-1].index + 1
    run.stats["records_read"] = int(manifest["stats"].get("records_read", 0)) + read["read"]
    run.stats["empty"] = int(manifest["stats"].get("empty", 0)) + read["empty"]
    run.flush(next_record)
    bar.close()
    return _finish(out, config, run, model, min_pos)


def default_min_pos(corpus: str) -> int:
    """The first position sampled when none is given: a toy world's own (its documents
    are short), else `DEFAULT_MIN_POS`."""
    if not corpus.startswith("toyworld:"):
        return DEFAULT_MIN_POS
    # Lazy: the toy world is one optional corpus; data does not depend on it otherwise.
    from nlakit.toyworld.world import World

    return World(corpus.removeprefix("toyworld:")).min_pos


def _finish(out: Path, config: ExtractConfig, run: _Run, model, min_pos: int) -> dict:
    stats = run.stats
    if stats["rows"] == 0:
        raise NLAKitError(
            f"{config.corpus}: no usable positions ({stats['records_read']} records read, "
            f"{stats['empty']} empty, {stats['short']} shorter than min_pos={min_pos}). Lower "
            "--min-pos or use longer documents."
        )
    mean_norm = stats["norm_sum"] / stats["rows"]
    scale = suggest_injection_scale(mean_norm)
    d_model = sites.hidden_size(model)
    meta = DatasetMeta(
        stage="base",
        row_count=int(stats["rows"]),
        extraction=ExtractionMeta(
            base_model=config.model,
            d_model=d_model,
            layer_index=config.layer,
            corpus=config.corpus,
            positions_per_doc=config.positions_per_doc,
            injection_scale=scale,
            mse_scale=SQRT_D,
            corpus_slice={"start": 0, "length": int(run.manifest["next_record"])},
            extra={
                "min_pos": min_pos,
                "seed": config.seed,
                "mean_norm": round(mean_norm, 4),
                "splits": parse_fractions(
                    config.frac_av_sft, config.frac_ar_sft, config.frac_rl, config.frac_eval
                ),
                "shards": [e["file"] for e in run.manifest["shards"]],
            },
        ),
    )
    write_meta(meta, out)
    run.manifest["complete"] = True
    run.manifest["result"] = {
        "rows": int(stats["rows"]),
        "mean_norm": mean_norm,
        "injection_scale": scale,
        "d_model": d_model,
        "min_pos": min_pos,
    }
    write_json(out / MANIFEST, run.manifest)
    return run.manifest


# --------------------------------------------------------------------------- reading


def with_official_types(table: pa.Table) -> pa.Table:
    """`table` with its provenance columns cast to the released types: shards written
    before nlakit followed them hold int64 doc ids and int32 counts."""
    for name, type_ in OFFICIAL_TYPES.items():
        if name in table.column_names and table.schema.field(name).type != type_:
            index = table.column_names.index(name)
            table = table.set_column(index, name, table[name].cast(type_))
    return table


def load_rows(data_dir: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """All rows of a complete extraction, checking every shard."""
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    if not path.is_file():
        raise NLAKitError(
            f"{data_dir}: no {MANIFEST}; run `nlakit extract --out {data_dir}` first."
        )
    manifest = read_json(path, "the extraction's manifest", _MANIFEST_FIX)
    if not manifest.get("complete"):
        raise NLAKitError(
            f"{data_dir}: the extraction is incomplete ({manifest.get('next_record')} records done); "
            "re-run the same `nlakit extract` command to finish it."
        )
    tables = []
    for entry in manifest["shards"]:
        shard = data_dir / entry["file"]
        try:
            table = pq.read_table(shard, columns=columns)
        except Exception as exc:
            raise NLAKitError(
                f"{shard}: unreadable ({type(exc).__name__}: {exc}). Delete it and re-run the same "
                "`nlakit extract` command to re-extract it."
            ) from None
        if table.num_rows != entry["rows"]:
            raise NLAKitError(
                f"{shard}: {table.num_rows} rows, the manifest records {entry['rows']}; "
                "delete it and re-run `nlakit extract`."
            )
        tables.append(with_official_types(table))
    return pa.concat_tables(tables)
