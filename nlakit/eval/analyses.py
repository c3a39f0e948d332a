"""The registry of analyses: the one list that `nlakit analyze`, `nlakit sweep`,
`nlakit analyze all` and `nlakit report` read.

Each entry says where the analysis lives (module, config dataclass, entry function
`entry(config) -> summary`), the directory it writes under `RUN/eval/`, and its report
section (title and what it measures). The dict order is the report's order. Adding an
analysis: write its module, add one entry here.

    spec = ANALYSES["tokens"]                  # by its `nlakit analyze` name
    config_cls, entry = load(spec)
    summary = run_analysis("tokens", "runs/demo")

Modules are named, not imported, so reading the registry (the report, `--help`)
imports no analysis and no torch. `Analysis` is a tuple whose first four fields are
(module, config, entry, out_dir).
"""

from __future__ import annotations

import importlib
from typing import NamedTuple


class Analysis(NamedTuple):
    module: str  # the module implementing it
    config: str | None  # its config dataclass (None: not run by `nlakit analyze`)
    entry: str  # its function
    out_dir: str  # RUN/eval/<out_dir>/: table.csv, summary.json, plot.png
    title: str  # its report section's title
    description: str  # what it measures, under the title
    verb: str = "analyze"  # the command that runs it: analyze, sweep, or eval (cross)


# command name → analysis, in report order
REGISTRY: dict[str, Analysis] = {
    "tokens": Analysis(
        "nlakit.eval.token_types", "TokenTypesConfig", "token_types", "token_types",
        "Error by token type",
        "Reconstruction error and FVE by the kind of token the activation sits on (word, "
        "number, punctuation, whitespace …): which activations the NLA explains well.",
    ),
    "format": Analysis(
        "nlakit.eval.formats", "FormatsConfig", "explanation_format", "format",
        "Explanation format",
        "How the form of the explanations (length, lines, quoting the context, following "
        "the teacher's layout) relates to reconstruction error.",
    ),
    "ablation": Analysis(
        "nlakit.eval.ablation", "AblationConfig", "paragraph_ablation", "ablation",
        "Paragraph ablation",
        "Each paragraph of the explanations is removed in turn and the rest re-scored by "
        "the AR: how much of the FVE each part of an explanation carries.",
    ),
    "stego": Analysis(
        "nlakit.eval.stego", "StegoConfig", "steganography", "stego",
        "Steganography probes",
        "Explanations are perturbed in meaning-preserving ways and re-scored: a large drop "
        "means the AR reads information hidden in the surface form, not in what it says.",
    ),
    "text-baseline": Analysis(
        "nlakit.eval.text_baseline", "TextBaselineConfig", "text_baseline", "text_baseline",
        "Text-only baseline",
        "The FVE reachable from the text alone, without the activation, beside the AV's.",
    ),
    "prefix": Analysis(
        "nlakit.eval.prefix", "PrefixConfig", "prefix_curve", "prefix",
        "Prefix curve",
        "FVE and (on the toy world) the truth of each claim from the first k tokens of "
        "each explanation: how much of the activation an explanation says first.",
    ),
    "classify": Analysis(
        "nlakit.eval.classify", "ClassifyConfig", "classify", "classify",
        "Classification from explanations",
        "A label (the toy world's genre by default) predicted out of fold from the "
        "explanations, from the raw activation (a linear probe) and from explanations of "
        "shuffled vectors: do the words tell what the activation tells?",
    ),
    "search": Analysis(
        "nlakit.eval.search", "SearchConfig", "search", "search",
        "AR search",
        "The AR's vector for a query text ranks the eval activations by cosine: precision "
        "of the top k for each query's label value, beside the base rate and random "
        "directions — can the AR find activations from a description?",
    ),
    "steering": Analysis(
        "nlakit.eval.steering", "SteeringConfig", "steering", "steering",
        "AR steering",
        "The AR's vector for a description of each genre, added at block K while the "
        "world's model writes: the share of continuations in that genre, beside a random "
        "direction of the same length and the unsteered model (toy world).",
    ),
    "suffix": Analysis(
        "nlakit.eval.suffix", "SuffixConfig", "suffix_prediction", "suffix",
        "Suffix prediction",
        "A judge reads one explanation and picks the text that followed the explained "
        "token among 10 continuations (9 from other documents): the AV's explanations "
        "beside the teacher's and explanations of shuffled vectors, against chance 0.1.",
    ),
    "sources": Analysis(
        "nlakit.eval.sources", "SourcesConfig", "pick_sources", "sources",
        "Picking the source",
        "A judge reads one explanation and picks the text it explains (the document up to "
        "the explained token) among 4 sources (3 from other documents): the AV's "
        "explanations beside the teacher's and shuffled ones, against chance 0.25.",
    ),
    "rubric": Analysis(
        "nlakit.eval.rubric", "RubricConfig", "rubric", "rubric",
        "Judged quality",
        "A judge (an LLM, or on the toy world the oracle's rules over the ground truth) "
        "scores explanations 1–5 on specificity, coherence, repetitiveness and "
        "faithfulness: the AV's, the teacher's, and other rows' (shuffled) explanations.",
    ),
    "diff": Analysis(
        "nlakit.eval.diffing", "DiffingConfig", "diffing", "diff",
        "Activation diffing",
        "The world's model fine-tuned with a known change and as a control; both diffed "
        "against the base model with the AV (`nlakit diff`): how often the explanations of "
        "the tuned side, of the difference and of the mean difference (and its opposite) "
        "name the change, beside the control (toy world; `--change narrow`: a fine-tune on "
        "one genre).",
    ),
    "audit": Analysis(
        "nlakit.eval.audit", "AuditConfig", "audit", "audit",
        "Hidden-secret audit",
        "The world's model fine-tuned to steer a share of its answers toward a secret genre "
        "(`--kind narrow`: trained on documents of it); an auditor guesses the secret from k "
        "prompts' transcripts or from the AV's explanations of the model's activations on "
        "them: success against k (toy world).",
    ),
    "length": Analysis(
        "nlakit.eval.sweep", "LengthSweepConfig", "length_sweep", "length_sweep",
        "Length sweep",
        "RL runs with different length penalties λ: the FVE each reaches against the mean "
        "length of its explanations (the Pareto curve of FVE and brevity).",
        verb="sweep",
    ),
    "ordering": Analysis(
        "nlakit.eval.ordering", "OrderingConfig", "ordering_sweep", "ordering",
        "Ordering methods",
        "RL runs with rewards that score prefixes (Matryoshka, random-K) beside plain RL "
        "and a length penalty: FVE from the first 8 and 16 tokens against the whole, by "
        "one common AR — which method says the most important things first.",
        verb="sweep",
    ),
    "variants": Analysis(
        "nlakit.eval.variants", "VariantsConfig", "variants_sweep", "variants",
        "AR variants",
        "RL runs scored by other readers (more-trained, regularised, prefix-trained, "
        "linear, smaller, context-reading ARs): FVE by a common AR, the gain over what the "
        "input text alone rebuilds, quote rate and truth — does the reader change what the "
        "AV says?",
        verb="sweep",
    ),
    "truth": Analysis(
        "nlakit.eval.truth", "TruthConfig", "truth_analysis", "truth",
        "Truth on the toy world",
        "Each claim of an explanation (genre, topic, entity, role, continuation) scored "
        "correct, wrong or absent against the toy world's known latent variables.",
    ),
    "cross": Analysis(
        "nlakit.eval.cross", None, "cross_table", "cross",
        "AV × AR cross table",
        "Each AV's explanations scored by each AR: the diagonal is each pair's own FVE, "
        "the rest how well one AV's explanations are read by another AR.",
        verb="eval",  # `nlakit eval --run A --run B`
    ),
}  # fmt: skip

ANALYSES = {name: a for name, a in REGISTRY.items() if a.verb == "analyze"}  # nlakit analyze NAME
SWEEPS = {name: a for name, a in REGISTRY.items() if a.verb == "sweep"}  # nlakit sweep KIND
SECTIONS = {a.out_dir: a for a in REGISTRY.values()}  # RUN/eval/<out_dir> → its report section


def directory_of(module: str) -> str:
    """The `RUN/eval/` directory of the analysis implemented in `module` (its `__name__`)."""
    for analysis in REGISTRY.values():
        if analysis.module == module:
            return analysis.out_dir
    raise KeyError(f"{module} is not in the analysis registry (nlakit/eval/analyses.py)")


def load(spec: Analysis):
    """(config class, entry function) of an analysis; imports its module."""
    module = importlib.import_module(spec.module)
    return getattr(module, spec.config), getattr(module, spec.entry)


def run_analysis(name: str, run: str, **options) -> dict:
    """Run one analysis by its `nlakit analyze` name on `run`; returns its summary."""
    config_cls, entry = load(ANALYSES[name])
    return entry(config_cls(run=run, **options))
