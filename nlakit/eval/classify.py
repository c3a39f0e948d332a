"""`nlakit analyze classify --run RUN`: do the explanations tell a label as well as the
activation does?

A label of every eval row (the toy world's genre by default) is predicted three ways,
each by a logistic regression fitted on rows of the run's training table (`--train-rows`,
explained by the run's AV; held-out documents are scored) or, with `--train-rows 0`,
scored out of fold on the eval rows alone (folds by document):

    probe          the raw activation (standardised): what is linearly readable
    explanations   the AV's explanation (tf-idf of word 1–2-grams): what the words say
    shuffled       the AV's explanation of another row's vector: what words about some
                   other activation say (the control: prompts and layout alone)

beside the teacher's explanations of the same rows (when the eval table has them) and
the majority class. With `--judge SPEC` (a teacher backend: `anthropic:MODEL`,
`openai:MODEL[@URL]`, `hf:PATH`) an LLM also reads each eval row's explanation and picks
its label among the numbered label values (`nlakit.eval.classify_judge`; no training;
replies cached in `RUN/eval/classify/judge.sqlite`). Accuracies carry 95% bootstrap CIs
over rows; the gaps to the probe (also `judge_minus_probe`) and to the shuffled control
are paired. Writes `RUN/eval/classify/{table.csv, summary.json, plot.png}`.

Labels come from, in this order: `--labels TABLE` (a parquet or CSV file with doc_id,
position and the label column, joined to the eval rows), a column of `rows.parquet`,
or the toy world's latent record (genre, topic, role, next_kind, tone, section …).

    from nlakit.eval.classify import ClassifyConfig, classify
    summary = classify(ClassifyConfig(run="runs/demo", label="genre"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nlakit.config import Config, option
from nlakit.errors import NLAKitError, require
from nlakit.eval.analyses import directory_of
from nlakit.eval.classify_judge import judge_right
from nlakit.eval.conditions import text_column
from nlakit.eval.outputs import write_analysis
from nlakit.eval.plots import bar_with_ci
from nlakit.eval.rows import EvalRows, load_rows
from nlakit.eval.stats import bootstrap_mean, derangement

NAME = directory_of(__name__)  # RUN/eval/classify/
TEACHER_COLUMN = "teacher_explanation"
JUDGE_CACHE = "judge.sqlite"  # RUN/eval/classify/judge.sqlite: the --judge replies


@dataclass
class ClassifyConfig(Config):
    """Predict a label from the explanations, from the activations, and from
    explanations of shuffled vectors."""

    run: str = option(help="run directory (after nlakit eval)")
    label: str = option(
        "genre", "the label: a column of --labels or rows.parquet, or a toy-world latent"
    )
    labels: str | None = option(
        None, "a parquet or CSV table with doc_id, position and the label column"
    )
    column: str = option("explanation", "text column of rows.parquet to classify")
    train_rows: int = option(
        2048,
        "training-table rows the classifiers learn from (0: cross-validate on eval rows)",
        ge=0,
    )
    train_table: str | None = option(
        None, "table the classifiers learn from (default: RUN's tables/av_sft.parquet)"
    )
    device: str | None = option(None, "device the AV explains the training rows on")
    folds: int = option(5, "cross-validation folds (grouped by document)", ge=2)
    min_count: int = option(
        5, "labels seen on fewer rows are dropped (they cannot be learned out of fold)", ge=1
    )
    bootstrap: int = option(1000, "bootstrap resamples for the CIs", ge=100)
    seed: int = option(0, "seeds the folds, the shuffled pairing and the bootstrap", ge=0)
    judge: str = option(
        "",
        "an LLM that picks each explanation's label: anthropic:MODEL, openai:MODEL[@URL] "
        "or hf:PATH (empty: off)",
    )


def read_label_table(path: Path, label: str) -> dict[tuple[str, int], str]:
    """{(doc_id, position): label} from a parquet or CSV table with those columns."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if not path.is_file():
        raise NLAKitError(f"--labels {path}: no such file; pass a parquet or CSV table.")
    try:
        table = pacsv.read_csv(path) if path.suffix == ".csv" else pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise NLAKitError(
            f"--labels {path}: not a readable {'CSV' if path.suffix == '.csv' else 'parquet'} "
            f"table ({exc}); pass a parquet or .csv file."
        ) from None
    missing = [c for c in ("doc_id", "position", label) if c not in table.column_names]
    if missing:
        raise NLAKitError(
            f"--labels {path}: no column(s) {missing} (has {table.column_names}); the table "
            f"needs doc_id, position and the label column {label!r} (--label)."
        )
    return {
        (str(d), int(p)): str(v)
        for d, p, v in zip(
            table["doc_id"].to_pylist(),
            table["position"].to_pylist(),
            table[label].to_pylist(),
            strict=True,
        )
        if v is not None
    }


def label_values(
    columns: dict[str, list], name: str, labels: str | None, records, where: Path
) -> list[str | None]:
    """The label `name` of every row of a table's `columns` (None where it has none), from
    the `labels` table (a path), a column, or the rows' toy-world `records` (a callable,
    or None)."""
    if labels is not None:
        table = read_label_table(Path(labels), name)
        keys = zip(columns["doc_id"], columns["position"], strict=True)
        return [table.get((str(d), int(p))) for d, p in keys]
    if name in columns and name != "record":
        return [None if v is None else str(v) for v in columns[name]]
    known = []
    if records is not None:
        found = records()
        if found and name in found[0]:
            return [str(r[name]) for r in found]
        known = sorted(found[0]) if found else []
    raise NLAKitError(
        f"--label {name}: not a column of {where} (has "
        f"{sorted(c for c in columns if c != 'record')}) nor a latent of its records "
        f"({known or 'no records: not a toy-world run'}); pass one of those, or --labels "
        "TABLE with doc_id, position and that column."
    )


def text_classifier(seed: int):
    """tf-idf of word 1–2-grams into a multinomial logistic regression."""
    require("sklearn", "eval", "`nlakit analyze classify`")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"),
        LogisticRegression(C=10.0, max_iter=2000, random_state=seed),
    )


def vector_probe(seed: int):
    """A logistic probe on standardised activations."""
    require("sklearn", "eval", "`nlakit analyze classify`")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))


def fold_ids(y: np.ndarray, groups: list[str], folds: int, seed: int) -> np.ndarray:
    """The fold of every row: stratified by label, whole documents per fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    out = np.zeros(len(y), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        out[test] = k
    return out


def out_of_fold(make, x, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Whether each row's label is predicted right by a model fitted on the other folds;
    `make()` builds a fresh sklearn estimator, `x` indexes like a numpy array."""
    right = np.zeros(len(y), dtype=bool)
    for k in np.unique(folds):
        test, train = folds == k, folds != k
        right[test] = fit_right(make, x[train], y[train], x[test], y[test])
    return right


def majority_right(y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Whether each row's label is its training folds' most common label."""
    right = np.zeros(len(y), dtype=bool)
    for k in np.unique(folds):
        values, counts = np.unique(y[folds != k], return_counts=True)
        right[folds == k] = y[folds == k] == values[counts.argmax()]
    return right


def keep_rows(labels: list[str | None], min_count: int) -> np.ndarray:
    """Rows with a label seen on at least `min_count` rows."""
    counts: dict[str, int] = {}
    for value in labels:
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    return np.array([v is not None and counts[v] >= min_count for v in labels])


def fit_right(make, x_train, y_train: np.ndarray, x_test, y_test: np.ndarray) -> np.ndarray:
    """Whether each test row's label is predicted right by `make()` fitted on the
    training rows."""
    if len(np.unique(y_train)) < 2:  # one class: predict it
        return y_test == y_train[0]
    try:
        model = make().fit(x_train, y_train)
    except ValueError as exc:
        if "empty vocabulary" not in str(exc):
            raise
        return majority(y_train, y_test)  # texts without a word: they tell nothing
    return model.predict(x_test) == y_test


def majority(y_train: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    values, counts = np.unique(y_train, return_counts=True)
    return y_test == values[counts.argmax()]


@dataclass
class Split:
    """What the predictors see of one set of rows."""

    y: np.ndarray  # labels
    vectors: np.ndarray  # [n, d] raw activations
    texts: np.ndarray  # the AV's explanations
    teacher: np.ndarray | None  # the teacher's explanations, where the table has them

    def subset(self, keep: np.ndarray) -> Split:
        teacher = None if self.teacher is None else self.teacher[keep]
        return Split(self.y[keep], self.vectors[keep], self.texts[keep], teacher)


def inputs(split: Split, seed: int) -> dict[str, np.ndarray]:
    """Each predictor's input rows: probe, explanations, shuffled (another row's
    explanation), teacher explanations."""
    out = {
        "probe": split.vectors,
        "explanations": split.texts,
        "shuffled": split.texts[derangement(len(split.y), seed)],
    }
    if split.teacher is not None:
        out["teacher explanations"] = split.teacher
    return out


def predictors(seed: int) -> dict:
    return {
        "probe": lambda: vector_probe(seed),
        "explanations": lambda: text_classifier(seed),
        "shuffled": lambda: text_classifier(seed),
        "teacher explanations": lambda: text_classifier(seed),
    }


def train_test_right(train: Split, test: Split, seed: int) -> dict[str, np.ndarray]:
    """Per predictor, whether each test row is classified right after fitting on `train`."""
    makers, x_train, x_test = predictors(seed), inputs(train, seed), inputs(test, seed)
    right = {
        name: fit_right(makers[name], x_train[name], train.y, x_test[name], test.y)
        for name in x_test
        if name in x_train
    }
    right["majority"] = majority(train.y, test.y)
    return right


def cross_validated_right(
    split: Split, docs: list[str], folds: int, seed: int
) -> dict[str, np.ndarray]:
    """Per predictor, whether each row is classified right out of fold."""
    fold = fold_ids(split.y, docs, folds, seed)
    makers, x = predictors(seed), inputs(split, seed)
    right = {name: out_of_fold(makers[name], x[name], split.y, fold) for name in x}
    right["majority"] = majority_right(split.y, fold)
    return right


def eval_split(rows: EvalRows, config: ClassifyConfig) -> tuple[Split, list[str | None]]:
    """The eval rows as the predictors see them, and each row's label (None: it has none)."""
    records = rows.records if "record" in rows.columns else None
    labels = label_values(rows.columns, config.label, config.labels, records, rows.paths.rows)
    teacher = None
    if TEACHER_COLUMN in rows.columns and config.column != TEACHER_COLUMN:
        teacher = np.array(text_column(rows, TEACHER_COLUMN), dtype=object)
    split = Split(
        np.array([v or "" for v in labels], dtype=object),
        rows.vectors.numpy(),
        np.array(text_column(rows, config.column), dtype=object),
        teacher,
    )
    return split, labels


def training_split(rows: EvalRows, config: ClassifyConfig, cap: int) -> Split:
    """`--train-rows` rows of the training table, explained by the run's AV."""
    from nlakit.eval.evaluate import load_eval_table, world_records
    from nlakit.eval.runs import resolve_run
    from nlakit.generation import SamplingConfig, sample_explanations
    from nlakit.models import ActivationVerbalizer

    paths = resolve_run(config.run, need_ar=True, need_av=True)
    if config.train_table is not None:
        path = Path(config.train_table)
    elif paths.tables is not None:
        path = paths.tables / "av_sft.parquet"
    else:
        raise NLAKitError(
            f"{paths.root}: no tables directory to learn from; pass --train-table TABLE "
            "(an NLA table of training rows) or --train-rows 0 (cross-validate on eval rows)."
        )
    table = load_eval_table(path, config.train_rows)
    records = None
    if paths.world is not None and {"doc_id", "position"} <= table.columns.keys():
        columns = table.columns

        def records():
            return world_records(paths.world, columns["doc_id"], columns["position"])

    labels = label_values(table.columns, config.label, config.labels, records, path)
    av = ActivationVerbalizer.from_pretrained(paths.av, device=config.device).eval()
    generator = torch.Generator(device=av.device).manual_seed(config.seed)
    with torch.no_grad():
        samples = sample_explanations(
            av, table.vectors, SamplingConfig(max_new_tokens=cap), generator, progress=True
        )
    teacher = table.columns.get("explanation")
    split = Split(
        np.array([v or "" for v in labels], dtype=object),
        table.vectors.float().numpy(),
        np.array([s.explanation or "" for s in samples], dtype=object),
        None if teacher is None else np.array([t or "" for t in teacher], dtype=object),
    )
    return split.subset(np.array([v is not None for v in labels]))


def classify(config: ClassifyConfig) -> dict:
    """Fit and score every predictor; write and return the summary."""
    from nlakit.eval.sweep import run_cap

    rows = load_rows(config.run)
    split, labels = eval_split(rows, config)
    keep = keep_rows(labels, config.min_count)
    test = split.subset(keep)
    classes = np.unique(test.y)
    if len(classes) < 2 or len(test.y) < 2 * config.folds:
        raise NLAKitError(
            f"--label {config.label}: {len(test.y)} labelled eval rows in {len(classes)} "
            f"class(es) seen ≥ {config.min_count} times; a classifier needs two classes and "
            f"at least {2 * config.folds} rows. Evaluate more rows (`nlakit eval --n`) or pick "
            "another label."
        )
    if config.train_rows:
        train = training_split(rows, config, run_cap(rows.paths) or 200)
        right = train_test_right(train, test, config.seed)
        scheme = f"fitted on {len(train.y)} training-table rows, scored on held-out rows"
    else:
        docs = [d for d, k in zip(rows.columns["doc_id"], keep, strict=True) if k]
        right = cross_validated_right(test, docs, config.folds, config.seed)
        scheme = f"{config.folds}-fold cross-validation on the eval rows (folds by document)"
    report = None
    if config.judge:
        cache = rows.paths.analysis_dir(NAME) / JUDGE_CACHE
        device = config.device or "cpu"
        right["judge"], report = judge_right(
            config.judge, test.texts, test.y, config.label, cache, device=device
        )
    return write_results(rows, config, right, len(classes), int((~keep).sum()), scheme, report)


def write_results(
    rows, config, right: dict, classes: int, dropped: int, scheme: str, judge: dict | None = None
) -> dict:
    """Accuracies with bootstrap CIs, the paired gaps, the table and the plot."""
    stats = {
        name: bootstrap_mean(torch.from_numpy(r), config.bootstrap, config.seed)
        for name, r in right.items()
    }
    gaps = {
        "explanations_minus_probe": ("explanations", "probe"),
        "explanations_minus_shuffled": ("explanations", "shuffled"),
    }
    if "judge" in right:
        gaps["judge_minus_probe"] = ("judge", "probe")
    paired = {
        name: bootstrap_mean(
            torch.from_numpy(right[a].astype(float) - right[b].astype(float)),
            config.bootstrap,
            config.seed,
        )
        for name, (a, b) in gaps.items()
    }
    n = len(next(iter(right.values())))
    summary = {
        "run": str(rows.paths.root),
        "label": config.label,
        "column": config.column,
        "n": n,
        "n_dropped": dropped,
        "classes": classes,
        "scheme": scheme,
        **{f"accuracy_{k.replace(' ', '_')}": s["mean"] for k, s in stats.items()},
        **{k: s["mean"] for k, s in paired.items()},
        "predictors": stats,
        "paired": paired,
        "seed": config.seed,
    }
    if judge is not None:  # --judge: its CIs and what asking it cost
        summary["accuracy_judge_ci"] = [stats["judge"]["ci_low"], stats["judge"]["ci_high"]]
        gap = paired["judge_minus_probe"]
        summary["judge_minus_probe_ci"] = [gap["ci_low"], gap["ci_high"]]
        summary["judge_report"] = judge
    table = [{"predictor": k, **s} for k, s in stats.items()]
    table += [{"predictor": k.replace("_", " "), **s} for k, s in paired.items()]
    figure = bar_with_ci(
        f"Predicting {config.label} (n = {n}, {classes} classes)",
        list(stats),
        [s["mean"] for s in stats.values()],
        [s["ci_low"] for s in stats.values()],
        [s["ci_high"] for s in stats.values()],
        ylabel="accuracy",
        xlabel="predictor",
        legend="accuracy (95% bootstrap CI)",
    )
    write_analysis(rows.paths.analysis_dir(NAME), table, summary, figure)
    return summary
