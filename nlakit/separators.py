"""Graded-prefix separators: a token the AV writes between the parts of an explanation,
so that every text up to a separator is an explanation of its own (a nested prefix).

    Poem: verses about the moon by Ruth Vale.<|sep|>
    "Beneath" ends the text and is a word in a verse line.<|sep|> What follows is another word.

The AV's vocabulary gets one added token, `SEPARATOR` (`add_separator_token`): its input
embedding starts at the mean of the existing input embeddings (and, when the output
embedding is not tied to it, its output row at the mean output row), so it starts as
"an average token" rather than as noise. The sidecar records it (`separator:` with the
text, the id and the initialisation), and the tokenizer and resized embeddings are saved
with the checkpoint, so `ActivationVerbalizer.from_pretrained` reloads it as trained.

The AR ignores separators: `ActivationReconstructor.tokenize` strips them
(`strip_separators`) before it reads a text. Three reasons: the reward of
`nlakit rl --reward separators` reads each nested prefix as its own text, so the AR
needs no marker to know where one ends; an AR trained without separators (any SFT AR)
reads separator explanations unchanged; and the same words get the same score whether
or not the AV placed separators, which keeps FVEs comparable across methods.

The warm start needs separators in the teacher's explanations: `add_separators` puts
one after every sentence but the last (`nlakit teach --separators`, or any table through
`separator_text`) — for the toy world's oracle, whose statements are one sentence each,
that is between its features.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from nlakit import sites
from nlakit.errors import NLAKitError

SEPARATOR = "<|sep|>"
META_KEY = "separator"  # the AV sidecar's record of its separator token
# A sentence ends at . ! or ? followed by white space (a quoted "." is not followed by it).
_SENTENCE_END = re.compile(r"(?<=[.!?])(?=\s+\S)")


def add_separators(text: str, separator: str = SEPARATOR) -> str:
    """`text` with `separator` after every sentence that another sentence follows."""
    return _SENTENCE_END.sub(separator, strip_separators(text, separator))


def strip_separators(text: str, separator: str = SEPARATOR) -> str:
    """`text` without its separators (the words the AR reads)."""
    return text.replace(separator, "")


def nested_prefixes(text: str, separator: str = SEPARATOR) -> list[str]:
    """The text before each separator, without separators, stripped of outer white
    space — one per separator, shortest first (the whole text is not among them)."""
    parts = text.split(separator)
    return [
        strip_separators("".join(parts[: i + 1]), separator).strip() for i in range(len(parts) - 1)
    ]


def segment_lengths(tokenizer, text: str, separator: str = SEPARATOR) -> list[int]:
    """Tokens of each part of `text` between separators (a separator counts as one token
    of the part it ends); their sum is the text's length in the AV's tokens."""
    parts = text.split(separator)
    counts = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in parts]
    return [c + (i < len(parts) - 1) for i, c in enumerate(counts)]


def check_separators(texts: list[str], source, separator: str = SEPARATOR) -> None:
    """Refuse training an AV to write separators on texts that have none."""
    if not any(separator in t for t in texts):
        raise NLAKitError(
            f"{source}: no explanation contains the separator {separator!r}, so an AV trained "
            "on it would never write one. Teach with `nlakit teach --separators` (or rewrite "
            "the explanations with `nlakit.separators.add_separators`) and build the tables "
            "again, or drop --separator."
        )


def separator_of(meta) -> str | None:
    """The separator an AV was given (its sidecar's record), or None."""
    record = meta.extra.get(META_KEY)
    return record.get("text") if isinstance(record, dict) else None


def add_separator_token(av: Any, separator: str = SEPARATOR) -> int:
    """Give the AV's tokenizer and embeddings the separator token (a no-op when it has
    it); returns its id. The new input row is the mean input embedding; an untied
    output row, the mean output row. Records it in `av.meta.extra`."""
    if separator_of(av.meta) == separator:
        return av.tokenizer.convert_tokens_to_ids(separator)
    model = sites.unwrap(av.model)
    rows = model.get_input_embeddings().weight.shape[0]
    if separator not in av.tokenizer.get_vocab():
        av.tokenizer.add_tokens([separator])
    token_id = av.tokenizer.convert_tokens_to_ids(separator)
    known = min(rows, token_id)  # rows of real tokens (a padded vocabulary has spare rows)
    if token_id >= rows:
        model.resize_token_embeddings(token_id + 1, mean_resizing=False)
    with torch.no_grad():
        inputs = model.get_input_embeddings().weight
        inputs[token_id] = inputs[:known].mean(0)
        outputs = model.get_output_embeddings()
        if outputs is not None and outputs.weight.data_ptr() != inputs.data_ptr():
            outputs.weight[token_id] = outputs.weight[:known].mean(0)
            if getattr(outputs, "bias", None) is not None:
                outputs.bias[token_id] = outputs.bias[:known].mean()
    av.meta.extra[META_KEY] = {
        "text": separator,
        "token_id": int(token_id),
        "init": "mean of the input embeddings",
    }
    return int(token_id)
