"""Tiny models of real architectures, for smoke tests and the test suite.

`build_tokenizer` trains a byte-level BPE tokenizer with the `tokenizers` library
and wraps it as a `PreTrainedTokenizerFast` with BOS/EOS/pad, a chat template and
a single-token marker character; `tiny_config` gives a small Qwen3, Llama or
Gemma 3 (text) config; `write_tiny` writes a random target model plus a fresh
AV/AR pair (`nlakit tiny --out DIR`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from pathlib import Path

import torch

from nlakit import sites
from nlakit.meta import DEFAULT_AR_TEMPLATE, DEFAULT_AV_TEMPLATE, av_prompt_content
from nlakit.models import ActivationReconstructor, ActivationVerbalizer

# tokenizers and transformers are imported where a tokenizer or model is built, as in
# nlakit.models: they add seconds to an import that the toy world's text code also makes.

BOS, EOS, PAD = "<bos>", "<|end|>", "<pad>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
DEFAULT_MARKER = "㊗"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ARCHS = ("qwen3", "llama", "gemma3")

_WORDS = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "on",
    "for",
    "with",
    "from",
    "by",
    "at",
    "as",
    "is",
    "was",
    "are",
    "were",
    "be",
    "been",
    "this",
    "that",
    "these",
    "those",
    "it",
    "its",
    "they",
    "them",
    "their",
    "we",
    "our",
    "you",
    "your",
    "he",
    "she",
    "his",
    "her",
    "model",
    "token",
    "layer",
    "vector",
    "activation",
    "explanation",
    "concept",
    "text",
    "word",
    "number",
    "line",
    "list",
    "code",
    "string",
    "function",
    "return",
    "value",
    "recipe",
    "soup",
    "bread",
    "salt",
    "water",
    "boil",
    "stir",
    "minutes",
    "team",
    "match",
    "score",
    "goal",
    "win",
    "lose",
    "weather",
    "rain",
    "sun",
    "cloud",
    "wind",
    "city",
    "morning",
    "evening",
    "story",
    "girl",
    "boy",
    "river",
    "forest",
    "king",
    "poem",
    "rhyme",
    "news",
    "report",
    "people",
    "said",
    "today",
    "year",
    "first",
    "next",
    "after",
    "before",
    "because",
    "and",
    "or",
    "but",
    "not",
    "no",
    "yes",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "final",
    "must",
    "follow",
    "describes",
    "represents",
    "predicts",
    "reconstruct",
    "explain",
    "below",
    "shown",
    "single",
]


def sample_corpus(n_sentences: int = 400, seed: int = 0) -> list[str]:
    """A small deterministic English-like corpus (plus the default templates)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_sentences):
        words = rng.choices(_WORDS, k=rng.randint(4, 14))
        sentence = " ".join(words).capitalize() + rng.choice([".", "!", "?", ":", ","])
        if rng.random() < 0.2:
            sentence += f" {rng.randint(0, 999)}"
        lines.append(sentence)
    lines.append(av_prompt_content(DEFAULT_AV_TEMPLATE, ""))
    lines.append(DEFAULT_AR_TEMPLATE.format(explanation="The text is a recipe."))
    return lines


def build_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 512,
    marker: str = DEFAULT_MARKER,
    extra_special: Iterable[str] = (),
):
    """A trained byte-level BPE `PreTrainedTokenizerFast` with chat template and marker.

    BOS is added by `add_special_tokens=True` (as for Llama and Gemma) and by the
    chat template; EOS `<|end|>` ends both documents and chat turns; the marker is
    one token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = [PAD, BOS, EOS, *ROLE_TOKENS, *extra_special]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS + list(extra_special),
    )
    fast.add_tokens([marker])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(
    arch: str,
    vocab_size: int,
    hidden_size: int = 64,
    num_layers: int = 4,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
):
    """A small config of a real architecture: `qwen3`, `llama` or `gemma3` (text)."""
    from transformers import Gemma3TextConfig, LlamaConfig, Qwen3Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=1024,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        tie_word_embeddings=True,
    )
    if arch == "qwen3":
        return Qwen3Config(**common)
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "gemma3":
        return Gemma3TextConfig(**common, sliding_window=16, query_pre_attn_scalar=hidden_size // 4)
    raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")


def tiny_model(arch: str, tokenizer, seed: int = 0, **config_kwargs):
    """A randomly initialised causal LM of `arch` sized for `tokenizer`, in eval mode."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(
        arch,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **config_kwargs,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def write_tiny(
    out: str | os.PathLike, arch: str = "qwen3", layer: int | None = None, seed: int = 0
) -> dict[str, Path]:
    """Write `target/` (random model + tokenizer), `av/` and `ar/` under `out`."""
    out = Path(out)
    tokenizer = build_tokenizer(sample_corpus(seed=seed))
    model = tiny_model(arch, tokenizer, seed=seed)
    n_layers = model.config.num_hidden_layers
    layer = n_layers // 2 if layer is None else layer
    sites.check_layer(model, layer)  # before anything is written
    paths = {"target": out / "target", "av": out / "av", "ar": out / "ar"}
    model.save_pretrained(str(paths["target"]))
    tokenizer.save_pretrained(str(paths["target"]))
    av = ActivationVerbalizer.from_base(model, tokenizer, layer)
    av.meta.base_model = str(paths["target"])
    av.save_pretrained(paths["av"])
    ar = ActivationReconstructor.from_base(model, tokenizer, layer, meta=av.meta)
    ar.save_pretrained(paths["ar"])
    return paths
