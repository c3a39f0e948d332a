"""The `judge` predictor of `nlakit analyze classify --judge SPEC`: an LLM reads each
explanation and picks, among the label's values (numbered options), the one it
describes.

No training: the judge answers from the words alone, so it is scored on the same eval
rows as the fitted predictors. A reply that names no option ("Answer: N", or a lone
option number; `nlakit.eval.judge.parse_choice`) counts as wrong, and is counted.

    right, report = judge_right("openai:gpt-4.1-mini", texts, y, "genre", cache_path)
"""

from __future__ import annotations

import os

import numpy as np

from nlakit.eval.judge import ask, numbered, parse_choice


def choice_prompt(explanation: str, label: str, options: list[str]) -> str:
    """The question for one explanation: which of `options` (values of `label`) it describes."""
    return (
        "An explanation was written of what a language model represents at one token of a "
        f"text. Which {label} does the explanation describe?\n\n"
        f"Explanation:\n<<<\n{explanation.strip() or '(empty)'}\n>>>\n\n"
        f"Options ({label}):\n{numbered(options)}\n\n"
        'Reply with the number of the best option, as "Answer: N".'
    )


def judge_right(
    spec: str,
    texts: np.ndarray,
    y: np.ndarray,
    label: str,
    cache_path: str | os.PathLike | None,
    progress: bool = True,
    device: str = "cpu",
) -> tuple[np.ndarray, dict]:
    """(whether the judge `spec` picks each row's label `y` from its explanation `texts`,
    the ask report plus `unparsed`: replies naming no option). The options are the
    labels' distinct values, sorted; `device` runs an hf: judge."""
    options = sorted({str(v) for v in y})
    prompts = [choice_prompt(str(t), label, options) for t in texts]
    replies, report = ask(spec, prompts, cache_path, progress=progress, device=device)
    picks = [parse_choice(r, len(options)) for r in replies]
    right = np.array(
        [p is not None and options[p] == str(v) for p, v in zip(picks, y, strict=True)]
    )
    return right, {**report, "unparsed": sum(p is None for p in picks), "options": options}
