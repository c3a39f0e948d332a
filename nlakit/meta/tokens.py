"""The prompt contract: how AV and AR prompts are rendered and checked against a tokenizer.

`validate(meta, tokenizer)` asserts every recorded id against the live tokenizer:
the marker is one token with the recorded id; the AV prompt, rendered through the
chat template in one step, holds it exactly once between the recorded neighbours;
the AR prompt ends in the recorded suffix ids (the release's rule: the template's
text after `{explanation}`, tokenized alone, first id dropped). `new_meta` creates a sidecar for a
fresh base model.
"""

from __future__ import annotations

from typing import Any

from nlakit.errors import MetaError, field_error
from nlakit.meta.schema import (
    DEFAULT_AR_TEMPLATE,
    DEFAULT_AV_TEMPLATE,
    MARKER_RANGE,
    SQRT_D,
    Meta,
    ModelMeta,
    Scale,
    TokenMeta,
)

# --------------------------------------------------------------------------- prompt contract


def _flat_ids(result: Any) -> list[int]:
    ids = result["input_ids"] if hasattr(result, "keys") else result
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if ids and isinstance(ids[0], list):
        if len(ids) != 1:
            raise ValueError(f"expected one sequence, got {len(ids)}")
        ids = ids[0]
    return list(ids)


def av_prompt_content(template: str, injection_char: str) -> str:
    """The user message of the AV prompt (the template with the marker filled in)."""
    return template.format(injection_char=injection_char)


def render_av_prompt_ids(tokenizer: Any, template: str, injection_char: str) -> list[int]:
    """AV prompt ids: one-step `apply_chat_template(tokenize=True)`, so BOS appears once."""
    messages = [{"role": "user", "content": av_prompt_content(template, injection_char)}]
    result = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_dict=True
    )
    return _flat_ids(result)


def render_ar_prompt_ids(tokenizer: Any, template: str, explanation: str) -> list[int]:
    """AR prompt ids: the filled template with the tokenizer's own special tokens (BOS);
    a context AR's `{context}` slot (`nlakit.ar_context`) is left empty."""
    text = template.format(explanation=explanation, context="")
    return _flat_ids(tokenizer(text, add_special_tokens=True))


def marker_neighbours(ids: list[int], marker_id: int) -> tuple[int, int]:
    """Left and right neighbour ids of the single marker in `ids`."""
    hits = [i for i, t in enumerate(ids) if t == marker_id]
    if len(hits) != 1:
        raise MetaError(
            f"marker id {marker_id} appears {len(hits)} times in the AV prompt, expected 1."
        )
    p = hits[0]
    if p == 0 or p == len(ids) - 1:
        raise MetaError(f"marker id {marker_id} sits at the edge of the AV prompt (position {p}).")
    return ids[p - 1], ids[p + 1]


def ar_template_suffix(template: str) -> str:
    """The AR template's text after `{explanation}` (where the readout token sits)."""
    if "{explanation}" not in template:
        raise field_error(
            MetaError,
            None,
            "prompt_templates.ar",
            "a template containing `{explanation}`",
            repr(template[:80]),
        )
    return template.split("{explanation}")[-1]


def ar_suffix_ids(tokenizer: Any, template: str) -> list[int]:
    """`critic_suffix_ids` by the release's rule: the suffix after `{explanation}`,
    tokenized alone, without its first id (that one can merge with the explanation's
    last characters, so it is not stable). Every AR prompt must end in these ids."""
    suffix = ar_template_suffix(template)
    ids = _flat_ids(tokenizer(suffix, add_special_tokens=False))
    if len(ids) < 2:
        raise field_error(
            MetaError,
            None,
            "prompt_templates.ar",
            "text after `{explanation}` of at least 2 tokens",
            f"{suffix!r} ({len(ids)} token)",
            "The AR reads the last token; a longer fixed ending lets every prompt be checked.",
        )
    return ids[1:]


def legacy_suffix_ids(tokenizer: Any, template: str, length: int) -> list[int]:
    """What nlakit 0.1 recorded: the last `length` ids of the prompt rendered with an
    empty explanation (they can include pieces of the text before `{explanation}`)."""
    return render_ar_prompt_ids(tokenizer, template, "")[-length:]


def upgrade_suffix(meta: Meta, tokenizer: Any) -> bool:
    """Replace `critic_suffix_ids` recorded by the old nlakit rule with the release's
    rule (in memory; the next save writes them). True when they were replaced."""
    t, template = meta.tokens, meta.ar_template
    if t is None or not t.critic_suffix_ids or not template or "{explanation}" not in template:
        return False
    try:
        rule = ar_suffix_ids(tokenizer, template)
    except MetaError:
        return False
    recorded = list(t.critic_suffix_ids)
    if recorded == rule or recorded != legacy_suffix_ids(tokenizer, template, len(recorded)):
        return False
    t.critic_suffix_ids = rule
    return True


# --------------------------------------------------------------------------- validation


def check(meta: Meta, tokenizer: Any) -> list[str]:
    """Every way `meta` disagrees with `tokenizer`; empty when the contract holds."""
    src = meta.source or "sidecar"
    t = meta.tokens
    problems: list[str] = []
    if t is None:
        return problems
    live = tokenizer.encode(t.injection_char, add_special_tokens=False)
    if live != [t.injection_token_id]:
        problems.append(
            f"{src}: field `tokens.injection_token_id`: the marker {t.injection_char!r} must be "
            f"one token with id {t.injection_token_id}, but the tokenizer gives {live}. The "
            "tokenizer does not match this checkpoint (wrong model or changed vocabulary)."
        )
    elif tokenizer.unk_token_id is not None and live[0] == tokenizer.unk_token_id:
        problems.append(
            f"{src}: field `tokens.injection_char`: {t.injection_char!r} maps to the unknown token."
        )
    if meta.av_template:
        try:
            ids = render_av_prompt_ids(tokenizer, meta.av_template, t.injection_char)
        except (KeyError, IndexError, ValueError) as exc:
            problems.append(
                f"{src}: field `prompt_templates.av`: the template must contain "
                f"`{{injection_char}}` and no other braces ({exc!r})."
            )
        else:
            count = ids.count(t.injection_token_id)
            if count != 1:
                problems.append(
                    f"{src}: field `prompt_templates.av`: the rendered AV prompt must contain the "
                    f"marker id {t.injection_token_id} exactly once, found {count} times."
                )
            else:
                left, right = marker_neighbours(ids, t.injection_token_id)
                expected = (t.injection_left_neighbor_id, t.injection_right_neighbor_id)
                if (left, right) != expected:
                    problems.append(
                        f"{src}: field `tokens.injection_left_neighbor_id`/"
                        f"`injection_right_neighbor_id`: expected {expected}, the rendered "
                        f"template gives {(left, right)}. The chat template or AV template "
                        "drifted; use the tokenizer saved with the checkpoint."
                    )
    if meta.ar_template and t.critic_suffix_ids:
        try:
            rule = ar_suffix_ids(tokenizer, meta.ar_template)
            tail = render_ar_prompt_ids(tokenizer, meta.ar_template, "An explanation.")
        except (KeyError, IndexError, ValueError) as exc:
            problems.append(
                f"{src}: field `prompt_templates.ar`: the template must contain `{{explanation}}` "
                f"and no other braces ({exc!r})."
            )
        else:
            recorded = list(t.critic_suffix_ids)
            legacy = legacy_suffix_ids(tokenizer, meta.ar_template, len(recorded))
            if recorded != rule and recorded != legacy:  # nlakit 0.1's rule: upgraded on load
                problems.append(
                    f"{src}: field `tokens.critic_suffix_ids`: expected {rule} (the ids of the "
                    f"AR template's text after `{{explanation}}`, first id dropped), the sidecar "
                    f"records {recorded}. The AR template or tokenizer drifted."
                )
            elif tail[-len(rule) :] != rule:
                problems.append(
                    f"{src}: field `prompt_templates.ar`: a rendered AR prompt ends in "
                    f"{tail[-len(rule) :]}, not in `tokens.critic_suffix_ids` {rule}; the "
                    "tokenizer merges the suffix with the explanation."
                )
    return problems


def validate(meta: Meta, tokenizer: Any) -> None:
    """Raise `MetaError` listing every disagreement between the sidecar and the tokenizer."""
    problems = check(meta, tokenizer)
    if problems:
        raise MetaError("\n".join(problems))


# --------------------------------------------------------------------------- new sidecars


def pick_marker(tokenizer: Any, template: str = DEFAULT_AV_TEMPLATE) -> tuple[str, int]:
    """The first character in U+3200–U+33FF that is one token alone and inside the AV prompt."""
    for code in range(MARKER_RANGE[0], MARKER_RANGE[1] + 1):
        char = chr(code)
        ids = tokenizer.encode(char, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            continue
        prompt = render_av_prompt_ids(tokenizer, template, char)
        if prompt.count(ids[0]) == 1:
            return char, ids[0]
    raise MetaError(
        "no character in U+3200–U+33FF is a single token for this tokenizer. Add one as a token "
        "(`tokenizer.add_tokens(['㊗'])` and resize the embeddings) or pass `injection_char=`."
    )


def new_meta(
    tokenizer: Any,
    layer: int,
    d_model: int,
    *,
    role: str = "av",
    av_template: str = DEFAULT_AV_TEMPLATE,
    ar_template: str = DEFAULT_AR_TEMPLATE,
    injection_char: str | None = None,
    injection_scale: Scale = SQRT_D,
    mse_scale: Scale = SQRT_D,
    base_model: str | None = None,
) -> ModelMeta:
    """A sidecar for a fresh base model: picks the marker, computes neighbours and suffix."""
    if injection_char is None:
        injection_char, marker_id = pick_marker(tokenizer, av_template)
    else:
        ids = tokenizer.encode(injection_char, add_special_tokens=False)
        if len(ids) != 1:
            raise field_error(
                MetaError,
                None,
                "injection_char",
                "a single-token character",
                f"{injection_char!r} → {len(ids)} tokens",
            )
        marker_id = ids[0]
    left, right = marker_neighbours(
        render_av_prompt_ids(tokenizer, av_template, injection_char), marker_id
    )
    tokens = TokenMeta(
        injection_char=injection_char,
        injection_token_id=marker_id,
        injection_left_neighbor_id=left,
        injection_right_neighbor_id=right,
        critic_suffix_ids=ar_suffix_ids(tokenizer, ar_template),
    )
    return ModelMeta(
        role=role,
        d_model=d_model,
        tokens=tokens,
        av_template=av_template,
        ar_template=ar_template,
        injection_scale=injection_scale,
        mse_scale=mse_scale,
        layer_index=layer,
        ar_num_hidden_layers=layer if role == "ar" else None,
        base_model=base_model,
    )
