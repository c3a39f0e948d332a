"""`nlakit demo` (`make demo`): the default run, offline, on the CPU.

Today it runs everything that exists end to end on the toy world:

1. build the toy world (corpus, tokenizer, target LM) — cached after the first run;
2. probe its layer-K activations for the latents an NLA must put into words;
3. show oracle explanations, the teacher the NLA is trained on;
4. run the NLA inference path on the toy LM: an AV and an AR made from it at
   layer K (not yet trained: their text is the LM's own continuation) explain and
   score tokens of a held-out document.

Training (SFT, then RL) joins between steps 3 and 4 with the training stage.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch

from nlakit.cli import format_table


def _stage(n: int, title: str) -> None:
    print(f"\n[{n}/4] {title}", flush=True)


def run_demo(out: str = "runs/demo", size: str = "demo", seed: int = 0) -> dict:
    from nlakit.models import ActivationReconstructor, ActivationVerbalizer
    from nlakit.nla import NLA
    from nlakit.toyworld.build import build_world, world_config
    from nlakit.toyworld.cli import format_sample
    from nlakit.toyworld.probe import ProbeConfig, probe_world
    from nlakit.toyworld.world import World

    start = time.perf_counter()
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)

    _stage(1, f"toy world ({size}) — corpus, tokenizer, target LM")
    record = build_world(run / "world", world_config(size, seed))
    loss = record["losses"]
    state = "cached" if record["cached"] else f"built in {record['timings_s']['total']:.0f} s"
    print(
        f"      {record['sizes']['documents']} documents, vocabulary {record['sizes']['vocab_size']}, "
        f"{record['sizes']['parameters']:,} parameters ({state})"
    )
    print(f"      LM loss {loss['final']:.3f} nats/token vs unigram {loss['unigram']:.3f}")
    world = World(run / "world")

    _stage(2, f"linear probes on block {world.default_layer} activations")
    probes = probe_world(
        world.path, ProbeConfig(max_docs=200 if size == "small" else 400), progress=False
    )
    for name in ("genre", "topic", "structure", "role"):
        print(
            f"      {name:<10} {probes[name + '_acc']:.3f}  (majority {probes[name + '_majority']:.3f})"
        )

    _stage(3, "oracle explanations (the teacher)")
    oracle = world.oracle()
    rng = random.Random(seed)
    eval_docs = world.documents("eval")
    for doc in rng.sample(eval_docs, 2):
        valid = [i for i, r in enumerate(oracle.records(doc)) if r and i >= world.min_pos]
        position = rng.choice(valid)
        text, rec = oracle.explain(doc, position)
        print(format_sample(doc, position, text, rec, oracle.tokenizer))

    _stage(4, "NLA inference path on the toy LM (AV/AR made from it, not yet trained)")
    torch.manual_seed(seed)
    model, tokenizer = world.model(), world.tokenizer()
    av = ActivationVerbalizer.from_base(model, tokenizer, world.default_layer)
    ar = ActivationReconstructor.from_base(model, tokenizer, world.default_layer, meta=av.meta)
    nla = NLA(av, ar)
    doc = eval_docs[0]
    n_tokens = len(tokenizer(doc.text)["input_ids"])
    positions = list(range(max(world.min_pos, n_tokens - 5), n_tokens))
    rows = nla.explain_text(
        model, doc.text, positions=positions, tokenizer=tokenizer, max_new_tokens=24, seed=seed
    )
    print(
        format_table(
            [
                {
                    "index": r.position,
                    "token": r.token,
                    "explanation": r.explanation.text,
                    "raw": r.explanation.raw,
                    "mse_nrm": r.mse_nrm,
                    "cos": r.cos,
                }
                for r in rows
            ]
        )
    )

    summary = {
        "world": str(world.path),
        "world_sizes": record["sizes"],
        "lm_loss": loss["final"],
        "unigram_loss": loss["unigram"],
        "layer": world.default_layer,
        "probe": {k: v for k, v in probes.items() if k.endswith(("_acc", "_majority"))},
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nrun directory: {run.resolve()}  (summary.json, world/)")
    return summary
