"""Building a toy world: corpus → tokenizer → target LM, written to one directory.

    nlakit toyworld build --out worlds/demo [--size small|demo] [--seed S]

writes `corpus.parquet` (text, latents and labelled spans per document),
`tokenizer/`, `model/` (a standard Hugging Face directory with its tokenizer) and
`build.json` (settings, sizes, losses, timings). The directory is built beside
its destination and renamed into place when complete, and it is keyed by a hash
of its settings: building again with the same settings returns at once, and a
directory built with other settings is never overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.meta import DEFAULT_AR_TEMPLATE, DEFAULT_AV_TEMPLATE
from nlakit.store.guard import check_output_dir
from nlakit.store.names import BUILD_RECORD
from nlakit.store.readers import read_json
from nlakit.tiny import build_tokenizer
from nlakit.toyworld.corpus import iter_documents
from nlakit.toyworld.documents import Document, token_records
from nlakit.toyworld.lm import LMConfig, eval_loss, make_model, train_lm, unigram_loss
from nlakit.toyworld.oracle import explain_record, oracle_rng, word_offsets

FORMAT_VERSION = 2
MARKER = "㊗"


@dataclass
class WorldConfig(Config):
    """A toy world: corpus size, tokenizer and target LM (presets by `size`)."""

    size: str = option(
        "demo",
        "preset: small (tests, seconds) or demo (the default run, minutes)",
        choices=("small", "demo"),
    )
    seed: int = option(0, "everything is deterministic from this seed", ge=0)
    n_docs: int = option(6000, "documents in the corpus", ge=1)
    eval_fraction: float = option(0.05, "share of documents held out from LM training", gt=0, lt=1)
    vocab_size: int = option(2000, "BPE vocabulary (2–8k; at least the 256 bytes)", ge=256)
    tokenizer_explanations: int = option(
        2000, "oracle explanations added to the tokenizer's corpus", ge=0
    )
    min_pos: int = option(
        8, "first token position used for activations (toy documents are short)", ge=0
    )
    writing_share: float = option(
        0.0,
        "share of chats where the user asks for a piece of writing (a poem, a recipe …) and "
        "the assistant writes its opening lines (chat topic `writing`)",
        ge=0,
        le=1,
    )
    lm: LMConfig = option(help="the target LM and its training", factory=LMConfig)

    def settings_hash(self) -> str:
        fields = dataclasses.asdict(self)
        if not fields["writing_share"]:  # worlds built before the option keep their hash
            fields.pop("writing_share")
        blob = json.dumps({"v": FORMAT_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def default_layer(self) -> int:
        """The block the NLA reads by default: the middle of the model."""
        return self.lm.num_layers // 2


SIZES: dict[str, dict] = {
    "small": dict(
        n_docs=360,
        vocab_size=600,
        tokenizer_explanations=100,  # × 3 texts with the markup: fewer than the 360 documents
        lm=LMConfig(hidden_size=64, num_layers=2, steps=30, batch_size=16),
    ),
    "demo": dict(
        n_docs=6000,
        vocab_size=2000,
        tokenizer_explanations=2000,
        lm=LMConfig(hidden_size=128, num_layers=4, steps=300, batch_size=32),
    ),
}


def world_config(size: str = "demo", seed: int = 0, **overrides) -> WorldConfig:
    """The preset `size` with `overrides` applied (LM fields are accepted at top level)."""
    if size not in SIZES:
        raise NLAKitError(f"--size must be one of {sorted(SIZES)}, got {size!r}")
    preset = dict(SIZES[size])
    lm = preset.pop("lm")
    lm_fields = {f.name for f in dataclasses.fields(LMConfig)}
    lm = dataclasses.replace(lm, **{k: v for k, v in overrides.items() if k in lm_fields})
    rest = {k: v for k, v in overrides.items() if k not in lm_fields}
    return WorldConfig(size=size, seed=seed, lm=lm, **{**preset, **rest})


def split_of(doc_id: int, seed: int, eval_fraction: float) -> str:
    """'train' or 'eval' for a document, from a hash of (seed, doc_id)."""
    h = hashlib.sha256(f"split:{seed}:{doc_id}".encode()).digest()
    return "eval" if int.from_bytes(h[:8], "big") / 2**64 < eval_fraction else "train"


def tokenizer_texts(docs: list[Document], config: WorldConfig) -> list[str]:
    """Corpus text plus oracle explanations at random word positions, each also in the
    NLA's markup (the AV's response and the default AV and AR prompts): a real LLM's
    tokenizer spends about three tokens on `<explanation>`, and so does the world's,
    instead of seven pieces that every explanation would pay for twice."""
    rng = random.Random(f"tokenizer:{config.seed}")
    texts = [d.text for d in docs]
    prompt = DEFAULT_AV_TEMPLATE.format(injection_char="")
    for doc in rng.sample(docs, min(config.tokenizer_explanations, len(docs))):
        records = token_records(doc, word_offsets(doc.text))
        pos = rng.randrange(len(records))
        explanation = explain_record(records[pos], oracle_rng(config.seed, doc.doc_id, pos))
        texts += [prompt, f"<explanation>\n{explanation}\n</explanation>"]
        texts.append(DEFAULT_AR_TEMPLATE.format(explanation=explanation))
    return texts


def corpus_table(docs: list[Document], splits: list[str]) -> pa.Table:
    return pa.table(
        {
            "doc_id": [d.doc_id for d in docs],
            "split": splits,
            "genre": [d.genre for d in docs],
            "topic": [d.topic for d in docs],
            "entity": [d.entity for d in docs],
            "tone": [d.tone for d in docs],
            "text": [d.text for d in docs],
            "spans": [d.span_dicts() for d in docs],
        }
    )


def _check_existing(out: Path, config: WorldConfig) -> dict | None:
    """The existing build's record if `out` holds this exact world; error if another."""
    record_path = out / BUILD_RECORD
    if not out.exists():
        return None
    if not record_path.is_file():
        if any(out.iterdir()):
            raise NLAKitError(
                f"{out}: exists and is not a toy world (no {BUILD_RECORD}); choose another --out."
            )
        out.rmdir()
        return None
    record = read_json(record_path, "a toy world's build record", "Choose another --out.")
    if record.get("settings_hash") != config.settings_hash():
        raise NLAKitError(
            f"{out}: holds a toy world built with other settings "
            f"({record.get('config', {}).get('size')}, seed {record.get('config', {}).get('seed')}; "
            f"hash {record.get('settings_hash')} vs {config.settings_hash()}). It is left as is: "
            "choose another --out, or delete that directory to rebuild."
        )
    return record


def build_world(out: str | os.PathLike, config: WorldConfig, progress: bool = True) -> dict:
    """Build the world into `out` (or return the record of the identical one there)."""
    out = check_output_dir(out)
    existing = _check_existing(out, config)
    if existing is not None:
        return {**existing, "cached": True}
    timings, start = {}, time.perf_counter()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 2)
        return now

    t = time.perf_counter()
    docs = list(iter_documents(config.n_docs, config.seed, writing_share=config.writing_share))
    splits = [split_of(d.doc_id, config.seed, config.eval_fraction) for d in docs]
    t = lap("corpus", t)
    tokenizer = build_tokenizer(tokenizer_texts(docs, config), config.vocab_size, marker=MARKER)
    t = lap("tokenizer", t)
    eos = tokenizer.eos_token_id
    keep = config.lm.max_len - 1
    sequences = [[*tokenizer(d.text)["input_ids"][:keep], eos] for d in docs]
    train = [s for s, split in zip(sequences, splits, strict=True) if split == "train"]
    held_out = [s for s, split in zip(sequences, splits, strict=True) if split == "eval"]
    torch.manual_seed(config.seed)
    model = make_model(config.lm, tokenizer, config.seed)
    initial = eval_loss(model, held_out, tokenizer.pad_token_id)
    run = train_lm(model, train, config.lm, tokenizer.pad_token_id, config.seed, progress)
    t = lap("train_lm", t)
    final = eval_loss(model, held_out, tokenizer.pad_token_id)
    unigram = unigram_loss(train, held_out, len(tokenizer))
    t = lap("eval", t)

    tmp = out.parent / f".{out.name}.building-{config.settings_hash()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pq.write_table(corpus_table(docs, splits), tmp / "corpus.parquet", write_page_checksum=True)
    tokenizer.save_pretrained(str(tmp / "tokenizer"))
    model.save_pretrained(str(tmp / "model"))
    tokenizer.save_pretrained(str(tmp / "model"))
    lap("save", t)
    record = {
        "format_version": FORMAT_VERSION,
        "settings_hash": config.settings_hash(),
        "config": dataclasses.asdict(config),
        "default_layer": config.default_layer,
        "min_pos": config.min_pos,
        "marker": MARKER,
        "sizes": {
            "documents": len(docs),
            "train_documents": len(train),
            "eval_documents": len(held_out),
            "train_tokens": sum(map(len, train)),
            "vocab_size": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters()),
            "num_layers": config.lm.num_layers,
            "d_model": config.lm.hidden_size,
        },
        "losses": {
            "initial": round(initial, 4),
            "final": round(final, 4),
            "unigram": round(unigram, 4),
            "train_last_10": round(sum(run["curve"][-10:]) / len(run["curve"][-10:]), 4),
            "unit": "nats/token on held-out documents",
        },
        "timings_s": {**timings, "total": round(time.perf_counter() - start, 2)},
    }
    (tmp / BUILD_RECORD).write_text(json.dumps(record, indent=2))
    os.replace(tmp, out)
    return {**record, "cached": False}
