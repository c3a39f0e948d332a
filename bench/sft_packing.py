"""AV SFT throughput: rows packed without padding vs padded batches.

    python bench/sft_packing.py [--device cuda] [--attn sdpa] [--batch 32] [--steps 5]

Builds a small random AV and `--steps` batches of `--batch` responses whose lengths
are spread as real explanations are (uniform between `--min-len` and `--max-len`
tokens), then times one forward + backward of the SFT loss per batch, in one run, in
three ways: (a) padded to the batch's longest row, rows batched at random; (b) padded,
the same rows batched by length (what SFT's length-bucketed sampler does); (c) the
random batches of (a) packed into one row each (position ids restarting per prompt).
Prints response tokens per second of each and the ratios, and checks that (c) gives
the losses of (a).
"""

from __future__ import annotations

import argparse
import time

import torch

from nlakit.models import ActivationVerbalizer
from nlakit.tiny import build_tokenizer, sample_corpus, tiny_model
from nlakit.train.data import pad_responses, response_logprobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--attn", default="sdpa", help="attention implementation of the model")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--min-len", type=int, default=20)
    ap.add_argument("--max-len", type=int, default=150)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    args = ap.parse_args()

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = build_tokenizer(sample_corpus(), vocab_size=2000)
    model = tiny_model("qwen3", tokenizer, hidden_size=args.hidden, num_layers=args.layers)
    model.config._attn_implementation = args.attn
    av = ActivationVerbalizer.from_base(model.to(device, dtype), tokenizer, args.layers // 2)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(args.steps):
        lengths = torch.randint(args.min_len, args.max_len + 1, (args.batch,), generator=gen)
        vocab = len(tokenizer)
        rows = [torch.randint(10, vocab, (int(k),), generator=gen).tolist() for k in lengths]
        batches.append((rows, torch.randn(args.batch, args.hidden, generator=gen)))
    n_tokens = sum(len(r) for rows, _ in batches for r in rows)

    def step(rows, vectors, packed: bool) -> float:
        ids, mask = pad_responses(rows, tokenizer.pad_token_id)
        logp = response_logprobs(av, vectors.to(device), ids, mask, packed=packed)
        loss = -(logp * mask.to(device)).sum() / mask.sum()
        loss.backward()
        av.zero_grad(set_to_none=True)
        return float(loss.detach())

    def timed(batched, packed: bool) -> tuple[float, list[float]]:
        step(*batched[0], packed)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        losses = [step(rows, v, packed) for rows, v in batched]
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, losses

    every_row = [r for rows, _ in batches for r in rows]
    every_vector = torch.cat([v for _, v in batches])
    order = sorted(range(len(every_row)), key=lambda i: len(every_row[i]))
    bucketed = [
        ([every_row[i] for i in part], every_vector[part])
        for part in (order[k : k + args.batch] for k in range(0, len(order), args.batch))
    ]
    t_random, losses_padded = timed(batches, packed=False)
    t_sorted, _ = timed(bucketed, packed=False)
    t_packed, losses_packed = timed(batches, packed=True)

    def padding(batched) -> float:
        return 1 - n_tokens / sum(max(map(len, rows)) * len(rows) for rows, _ in batched)

    gap = max(abs(a - b) for a, b in zip(losses_padded, losses_packed, strict=True))
    print(
        f"AV: Qwen3-style, {args.layers} blocks, d={args.hidden}, {dtype}, {device}, "
        f"attention {args.attn}; {args.steps} batches of {args.batch} responses, "
        f"{args.min_len}-{args.max_len} tokens (prompt {len(av.prompt_ids)}); "
        f"padding: {padding(batches):.0%} of the response positions of random batches, "
        f"{padding(bucketed):.0%} of length-bucketed ones"
    )
    for name, seconds in (
        ("padded, random batches", t_random),
        ("padded, bucketed rows", t_sorted),
        ("packed", t_packed),
    ):
        print(f"  {name:22s} {seconds:7.2f} s  {n_tokens / seconds:9.0f} response tokens/s")
    print(f"packed / padded (random batches): {t_random / t_packed:.2f}x tokens/s")
    print(f"packed / padded (bucketed rows): {t_sorted / t_packed:.2f}x tokens/s")
    print(f"largest loss difference packed vs padded: {gap:.1e}")


if __name__ == "__main__":
    main()
