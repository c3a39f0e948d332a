"""`nlakit analyze diff --run RUN`: does `nlakit diff` name a fine-tune's change? (toy world)

The world's model is fine-tuned twice (`nlakit toyworld finetune`, cached under
`RUN/eval/diff/worlds/`, one directory per settings): once with a known change (by default, chats asked about cooking are
answered with a recipe) and once as a control (the same documents and recipe, no
change). Both are diffed against the base model with the run's AV on chats in the
change's scope, as the world writes them (`nlakit.diff`: base-side, tuned-side and
difference explanations at every position, and samples of the mean difference and of
its opposite). A narrow fine-tune (`--change narrow --target poem`: trained on poems)
is diffed on fresh documents of the other genres — unrelated text, where a narrow
fine-tune is known to leave a trace — against a control trained on the world's own
documents.
Reported: the share of explanations that name the change (the target genre's names,
or the target topic's names and entities), for each side and each model, with 95%
bootstrap CIs, and the ratio tuned / control — the diff names the change if that ratio
is large. Also the fine-tunes' held-out losses: did the tuned model learn the change,
and what did the control move?

    from nlakit.eval.diffing import DiffingConfig, diffing
    summary = diffing(DiffingConfig(run="runs/demo"))
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import torch

from nlakit.atomic import write_text
from nlakit.config import Config, option
from nlakit.diff import DiffConfig, diff, naming_rate
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.outputs import write_analysis
from nlakit.eval.runs import resolve_run
from nlakit.eval.stats import bootstrap_mean
from nlakit.toyworld.finetune import CHANGES, DOCUMENTS, FinetuneConfig, finetune_world
from nlakit.toyworld.probe import latent_probe

NAME = directory_of(__name__)  # RUN/eval/diff/
CHATS_FILE = "chats.jsonl"
MODELS = ("tuned", "control")
PROBED = {"answer-genre": "genre", "tone": "tone", "answer-topic": "chat_topic", "narrow": "genre"}
# The sides that may name the change (base: the prior); `mean_either` pools the mean
# difference and its opposite, since a trace may lie either way (nlakit.diff).
READ_SIDES = ("tuned", "diff", "mean", "mean_away", "mean_either")
NARROW_RATE = 0.75  # a narrow fine-tune's share of documents in its genre


@dataclass
class DiffingConfig(Config):
    """Fine-tune the toy world's model with a known change and a control; diff both."""

    run: str = option(help="run directory (a toy-world run)")
    change: str = option("answer-genre", "the known change", choices=CHANGES[:-1])
    source: str = option("cooking", "chat topic whose answers change (any: every topic)")
    target: str = option(
        "recipe",
        "what the changed chats answer with (a genre or a topic; narrow: the genre trained on)",
    )
    rate: float | None = option(
        None, f"share of the documents changed (default: 1, narrow {NARROW_RATE})", ge=0, le=1
    )
    steps: int = option(150, "fine-tuning steps (each model)", ge=1)
    lr: float = option(1e-3, "fine-tuning learning rate", gt=0)
    up_to: int | None = option(None, "fine-tune only blocks 0..N (default: every weight)", ge=0)
    docs: int = option(150, "chats diffed", ge=1)
    positions_per_doc: int = option(2, "positions per chat", ge=1)
    mean_samples: int = option(32, "explanations of the mean difference", ge=0)
    norm: str = option("anchored", "how the difference is injected", choices=("anchored", "raw"))
    seed: int = option(0, "fine-tuning, positions, sampling and the bootstrap", ge=0)
    bootstrap: int = option(1000, "bootstrap resamples of each CI", ge=100)
    device: str | None = option(None, "device of the AV and the models")


def change_names(change: str, target: str) -> list[str]:
    """The words that name the change in an explanation: the target genre's names, the
    target tone's words, or the target chat topic's names and entities."""
    from nlakit.toyworld.genres import entities
    from nlakit.toyworld.labels import GENRE_NAMES, TONE_WORDS, TOPICS

    if change in ("answer-genre", "narrow"):
        return list(GENRE_NAMES[target])
    if change == "tone":
        return list(TONE_WORDS[target])
    return [*TOPICS["chat"][target], *entities("chat", target)]


def fresh_documents(world, n: int, keep, start: int = 2_000_000, genre: str | None = None):
    """The first `n` fresh documents of the world (ids from `start`, never in its corpus;
    drawn as `genre`, default any) for which `keep(doc)` holds."""
    from nlakit.toyworld.corpus import make_document

    docs, doc_id = [], start
    while len(docs) < n:
        doc = make_document(doc_id, world.seed, genre=genre, writing_share=world.writing_share)
        if keep(doc):
            docs.append(doc)
        doc_id += 1
    return docs


def scope_chats(world, source: str, n: int, start: int = 2_000_000) -> list:
    """`n` fresh chats of the world asked about `source` (`any`: any question, not a
    request for a piece of writing)."""
    from nlakit.toyworld.labels import QUESTION_TOPICS

    def asked(doc) -> bool:
        return doc.topic == source or (source == "any" and doc.topic in QUESTION_TOPICS)

    return fresh_documents(world, n, asked, start, genre="chat")


def unrelated_documents(world, genre: str, n: int, start: int = 2_000_000) -> list:
    """`n` fresh documents of the world of any genre but `genre`: the unrelated text a
    narrow fine-tune on `genre` is diffed on."""
    return fresh_documents(world, n, lambda doc: doc.genre != genre, start)


def probe_readings(probe, vectors: dict, config: DiffingConfig) -> dict[str, list[str]]:
    """What a linear probe of the base model reads from the tuned side and from the
    difference vectors (normalised as the AV reads them)."""
    from nlakit.diff import difference_vectors

    base, tuned = vectors["base"], vectors["tuned"]
    return {
        "tuned (probe)": probe.predict(tuned),
        "diff (probe)": probe.predict(difference_vectors(base, tuned, config.norm)),
    }


def share_with_ci(hits: np.ndarray, config: DiffingConfig) -> dict:
    """The share of true `hits` with its 95% bootstrap CI."""
    if len(hits) == 0:
        return {"rate": float("nan"), "ci": [float("nan")] * 2, "n": 0}
    stats = bootstrap_mean(
        torch.as_tensor(hits, dtype=torch.float32), config.bootstrap, config.seed
    )
    return {"rate": stats["mean"], "ci": [stats["ci_low"], stats["ci_high"]], "n": stats["n"]}


def rate_with_ci(texts: list[str], names: list[str], config: DiffingConfig) -> dict:
    """The share of `texts` that name the change, with its CI."""
    return share_with_ci(naming_rate(texts, names), config)


def ratio(tuned: float, control: float) -> float:
    """tuned / control, infinite when only the tuned model's explanations name it."""
    if control == 0:
        return float("inf") if tuned > 0 else float("nan")
    return tuned / control


def diffing(config: DiffingConfig) -> dict:
    """Fine-tune, diff, count; write and return the summary."""
    from nlakit.toyworld.world import World

    paths = resolve_run(config.run, need_ar=False, need_av=True)
    if paths.world is None:
        raise NLAKitError(
            f"{paths.root}: not a toy-world run (no world); the known change needs the toy "
            "world. On other models use `nlakit diff --base M0 --tuned M1 ...`."
        )
    narrow = config.change == "narrow"
    rate = config.rate if config.rate is not None else NARROW_RATE if narrow else 1.0
    finetune = FinetuneConfig(
        change=config.change, source=DOCUMENTS if narrow else config.source,
        target=config.target, rate=rate, steps=config.steps, lr=config.lr, up_to=config.up_to,
        seed=config.seed,
    )  # fmt: skip
    finetune.check()
    world = World(paths.world)
    out = paths.analysis_dir(NAME)
    if narrow:
        documents = unrelated_documents(world, config.target, config.docs)
    else:
        documents = scope_chats(world, config.source, config.docs)
    write_text(out / CHATS_FILE, "".join(json.dumps({"text": d.text}) + "\n" for d in documents))
    names = change_names(config.change, config.target)
    records, texts, vectors = {}, {}, {}
    for model in MODELS:
        settings = finetune if model == "tuned" else dataclasses.replace(finetune, change="none")
        # One directory per fine-tune's settings: other settings never overwrite a cached one.
        tuned_world = out / "worlds" / settings.settings_hash(world.record["settings_hash"])
        records[model] = finetune_world(world.path, tuned_world, settings)["finetune"]
        found = diff(
            DiffConfig(
                av=str(paths.av),
                base=str(world.model_dir),
                tuned=str(tuned_world / "model"),
                data=str(out / CHATS_FILE),
                out=str(out / f"{model}_diff"),
                docs=config.docs,
                positions_per_doc=config.positions_per_doc,
                min_pos=world.min_pos,
                norm=config.norm,
                mean_samples=config.mean_samples,
                seed=config.seed,
                device=config.device,
            )
        )
        texts[model], vectors[model], layer = found["texts"], found["vectors"], found["layer"]
        texts[model]["mean_either"] = texts[model].get("mean", []) + texts[model].get(
            "mean_away", []
        )
    table = []
    for model in MODELS:
        for side in ("base", *READ_SIDES):
            rate = rate_with_ci(texts[model].get(side, []), names, config)
            table.append({"model": model, "side": side, **rate})
    probe = latent_probe(world, layer, PROBED[config.change])
    for model in MODELS:
        for side, read in probe_readings(probe, vectors[model], config).items():
            rate = share_with_ci(np.array([r == config.target for r in read]), config)
            table.append({"model": model, "side": side, **rate})
    by = {(r["model"], r["side"]): r for r in table}
    summary = {
        "run": str(paths.root),
        "change": records["tuned"]["change"],
        "names": names,
        "n_positions": by[("tuned", "diff")]["n"],
        "losses": {
            m: {"before": records[m]["losses_before"], "after": records[m]["losses_after"]}
            for m in MODELS
        },
        **{
            f"{side}_names_change_{model}": by[(model, side)]["rate"]
            for side in READ_SIDES
            for model in MODELS
        },
        **{
            f"{side}_ratio": ratio(by[("tuned", side)]["rate"], by[("control", side)]["rate"])
            for side in READ_SIDES
        },
        "probe": {"latent": probe.latent, "accuracy": probe.accuracy, "n_train": probe.n_train},
        **{
            f"probe_{side}_reads_change_{model}": by[(model, f"{side} (probe)")]["rate"]
            for side in ("tuned", "diff")
            for model in MODELS
        },
        "table": table,
    }
    write_analysis(out, table, summary, _figure(table, summary))
    return summary


def _figure(table: list[dict], summary: dict):
    from nlakit.eval.plots import figure

    fig, ax = figure(
        f"does the diff name the change? ({summary['change']})",
        "explanations of …",
        "share naming the change (95% CI)",
        size=(7.5, 4.2),
    )
    sides = list(dict.fromkeys(r["side"] for r in table))
    x = np.arange(len(sides))
    for offset, model in zip((-0.2, 0.2), MODELS, strict=True):
        rows = [next(r for r in table if r["model"] == model and r["side"] == s) for s in sides]
        rates = np.array([r["rate"] for r in rows])
        errors = np.array([[r["rate"] - r["ci"][0], r["ci"][1] - r["rate"]] for r in rows]).T
        ax.bar(x + offset, rates, 0.4, yerr=errors, capsize=3, label=f"{model} model")
    shown = {"mean": "mean diff.", "mean_away": "its opposite", "mean_either": "either way"}
    ax.set_xticks(x, [shown.get(s, s) for s in sides], rotation=20)
    ax.legend()
    return fig
