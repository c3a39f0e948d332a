"""One GPU benchmark of nlakit at a real shape (random weights; nothing downloaded).

    PYTHONPATH=. python bench/gpu.py                       # Qwen3-8B shape on cuda, ≤ 8 min
    python bench/gpu.py --shape tiny --device cpu          # the same script on a toy shape

On a randomly initialised model of Qwen3-8B's shape it measures, in one run:

1. AV SFT (full fine-tune, AdamW): tokens/s and MFU (6·N FLOPs per token over the
   device's dense bf16 peak);
2. rollout decode at batch 512 (prompt + injected activation, then `--tokens` new
   tokens, no early stop) per engine: tokens/s against the HBM roofline (weights plus
   the mean KV cache read once per decode step, over the memory bandwidth);
3. one RL step of 512 × `--tokens` (64 activations × G = 8) with LoRA on the AV and
   the AR: generate / score / update seconds;
4. AV SFT on rows of 20–`--tokens` response tokens, padded (sdpa) vs packed into one
   row (FlexAttention on CUDA, a variable-length kernel): tokens/s of each;
5. AV SFT with QLoRA (the AV saved, then loaded as training loads it with
   `--load-in-4bit`: NF4 base through bitsandbytes, LoRA adapters): tokens/s;

and the peak memory of each stage. It prints one table and appends it, with the date,
command and hardware, to docs/benchmarks.md (`--no-write` to skip). A stage that fails
(out of memory, an engine that is missing) is a row that says so; the script goes on.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import torch

from nlakit.generation import SamplingConfig, sample_explanations
from nlakit.metrics import mse_nrm
from nlakit.models import ActivationReconstructor, ActivationVerbalizer
from nlakit.tiny import build_tokenizer, sample_corpus
from nlakit.train import modules as M
from nlakit.train.data import pad_responses, response_logprobs
from nlakit.train.losses import group_advantages, grpo_loss
from nlakit.train.rewards import rewards

QWEN3_8B = dict(
    hidden_size=4096,
    intermediate_size=12288,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=151936,
    max_position_embeddings=40960,
    rope_theta=1_000_000.0,
    tie_word_embeddings=False,
)
TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    vocab_size=2000,
    max_position_embeddings=1024,
    tie_word_embeddings=False,
)
# Dense bf16 peak FLOP/s and HBM bandwidth (bytes/s) by device name.
DEVICES = {"H200": (989e12, 4.8e12), "H100": (989e12, 3.35e12), "A100": (312e12, 2.0e12)}
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def device_limits(device: torch.device) -> tuple[str, float | None, float | None]:
    if device.type != "cuda":
        return "cpu", None, None
    name = torch.cuda.get_device_name(device)
    for key, (flops, bandwidth) in DEVICES.items():
        if key in name:
            return name, flops, bandwidth
    return name, None, None


def build(shape: dict, device: torch.device, layer: int):
    """A random AV (the model itself) and a fresh AR copied from its blocks 0..K."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    tokenizer = build_tokenizer(sample_corpus(), vocab_size=2000)
    config = Qwen3Config(
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=None,  # no early stops: every row decodes the full length
        pad_token_id=tokenizer.pad_token_id,
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = None
    tokenizer.eos_token = "<|system|>"  # an id the bench's rows never need to reach
    av = ActivationVerbalizer.from_base(model, tokenizer, layer)
    return av, tokenizer


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def sft_stage(av, args, device, n_params, peak_flops) -> dict:
    """Full fine-tune AV SFT steps: tokens/s and MFU."""
    av.train()
    optimizer = M.optimizer_for(av, 1e-5, 0.0)
    rows, length = args.sft_batch, args.tokens
    gen = torch.Generator().manual_seed(0)
    vectors = torch.randn(rows, av.meta.d_model, generator=gen).to(device)
    responses = torch.randint(0, 2000, (rows, length), generator=gen).to(device)
    mask = torch.ones_like(responses)
    prompt = av.prompt_batch(1).shape[1]

    def step() -> None:
        with M.autocast(device):
            logp = response_logprobs(av, vectors, responses, mask)
            loss = -(logp * mask).sum() / mask.sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    peak_reset(device)
    start = clock(device)
    for _ in range(args.sft_steps):
        step()
    seconds = (clock(device) - start) / args.sft_steps
    tokens = rows * (prompt + length) / seconds
    av.eval()
    mfu = tokens * 6 * n_params / peak_flops if peak_flops else None
    return {
        "tokens/s": tokens,
        "MFU": mfu,
        "s/step": seconds,
        "peak GiB": peak_gib(device),
        "note": f"{rows} rows × {prompt + length} tokens",
    }


def packing_stage(av, args, device) -> dict:
    """AV SFT forward + backward on rows of varied length: padded vs packed."""
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(20, args.tokens + 1, (args.sft_batch,), generator=gen).tolist()
    rows = [torch.randint(10, 2000, (k,), generator=gen).tolist() for k in lengths]
    ids, mask = pad_responses(rows, av.tokenizer.pad_token_id)
    vectors = torch.randn(len(rows), av.meta.d_model, generator=gen).to(device)
    kernel = "flex_attention" if device.type == "cuda" else "sdpa"
    av.train()

    def seconds(packed: bool) -> float:
        av.model.set_attn_implementation(kernel if packed else "sdpa")

        def step() -> None:
            with M.autocast(device):
                logp = response_logprobs(av, vectors, ids, mask, packed=packed)
                loss = -(logp * mask.to(device)).sum() / mask.sum()
            loss.backward()
            av.zero_grad(set_to_none=True)

        step()  # warm-up (FlexAttention compiles here)
        start = clock(device)
        for _ in range(args.sft_steps):
            step()
        return (clock(device) - start) / args.sft_steps

    try:
        padded, packed = seconds(False), seconds(True)
    finally:
        av.model.set_attn_implementation("sdpa")
        av.eval()
    tokens = sum(lengths) + len(rows) * len(av.prompt_ids)
    return {
        "tokens/s": tokens / packed,
        "s/step": packed,
        "peak GiB": peak_gib(device),
        "note": f"packed ({kernel}) {tokens / packed:,.0f} vs padded (sdpa) "
        f"{tokens / padded:,.0f} tokens/s: {padded / packed:.2f}x",
    }


def decode_stage(av, args, device, n_params, bandwidth, compile: bool, engine="hf") -> dict:
    """Decode at batch `--decode-batch` for `--tokens` new tokens: tokens/s vs roofline."""
    batch, new = args.decode_batch, args.tokens
    config = SamplingConfig(
        temperature=1.0, max_new_tokens=new, batch_size=batch, compile=compile, engine=engine
    )
    vectors = torch.randn(batch, av.meta.d_model, generator=torch.Generator().manual_seed(1))
    sample_explanations(av, vectors[: min(batch, 8)], config)  # warm-up (and compile)
    peak_reset(device)
    start = clock(device)
    samples = sample_explanations(av, vectors, config, torch.Generator(device).manual_seed(0))
    seconds = clock(device) - start
    made = sum(s.n_tokens for s in samples)
    result = {"tokens/s": made / seconds, "s/step": seconds, "peak GiB": peak_gib(device)}
    if bandwidth:
        cfg = av.model.config
        prompt = av.prompt_batch(1).shape[1]
        kv_per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 2
        mean_context = prompt + new / 2
        step_bytes = 2 * n_params + batch * mean_context * kv_per_token
        roofline = batch / (step_bytes / bandwidth)
        result["roofline"] = result["tokens/s"] / roofline
        result["note"] = f"roofline {roofline:,.0f} tok/s"
    return result


def rl_stage(av, ar, args, device) -> dict:
    """One GRPO step of 512 × `--tokens`, LoRA AV and AR: generate / score / update."""
    G, rows = 8, args.decode_batch // 8
    gen = torch.Generator().manual_seed(2)
    vectors = torch.randn(rows, av.meta.d_model, generator=gen).repeat_interleave(G, 0)
    sampling = SamplingConfig(max_new_tokens=args.tokens, batch_size=args.decode_batch)
    optimizer = M.optimizer_for(av, 1e-5, 0.0)
    peak_reset(device)
    t0 = clock(device)
    samples = sample_explanations(av, vectors, sampling, torch.Generator(device).manual_seed(0))
    t1 = clock(device)
    # score: the AR reads token ids of the explanations' true lengths (random weights
    # make the decoded text meaningless; its length is what costs)
    lengths = torch.tensor([s.n_tokens for s in samples], dtype=torch.float32)
    ids, mask = pad_responses([s.token_ids for s in samples], av.tokenizer.pad_token_id)
    preds = []
    with torch.no_grad(), M.autocast(device):
        for part in range(0, len(samples), args.update_batch):
            sl = slice(part, part + args.update_batch)
            preds.append(
                ar(input_ids=ids[sl].to(device), attention_mask=mask[sl].to(device)).float()
            )
    pred = torch.cat(preds).cpu()
    finished = torch.ones(len(samples), dtype=torch.bool)
    reward = rewards(mse_nrm(pred, vectors, ar.meta.mse_scale_value), lengths, finished, 0.0)
    advantage = group_advantages(reward, G, "std")
    t2 = clock(device)
    av.train()
    total = float(mask.sum())
    for part in range(0, len(samples), args.update_batch):
        sl = slice(part, part + args.update_batch)
        with M.autocast(device):
            logp = response_logprobs(av, vectors[sl], ids[sl], mask[sl])
            old = torch.nn.utils.rnn.pad_sequence(
                [s.logprobs for s in samples[sl]], batch_first=True
            )[:, : logp.shape[1]].to(logp.device)
            loss, _ = grpo_loss(
                logp, old, logp.detach(), advantage[sl].to(logp.device),
                mask[sl].to(logp.device), 0.2, 0.0, total,
            )  # fmt: skip
        loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    t3 = clock(device)
    av.eval()
    return {
        "s/step": t3 - t0,
        "peak GiB": peak_gib(device),
        "note": f"generate {t1 - t0:.1f} s, score {t2 - t1:.1f} s, update {t3 - t2:.1f} s",
    }


def run_stage(name: str, fn, table: list, deadline: float) -> None:
    if time.perf_counter() > deadline:
        table.append({"stage": name, "note": "skipped: out of the time budget"})
        return
    start = time.perf_counter()
    try:
        row = fn()
    except Exception as exc:  # an OOM or a missing engine is a result, not the end
        row = {"note": f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    row["stage"] = name
    print(f"  {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    table.append(row)


def fmt(value, spec: str) -> str:
    if value is None:
        return "–"
    return format(value, spec)


def render(table: list, header: str) -> str:
    lines = [
        header,
        "",
        "| stage | tokens/s | MFU | % of roofline | s/step | peak GiB | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['stage']} | {fmt(r.get('tokens/s'), ',.0f')} | {fmt(r.get('MFU'), '.1%')} "
            f"| {fmt(r.get('roofline'), '.1%')} | {fmt(r.get('s/step'), '.2f')} "
            f"| {fmt(r.get('peak GiB'), '.1f')} | {r.get('note', '')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=("qwen3-8b", "tiny"), default="qwen3-8b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--layer", type=int, help="block K (default: the middle block)")
    ap.add_argument("--tokens", type=int, default=150, help="explanation length")
    ap.add_argument("--decode-batch", type=int, default=512)
    ap.add_argument("--sft-batch", type=int, default=16)
    ap.add_argument("--sft-steps", type=int, default=3)
    ap.add_argument("--update-batch", type=int, default=64)
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--budget-s", type=float, default=420, help="skip stages after this")
    ap.add_argument("--no-write", action="store_true", help="do not append to docs/")
    args = ap.parse_args()
    start = time.perf_counter()
    deadline = start + args.budget_s
    device = torch.device(args.device)
    shape = QWEN3_8B if args.shape == "qwen3-8b" else TINY
    layer = shape["num_hidden_layers"] // 2 if args.layer is None else args.layer
    name, peak_flops, bandwidth = device_limits(device)
    av, _ = build(shape, device, layer)
    n_params = sum(p.numel() for p in av.model.parameters())
    print(f"{args.shape}: {n_params / 1e9:.2f} B parameters on {name}", file=sys.stderr)
    table: list[dict] = []
    run_stage("AV SFT (full)", lambda: sft_stage(av, args, device, n_params, peak_flops),
              table, deadline)  # fmt: skip
    for compile in (False, True) if device.type == "cuda" else (False,):
        label = "decode, hf" + (" + static cache, compiled" if compile else "")
        run_stage(label, lambda c=compile: decode_stage(av, args, device, n_params, bandwidth, c),
                  table, deadline)  # fmt: skip

    def rl():
        ar = ActivationReconstructor.from_base(av.model, av.tokenizer, layer, meta=av.meta)
        ar = ar.to(device)
        M.add_lora_av(av, M.LoraSettings(args.lora_rank))
        M.add_lora_ar(ar, M.LoraSettings(args.lora_rank))
        try:
            return rl_stage(av, ar, args, device)
        finally:
            av.model = av.model.unload().requires_grad_(True)  # the plain AV, for what follows

    # the issue's targets first (SFT MFU, decode roofline, RL step), then the rest
    run_stage(f"RL step, LoRA r{args.lora_rank}", rl, table, deadline)
    run_stage("AV SFT, packed vs padded", lambda: packing_stage(av, args, device), table,
              deadline)  # fmt: skip

    folders: list[str] = []

    def saved_av() -> str:
        """The AV on disk (once), for the stages that load it as nlakit does."""
        if not folders:
            folders.append(tempfile.mkdtemp(prefix="nlakit-bench-av-"))
            av.save_pretrained(folders[0])
        return folders[0]

    def vllm_decode():
        if importlib.util.find_spec("vllm") is None:
            return {"note": "vllm not installed here"}
        saved = ActivationVerbalizer.from_pretrained(saved_av(), device=device)
        return decode_stage(saved, args, device, n_params, bandwidth, False, engine="vllm")

    run_stage("decode, vllm", vllm_decode, table, deadline)

    def qlora_sft():
        if importlib.util.find_spec("bitsandbytes") is None:
            return {"note": "bitsandbytes not installed here"}
        lora = M.LoraSettings(args.lora_rank)
        quantized = M.start("av", saved_av(), None, device, None, lora, load_in_4bit=True)
        row = sft_stage(quantized, args, device, n_params, None)
        row["note"] += ", NF4 base + LoRA"
        del quantized
        return row

    run_stage(f"AV SFT, QLoRA r{args.lora_rank}", qlora_sft, table, deadline)

    today = datetime.date.today().isoformat()
    command = "PYTHONPATH=. python bench/gpu.py " + " ".join(sys.argv[1:])
    header = (
        f"### {today} · {name} · torch {torch.__version__} · `{command.strip()}`\n\n"
        f"{args.shape} shape ({n_params / 1e9:.2f} B parameters, random weights), block K = "
        f"{layer}, explanations of {args.tokens} tokens, decode batch {args.decode_batch}; "
        f"{time.perf_counter() - start:.0f} s in all."
    )
    text = render(table, header)
    print(text)
    if not args.no_write:
        with open(DOC, "a", encoding="utf-8") as f:
            f.write("\n\n" + text + "\n")
        print(f"appended to {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
