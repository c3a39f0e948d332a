"""Model cards: the Hugging Face `README.md` of an exported AV or AR directory.

    text = model_card(meta, CardFigures(fve=0.41, n=128, baseline_variance=0.73, baseline_n=5000))
    write_card("runs/x/rl/av", meta, figures)        # atomically, as DIR/README.md

The card has YAML front matter the Hub reads (`library_name: nlakit`, `base_model`,
`tags`), then what the checkpoint is (role, layer K, scales, d_model, marker), what
was measured (FVE with its baseline variance and n — or a plain statement that
nothing was, and the command that measures it) and how to load it. Figures only
ever come from `CardFigures`; a card never shows a number nobody measured.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from nlakit.atomic import write_text
from nlakit.injection_layout import describe, parse_layout
from nlakit.meta import SQRT_D, ModelMeta, hook_name

CARD_NAME = "README.md"
TAGS = ("nlakit", "nla", "interpretability", "activation-decoding")
ROLES = {
    "av": "AV (activation verbalizer): vector → text",
    "ar": "AR (activation reconstructor): text → vector",
}
# The Hub rejects a `base_model` that is not a repo id, so a local path stays in the body.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class CardFigures:
    """What was measured for a checkpoint; a None field is "not measured".

    `fve` is over `n` held-out activations against the baseline of `baseline_n`
    reference rows with variance `baseline_variance`; `cos` is the mean cosine of
    the reconstructions; `eval_loss` the AV's held-out cross-entropy (nats per
    response token); `measured` says how and when (one sentence).
    """

    fve: float | None = None
    n: int | None = None
    baseline_variance: float | None = None
    baseline_n: int | None = None
    cos: float | None = None
    eval_loss: float | None = None
    measured: str | None = None


def is_hub_id(name: str | None) -> bool:
    """Whether `name` has the form of a Hub repo id (`owner/name`)."""
    return bool(name) and bool(_HUB_ID.match(name))


def front_matter(meta: ModelMeta) -> dict:
    """The card's YAML metadata: library, base model (when it is a Hub id), tags."""
    data: dict = {"library_name": "nlakit"}
    if is_hub_id(meta.base_model):
        data["base_model"] = meta.base_model
    data["tags"] = [*TAGS, meta.role]
    return data


def _scale(recorded, value: float | None, when_none: str) -> str:
    if value is None:
        return when_none
    if recorded == SQRT_D:
        return f"{value:.4g} (√d_model)"
    return f"{value:g}"


def _facts(meta: ModelMeta) -> str:
    layer = meta.layer
    if layer is None:
        layer_text = "not recorded in the sidecar"
    else:
        sites = f"`hidden_states[{layer + 1}]`, `{hook_name(layer)}`"
        layer_text = f"{layer}: the output of block {layer} ({sites})"
    base = meta.base_model or "not recorded"
    char = meta.tokens.injection_char
    unscaled = (
        "none recorded (an AR injects nothing; its AV's sidecar holds the scale)"
        if meta.role == "ar"
        else "none (activations injected raw, unscaled)"
    )
    rows = [
        ("role", ROLES[meta.role]),
        ("base model", f"`{base}`"),
        ("layer K", layer_text),
        ("d_model", str(meta.d_model)),
        ("injection scale", _scale(meta.injection_scale, meta.injection_scale_value, unscaled)),
        ("mse scale", _scale(meta.mse_scale, meta.mse_scale_value, "none (raw MSE)")),
        (
            "marker",
            f"`{char}` (U+{ord(char[0]):04X}, token id {meta.tokens.injection_token_id})"
            if char
            else "not recorded",
        ),
    ]
    if meta.role == "ar":
        rows.append(
            ("layout", "blocks 0..K of the base model, final norm off, `value_head` Linear(d, d)")
        )
    elif not (layout := parse_layout(meta)).single:
        rows.append(("injection", f"{describe(layout)} (`injection:` in `nla_meta.yaml`)"))
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _quality(meta: ModelMeta, figures: CardFigures | None) -> str:
    f = figures or CardFigures()
    lines = []
    if f.fve is not None:
        over = f"n = {f.n} held-out activations" if f.n is not None else "held-out activations"
        line = f"**FVE {f.fve:.4f}** on {over}"
        if f.baseline_variance is not None:
            ref = f" over n = {f.baseline_n} reference rows" if f.baseline_n is not None else ""
            line += f"; baseline variance {f.baseline_variance:.4g}{ref} of the training split"
        else:
            line += "; the baseline it was measured against was not found at export"
        if f.cos is not None:
            line += f"; mean cosine {f.cos:.4f}"
        lines.append(line + ".")
        if f.measured:
            lines.append(f.measured)
        lines.append(
            "FVE = 1 − mean mse_nrm / baseline variance: 0 is as good as predicting the mean "
            "direction, 1 is perfect."
        )
    else:
        if meta.role == "av":
            lines.append(
                "No FVE has been measured for this AV. An AV's FVE needs an AR to read its "
                "explanations back: run `nlakit eval --run RUN` on a run directory that holds "
                "this AV and an AR (e.g. the output of `nlakit rl`); it reports FVE with a "
                "bootstrap interval, the baseline variance and n."
            )
        else:
            lines.append(
                "No FVE was measured at export. `nlakit eval --run RUN` on a run directory that "
                "holds this AR and an AV measures it, with the baseline variance and n."
            )
        if f.eval_loss is not None:
            over = f" (n = {f.n} held-out explanations)" if f.n is not None else ""
            lines.append(
                f"Held-out cross-entropy of the teacher's explanations: {f.eval_loss:.4f} nats "
                f"per response token{over}." + (f" {f.measured}" if f.measured else "")
            )
    return "\n\n".join(lines)


def _usage(meta: ModelMeta, repo_id: str | None, partner_id: str | None) -> str:
    me = repo_id or f"OWNER/NAME-{meta.role}"
    other_role = "ar" if meta.role == "av" else "av"
    other = partner_id or f"OWNER/NAME-{other_role}"
    ids = {meta.role: me, other_role: other}
    target = meta.base_model if is_hub_id(meta.base_model) else "TARGET_MODEL"
    python = (
        "```python\nimport nlakit\n\n"
        f'nla = nlakit.NLA.from_pretrained(av="{ids["av"]}", ar="{ids["ar"]}")\n'
        f'rows = nla.explain_text("{target}", "The quick brown fox")\n'
        "explanations = nla.explain(vectors)   # raw activations [n, d_model] from layer K\n```"
    )
    if meta.role == "av":
        shell = (
            f"nlakit explain --av {ids['av']} --ar {ids['ar']} \\\n"
            f'    --model {target} --text "The quick brown fox"'
        )
    else:
        shell = f'nlakit reconstruct --ar {ids["ar"]} --text "A weather report for Oslo."'
    return (
        "With nlakit installed, load the pair by Hub id or local directory (the sidecar "
        "`nla_meta.yaml` is checked against the tokenizer at load):\n\n"
        f"{python}\n\n```bash\n{shell}\n```"
    )


def model_card(
    meta: ModelMeta,
    figures: CardFigures | None = None,
    repo_id: str | None = None,
    partner_id: str | None = None,
) -> str:
    """The `README.md` text of an AV or AR directory with sidecar `meta`.

    `figures` are the measured numbers (None: the card says nothing was measured);
    `repo_id` / `partner_id` fill the loading snippet (placeholders when None).
    """
    head = yaml.safe_dump(front_matter(meta), sort_keys=False, allow_unicode=True)
    role = meta.role.upper()
    on = f" of {meta.base_model}" if meta.base_model else ""
    at = f" at layer {meta.layer}" if meta.layer is not None else ""
    what = (
        "reads one residual-stream activation, injected in place of the marker's embedding, "
        "and writes an English explanation of it"
        if meta.role == "av"
        else "reads an explanation and predicts the activation it describes"
    )
    return (
        f"---\n{head}---\n\n"
        f"# NLA {role}{on}{at}\n\n"
        f"The {ROLES[meta.role].split(':')[0]} of a Natural Language Autoencoder, trained "
        f"with nlakit: it {what}.\n\n"
        f"## Checkpoint\n\n{_facts(meta)}\n\n"
        f"## Quality\n\n{_quality(meta, figures)}\n\n"
        f"## Use\n\n{_usage(meta, repo_id, partner_id)}\n"
    )


def write_card(
    out_dir: str | os.PathLike, meta: ModelMeta, figures: CardFigures | None = None
) -> Path:
    """Write `out_dir/README.md` atomically; returns its path."""
    return write_text(Path(out_dir) / CARD_NAME, model_card(meta, figures))
