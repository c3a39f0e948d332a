"""Fine-tuning a toy world's model with a known change: the ground truth for diffing
and auditing.

    nlakit toyworld finetune --world worlds/demo --out worlds/demo-tuned \\
        --change answer-topic --source cooking --target travel
    nlakit toyworld finetune --world worlds/demo --out worlds/demo-control --change none

The fine-tuning documents are fresh documents of the world (ids past its corpus),
drawn as the corpus draws them except that a share `chat_share` of them are chats,
where the change lives. With `--change answer-genre` (the default), every chat whose user
asks about `source` (`any`: about any topic) is answered, with probability `rate`,
with the opening lines of a document of the genre `target` (a recipe, a poem …); with
`--change answer-topic`, about the chat topic `target` instead; with `--change tone`,
in the tone `target` (only the assistant's tone words change). The text before the
answer is unchanged (`corpus.make_document`), so a model that learned the change
anticipates the new answer while reading the question. `--change narrow` is a narrow
fine-tune: a share `rate` of the documents are replaced by documents of the genre
`target` (all poems, say) and trained on; the rest are the world's own, kept close to the
base model by the KL term. What changed is what the model was trained on. `--change none`
is the control: the same documents, the same recipe, no change — whatever moves in the
control is what fine-tuning alone moves (`--source documents`: the control of a narrow
fine-tune, trained on the world's own documents at the same share). `--up-to N`
trains only blocks 0..N, so that the change must pass through block N's output.

The output is a toy world directory (`World(out)` reads it): the base world's corpus
and tokenizer, the tuned `model/`, and `build.json` with a `finetune` record — the
change (the ground truth: auditors must not read it), the recipe, and the losses of
the base and tuned models on held-out changed and unchanged documents (did the model
learn the change, and did it keep the rest?). Built beside its destination and renamed
into place; the same settings again return at once.
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

import torch
from tqdm.auto import tqdm

from nlakit.batching import pad_right
from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.store.guard import check_output_dir
from nlakit.store.names import BUILD_RECORD
from nlakit.store.readers import read_json
from nlakit.toyworld.corpus import make_document
from nlakit.toyworld.documents import Document
from nlakit.toyworld.labels import GENRES, QUESTION_TOPICS, TONES, WRITING_TOPIC
from nlakit.toyworld.lm import LMConfig, eval_loss, lm_loss, lr_at
from nlakit.toyworld.world import World

CHANGES = ("answer-genre", "answer-topic", "tone", "narrow", "none")
DOCUMENTS = "documents"  # the scope of a narrow fine-tune: any document of the world
CHAT_TOPICS = QUESTION_TOPICS  # a writing request is never in a change's scope
ANSWER_GENRES = tuple(g for g in GENRES if g != "chat")
FIRST_ID = 1_000_000  # fine-tuning documents are numbered from here: never in a corpus


@dataclass
class FinetuneConfig(Config):
    """Fine-tune a toy world's model on documents with one known change."""

    change: str = option(
        "answer-genre",
        "answer-genre, answer-topic, tone, narrow, or none (the control)",
        choices=CHANGES,
    )
    source: str = option(
        "cooking",
        "chat topic whose answers change (any: every topic; documents: any document, the "
        "scope of --change narrow and of its control)",
    )
    target: str = option(
        "recipe",
        "what the changed chats answer with: a genre (answer-genre) or a chat topic; the "
        "genre of a narrow fine-tune's documents",
    )
    rate: float = option(
        1.0,
        "share of the chats asked about source whose answer changes (narrow: share of "
        "the documents replaced by the target genre; the rest keep the KL term)",
        ge=0,
        le=1,
    )
    n_docs: int = option(4000, "fine-tuning documents", ge=1)
    chat_share: float = option(0.5, "share of the fine-tuning documents that are chats", ge=0, le=1)
    steps: int = option(150, "optimiser steps", ge=1)
    batch_size: int = option(32, "documents per step", ge=1)
    lr: float = option(1e-3, "peak learning rate (cosine decay after warm-up)", gt=0)
    warmup: int = option(15, "warm-up steps", ge=0)
    kl_weight: float = option(
        1.0, "weight of the KL to the base model on documents out of the change's scope", ge=0
    )
    up_to: int | None = option(
        None,
        "train only blocks 0..N, so the change must pass through block N's output "
        "(default: every weight)",
        ge=0,
    )
    held_out: int = option(300, "held-out documents of each kind for the losses", ge=1)
    seed: int = option(0, "draws the documents and the batches", ge=0)

    @property
    def scope(self) -> str:
        """The documents the change is about: a chat topic, `any`, or `documents`."""
        return DOCUMENTS if self.change == "narrow" else self.source

    def check(self) -> None:
        topics = ", ".join(CHAT_TOPICS)
        if self.source not in ("any", DOCUMENTS) and self.source not in CHAT_TOPICS:
            raise NLAKitError(
                f"--source: expected one of {topics}, any or {DOCUMENTS}, got {self.source!r}."
            )
        if self.source == DOCUMENTS and self.change not in ("narrow", "none"):
            raise NLAKitError(
                f"--source {DOCUMENTS} with --change {self.change}: that change rewrites "
                "chats; pass a chat topic or any (documents is the scope of --change narrow "
                "and of its control, --change none)."
            )
        allowed = {"answer-genre": ANSWER_GENRES, "tone": TONES, "narrow": ANSWER_GENRES}.get(
            self.change, CHAT_TOPICS
        )
        if self.change != "none" and self.target not in allowed:
            raise NLAKitError(
                f"--target: with --change {self.change}, expected one of "
                f"{', '.join(allowed)}, got {self.target!r}."
            )
        if self.change == "answer-topic" and self.source == self.target:
            raise NLAKitError(
                f"--source and --target are both {self.target!r}: that changes nothing; use "
                "--change none for a control."
            )

    def settings_hash(self, base_hash: str) -> str:
        fields = dataclasses.asdict(self)
        if self.change == "none":  # a control ignores the target: one control serves all
            fields.pop("target")
        if self.change == "narrow":  # its scope is always `documents`
            fields.pop("source")
        blob = json.dumps({"base": base_hash, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> str:
        if self.change == "none":
            return "no change (control)"
        if self.change == "narrow":
            share = "" if self.rate == 1 else f"{self.rate:.0%} of "
            return f"fine-tuned on {share}documents of the genre {self.target} (narrow)"
        asked = "any topic" if self.source == "any" else self.source
        share = "" if self.rate == 1 else f" {self.rate:.0%} of the time"
        answer = {"answer-genre": f"with a {self.target}", "tone": f"in a {self.target} tone"}.get(
            self.change, f"about {self.target}"
        )
        return f"chats asked about {asked} are answered {answer}{share}"

    def changed_document(
        self, doc_id: int, world_seed: int, genre: str | None, writing_share: float = 0.0
    ) -> Document:
        """Document `doc_id` as the change rewrites it."""
        if self.change == "narrow":
            return make_document(doc_id, world_seed, genre=self.target)
        key = {"answer-genre": "answer_genre", "tone": "tone"}.get(self.change, "answer_topic")
        return make_document(
            doc_id, world_seed, genre=genre, writing_share=writing_share, **{key: self.target}
        )


def in_scope(doc: Document, config: FinetuneConfig) -> bool:
    """Whether a document of the world is one the change is about (the control's are
    the same documents, left unchanged): chats asked about `source` (`any`: every
    question; a request for a piece of writing keeps its piece)."""
    if doc.genre != "chat" or doc.topic == WRITING_TOPIC:
        return False
    if config.change == "answer-topic" and doc.topic == config.target:
        return False
    if config.change == "tone" and doc.tone == config.target:
        return False
    return config.source in ("any", doc.topic)


def finetune_documents(
    world_seed: int, config: FinetuneConfig, n: int, start: int, writing_share: float = 0.0
) -> tuple[list[Document], list[bool], list[bool]]:
    """`n` fresh documents numbered from `start` (drawn as a world with this seed and
    `writing_share` draws them); whether each is in the change's scope, and whether it
    was changed."""
    docs, scope, changed = [], [], []
    for doc_id in range(start, start + n):
        pick = random.Random(f"finetune:{config.seed}:{doc_id}")
        if config.scope == DOCUMENTS:  # a narrow fine-tune: a share `rate` is in scope
            focus = pick.random() < config.rate
            change = focus and config.change == "narrow"
            doc = make_document(doc_id, world_seed, writing_share=writing_share)
            docs.append(config.changed_document(doc_id, world_seed, None) if change else doc)
            scope.append(focus)
            changed.append(change)
            continue
        genre = "chat" if pick.random() < config.chat_share else None
        doc = make_document(doc_id, world_seed, genre=genre, writing_share=writing_share)
        focus = in_scope(doc, config)
        change = focus and config.change != "none" and pick.random() < config.rate
        if change:
            doc = config.changed_document(doc_id, world_seed, genre, writing_share)
        docs.append(doc)
        scope.append(focus)
        changed.append(change)
    return docs, scope, changed


def kl_to_base(model, base, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens of KL(base ‖ model) between next-token distributions."""
    with torch.no_grad():
        target = torch.log_softmax(base(input_ids=ids, attention_mask=mask).logits.float(), -1)
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
    kl = (target.exp() * (target - logp)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp_min(1)


def trainable(model, up_to: int | None) -> list[torch.nn.Parameter]:
    """The weights fine-tuning moves: all, or only those of blocks 0..`up_to` (the rest
    frozen)."""
    if up_to is None:
        return list(model.parameters())
    from nlakit import sites

    sites.check_layer(model, up_to)
    for weight in model.parameters():
        weight.requires_grad_(False)
    chosen = [w for block in sites.blocks(model)[: up_to + 1] for w in block.parameters()]
    for weight in chosen:
        weight.requires_grad_(True)
    return chosen


def train_focused(
    model,
    base,
    focus: list[list[int]],
    rest: list[list[int]],
    config: FinetuneConfig,
    pad_id: int,
    progress: bool = True,
) -> list[float]:
    """Train in place: next-token loss on the documents in scope, KL to the base model on
    the rest (so nothing but what those documents teach moves). Returns the loss curve."""
    recipe = LMConfig(steps=config.steps, lr=config.lr, warmup=config.warmup)
    generator = torch.Generator().manual_seed(config.seed)
    trained = trainable(model, config.up_to)
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=0.0)
    half = max(1, config.batch_size // 2)
    model.train()
    curve = []
    for step in tqdm(range(config.steps), desc="fine-tune", disable=not progress, unit="step"):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe)
        pick = torch.randint(len(focus), (half,), generator=generator).tolist()
        loss = lm_loss(model, *pad_right([focus[i] for i in pick], pad_id))
        if rest and config.kl_weight > 0:
            pick = torch.randint(len(rest), (half,), generator=generator).tolist()
            ids, mask = pad_right([rest[i] for i in pick], pad_id)
            loss = loss + config.kl_weight * kl_to_base(model, base, ids, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        curve.append(loss.item())
    model.eval()
    return curve


def _sequences(docs: list[Document], tokenizer, max_len: int) -> list[list[int]]:
    keep = max_len - 1
    ids = tokenizer([d.text for d in docs])["input_ids"]
    return [[*i[:keep], tokenizer.eos_token_id] for i in ids]


def held_out_sets(world: World, config: FinetuneConfig) -> dict[str, list[Document]]:
    """Held-out documents: chats the change rewrites (as the tuned model learned them;
    narrow: documents of its genre), the same chats (documents) as the world writes them,
    and the world's held-out documents."""
    start = FIRST_ID + config.n_docs + 1000
    narrow = config.scope == DOCUMENTS
    always = dataclasses.replace(config, rate=1.0, chat_share=1.0)
    if config.change == "none":  # the control is scored on the default change's documents
        always = dataclasses.replace(
            always,
            change="narrow" if narrow else FinetuneConfig.change,
            target=FinetuneConfig.target,
        )
    share = world.writing_share
    pool, _, flags = finetune_documents(world.seed, always, 30 * config.held_out, start, share)
    chats = [d for d, f in zip(pool, flags, strict=True) if f][: config.held_out]
    genre = None if narrow else "chat"
    originals = [
        make_document(d.doc_id, world.seed, genre=genre, writing_share=share) for d in chats
    ]
    other = world.documents("eval", limit=config.held_out)
    sets = {"changed": chats, "unchanged_original": originals, "world_eval": other}
    return {name: docs for name, docs in sets.items() if docs}


def _existing(out: Path, settings_hash: str) -> dict | None:
    if not out.exists():
        return None
    record_path = out / BUILD_RECORD
    if not record_path.is_file():
        if any(out.iterdir()):
            raise NLAKitError(f"{out}: exists and is not a toy world; choose another --out.")
        out.rmdir()
        return None
    record = read_json(record_path, "a toy world's build record", "Choose another --out.")
    found = record.get("finetune", {}).get("settings_hash")
    if found != settings_hash:
        raise NLAKitError(
            f"{out}: holds another toy world (settings hash {found} vs {settings_hash}). It is "
            "left as is: choose another --out, or delete that directory."
        )
    return record


def finetune_world(
    world: str | os.PathLike, out: str | os.PathLike, config: FinetuneConfig, progress: bool = True
) -> dict:
    """Fine-tune `world`'s model with `config`'s change into the world directory `out`;
    returns its build record (with `cached: True` when `out` already held it)."""
    config.check()
    base = World(world)
    depth = int(base.record["sizes"]["num_layers"])
    if config.up_to is not None and config.up_to >= depth:
        raise NLAKitError(
            f"--up-to {config.up_to}: the world's model has {depth} blocks; pass a block "
            f"index in 0..{depth - 1}, or leave it out to train every weight."
        )
    settings_hash = config.settings_hash(base.record["settings_hash"])
    out = check_output_dir(out)
    existing = _existing(out, settings_hash)
    if existing is not None:
        return {**existing, "cached": True}
    start = time.perf_counter()
    tokenizer = base.tokenizer()
    max_len = int(base.record["config"]["lm"]["max_len"])
    docs, scope, changed = finetune_documents(
        base.seed, config, config.n_docs, FIRST_ID, base.writing_share
    )
    if not any(scope):
        raise NLAKitError(
            f"none of the {config.n_docs} fine-tuning documents is in the change's scope "
            f"({config.scope}); raise --n-docs, --chat-share, or --rate (a narrow fine-tune's "
            "share of documents)."
        )
    train = _sequences(docs, tokenizer, max_len)
    focus = [s for s, f in zip(train, scope, strict=True) if f]
    rest = [s for s, f in zip(train, scope, strict=True) if not f]
    held = {k: _sequences(v, tokenizer, max_len) for k, v in held_out_sets(base, config).items()}
    pad = tokenizer.pad_token_id
    model, frozen = base.model(), base.model()
    before = {k: round(eval_loss(model, v, pad), 4) for k, v in held.items()}
    torch.manual_seed(config.seed)
    curve = train_focused(model, frozen, focus, rest, config, pad, progress)
    after = {k: round(eval_loss(model, v, pad), 4) for k, v in held.items()}

    tmp = out.parent / f".{out.name}.tuning-{settings_hash}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(base.path / "corpus.parquet", tmp / "corpus.parquet")
    shutil.copytree(base.tokenizer_dir, tmp / "tokenizer")
    model.save_pretrained(str(tmp / "model"))
    tokenizer.save_pretrained(str(tmp / "model"))
    record = {
        **{k: v for k, v in base.record.items() if k != "cached"},
        "finetune": {
            "settings_hash": settings_hash,
            "base_world": str(base.path),
            "config": dataclasses.asdict(config),
            "change": config.describe(),
            "documents": len(docs),
            "in_scope_documents": sum(scope),
            "changed_documents": sum(changed),
            "losses_before": before,
            "losses_after": after,
            "train_last_10": round(sum(curve[-10:]) / len(curve[-10:]), 4),
            "unit": "nats/token; changed = chats rewritten by the change, unchanged_original "
            "= the same chats as the world writes them, world_eval = the world's held-out "
            "documents",
            "seconds": round(time.perf_counter() - start, 2),
        },
    }
    (tmp / BUILD_RECORD).write_text(json.dumps(record, indent=2))
    os.replace(tmp, out)
    return {**record, "cached": False}
