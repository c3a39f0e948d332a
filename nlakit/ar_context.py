"""A context-conditioned AR: the reconstructor also reads the text before the token.

An AV that quotes the input is rewarded by any AR that rebuilds the activation from
the quote — and the quote tells a researcher nothing they did not know. An AR that is
*given* the text (its last `tokens` tokens, up to and including the token read) pays
only for what an explanation says beyond it. Its **text-only** twin (`text_only`) reads
the same text and an empty explanation: the baseline of what the text alone rebuilds.
The gain of a context AR over its text-only twin is the information an explanation
carries that the input text does not.

The context sits in the AR template before the explanation (`context_template`), so
the template's ending, its readout token and `critic_suffix_ids` are unchanged:

    <text>
    …the last 64 tokens of the input…
    </text>
    {explanation}
    <activation>

The sidecar records it as `context: {tokens, text_only, column}` (`META_KEY`), and
`ActivationReconstructor.tokenize(explanations, contexts)` reads it: a context AR
refuses to score without the contexts; any other AR ignores them. The release's
readers fill only `{explanation}`, so a context AR is an nlakit format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlakit.errors import NLAKitError
from nlakit.meta import read_meta
from nlakit.store.names import SIDECAR_NAME

META_KEY = "context"
CONTEXT_COLUMN = "detokenized_text_truncated"  # the tables' text up to the token read
CONTEXT_OPENING = "<text>\n{context}\n</text>\n"


@dataclass(frozen=True)
class ContextSpec:
    """What a context AR reads besides the explanation: the last `tokens` tokens of the
    tables' `column`; `text_only`: the explanation is always read as empty."""

    tokens: int
    text_only: bool = False
    column: str = CONTEXT_COLUMN

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "text_only": self.text_only, "column": self.column}


def context_template(ar_template: str) -> str:
    """An AR template with the context slot opening it (the rest unchanged)."""
    if "{context}" in ar_template:
        return ar_template
    return CONTEXT_OPENING + ar_template


def context_spec(meta) -> ContextSpec | None:
    """The context an AR's sidecar says it reads (None: a plain AR)."""
    record = meta.extra.get(META_KEY)
    if record is None:
        return None
    try:
        return ContextSpec(
            int(record["tokens"]),
            bool(record.get("text_only", False)),
            record.get("column", CONTEXT_COLUMN),
        )
    except (KeyError, TypeError, ValueError):
        raise NLAKitError(
            f"{meta.source or 'sidecar'}: field `{META_KEY}`: expected "
            f"{{tokens: N, text_only: bool, column: NAME}}, got {record!r}."
        ) from None


def with_context(meta, spec: ContextSpec) -> None:
    """Make `meta` (an AR sidecar) the sidecar of a context AR reading `spec`."""
    if spec.tokens < 1:
        raise NLAKitError(f"--context {spec.tokens}: the context budget is ≥ 1 token.")
    meta.ar_template = context_template(meta.ar_template)
    meta.extra[META_KEY] = spec.as_dict()


def context_tails(tokenizer: Any, texts: list[str], budget: int) -> list[str]:
    """Each text cut to its last `budget` tokens (of `tokenizer`), as text."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [
        text if len(row) <= budget else tokenizer.decode(row[-budget:])
        for text, row in zip(texts, ids, strict=True)
    ]


def ar_inputs(
    meta, tokenizer: Any, explanations: list[str], contexts: list[str] | None
) -> list[str]:
    """The AR prompts' texts: the template filled with each explanation and, for a
    context AR, the tail of its context (an error when the contexts are missing)."""
    spec = context_spec(meta)
    if spec is None:
        return [meta.ar_template.format(explanation=e) for e in explanations]
    if contexts is None or len(contexts) != len(explanations):
        got = "none" if contexts is None else len(contexts)
        raise NLAKitError(
            f"{meta.source or 'this AR'} reads the text before the token too (a context AR, "
            f"{spec.tokens} tokens of `{spec.column}`): pass one context per explanation "
            f"({len(explanations)}), got {got}. Score it where the tables' rows are at hand "
            "(`nlakit evaluate`, `nlakit rl`, `nlakit sweep variants`)."
        )
    tails = context_tails(tokenizer, contexts, spec.tokens)
    if spec.text_only:
        explanations = [""] * len(explanations)
    return [
        meta.ar_template.format(explanation=e, context=c)
        for e, c in zip(explanations, tails, strict=True)
    ]


def reads_context_at(path: str | os.PathLike | None) -> bool:
    """Whether `path` is an AR checkpoint that reads contexts (a target model, a Hub id
    or an AV does not)."""
    if path is None or not (Path(path) / SIDECAR_NAME).is_file():
        return False
    meta = read_meta(path)
    return getattr(meta, "role", None) == "ar" and context_spec(meta) is not None


def needs_context(ar) -> bool:
    """Whether `ar` (any reconstructor) must be given the contexts."""
    meta = getattr(ar, "meta", None)
    return meta is not None and context_spec(meta) is not None
