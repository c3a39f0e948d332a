"""Multiple-choice questions about explanations: the machinery that `nlakit analyze
suffix` (`nlakit.eval.suffix`) and `nlakit analyze sources` (`nlakit.eval.sources`)
share.

Every asked eval row gets a question (`draw_questions`): its own candidate text (what
came next, where it came from …) among distractors, the texts of other eval rows from
other documents. A judge picks an option after reading one explanation; the same
questions are asked with three explanations of each row:

    av         the AV's explanation of the row's activation
    teacher    the teacher's explanation of the row (where rows.parquet has them)
    shuffled   the AV's explanation of another row's activation (a derangement, as in
               `nlakit analyze classify`): chance, by design

Judges: `oracle` (toy world) reads the explanation's claims with the world's own parser
(`read_claims`) and scores each option with the analysis's rules, which see only the
option's text; the best score wins, ties broken by a seeded RNG, so an explanation that
claims nothing scores chance. Any teacher backend spec (`anthropic:MODEL`,
`openai:MODEL[@URL]`, `hf:PATH`) answers the analysis's prompt through
`nlakit.eval.judge`, cached in `RUN/eval/NAME/judge.sqlite`; a reply that names no
option counts as wrong and is counted as `unparsed`.

`multiple_choice` writes `RUN/eval/NAME/{table.csv, summary.json, plot.png, questions.csv}`:
accuracies with 95% bootstrap CIs over questions, the paired AV − shuffled gap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nlakit.atomic import write_text
from nlakit.config import Config, option
from nlakit.errors import NLAKitError
from nlakit.eval.conditions import text_column
from nlakit.eval.judge import ORACLE, ask, parse_choice
from nlakit.eval.outputs import csv_text, write_analysis
from nlakit.eval.plots import bar_with_ci
from nlakit.eval.rows import EvalRows
from nlakit.eval.stats import bootstrap_mean, derangement
from nlakit.toyworld.genres import entities
from nlakit.toyworld.labels import CONTINUATIONS, GENRE_NAMES, TOPICS
from nlakit.toyworld.truth import claim_parts, find_values

QUESTIONS_FILE = "questions.csv"
JUDGE_CACHE = "judge.sqlite"
TEACHER_COLUMN = "teacher_explanation"
DISTRACTORS = ("random", "same_genre")
BACKENDS = ("anthropic", "openai", "hf")  # judge specs other than the oracle
LABELS = {"av": "AV", "teacher": "teacher", "shuffled": "shuffled vectors"}
# A quoted span ends at a quote followed by a space, punctuation or the end of the line,
# so a quoted quotation mark (`"""`) reads as `"`.
_QUOTED = re.compile(r'"(.*?)"(?=[\s,.;:!?)]|$)', re.MULTILINE)
ORACLE_NEEDS = (
    "--judge oracle reads claims with the toy world's rules. Pass a judge model instead: "
    "--judge openai:MODEL[@URL], anthropic:MODEL or hf:PATH."
)


@dataclass
class ChoiceConfig(Config):
    """What every multiple-choice analysis of explanations takes."""

    run: str = option(help="run directory (after nlakit eval)")
    judge: str = option(
        ORACLE,
        "oracle (the toy world's rules), or a teacher backend that answers: "
        "anthropic:MODEL, openai:MODEL[@URL], hf:PATH",
    )
    distractors: str = option(
        "random",
        "distractors: other documents' rows at random, or (same_genre) of the row's genre first",
        choices=DISTRACTORS,
    )
    options: int = option(4, "options per question: the true one and options − 1 others", ge=2)
    bootstrap: int = option(1000, "bootstrap resamples for the CIs", ge=100)
    seed: int = option(
        0, "seeds the distractors, the shuffled pairing, the oracle's ties, the bootstrap", ge=0
    )
    device: str | None = option(None, "device of an hf: judge (default: cpu)")


# --------------------------------------------------------------------------- questions


@dataclass
class Question:
    """A question about the explanation of asked row `row` (rows index the asked rows)."""

    row: int
    rows: list[int]  # the row each option is the text of
    options: list[str]
    answer: int  # the index of the true option (row `row`'s own text)


def draw_questions(
    texts: Sequence[str],
    docs: Sequence[str],
    n_options: int,
    seed: int,
    groups: Sequence[str] | None = None,
) -> list[Question]:
    """A question per row: its own text and `n_options - 1` distinct other texts, each of
    a row of another document, in a random order (seeded per row). With `groups`, rows
    of the row's group come first and rows of other groups fill what they lack."""
    questions = []
    for i, text in enumerate(texts):
        rng = np.random.default_rng([seed, i])
        pool = [j for j in range(len(texts)) if docs[j] != docs[i] and texts[j] != text]
        order = list(rng.permutation(pool))
        if groups is not None:
            order.sort(key=lambda j: groups[j] != groups[i])  # stable: random within each
        chosen, seen = [], {text}
        for j in order:
            if texts[j] not in seen:
                chosen.append(int(j))
                seen.add(texts[j])
            if len(chosen) == n_options - 1:
                break
        if len(chosen) < n_options - 1:
            raise NLAKitError(
                f"--options {n_options}: row {i} has only {len(chosen)} distinct candidate "
                f"texts from other documents, {n_options - 1} needed; evaluate more rows "
                "(`nlakit eval --n`) or ask with fewer --options."
            )
        option_rows = [chosen[k] if k < len(chosen) else i for k in rng.permutation(n_options)]
        questions.append(
            Question(i, option_rows, [texts[j] for j in option_rows], option_rows.index(i))
        )
    return questions


# --------------------------------------------------------------------------- the oracle


@dataclass(frozen=True)
class Claims:
    """What an explanation says, in the form a judge checks it against a candidate text."""

    genres: frozenset[str] = frozenset()  # genre ids (the label it opens with)
    topic_words: tuple[str, ...] = ()  # every alias of every claimed topic
    entities: tuple[str, ...] = ()
    next_kinds: frozenset[str] = frozenset()  # CONTINUATIONS ids: what must come next
    token: str | None = None  # the quoted final token, line breaks as "\n"
    quotes: tuple[str, ...] = ()  # the other quoted text (what it quotes of the context)


def read_claims(explanation: str) -> Claims:
    """The claims of an explanation, read with the toy world's parser (`claim_parts`) in
    any of its layouts: topics and entities are looked up within the claimed genre (in
    every genre when it claims none); the final token is the last quoted span."""
    part = claim_parts(explanation)
    genres = {g for _, g in find_values(part["genre"], GENRE_NAMES)[:1]}
    scope = sorted(genres) or list(TOPICS)
    topics = {f"{g}/{t}": aliases for g in scope for t, aliases in TOPICS[g].items()}
    names = {e: (e,) for g in scope for t in TOPICS[g] for e in entities(g, t)}
    quoted = [m.group(1).replace("\\n", "\n") for m in _QUOTED.finditer(explanation)]
    return Claims(
        genres=frozenset(genres),
        topic_words=tuple(
            sorted({a for _, k in find_values(part["subject"], topics) for a in topics[k]})
        ),
        entities=tuple(sorted({e for _, e in find_values(part["subject"], names)})),
        next_kinds=frozenset(k for _, k in find_values(part["next"], CONTINUATIONS)),
        token=quoted[-1] if quoted else None,
        quotes=tuple(quoted[:-1]),
    )


def mentions(text: str, words: Sequence[str]) -> bool:
    """Whether any of `words` appears in `text` (case-insensitively, on word boundaries)."""
    return bool(words) and bool(find_values(text, {w: (w,) for w in words}))


def best(points: Sequence[float], rng: np.random.Generator) -> int:
    """The index of the highest score, ties broken by `rng`."""
    top = max(points)
    tied = [k for k, p in enumerate(points) if p == top]
    return tied[int(rng.integers(len(tied)))]


def oracle_picks(
    questions: Sequence[Question],
    explanations: Sequence[str],
    points: Callable[[Claims, int], float],
    seed: int,
) -> list[int]:
    """The oracle's pick for each question: `points(claims, row)` scores the option that
    is row `row`'s text; every explanation breaks ties with the same RNG per question."""
    picks = []
    for q in questions:
        claims = read_claims(explanations[q.row])
        rng = np.random.default_rng([seed, q.row])
        picks.append(best([points(claims, r) for r in q.rows], rng))
    return picks


def toy_world(paths, need: str):
    """The run's toy world; an error saying what `need`s it off the toy world."""
    from nlakit.toyworld.world import World

    if paths.world is None:
        raise NLAKitError(f"{paths.root}: not a toy-world run (no world); {need}")
    return World(paths.world)


def genre_readings(world, texts: list[str], records: list[dict], seed: int):
    """(the genre the world's reader reads in each text, its accuracy on held-out documents
    and on these texts: only the summary compares with the latent genres, never the judge)."""
    from nlakit.toyworld.reader import genre_reader

    reader = genre_reader(world, seed=seed)
    read = reader.predict(texts)
    right = [g == r["genre"] for g, r in zip(read, records, strict=True)]
    return read, {
        "genre_reader_accuracy": reader.accuracy,
        "genre_reader_accuracy_on_options": float(np.mean(right)),
    }


# --------------------------------------------------------------------------- judges


def check_judge(judge: str) -> None:
    """A clear error for a judge that is neither the oracle nor a backend spec."""
    if judge != ORACLE and judge.split(":", 1)[0] not in BACKENDS:
        raise NLAKitError(
            f"--judge {judge}: expected oracle or a backend spec (anthropic:MODEL, "
            "openai:MODEL[@URL], hf:PATH)."
        )


def quoted(text: str) -> str:
    """A candidate text as shown to a judge: in quotes, line breaks written `\\n`."""
    return '"' + text.replace("\n", "\\n") + '"'


def judge_picks(config, questions, explanations: dict[str, list[str]], prompt, cache: Path):
    """({explainer: the judge's pick per question, None where a reply names none}, report)."""
    prompts = [
        prompt(texts[q.row], q.options) for texts in explanations.values() for q in questions
    ]
    replies, report = ask(config.judge, prompts, cache, device=config.device or "cpu")
    n, picks = len(questions), {}
    for k, name in enumerate(explanations):
        answers = replies[k * n : (k + 1) * n]
        picks[name] = [
            parse_choice(a, len(q.options)) for a, q in zip(answers, questions, strict=True)
        ]
    return picks, report


# --------------------------------------------------------------------------- the analysis


def explainer_texts(rows: EvalRows, asked: list[int], seed: int) -> dict[str, list[str]]:
    """The explanations each question is asked with: the AV's, the teacher's (where the
    rows have them) and the AV's of another asked row (a derangement)."""
    av = [text_column(rows, "explanation")[i] for i in asked]
    out = {"av": av}
    if TEACHER_COLUMN in rows.columns:
        out["teacher"] = [text_column(rows, TEACHER_COLUMN)[i] for i in asked]
    out["shuffled"] = [av[j] for j in derangement(len(av), seed)]
    return out


def distractor_groups(rows: EvalRows, asked: list[int], mode: str) -> list[str] | None:
    """Each asked row's genre when distractors are drawn by genre (else None)."""
    if mode == "random":
        return None
    if "genre" in rows.columns:
        return [str(rows.columns["genre"][i]) for i in asked]
    if "record" in rows.columns:
        records = rows.records()
        return [records[i]["genre"] for i in asked]
    raise NLAKitError(
        f"{rows.paths.rows}: --distractors same_genre needs each row's genre (a genre "
        "column, or a toy-world run's records); use --distractors random."
    )


def multiple_choice(
    rows: EvalRows,
    config: ChoiceConfig,
    name: str,
    asked: list[int],
    texts: list[str],
    points: Callable[[Claims, int], float] | None,
    prompt: Callable[[str, Sequence[str]], str],
    extra: dict,
) -> dict:
    """Ask every question with each explanation (the oracle scores options with
    `points`; a judge model reads `prompt`s), then write the results to RUN/eval/`name`.
    `asked`: the eval rows asked about; `texts`: each one's candidate text."""
    docs = [rows.columns["doc_id"][i] for i in asked]
    groups = distractor_groups(rows, asked, config.distractors)
    questions = draw_questions(texts, docs, config.options, config.seed, groups)
    explanations = explainer_texts(rows, asked, config.seed)
    out = rows.paths.analysis_dir(name)
    if config.judge == ORACLE:
        picks = {
            k: oracle_picks(questions, e, points, config.seed) for k, e in explanations.items()
        }
    else:
        picks, report = judge_picks(config, questions, explanations, prompt, out / JUDGE_CACHE)
        extra = {**extra, "judge_report": report}
    if groups is not None:
        other = sum(groups[r] != groups[q.row] for q in questions for r in q.rows)
        extra = {**extra, "distractors_of_another_genre": other}
    return write_results(rows, config, out, asked, questions, picks, extra)


def write_results(rows, config, out: Path, asked, questions, picks: dict, extra: dict) -> dict:
    """Accuracies with bootstrap CIs, the paired AV − shuffled gap, the tables, the plot."""
    right = {
        k: np.array([p == q.answer for p, q in zip(ps, questions, strict=True)], dtype=float)
        for k, ps in picks.items()
    }
    stats = {
        k: bootstrap_mean(torch.from_numpy(r), config.bootstrap, config.seed)
        for k, r in right.items()
    }
    gap = right["av"] - right["shuffled"]
    paired = bootstrap_mean(torch.from_numpy(gap), config.bootstrap, config.seed)
    chance = 1 / config.options
    summary = {"run": str(rows.paths.root), "judge": config.judge, "n": len(questions)}
    for k in LABELS:
        s = stats.get(k)
        summary[f"accuracy_{k}"] = None if s is None else s["mean"]
        summary[f"accuracy_{k}_ci"] = None if s is None else [s["ci_low"], s["ci_high"]]
    summary |= {
        "chance": chance,
        "av_minus_shuffled": paired["mean"],
        "av_minus_shuffled_ci": [paired["ci_low"], paired["ci_high"]],
        "unparsed": {k: sum(p is None for p in ps) for k, ps in picks.items()},
        "options": config.options,
        "distractors": config.distractors,
        "n_left_out": len(rows) - len(asked),
        **extra,
        "seed": config.seed,
    }
    table = [
        {"explanations": LABELS[k], **table_row(s), "unparsed": summary["unparsed"][k]}
        for k, s in stats.items()
    ]
    table.append({"explanations": "AV − shuffled (paired)", **table_row(paired)})
    title = f"{out.name}: judge {config.judge} (n = {len(questions)}, {config.options} options)"
    write_analysis(out, table, summary, choice_figure(title, stats, chance))
    write_text(out / QUESTIONS_FILE, csv_text(question_table(rows, asked, questions, picks)))
    return summary


def table_row(stats: dict) -> dict:
    """A `bootstrap_mean` result as table columns: accuracy, ci_low, ci_high, n."""
    return {"accuracy": stats["mean"], **{k: stats[k] for k in ("ci_low", "ci_high", "n")}}


def question_table(rows, asked, questions, picks: dict) -> list[dict]:
    """One row per question: the eval row, its answer and options, each explainer's pick
    (1-based; empty where a judge's reply named none) and whether it is right."""
    table = []
    for k, q in enumerate(questions):
        i = asked[q.row]
        row = {
            "row": i,
            "doc_id": rows.columns["doc_id"][i],
            "position": rows.columns["position"][i],
        }
        row |= {"answer": q.answer + 1, "truth": q.options[q.answer]}
        for name, ps in picks.items():
            row[f"{name}_pick"] = None if ps[k] is None else ps[k] + 1
            row[f"{name}_right"] = int(ps[k] == q.answer)
        table.append(row | {"options": json.dumps(q.options, ensure_ascii=False)})
    return table


def choice_figure(title: str, stats: dict, chance: float):
    """Each explainer's accuracy with its 95% CI, and the chance line."""
    fig = bar_with_ci(
        title,
        [LABELS[k] for k in stats],
        [s["mean"] for s in stats.values()],
        [s["ci_low"] for s in stats.values()],
        [s["ci_high"] for s in stats.values()],
        ylabel="accuracy",
        xlabel="explanations",
        legend="accuracy (95% bootstrap CI)",
    )
    ax = fig.axes[0]
    ax.axhline(chance, color="#C44E52", linestyle="--", label=f"chance ({chance:.2f})")
    ax.set_ylim(0, 1)
    ax.legend(loc="best")
    return fig
