"""`nlakit toyworld build | probe | finetune | sample`."""

from __future__ import annotations

import random

from nlakit.config_cli import add_config, config_from_args, given_options, recipe_values
from nlakit.errors import NLAKitError


def _cmd_build(args) -> None:
    from nlakit.toyworld.build import WorldConfig, build_world, world_config

    # The size's preset, then the recipe, then the options given (LM fields flat or as `lm:`).
    recipe = recipe_values(args, WorldConfig)
    lm = recipe.pop("lm", {})
    overrides = {**recipe, **lm, **given_options(args), **given_options(args, "lm")}
    record = build_world(args.out, world_config(**overrides))
    s, loss = record["sizes"], record["losses"]
    state = (
        "cached, built earlier"
        if record["cached"]
        else f"built in {record['timings_s']['total']:.0f} s"
    )
    print(f"toy world at {args.out} ({state}; settings hash {record['settings_hash']})")
    print(
        f"  corpus      {s['documents']} documents ({s['train_documents']} train, "
        f"{s['eval_documents']} held out), {s['train_tokens']} training tokens"
    )
    print(f"  vocabulary  {s['vocab_size']} tokens (byte-level BPE)")
    print(
        f"  model       {s['parameters']:,} parameters, {s['num_layers']} blocks, d={s['d_model']}, "
        f"default layer {record['default_layer']}"
    )
    print(
        f"  LM loss     {loss['final']:.3f} nats/token held out  vs  unigram baseline "
        f"{loss['unigram']:.3f}  (initial {loss['initial']:.3f})"
    )


def _cmd_probe(args) -> None:
    from nlakit.toyworld.probe import ProbeConfig, probe_world

    results = probe_world(args.world, config_from_args(ProbeConfig, args))
    print(
        f"linear probes at layer {results['layer']} ({results['hook']}): "
        f"{results['n_train']} train / {results['n_test']} held-out positions"
    )
    for name in (
        "genre",
        "topic",
        "structure",
        "section",
        "role",
        "after_number",
        "end_of_line",
        "in_quote",
    ):
        print(
            f"  {name + '_acc':<17} {results[name + '_acc']:.3f}   "
            f"(majority {results[name + '_majority']:.3f}, {results[name + '_classes']} classes)"
        )
    print(f"wrote {args.world}/probe.json")


def _cmd_finetune(args) -> None:
    from nlakit.toyworld.finetune import FinetuneConfig, finetune_world

    config = config_from_args(FinetuneConfig, args)
    record = finetune_world(args.world, args.out, config)
    tune = record["finetune"]
    state = "cached, tuned earlier" if record["cached"] else f"tuned in {tune['seconds']:.0f} s"
    print(f"tuned toy world at {args.out} ({state}): {tune['change']}")
    print(
        f"  {tune['documents']} documents ({tune['changed_documents']} changed), "
        f"{config.steps} steps at lr {config.lr:g}"
    )
    print("  held-out loss (nats/token)   before → after")
    for name, before in tune["losses_before"].items():
        print(f"    {name:<22} {before:.3f} → {tune['losses_after'][name]:.3f}")


def format_sample(doc, position: int, explanation: str, record, tokenizer) -> str:
    """A document with the explained token bracketed, the explanation and the record."""
    enc = tokenizer(doc.text, add_special_tokens=True, return_offsets_mapping=True)
    start, end = enc["offset_mapping"][position]
    shown = doc.text[:start] + "⟦" + doc.text[start:end] + "⟧" + doc.text[end:]
    latents = (
        f"genre={record.genre} topic={record.topic} entity={record.entity} "
        f"tone={record.tone} section={record.section} role={record.role} "
        f"next={record.next_kind}"
    )
    rule = "─" * 72
    return (
        f"{rule}\ndoc {doc.doc_id} · position {position}\n{shown.rstrip()}\n\n"
        f"oracle explanation:\n{explanation}\n\nlatent record: {latents}"
    )


def _cmd_sample(args) -> None:
    from nlakit.toyworld.world import World

    if args.n < 1:
        raise NLAKitError(f"-n: expected how many documents to show (≥ 1), got {args.n}.")
    world = World(args.world)
    oracle = world.oracle()
    rng = random.Random(args.seed)
    docs = world.documents()
    for doc in rng.sample(docs, min(args.n, len(docs))):
        records = oracle.records(doc)
        valid = [i for i, r in enumerate(records) if r is not None and i >= world.min_pos]
        position = rng.choice(valid or [i for i, r in enumerate(records) if r is not None])
        explanation, record = oracle.explain(doc, position)
        print(format_sample(doc, position, explanation, record, oracle.tokenizer))
    print("─" * 72)


def register(sub, chosen: str | None) -> None:
    """Add `toyworld` and its verbs; only the `chosen` verb imports what its options need."""
    top = sub.add_parser("toyworld", help="the offline ground-truth world (corpus, LM, oracle)")
    verbs = top.add_subparsers(dest="toyworld_verb", required=True)

    p = verbs.add_parser("build", help="generate the corpus, train the tokenizer and the LM")
    p.set_defaults(func=_cmd_build)
    if chosen == "build":
        from nlakit.toyworld.build import WorldConfig
        from nlakit.toyworld.lm import LMConfig

        p.add_argument("--out", required=True, help="directory to write the world to")
        add_config(p, WorldConfig, skip=("lm",))
        add_config(p, LMConfig, dest="lm")

    p = verbs.add_parser("probe", help="linear probes for the latents on layer-K activations")
    p.set_defaults(func=_cmd_probe)
    if chosen == "probe":
        from nlakit.toyworld.probe import ProbeConfig

        p.add_argument("--world", required=True, help="toy world directory (nlakit toyworld build)")
        add_config(p, ProbeConfig)

    p = verbs.add_parser("finetune", help="fine-tune the world's model with a known change")
    p.set_defaults(func=_cmd_finetune)
    if chosen == "finetune":
        from nlakit.toyworld.finetune import FinetuneConfig

        p.add_argument("--world", required=True, help="toy world directory (nlakit toyworld build)")
        p.add_argument("--out", required=True, help="directory to write the tuned world to")
        add_config(p, FinetuneConfig)

    p = verbs.add_parser("sample", help="print documents with an oracle explanation")
    p.set_defaults(func=_cmd_sample)
    p.add_argument("--world", required=True, help="toy world directory (nlakit toyworld build)")
    p.add_argument("-n", type=int, default=5, help="how many documents (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="which documents and positions (default: 0)")
