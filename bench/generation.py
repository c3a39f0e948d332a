"""Rollout decoding: the `hf` engine (transformers' `generate`) vs nlakit's old
hand-written decode loop, and batched vs one call per explanation.

    python bench/generation.py [--device cuda] [--n 32] [--tokens 64]

Builds a small random AV, then times in one run, greedy and for the same number of
tokens (so all outputs must be identical): (a) the `hf` engine on all n vectors at
once, (b) the old loop (kept below as the reference it replaced) on the same batch,
(c) the `hf` engine called once per vector. Prints the times and the ratios.
"""

from __future__ import annotations

import argparse
import time

import torch

from nlakit.engines import next_tokens
from nlakit.generation import SamplingConfig, sample_explanations, stop_token_ids
from nlakit.models import ActivationVerbalizer
from nlakit.tiny import build_tokenizer, sample_corpus, tiny_model


@torch.no_grad()
def old_loop(av: ActivationVerbalizer, vectors: torch.Tensor, config: SamplingConfig):
    """nlakit 0.1's decode loop: prefill, then one forward per token with the KV cache."""
    stop_ids = torch.tensor(stop_token_ids(av), device=av.device)
    input_ids = av.prompt_batch(vectors.shape[0])
    out = av.model(inputs_embeds=av.inputs_embeds(input_ids, vectors), logits_to_keep=1)
    cache, logits = out.past_key_values, out.logits[:, -1].float()
    done = torch.zeros(vectors.shape[0], dtype=torch.bool, device=av.device)
    tokens = []
    for step in range(config.max_new_tokens):
        token = next_tokens(logits, config, None)
        tokens.append(token)
        done |= torch.isin(token, stop_ids)
        if bool(done.all()) or step == config.max_new_tokens - 1:
            break
        out = av.model(input_ids=token[:, None], past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1].float()
    return torch.stack(tokens, 1).tolist()


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
    # No early stops: every row decodes exactly `--tokens` tokens in every arm.
    model.generation_config.eos_token_id = None
    tokenizer.eos_token = "<|system|>"
    model = model.to(device, dtype)
    av = ActivationVerbalizer.from_base(model, tokenizer, args.layers // 2)
    vectors = torch.randn(args.n, args.hidden, generator=torch.Generator().manual_seed(0))
    vectors = vectors.to(device)
    config = SamplingConfig(temperature=0, max_new_tokens=args.tokens, batch_size=args.n)

    def timed(fn):
        fn()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return result, time.perf_counter() - start

    hf, t_hf = timed(lambda: [s.token_ids for s in sample_explanations(av, vectors, config)])
    loop, t_loop = timed(lambda: old_loop(av, vectors, config))
    one, t_one = timed(
        lambda: [sample_explanations(av, v[None], config)[0].token_ids for v in vectors]
    )
    same_loop = sum(a == b for a, b in zip(hf, loop, strict=True))
    same_one = sum(a == b for a, b in zip(hf, one, strict=True))
    print(
        f"AV: Qwen3-style, {args.layers} blocks, d={args.hidden}, vocab={len(tokenizer)}, "
        f"{dtype}, {device}; {args.n} explanations x {args.tokens} tokens, greedy"
    )
    print(f"  hf engine, batched   {t_hf:8.2f} s")
    print(f"  old loop, batched    {t_loop:8.2f} s  ({same_loop}/{args.n} outputs identical)")
    print(f"  hf engine, one each  {t_one:8.2f} s  ({same_one}/{args.n} outputs identical)")
    print(f"old loop / hf engine: {t_loop / t_hf:.2f}x")
    print(f"speed-up of batched generation: {t_one / t_hf:.1f}x")


if __name__ == "__main__":
    main()
