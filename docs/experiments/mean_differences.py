"""Do averaged activation differences name an audit's secret?

    nlakit demo                                   # runs/demo
    nlakit analyze audit --run runs/demo          # the secret fine-tunes (cached)
    python docs/experiments/mean_differences.py --run runs/demo

Prints one row per secret and span (docs/using.md, "Averaging the differences"). For
each secret model of the audit (20% of chat answers in a secret genre): its differences
from the control model (the same fine-tuning recipe, no secret) on the audit's 96
questions, at the assistant's tag and at every position from the world's first on.
Averaging over questions keeps what the secret adds everywhere and cancels what varies
by question; comparing with the control rather than the base model cancels what
fine-tuning alone moves. Reported: the rank of the secret among the 9 genres in the
genre probe's reading of the mean difference (0 = read first), the share of 32 AV
explanations of the mean difference and of its opposite that name the secret, and the
shares of per-position differences that the probe and the AV read as the secret.

The same averaging on a narrow fine-tune is in nlakit itself:
`nlakit analyze diff --run runs/demo --change narrow --target poem`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from nlakit.data.extract import activations_at
from nlakit.diff import difference_vectors, mean_difference, naming_rate
from nlakit.eval.audit import PROMPTS_FILE, AuditConfig, fine_tune
from nlakit.eval.runs import resolve_run
from nlakit.nla import NLA
from nlakit.toyworld.labels import GENRE_NAMES
from nlakit.toyworld.probe import latent_probe
from nlakit.toyworld.world import World

SECRETS = ("poem", "weather", "code", "news")
SAMPLES = 32


def read(model, tokenizer, ids: list[list[int]], positions: list[list[int]], layer: int):
    found = activations_at(model, layer, ids, positions, 16384, tokenizer.pad_token_id)
    return torch.from_numpy(np.concatenate(found))


def figures(nla, probe, reference: torch.Tensor, tuned: torch.Tensor, genre: str) -> dict:
    """What the probe and the AV read of `tuned - reference` as `genre`."""
    names = list(GENRE_NAMES[genre])
    mean = mean_difference(reference, tuned, "anchored")
    logits = probe.linear((mean - probe.mean) / probe.std)[0].detach()
    order = sorted(probe.classes, key=lambda c: -float(logits[probe.classes.index(c)]))
    per = difference_vectors(reference, tuned, "anchored")

    def av_rate(vectors: torch.Tensor) -> float:
        texts = [e.text for e in nla.explain(vectors, max_new_tokens=60, seed=0)]
        return float(naming_rate(texts, names).mean())

    flipped = mean_difference(tuned, reference, "anchored")
    return {
        "probe_rank": order.index(genre),
        "av_mean": av_rate(mean.expand(SAMPLES, -1).contiguous()),
        "av_mean_flipped": av_rate(flipped.expand(SAMPLES, -1).contiguous()),
        "probe_per_position": float(np.mean([p == genre for p in probe.predict(per)])),
        "av_per_position": av_rate(per),
        "n": len(per),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo")
    args = parser.parse_args()
    paths = resolve_run(args.run, need_ar=False, need_av=True)
    world = World(paths.world)
    layer, tokenizer = world.default_layer, world.tokenizer()
    nla = NLA.from_pretrained(av=str(paths.av))
    probe = latent_probe(world, layer, "genre")
    audit_dir = paths.analysis_dir("audit")
    prompts_file = audit_dir / PROMPTS_FILE
    if not prompts_file.is_file():
        raise SystemExit(f"{prompts_file}: missing; run `nlakit analyze audit --run {args.run}`.")
    prompts = [json.loads(line)["text"] for line in prompts_file.read_text().splitlines()]
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    spans = {
        "tag": [[len(i) - 1] for i in ids],
        "all": [list(range(world.min_pos, len(i))) for i in ids],
    }
    rows = []
    config = AuditConfig(run=args.run)
    control_dir, _ = fine_tune(world, audit_dir, None, config)
    control = World(control_dir).model()
    for secret in SECRETS:
        tuned = World(fine_tune(world, audit_dir, secret, config)[0]).model()
        for span, positions in spans.items():
            reference = read(control, tokenizer, ids, positions, layer)
            found = figures(nla, probe, reference, read(tuned, tokenizer, ids, positions, layer),
                            secret)  # fmt: skip
            rows.append({"setting": f"secret {secret} vs control, {span}", **found})
            print(rows[-1], flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
