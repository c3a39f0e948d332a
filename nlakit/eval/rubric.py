"""`nlakit analyze rubric --run RUN [--judge oracle|anthropic:M|openai:M[@URL]|hf:PATH]`:
judged quality of the explanations, on a rubric.

A judge scores every explanation of a sample of the run's eval rows (`--n`, seeded) on
each criterion of `RUBRIC`, 1 (worst) to 5 (best: on every criterion higher is better),
for three sources of explanations of the same rows:

    av          the AV's explanation of the row's activation (`--column`, default
                explanation)
    teacher     the teacher's explanation of the row (when the eval table has one)
    shuffled    the AV's explanation of another row's activation (a derangement across
                all eval rows, as in `classify`), judged against this row: the control

Judges:

- an LLM through any teacher backend (`nlakit.eval.judge`), shown the source text (the
  document up to and including the explained token) and the explanation, never which
  source wrote it; it replies one line per criterion, `criterion: N` (`parse_scores`).
  Identical questions are asked once, and replies are cached in
  `RUN/eval/rubric/judge.sqlite`: a re-run pays only for new questions. A score missing
  from a reply (or a failed request) is NaN and counted in `unparsed`.
- `oracle` (toy world only): *rules over the world's ground truth*, not a judgement of
  taste. specificity counts the latent fields (genre, topic, entity, role, continuation)
  the explanation states in words the truth scorer recognises; faithfulness is the share
  of those claims that are true of the row (`nlakit.toyworld.truth.score_claims`);
  coherence checks the shape the oracle teacher writes (a known layout, and every part
  `claim_parts` reads a claim from present); repetitiveness is 1 − the share of
  repeated word 3-grams or lines. Each is mapped linearly onto 1–5 (fractional scores).
  A faithfulness with no stated claim is NaN, counted in `unparsed`.

Summary: per criterion c and source s, `{c}_{s}` (mean) and `{c}_{s}_ci` (95% bootstrap
CI over rows), the paired `{c}_av_minus_shuffled`, and `n`, `judge`, `unparsed`. Writes
`RUN/eval/rubric/{table.csv (criterion × source), summary.json, plot.png, rows.csv
(one row per sampled row and source)}`.

    from nlakit.eval.rubric import RubricConfig, rubric
    summary = rubric(RubricConfig(run="runs/demo"))              # the toy world's oracle
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from nlakit.atomic import write_text
from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.eval.analyses import directory_of
from nlakit.eval.conditions import text_column
from nlakit.eval.formats import has_genre_line
from nlakit.eval.judge import ORACLE, ask
from nlakit.eval.outputs import csv_text, write_analysis
from nlakit.eval.plots import pyplot
from nlakit.eval.rows import EvalRows, load_rows
from nlakit.eval.stats import bootstrap_mean, derangement
from nlakit.layouts import feature_lines, follows_many_short, follows_structured
from nlakit.toyworld.labels import GENRE_NAMES
from nlakit.toyworld.truth import FIELDS, claim_parts, find_values, score_claims

NAME = directory_of(__name__)  # RUN/eval/rubric/
ROWS_FILE = "rows.csv"
JUDGE_CACHE = "judge.sqlite"
TEACHER_COLUMN = "teacher_explanation"
MAX_REPLY_TOKENS = 96  # four "criterion: N" lines, with room for a preamble
_WORD = re.compile(r"\w+")


# --------------------------------------------------------------------------- oracle rules
# Each rule: (explanation, the row's latent record) -> a score on 1–5, or NaN.


def to_scale(share: float) -> float:
    """A share in [0, 1] as a score on 1–5 (0 → 1, 1 → 5)."""
    return 1.0 + 4.0 * share


def stated_fields(explanation: str, record: Mapping) -> set[str]:
    """The latent fields an explanation states in recognised words. Topics and entities
    are looked up in the genre the explanation itself names (else the row's), so a claim
    about another genre's topic counts as stated."""
    genre = find_values(claim_parts(explanation)["genre"], GENRE_NAMES)[:1]
    own = {**record, "genre": genre[0][1]} if genre else record
    stated = {f for f, v in score_claims(explanation, own).items() if v != "absent"}
    return stated | {f for f, v in score_claims(explanation, record).items() if v != "absent"}


def oracle_specificity(explanation: str, record: Mapping) -> float:
    """The share of latent fields stated, on 1–5."""
    return to_scale(len(stated_fields(explanation, record)) / len(FIELDS))


def oracle_faithfulness(explanation: str, record: Mapping) -> float:
    """The share of stated fields whose value is the row's, on 1–5; NaN when none is stated."""
    stated = stated_fields(explanation, record)
    if not stated:
        return math.nan
    verdicts = score_claims(explanation, record)
    return to_scale(sum(verdicts[f] == "correct" for f in stated) / len(stated))


def follows_layout(explanation: str) -> bool:
    """Whether the text has one of the layouts of `nlakit.layouts`: structured, many-short,
    or plain (2–3 lines, the first a "Genre: description" line)."""
    if follows_structured(explanation) or follows_many_short(explanation):
        return True
    return 2 <= len(feature_lines(explanation)) <= 3 and has_genre_line(explanation)


def oracle_coherence(explanation: str, record: Mapping) -> float:
    """The share of five shape checks passed, on 1–5: it follows a layout, and each part
    `claim_parts` reads a claim from (genre, subject, role, next) is there."""
    parts = claim_parts(explanation)
    checks = [follows_layout(explanation)] + [
        bool(parts[p].strip()) for p in ("genre", "subject", "role", "next")
    ]
    return to_scale(sum(checks) / len(checks))


def repeated_share(text: str, n: int = 3) -> float:
    """The larger of: the share of word n-grams that repeat an earlier one, and the share
    of non-empty lines that repeat an earlier line (case-insensitive); 0 for no text."""
    words = _WORD.findall(text.casefold())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    lines = [line.casefold() for line in feature_lines(text)]
    shares = [(len(items) - len(set(items))) / len(items) for items in (grams, lines) if items]
    return max(shares, default=0.0)


def oracle_repetitiveness(explanation: str, record: Mapping) -> float:
    """1 − `repeated_share`, on 1–5 (5: nothing said twice)."""
    return to_scale(1.0 - repeated_share(explanation))


# --------------------------------------------------------------------------- the rubric


@dataclass(frozen=True)
class Criterion:
    name: str  # the key in the summary and the label the LLM judge writes
    question: str  # what 1 and 5 mean, as the LLM judge reads it
    oracle: Callable[[str, Mapping], float] | None  # the toy world's rule (None: LLM only)


# Adding a criterion is one line here.
RUBRIC = (
    Criterion("specificity", "5 = names concrete, checkable features (what kind of text, "
              "its topic, named entities, the last token's role, what must come next); "
              "1 = vague or generic", oracle_specificity),
    Criterion("coherence", "5 = well formed and readable, its parts fit together; "
              "1 = garbled, broken off or self-contradictory", oracle_coherence),
    Criterion("repetitiveness", "5 = says nothing twice; 1 = mostly repeats itself "
              "(higher is better)", oracle_repetitiveness),
    Criterion("faithfulness", "5 = everything it states is true of the source text; "
              "1 = most of what it states is false of it", oracle_faithfulness),
)  # fmt: skip


def criteria_of(judge: str) -> tuple[Criterion, ...]:
    """The criteria `judge` scores: all for an LLM, those with a rule for the oracle."""
    return tuple(c for c in RUBRIC if judge != ORACLE or c.oracle is not None)


# --------------------------------------------------------------------------- the LLM judge


def judge_prompt(context: str, token: str, explanation: str, criteria=RUBRIC) -> str:
    """The question for one explanation: the source text, the explanation, the rubric."""
    rubric = "\n".join(f"- {c.name}: {c.question}" for c in criteria)
    form = "\n".join(f"{c.name}: N" for c in criteria)
    return (
        "An explanation was written of what a language model represents at the last token "
        "of a text. Grade the explanation.\n\n"
        "Source text (the document up to and including that token, which is last):\n"
        f"<<<\n{context}\n>>>\nThe last token: {token!r}\n\n"
        f"Explanation:\n<<<\n{explanation.strip() or '(empty)'}\n>>>\n\n"
        f"Score it on each criterion from 1 (worst) to 5 (best):\n{rubric}\n\n"
        f"Reply with exactly one line per criterion, a whole number N from 1 to 5:\n{form}"
    )


def parse_scores(reply: str | None, names: list[str]) -> dict[str, float]:
    """{criterion: score} from a reply's `criterion: N` lines (bullets, bold and "N/5"
    allowed; the first line of a criterion wins); NaN where a criterion has no line or
    its score is not on 1–5."""
    out = dict.fromkeys(names, math.nan)
    for name in names:
        line = re.compile(
            rf"^[\s>#*•-]*\**\s*{re.escape(name)}\s*\**\s*[:=]\s*\**\s*"
            r"(\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?",
            re.IGNORECASE | re.MULTILINE,
        )
        match = line.search(reply or "")
        if match is None or match.group(2) not in (None, "5"):
            continue
        value = float(match.group(1))
        out[name] = value if 1 <= value <= 5 else math.nan
    return out


# --------------------------------------------------------------------------- the analysis


@dataclass
class RubricConfig(Config):
    """Judge the explanations on a rubric: the AV's, the teacher's and shuffled ones."""

    run: str = option(help="run directory (after nlakit eval)")
    judge: str = option(
        ORACLE,
        "who scores: oracle (toy world: rules over its ground truth), anthropic:MODEL, "
        "openai:MODEL[@URL] or hf:PATH",
    )
    n: int = option(200, "eval rows judged, a seeded sample (0: all)", ge=0)
    column: str = option(
        "explanation", "text column of rows.parquet judged as the AV's (and shuffled)"
    )
    context_chars: int = option(
        2000, "characters of the source text the LLM judge sees (its end)", ge=1
    )
    device: str | None = option(None, "device of an hf: judge")
    bootstrap: int = option(1000, "bootstrap resamples for the CIs", ge=100)
    seed: int = option(0, "seeds the sample, the shuffled pairing and the bootstrap", ge=0)
    progress: bool = option(True, "show progress bars")


def sample_indices(total: int, n: int, seed: int) -> list[int]:
    """`n` of `total` row indices, seeded, in order (all when n is 0 or ≥ total)."""
    if n == 0 or n >= total:
        return list(range(total))
    return sorted(np.random.default_rng(seed).choice(total, size=n, replace=False).tolist())


def source_texts(rows: EvalRows, column: str, seed: int) -> dict[str, list[str]]:
    """Every eval row's explanation by source: `column` as the AV's, the teacher's (where
    the table has them, and `column` is another), `column` deranged as shuffled."""
    av = text_column(rows, column)
    out = {"av": av}
    if TEACHER_COLUMN in rows.columns and column != TEACHER_COLUMN:
        out["teacher"] = text_column(rows, TEACHER_COLUMN)
    out["shuffled"] = [av[j] for j in derangement(len(av), seed)]
    return out


def oracle_scores(rows: EvalRows, keep: list[int], texts: dict, criteria) -> dict:
    """{source: [{criterion: score}] per sampled row} by the oracle's rules."""
    if "record" not in rows.columns:
        raise NLAKitError(
            f"--judge oracle: {rows.paths.rows} has no latent records (not a toy-world run); "
            "the oracle scores by the toy world's ground truth. Pass an LLM judge: "
            "--judge anthropic:MODEL, openai:MODEL[@URL] or hf:PATH."
        )
    every = rows.records()
    records = [every[i] for i in keep]
    return {
        s: [{c.name: c.oracle(t, r) for c in criteria} for t, r in zip(ts, records, strict=True)]
        for s, ts in texts.items()
    }


def llm_scores(rows: EvalRows, keep: list[int], texts: dict, criteria, config, cache):
    """({source: [{criterion: score}]}, {source: [reply]}, the ask report) from the LLM
    judge; identical questions (two rows' empty explanations …) are asked once."""

    def column(name: str) -> list[str]:
        values = rows.columns.get(name) or [""] * len(rows)
        return [values[i] or "" for i in keep]

    contexts, tokens = column("context"), column("token")
    prompts = {
        s: [
            judge_prompt(c[-config.context_chars :], k, t, criteria)
            for c, k, t in zip(contexts, tokens, ts, strict=True)
        ]
        for s, ts in texts.items()
    }
    unique = list(dict.fromkeys(p for ps in prompts.values() for p in ps))
    answers, report = ask(
        config.judge,
        unique,
        cache,
        max_tokens=MAX_REPLY_TOKENS,
        progress=config.progress,
        device=config.device or "cpu",
    )
    answer = dict(zip(unique, answers, strict=True))
    replies = {s: [answer[p] for p in ps] for s, ps in prompts.items()}
    names = [c.name for c in criteria]
    scores = {s: [parse_scores(r, names) for r in rs] for s, rs in replies.items()}
    return scores, replies, report


def rubric(config: RubricConfig) -> dict:
    """Judge every sampled row's explanations; write and return the summary."""
    rows = load_rows(config.run)
    out_dir = rows.paths.analysis_dir(NAME)
    criteria = criteria_of(config.judge)
    names = [c.name for c in criteria]
    keep = sample_indices(len(rows), config.n, config.seed)
    every = source_texts(rows, config.column, config.seed)
    texts = {s: [t[i] for i in keep] for s, t in every.items()}
    replies, report = {}, None
    if config.judge == ORACLE:
        scores = oracle_scores(rows, keep, texts, criteria)
    else:
        cache = out_dir / JUDGE_CACHE
        scores, replies, report = llm_scores(rows, keep, texts, criteria, config, cache)
    values = {s: {c: np.array([r[c] for r in scores[s]]) for c in names} for s in texts}
    summary = {"run": str(rows.paths.root), "column": config.column, **summarise(values, config)}
    summary["criteria"] = names
    if report is not None:
        summary["judge_report"] = report
    table = [{"criterion": c, "source": s, **summary["stats"][s][c]} for c in names for s in values]
    per_row = [
        {
            "doc_id": rows.columns["doc_id"][i] if "doc_id" in rows.columns else i,
            "position": rows.columns["position"][i] if "position" in rows.columns else -1,
            "source": s,
            **scores[s][k],
            **({"reply": replies[s][k]} if replies else {}),
            "explanation": texts[s][k],
        }
        for s in texts
        for k, i in enumerate(keep)
    ]
    write_analysis(out_dir, table, summary, _figure(summary, names))
    write_text(out_dir / ROWS_FILE, csv_text(per_row))
    return summary


def _stats(values: np.ndarray, config: RubricConfig) -> dict:
    """Mean and 95% bootstrap CI of the scored (non-NaN) values."""
    scored = values[~np.isnan(values)]
    if len(scored) == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    return bootstrap_mean(torch.from_numpy(scored), config.bootstrap, config.seed)


def summarise(values: dict[str, dict[str, np.ndarray]], config: RubricConfig) -> dict:
    """The flat keys (`{c}_{s}`, `{c}_{s}_ci`, `{c}_av_minus_shuffled`[`_ci`]), n, judge,
    unparsed, and the per-source stats."""
    stats = {s: {c: _stats(v, config) for c, v in by.items()} for s, by in values.items()}
    flat = {}
    for c in values["av"]:
        for s in values:
            flat[f"{c}_{s}"] = stats[s][c]["mean"]
            flat[f"{c}_{s}_ci"] = [stats[s][c]["ci_low"], stats[s][c]["ci_high"]]
        gap = _stats(values["av"][c] - values["shuffled"][c], config)  # NaN on either: out
        flat[f"{c}_av_minus_shuffled"] = gap["mean"]
        flat[f"{c}_av_minus_shuffled_ci"] = [gap["ci_low"], gap["ci_high"]]
    unparsed = sum(int(np.isnan(v).sum()) for by in values.values() for v in by.values())
    n = len(next(iter(values["av"].values())))
    return {
        "judge": config.judge,
        "n": n,
        "unparsed": unparsed,
        "sources": list(values),
        **flat,
        "stats": stats,
        "seed": config.seed,
    }


def _figure(summary: dict, names: list[str]):
    """Grouped bars: per criterion, one bar per source with its 95% CI."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.5, 2.2 * len(names) + 1.5), 4.2), dpi=110)
    sources = summary["sources"]
    width = 0.8 / len(sources)
    x = np.arange(len(names))
    for j, s in enumerate(sources):
        st = [summary["stats"][s][c] for c in names]
        means = [v["mean"] if v["mean"] is not None else math.nan for v in st]
        errors = [
            [m - v["ci_low"] if v["n"] else 0 for m, v in zip(means, st, strict=True)],
            [v["ci_high"] - m if v["n"] else 0 for m, v in zip(means, st, strict=True)],
        ]
        ax.bar(x + width * j, means, width, yerr=errors, capsize=3, label=s)
    ax.set_xticks(x + width * (len(sources) - 1) / 2)
    ax.set_xticklabels(names)
    ax.set_ylim(0, 5.4)
    ax.axhline(1, color="black", linewidth=0.6)
    ax.set_xlabel("criterion")
    ax.set_ylabel("mean score (1–5, higher is better; 95% CI)")
    ax.set_title(f"Judged quality (judge {summary['judge']}, n = {summary['n']} rows)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="explanations")
    ax.grid(alpha=0.3, axis="y")
    return fig
