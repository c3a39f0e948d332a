"""Corpora: where documents come from, rendered the way the target model reads them.

A corpus spec is one of

- `toyworld:DIR` — the documents of a built toy world;
- `hf:NAME[:CONFIG][@SPLIT]` — a Hugging Face dataset, streamed (`datasets.load_dataset`;
  NAME may also be a local dataset directory);
- a local file or directory of `.txt` (one document per non-empty line), `.jsonl`
  (one JSON object per line) or `.parquet` files.

Each document gets a string id in the released datasets' shape,
`"{corpus}:{split}:{index}"` (e.g. "HuggingFaceFW/fineweb:train:17"), with `index`
its position in the record stream; a local file is split "train", as `datasets`
names a local file's only split. A toy world's documents keep their number ("17").

Records give their document in a text field (`--text-field`, default `text`) or as
a chat (`--messages-field`, a list of `{"role", "content"}`), which is rendered
with the target model's chat template. With `regenerate_assistant`, assistant
turns are replaced by the target model's own batched generations, so chat
activations are in distribution.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nlakit.errors import NLAKitError, require
from nlakit.store.names import BUILD_RECORD

LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")


@dataclass
class CorpusDoc:
    """One document as the target model will read it."""

    index: int  # position in the corpus stream (records, empty ones included)
    doc_id: str  # "{corpus}:{split}:{index}", or a toy-world document's number ("17")
    text: str
    add_special_tokens: bool  # False when a chat template already wrote BOS
    source: str  # "text" or "chat" (pretraining-style prose vs conversations)


@dataclass
class CorpusOptions:
    text_field: str = "text"
    messages_field: str | None = None
    regenerate_assistant: bool = False
    max_new_tokens: int = 256
    generation_batch_size: int = 16


# --------------------------------------------------------------------------- raw records


def _read_text_lines(path: Path) -> Iterator[dict]:
    for line in _decode(path).splitlines():
        if line.strip():
            yield {"text": line}


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NLAKitError(
            f"{path}: not UTF-8 (invalid byte {data[exc.start]:#04x} at byte offset {exc.start}). "
            "Convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None


def _read_jsonl(path: Path) -> Iterator[dict]:
    for number, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise NLAKitError(f"{path}:{number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(record, dict):
            raise NLAKitError(
                f"{path}:{number}: expected a JSON object, got {type(record).__name__}."
            )
        yield record


def _read_parquet(path: Path) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:
        raise NLAKitError(f"{path}: not a readable parquet file ({exc}).") from None
    for batch in parquet.iter_batches(batch_size=1024):
        yield from batch.to_pylist()


def local_files(location: Path) -> list[Path]:
    if location.is_file():
        files = [location]
    elif location.is_dir():
        files = sorted(p for p in location.rglob("*") if p.suffix in LOCAL_SUFFIXES)
    else:
        raise NLAKitError(f"{location}: no such file or directory (corpus).")
    bad = [p for p in files if p.suffix not in LOCAL_SUFFIXES]
    if bad or not files:
        raise NLAKitError(
            f"{location}: expected {', '.join(LOCAL_SUFFIXES)} files, found "
            f"{[p.name for p in bad] or 'none'}."
        )
    return files


def iter_local_records(location: Path) -> Iterator[tuple[str, dict]]:
    readers = {".txt": _read_text_lines, ".jsonl": _read_jsonl, ".parquet": _read_parquet}
    for path in local_files(location):
        for record in readers[path.suffix](path):
            yield str(path), record


def hf_parts(spec: str) -> tuple[str, str | None, str]:
    """(name, config or None, split) of `hf:NAME[:CONFIG][@SPLIT]`; the split defaults
    to "train"."""
    body, _, split = spec.removeprefix("hf:").partition("@")
    name, _, config = body.partition(":")
    return name, config or None, split or "train"


def doc_id_prefix(spec: str) -> str:
    """`{corpus}:{split}` of a Hub or local corpus spec: its documents' ids are this
    plus `:{index}`, as the official datagen writes them. The corpus is the dataset's
    name (without its config) or the local path as given."""
    if spec.startswith("hf:"):
        name, _, split = hf_parts(spec)
        return f"{name}:{split}"
    return f"{spec}:train"


def iter_hf_records(spec: str) -> Iterator[tuple[str, dict]]:
    """Records of `hf:NAME[:CONFIG][@SPLIT]`, streamed."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise NLAKitError(
            "hf: corpora need the `datasets` package: pip install 'nlakit[hub]'"
        ) from None
    name, config, split = hf_parts(spec)
    try:
        dataset = load_dataset(name, config, split=split, streaming=True)
    except Exception as exc:
        raise NLAKitError(
            f"{spec}: could not load the dataset ({type(exc).__name__}: {exc}). Check the name, "
            "config and split, your network, or pass a local directory."
        ) from None
    for record in dataset:
        yield spec, record


# --------------------------------------------------------------------------- rendering


def _field(record: dict, name: str, where: str):
    if name not in record:
        raise NLAKitError(
            f"{where}: no field {name!r} in the records (fields: {sorted(record)}). Choose the "
            "document field with --text-field, or --messages-field for chat records."
        )
    return record[name]


def check_messages(messages, where: str) -> list[dict]:
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages
    ):
        raise NLAKitError(
            f"{where}: a chat must be a list of {{'role', 'content'}} messages, got "
            f"{str(messages)[:80]!r}."
        )
    return messages


def render_chat(tokenizer, messages: list[dict]) -> str:
    """The chat as text through the tokenizer's chat template (BOS included if it has one)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def regenerate_assistant_turns(
    chats: list[list[dict]], model, tokenizer, options
) -> list[list[dict]]:
    """Replace every assistant turn with the model's own greedy continuation, batched:
    all chats' k-th assistant turns are generated together, in order."""
    import torch

    chats = [[dict(m) for m in chat] for chat in chats]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        turn_indices = [[i for i, m in enumerate(c) if m["role"] == "assistant"] for c in chats]
        for k in range(max((len(t) for t in turn_indices), default=0)):
            todo = [(c, t[k]) for c, t in enumerate(turn_indices) if len(t) > k]
            for start in range(0, len(todo), options.generation_batch_size):
                part = todo[start : start + options.generation_batch_size]
                prompts = [
                    tokenizer.apply_chat_template(
                        chats[c][:i], tokenize=False, add_generation_prompt=True
                    )
                    for c, i in part
                ]
                enc = tokenizer(
                    prompts, return_tensors="pt", padding=True, add_special_tokens=False
                )
                enc = {k2: v.to(model.device) for k2, v in enc.items()}
                with torch.no_grad():
                    out = model.generate(
                        **enc,
                        max_new_tokens=options.max_new_tokens,
                        do_sample=False,
                        pad_token_id=tokenizer.pad_token_id,
                    )
                new = out[:, enc["input_ids"].shape[1] :]
                for (c, i), ids in zip(part, new, strict=True):
                    chats[c][i]["content"] = tokenizer.decode(ids, skip_special_tokens=True).strip()
    finally:
        tokenizer.padding_side = side
    return chats


def check_corpus(spec: str) -> None:
    """Refuse a corpus spec that cannot be read, before any model loads: a toy world
    directory without its build record, a local path that is missing or holds no
    readable file, an `hf:` corpus without the `datasets` package."""
    if spec.startswith("toyworld:"):
        world = Path(spec.removeprefix("toyworld:"))
        if not (world / BUILD_RECORD).is_file():
            raise NLAKitError(
                f"--corpus {spec}: {world} is not a toy world (no build.json); build one with "
                "`nlakit toyworld build --out DIR`."
            )
        return
    if spec.startswith("hf:"):
        require("datasets", "hub", f"--corpus {spec}")
        return
    location = Path(spec)
    if not location.exists():
        scheme = spec.partition(":")[0] if ":" in spec and not location.parent.exists() else ""
        known = " (known schemes: toyworld:DIR, hf:DATASET; else a local path)" if scheme else ""
        raise NLAKitError(f"--corpus {spec}: no such file or directory{known}.")
    if not local_files(location):
        raise NLAKitError(f"--corpus {spec}: holds no {', '.join(LOCAL_SUFFIXES)} file to read.")


def iter_corpus(
    spec: str,
    tokenizer,
    options: CorpusOptions | None = None,
    model=None,
    stats: Counter | None = None,
    skip: int = 0,
) -> Iterator[CorpusDoc]:
    """The documents of a corpus spec, in a fixed order, as the target model reads them.

    The first `skip` records are passed over unread (for resuming). Records read are
    counted in `stats["read"]`, empty documents skipped and counted in `stats["empty"]`.
    """
    options = options or CorpusOptions()
    stats = stats if stats is not None else Counter()
    if spec.startswith("toyworld:"):
        # Lazy: the toy world is one optional corpus; data does not depend on it otherwise.
        from nlakit.toyworld.world import World

        for index, doc in enumerate(World(spec.removeprefix("toyworld:")).documents()):
            if index >= skip:
                stats["read"] += 1
                source = "chat" if doc.genre == "chat" else "text"
                yield CorpusDoc(index, doc.table_id, doc.text, True, source)
        return
    records = iter_hf_records(spec) if spec.startswith("hf:") else iter_local_records(Path(spec))
    prefix = doc_id_prefix(spec)
    batch: list[tuple[int, str, dict]] = []
    for index, (where, record) in enumerate(records):
        if index < skip:
            continue
        batch.append((index, where, record))
        if len(batch) >= 256:
            yield from _render(batch, prefix, tokenizer, options, model, stats)
            batch = []
    yield from _render(batch, prefix, tokenizer, options, model, stats)


def _render(
    batch: Iterable[tuple[int, str, dict]], prefix: str, tokenizer, options, model, stats
) -> Iterator[CorpusDoc]:
    batch = list(batch)
    if options.messages_field is None:
        for index, where, record in batch:
            stats["read"] += 1
            text = _field(record, options.text_field, where)
            if not isinstance(text, str):
                raise NLAKitError(
                    f"{where}: field {options.text_field!r} must be text, got "
                    f"{type(text).__name__}."
                )
            if not text.strip():
                stats["empty"] += 1
                continue
            yield CorpusDoc(index, f"{prefix}:{index}", text, True, "text")
        return
    chats = [check_messages(_field(r, options.messages_field, w), w) for _, w, r in batch]
    if options.regenerate_assistant:
        if model is None:
            raise NLAKitError("regenerate_assistant needs the target model")
        chats = regenerate_assistant_turns(chats, model, tokenizer, options)
    for (index, _, _), chat in zip(batch, chats, strict=True):
        stats["read"] += 1
        if not any(str(m["content"]).strip() for m in chat):
            stats["empty"] += 1
            continue
        yield CorpusDoc(index, f"{prefix}:{index}", render_chat(tokenizer, chat), False, "chat")
