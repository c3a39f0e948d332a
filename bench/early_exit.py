"""Early exit at block K vs a full forward with `output_hidden_states`.

    python bench/early_exit.py [--device cuda] [--layers 16] [--vocab 32000]

Builds a random Qwen3-style model, then times, interleaved in one run,
(a) `nlakit.sites.extract_layer` at K = L/2 and (b) a full forward that returns
`hidden_states[K + 1]`; prints the median times and their ratio. Only the ratio
means anything on a shared CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, Qwen3Config

from nlakit import sites


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = Qwen3Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=3 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=args.hidden // 8,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(device, dtype).eval()
    layer = args.layers // 2
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), device=device)

    def early():
        return sites.extract_layer(model, ids, None, layer)

    def full():
        return model(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1]

    with torch.no_grad():
        assert torch.allclose(early().float(), full().float(), atol=1e-3)
        times = {"early exit": [], "full forward": []}
        for _ in range(args.repeats):
            times["early exit"].append(timed(early, device))
            times["full forward"].append(timed(full, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"model: Qwen3-style, {args.layers} blocks, d={args.hidden}, vocab={args.vocab}, "
        f"{dtype}, {device}; input {args.batch}x{args.seq}; K={layer}"
    )
    for name, t in med.items():
        print(f"  {name:<13} {t * 1e3:9.1f} ms (median of {args.repeats})")
    print(f"speed-up of early exit at K=L/2: {med['full forward'] / med['early exit']:.2f}x")


if __name__ == "__main__":
    main()
