"""Batched explanation sampling vs one call per explanation.

    python bench/generation.py [--device cuda] [--n 32] [--tokens 64]

Builds a small random AV, then times, in one run, (a) one batched call of
`nlakit.generation.sample_explanations` for n vectors and (b) n calls with one
vector each, both greedy for the same number of tokens (so the outputs must be
identical); prints both times and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from nlakit.generation import SamplingConfig, sample_explanations
from nlakit.models import ActivationVerbalizer
from nlakit.tiny import build_tokenizer, sample_corpus, tiny_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    args = ap.parse_args()

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = build_tokenizer(sample_corpus(), vocab_size=2000)
    model = tiny_model("qwen3", tokenizer, hidden_size=args.hidden, num_layers=args.layers)
    # No early stops: every row decodes exactly `--tokens` tokens in both arms.
    model.generation_config.eos_token_id = None
    tokenizer.eos_token = "<|system|>"
    model = model.to(device, dtype)
    av = ActivationVerbalizer.from_base(model, tokenizer, args.layers // 2)
    vectors = torch.randn(args.n, args.hidden, generator=torch.Generator().manual_seed(0))
    config = SamplingConfig(temperature=0, max_new_tokens=args.tokens, batch_size=args.n)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    sample_explanations(av, vectors[:2], config)  # warm-up
    sync()
    start = time.perf_counter()
    batched = sample_explanations(av, vectors, config)
    sync()
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    sequential = [sample_explanations(av, v[None], config)[0] for v in vectors]
    sync()
    t_sequential = time.perf_counter() - start

    same = sum(a.token_ids == b.token_ids for a, b in zip(batched, sequential, strict=True))
    print(
        f"AV: Qwen3-style, {args.layers} blocks, d={args.hidden}, vocab={len(tokenizer)}, "
        f"{dtype}, {device}; {args.n} explanations x {args.tokens} tokens, greedy"
    )
    print(f"  batched     {t_batched:8.2f} s")
    print(f"  sequential  {t_sequential:8.2f} s  ({same}/{args.n} outputs identical)")
    print(f"speed-up of batched generation: {t_sequential / t_batched:.1f}x")


if __name__ == "__main__":
    main()
