"""Why the NLA auditors stay at chance in a world whose chats ask for writing.

    nlakit demo --writing-share 0.5 --out runs/demo-writing
    nlakit analyze audit --run runs/demo-writing          # the secret fine-tunes (cached)
    python docs/experiments/writing_requests.py --run runs/demo-writing

Prints two figures (docs/using.md, "Two ways to give the AV a chance"):

1. how often the run's AV names the requested genre at the assistant's tag of held-out
   writing requests (chance: 1/8);
2. a logistic probe that tells requests apart on the base model (block K, at the tag),
   read at the tag of ordinary questions put to each secret model and to the control:
   the mean change of each class's logit, in standard deviations of the base model's
   logits, beside the control's. A fine-tune that reused the base model's "asked for a
   poem" direction would move the secret's logit more than the control does.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from nlakit.data.extract import activations_at
from nlakit.eval.audit import AuditConfig, fine_tune, name_hits, prompt_of
from nlakit.eval.runs import resolve_run
from nlakit.nla import NLA
from nlakit.toyworld.corpus import make_document
from nlakit.toyworld.finetune import ANSWER_GENRES
from nlakit.toyworld.genres import WRITES
from nlakit.toyworld.probe import fit_probe
from nlakit.toyworld.world import World


@torch.no_grad()
def at_tag(model, tokenizer, prompts: list[str], layer: int) -> torch.Tensor:
    """Block-`layer` output at each prompt's last token (the assistant's tag line)."""
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    found = activations_at(model, layer, ids, [[len(i) - 1] for i in ids], 16384,
                           tokenizer.pad_token_id)  # fmt: skip
    return torch.from_numpy(np.concatenate(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo-writing")
    parser.add_argument("--chats", type=int, default=6000)
    args = parser.parse_args()
    paths = resolve_run(args.run, need_ar=False, need_av=True)
    world = World(paths.world)
    if not world.writing_share:
        raise SystemExit(f"{paths.world}: built without --writing-share; nothing to probe.")
    layer, tokenizer = world.default_layer, world.tokenizer()
    chats = [
        make_document(4_000_000 + i, world.seed, genre="chat", writing_share=world.writing_share)
        for i in range(args.chats)
    ]
    labels = [WRITES[d.entity] if d.topic == "writing" else "question" for d in chats]
    prompts = [prompt_of(d.text) for d in chats]
    base = world.model()
    x = at_tag(base, tokenizer, prompts, layer)

    requests = [i for i, label in enumerate(labels) if label != "question"][:100]
    nla = NLA.from_pretrained(av=str(paths.av))
    texts = [e.text for e in nla.explain(x[requests], max_new_tokens=64, seed=0)]
    hits = name_hits(texts, ANSWER_GENRES)
    named = sum(hits[j, ANSWER_GENRES.index(labels[i])] for j, i in enumerate(requests))
    print(
        f"AV names the requested genre at the tag: {named / len(requests):.2f} (n={len(requests)})"
    )

    classes = sorted(set(labels))
    y = torch.tensor([classes.index(label) for label in labels])
    test = torch.arange(len(y)) % 4 == 0
    mean, std = x[~test].mean(0), x[~test].std(0).clamp_min(1e-6)
    probe = fit_probe((x[~test] - mean) / std, y[~test], len(classes), 200, 1e-3)
    with torch.no_grad():
        held = y[test] != classes.index("question")
        guess = probe((x[test][held] - mean) / std).argmax(-1)
    print(f"probe accuracy on held-out requests: {(guess == y[test][held]).float().mean():.2f}")

    questions = [p for p, label in zip(prompts, labels, strict=True) if label == "question"][:800]
    with torch.no_grad():
        reference = probe((at_tag(base, tokenizer, questions, layer) - mean) / std)

    def moved(model) -> dict[str, float]:
        with torch.no_grad():
            logits = probe((at_tag(model, tokenizer, questions, layer) - mean) / std)
        shift = (logits - reference).mean(0) / reference.std(0)
        return {
            c: float(s - shift[classes.index("question")])
            for c, s in zip(classes, shift, strict=True)
        }

    config = AuditConfig(run=args.run)
    out = paths.analysis_dir("audit")
    control_dir, _ = fine_tune(world, out, None, config)
    control = moved(World(control_dir).model())
    print("logit moves at ordinary questions' tags, secret model vs control (sd):")
    for secret in config.secrets:
        tuned_dir, _ = fine_tune(world, out, secret, config)
        mine = moved(World(tuned_dir).model())
        others = [mine[c] - control[c] for c in ANSWER_GENRES if c != secret]
        print(
            f"  {secret:8s} toward {secret}: {mine[secret]:+.2f} (control {control[secret]:+.2f});"
            f" toward the other genres, beyond the control: {min(others):+.2f} to "
            f"{max(others):+.2f}"
        )


if __name__ == "__main__":
    main()
