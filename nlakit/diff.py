"""`nlakit diff`: what changed between a base model and a fine-tuned one, in words.

The same positions of the same documents go through both models to block K. The AV
(trained on the base model) explains three vectors per position: the base model's
activation, the tuned model's, and their difference, injected as a vector of its own.
Then every word and two-word phrase of the explanations is counted: the share of
positions whose base-side explanation uses it, tuned-side, and difference-side — the
table of which claims change, sorted by how much (with a paired 95% CI).

    nlakit diff --av RUN/rl/av --base Qwen/Qwen3-8B --tuned ./my-finetune \\
        --data notes.jsonl --out diffs/my-finetune

Normalisation of the difference (`--norm`). The AV reads activations, and a
difference of two activations is not one: it lacks the mean component every
activation shares. `anchored` (default) injects `mu + s * (t - b) / ||t - b||`, where
`mu` is the mean base activation over the positions diffed and `s` the median
distance of a base activation from it: the change, as a typical deviation from the
average activation. `raw` injects `t - b` as it is. Either way the AV rescales what it
injects to its injection scale, so only the direction matters.

The mean difference over all positions, normalised the same way, is explained too
(`mean_samples` samples), and so is its opposite (base − tuned): a fine-tune that shifts
every position the same way shows there most clearly, and an AV can only say what a
vector has, not what it has less of — what the tuned model moved away from reads in the
opposite. (On the toy world, narrow fine-tunes move unrelated text away from their genre.)

Writes `OUT/{table.csv (the terms), explanations.csv, mean_difference.csv,
summary.json, plot.png}`.

    from nlakit.diff import DiffConfig, diff
    summary = diff(DiffConfig(av="runs/demo/rl/av", base="m0", tuned="m1", data="x.jsonl", out="d"))
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch

from nlakit.config import DEVICE_HELP, DTYPE_HELP, Config, option
from nlakit.errors import NLAKitError

NORMS = ("anchored", "raw")
SIDES = ("base", "tuned", "diff")
EXPLANATIONS_FILE = "explanations.csv"
MEAN_FILE = "mean_difference.csv"
_WORD = re.compile(r"[a-z0-9][a-z0-9'_-]*")
# Words that say nothing on their own; two-word phrases keep them ("the user").
_STOP = frozenset(
    ("a", "an", "the", "of", "in", "on", "at", "to", "for", "and", "or", "is", "are", "be",
     "it", "its", "this", "that", "with", "by", "as", "from", "what", "which", "must",
     "next", "comes", "come", "then")
)  # fmt: skip


@dataclass
class DiffConfig(Config):
    """Explain how a fine-tuned model's activations differ from its base model's."""

    av: str = option(help="AV directory, Hub id or released NLA name (trained on the base model)")
    base: str = option(help="the base model: a directory or a Hub id")
    tuned: str = option(help="the fine-tuned model (same tokenizer and width)")
    data: str = option(help="corpus: a .txt/.jsonl/.parquet file or directory, hf:NAME, "
                       "or toyworld:DIR")  # fmt: skip
    out: str = option(help="directory to write the tables, summary and plot to")
    layer: int | None = option(None, "block K (default: the AV's)", ge=0)
    docs: int = option(200, "documents read", ge=1)
    positions_per_doc: int = option(2, "positions per document", ge=1)
    min_pos: int | None = option(None, "first position used (default: as nlakit extract)", ge=0)
    max_length: int = option(512, "tokens read per document", ge=2)
    text_field: str = option("text", "the text column of a .jsonl/.parquet/hf: corpus")
    norm: str = option("anchored", "how the difference is injected", choices=NORMS)
    max_new_tokens: int = option(200, "explanation length cap, in tokens", ge=1)
    temperature: float = option(1.0, "AV sampling temperature", ge=0)
    mean_samples: int = option(32, "explanations sampled of the mean difference", ge=0)
    min_count: int = option(5, "terms used fewer times in all are left out of the table", ge=1)
    seed: int = option(0, "positions and sampling (the same seed on every side)", ge=0)
    device: str | None = option(None, DEVICE_HELP)
    dtype: str | None = option(None, DTYPE_HELP)


# ------------------------------------------------------------------------------ math


def difference_vectors(base: torch.Tensor, tuned: torch.Tensor, norm: str) -> torch.Tensor:
    """The vectors injected for the difference `tuned - base` (`[n, d]` each; see the
    module docstring for `norm`). A position where the two agree exactly gets the mean
    (anchored) or zeros (raw)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    delta = (tuned - base).float()
    if norm == "raw":
        return delta
    base = base.float()
    mu = base.mean(dim=0, keepdim=True)
    spread = (base - mu).norm(dim=-1).median()
    length = delta.norm(dim=-1, keepdim=True)
    unit = torch.where(length > 0, delta / length.clamp_min(1e-12), torch.zeros_like(delta))
    return mu + spread * unit


def mean_difference(base: torch.Tensor, tuned: torch.Tensor, norm: str) -> torch.Tensor:
    """The mean difference over all positions `[1, d]`, normalised as one position's
    (`anchored`: around the mean base activation)."""
    delta = (tuned - base).float().mean(dim=0, keepdim=True)
    if norm == "raw":
        return delta
    return difference_vectors(base, base + delta, "anchored").mean(dim=0, keepdim=True)


def group_means(
    base: list[torch.Tensor], tuned: list[torch.Tensor], groups: list, norm: str
) -> torch.Tensor:
    """`[2 * len(groups), d]`: for each group of documents (indices into `base` and
    `tuned`, each `[positions, d]`), the mean difference over all their positions, then
    its opposite, each normalised as `mean_difference`."""
    rows = []
    for group in groups:
        b = torch.cat([base[i] for i in group])
        t = torch.cat([tuned[i] for i in group])
        rows += [mean_difference(b, t, norm), mean_difference(t, b, norm)]
    return torch.cat(rows)


def terms(text: str) -> set[str]:
    """The words (stop words left out) and two-word phrases of `text`, lower-cased."""
    words = _WORD.findall(text.lower())
    found = {w for w in words if w not in _STOP and not w.isdigit()}
    found |= {f"{a} {b}" for a, b in pairwise(words)}
    return found


def term_table(sides: dict[str, list[str]], min_count: int = 5) -> list[dict]:
    """Per term: the share of positions whose explanation uses it on each side, and the
    paired change tuned − base with its 95% CI (normal approximation over positions);
    sorted by the size of the change, then the term. `sides` maps side → explanation per
    position (same positions, same order)."""
    n = len(sides["base"])
    sets = {side: [terms(t) for t in texts] for side, texts in sides.items()}
    counts = Counter(term for found in sets.values() for s in found for term in s)
    rows = []
    for term, count in counts.items():
        if count < min_count:
            continue
        use = {side: np.array([term in s for s in found], float) for side, found in sets.items()}
        paired = use["tuned"] - use["base"]
        half = 1.96 * paired.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        rows.append(
            {
                "term": term,
                **{side: float(v.mean()) for side, v in use.items()},
                "change": float(paired.mean()),
                "change_ci_low": float(paired.mean() - half),
                "change_ci_high": float(paired.mean() + half),
            }
        )
    rows.sort(key=lambda r: (-abs(r["change"]), r["term"]))
    return rows


def top_terms(texts: list[str], k: int = 10) -> dict[str, float]:
    """The `k` terms used by the most of `texts`, with the share of texts using each."""
    counts = Counter(term for text in texts for term in terms(text))
    return {t: round(c / len(texts), 4) for t, c in counts.most_common(k)} if texts else {}


def naming_rate(texts: list[str], aliases: list[str]) -> np.ndarray:
    """1.0 for each text that names any of `aliases` (whole words, any case), else 0.0."""
    patterns = [re.compile(r"(?<!\w)" + re.escape(a.lower()) + r"(?!\w)") for a in aliases]
    return np.array([any(p.search(t.lower()) for p in patterns) for t in texts], float)


# ------------------------------------------------------------------------------ the run


@dataclass
class Positions:
    """The positions diffed: one entry per position."""

    doc_ids: list[str]
    positions: list[int]
    tokens: list[str]
    contexts: list[str]  # the text up to and including the token (its last 120 characters)
    base: torch.Tensor  # [n, d] block-K outputs of the base model
    tuned: torch.Tensor  # [n, d] of the tuned model


def check_same_tokenizer(base_tok, tuned_tok, config: DiffConfig) -> None:
    if base_tok.get_vocab() != tuned_tok.get_vocab():
        raise NLAKitError(
            f"--base {config.base} and --tuned {config.tuned} have different tokenizers "
            f"({len(base_tok)} vs {len(tuned_tok)} tokens): diffing needs the same text read "
            "the same way; pass the fine-tune of --base."
        )


def read_positions(config: DiffConfig, base, tuned, tokenizer, layer: int) -> Positions:
    """Sample positions from the corpus and read both models' block-`layer` outputs."""
    from nlakit.data.corpora import CorpusOptions, check_corpus, iter_corpus
    from nlakit.data.extract import activations_at, default_min_pos
    from nlakit.data.positions import sample_positions

    check_corpus(config.data)
    min_pos = config.min_pos
    if min_pos is None:
        min_pos = default_min_pos(config.data)
    special = set(tokenizer.all_special_ids)
    options = CorpusOptions(text_field=config.text_field)
    encoded, picks, docs = [], [], []
    for doc in iter_corpus(config.data, tokenizer, options):
        ids = tokenizer(doc.text, add_special_tokens=doc.add_special_tokens)["input_ids"]
        ids = ids[: config.max_length]
        picked = sample_positions(
            ids, special, config.positions_per_doc, min_pos, config.seed, doc.doc_id
        )
        if picked:
            encoded.append(ids)
            picks.append(picked)
            docs.append(doc)
        if len(docs) >= config.docs:
            break
    if not docs:
        raise NLAKitError(
            f"--data {config.data}: no document has a position ≥ {min_pos} in its first "
            f"{config.max_length} tokens; lower --min-pos or use longer documents."
        )
    batch_tokens = 8192
    sides = [
        np.concatenate(
            activations_at(m, layer, encoded, picks, batch_tokens, tokenizer.pad_token_id)
        )
        for m in (base, tuned)
    ]
    doc_ids, positions, tokens, contexts = [], [], [], []
    for doc, ids, picked in zip(docs, encoded, picks, strict=True):
        for p in picked:
            doc_ids.append(doc.doc_id)
            positions.append(p)
            tokens.append(tokenizer.decode(ids[p : p + 1]))
            contexts.append(tokenizer.decode(ids[: p + 1], skip_special_tokens=True)[-120:])
    return Positions(
        doc_ids, positions, tokens, contexts, torch.from_numpy(sides[0]), torch.from_numpy(sides[1])
    )


def explain_sides(nla, found: Positions, config: DiffConfig) -> dict[str, list[str]]:
    """The AV's explanation of each side's vector at every position (one seed for all),
    and `mean_samples` explanations of the mean difference (side `mean`) and of its
    opposite (side `mean_away`)."""
    vectors = {
        "base": found.base,
        "tuned": found.tuned,
        "diff": difference_vectors(found.base, found.tuned, config.norm),
    }
    if config.mean_samples:
        mean = mean_difference(found.base, found.tuned, config.norm)
        away = mean_difference(found.tuned, found.base, config.norm)
        vectors["mean"] = mean.expand(config.mean_samples, -1).contiguous()
        vectors["mean_away"] = away.expand(config.mean_samples, -1).contiguous()
    return {
        side: [
            e.text
            for e in nla.explain(
                v,
                temperature=config.temperature,
                max_new_tokens=config.max_new_tokens,
                seed=config.seed,
                progress=True,
            )
        ]
        for side, v in vectors.items()
    }


def diff(config: DiffConfig) -> dict:
    """Run the diff and write its outputs under `config.out`; returns the summary."""
    from nlakit.atomic import write_text
    from nlakit.eval.outputs import csv_text, write_analysis
    from nlakit.loading import load_causal_lm
    from nlakit.nla import NLA
    from nlakit.store.guard import check_output_dir

    out = check_output_dir(config.out)
    nla = NLA.from_pretrained(av=config.av, device=config.device, dtype=config.dtype)
    layer = config.layer if config.layer is not None else nla.av.meta.layer
    if layer is None:
        raise NLAKitError(f"--av {config.av}: its sidecar records no layer; pass --layer K.")
    base, tokenizer = load_causal_lm(config.base, config.device, config.dtype)
    tuned, tuned_tok = load_causal_lm(config.tuned, config.device, config.dtype)
    check_same_tokenizer(tokenizer, tuned_tok, config)
    found = read_positions(config, base, tuned, tokenizer, layer)
    del base, tuned
    texts = explain_sides(nla, found, config)
    table = term_table({side: texts[side] for side in SIDES}, config.min_count)
    cos = torch.nn.functional.cosine_similarity(found.base, found.tuned, dim=-1)
    relative = (found.tuned - found.base).norm(dim=-1) / found.base.norm(dim=-1).clamp_min(1e-12)
    summary = {
        "n": len(found.positions),
        "documents": len(set(found.doc_ids)),
        "layer": layer,
        "norm": config.norm,
        "cos_base_tuned": float(cos.mean()),
        "relative_change": float(relative.mean()),
        "rising": [r["term"] for r in table if r["change"] > 0][:10],
        "falling": [r["term"] for r in table if r["change"] < 0][:10],
        "mean_difference_terms": top_terms(texts.get("mean", [])),
        "mean_away_terms": top_terms(texts.get("mean_away", [])),
    }
    rows = [
        {
            "doc_id": d,
            "position": p,
            "token": t,
            "context": c,
            **{f"{side}_explanation": texts[side][i] for side in SIDES},
        }
        for i, (d, p, t, c) in enumerate(
            zip(found.doc_ids, found.positions, found.tokens, found.contexts, strict=True)
        )
    ]
    write_text(out / EXPLANATIONS_FILE, csv_text(rows))
    if texts.get("mean"):
        means = [
            {"direction": direction, "explanation": t}
            for direction, side in (("toward", "mean"), ("away", "mean_away"))
            for t in texts[side]
        ]
        write_text(out / MEAN_FILE, csv_text(means))
    write_analysis(out, table, summary, terms_figure(table))
    vectors = {"base": found.base, "tuned": found.tuned}
    return {**summary, "texts": texts, "rows": rows, "terms": table, "vectors": vectors}


def terms_figure(table: list[dict], top: int = 12):
    """The terms whose use changes most: their share on the base, tuned and difference
    sides."""
    from nlakit.eval.plots import figure

    shown = table[:top][::-1]
    fig, ax = figure(
        "terms whose use changes most (tuned vs base)",
        "share of positions whose explanation uses the term",
        "",
        size=(7.0, 0.35 * max(len(shown), 1) + 1.6),
    )
    y = np.arange(len(shown))
    for offset, side in zip((-0.27, 0.0, 0.27), SIDES, strict=True):
        ax.barh(y + offset, [r[side] for r in shown], height=0.27, label=f"{side} side")
    ax.set_yticks(y, [r["term"] for r in shown])
    ax.legend(loc="lower right")
    return fig


def _cmd_diff(args) -> None:
    from nlakit.config_cli import config_from_args

    config = config_from_args(DiffConfig, args)
    summary = diff(config)
    print(
        f"diffed {summary['n']} positions of {summary['documents']} documents at block "
        f"{summary['layer']}: mean cos(base, tuned) {summary['cos_base_tuned']:.3f}, "
        f"mean |tuned - base| / |base| {summary['relative_change']:.3f}"
    )
    for row in summary["terms"][:10]:
        print(
            f"  {row['term']:<24} base {row['base']:.2f}  tuned {row['tuned']:.2f}  "
            f"diff {row['diff']:.2f}  change {row['change']:+.2f} "
            f"[{row['change_ci_low']:+.2f}, {row['change_ci_high']:+.2f}]"
        )
    if summary["mean_difference_terms"]:
        shown = ", ".join(f"{t} {v:.2f}" for t, v in summary["mean_difference_terms"].items())
        print(f"  the mean difference reads as: {shown}")
        shown = ", ".join(f"{t} {v:.2f}" for t, v in summary["mean_away_terms"].items())
        print(f"  its opposite (what the tuned model moved away from) reads as: {shown}")
    print(f"wrote {config.out}/table.csv, {EXPLANATIONS_FILE}, {MEAN_FILE}, summary.json, plot.png")


def register(sub, chosen: str | None) -> None:
    p = sub.add_parser("diff", help="explain how a fine-tuned model's activations differ")
    p.set_defaults(func=_cmd_diff)
    if chosen == "diff":
        from nlakit.config_cli import add_config

        add_config(p, DiffConfig)
