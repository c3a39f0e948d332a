"""The user-facing NLA: explain activations, reconstruct them, score the round trip.

from nlakit import NLA
nla = NLA.from_pretrained(av="kitft/...-av", ar="kitft/...-ar")
nla = NLA.from_pretrained("qwen2.5-7b-L20")          # a released NLA by name (`nlakit list`)
explanations = nla.explain(vectors)                 # vectors: [n, d_model]
scores = nla.score(vectors, [e.text for e in explanations])
rows = nla.explain_text("Qwen/Qwen2.5-7B-Instruct", "The quick brown fox")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from nlakit import registry, sites
from nlakit.errors import ArchitectureError, NLAKitError
from nlakit.generation import SamplingConfig, sample_explanations
from nlakit.injection import check_vectors
from nlakit.linear_ar import load_reconstructor
from nlakit.meta import check_pair
from nlakit.metrics import cosine, mse_nrm
from nlakit.models import (
    ActivationReconstructor,
    ActivationVerbalizer,
    load_causal_lm,
)


@dataclass
class Explanation:
    """One AV output: `text` is the parsed explanation ("" when the closing tag is
    missing), `raw` the decoded response, `finished` whether it ended on its own
    with a complete explanation."""

    text: str
    raw: str
    token_ids: list[int]
    n_tokens: int
    finished: bool
    logprobs: torch.Tensor = field(repr=False)


@dataclass
class Scores:
    """Per-row reconstruction quality: `mse_nrm [n]` in [0, 4] and `cos [n]`."""

    mse_nrm: torch.Tensor
    cos: torch.Tensor


@dataclass
class TokenExplanation:
    """An explained token of a text: its position, string, explanation and scores."""

    position: int
    token: str
    explanation: Explanation
    mse_nrm: float | None = None
    cos: float | None = None


class NLA:
    """An AV and/or an AR that belong together (same model width and layer)."""

    def __init__(
        self, av: ActivationVerbalizer | None = None, ar: ActivationReconstructor | None = None
    ):
        if av is None and ar is None:
            raise NLAKitError("an NLA needs an AV, an AR, or both")
        if av is not None and ar is not None:
            check_pair(av.meta, ar.meta)
        self.av = av
        self.ar = ar

    @classmethod
    def from_pretrained(
        cls,
        av: str | os.PathLike | None = None,
        ar: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        trust_remote_code: bool = False,
    ) -> NLA:
        """Load from local directories, Hub ids, or the name of a released NLA.

        `av` may be a registry name (`nlakit list`, e.g. "qwen2.5-7b-L20"): that loads
        its AV and, unless `ar` is given, its AR. `ar` may be a name too (its AR). A
        local path spelled like a name wins over the name. Either half may be omitted.
        """
        av, ar = registry.resolve_pair(av, ar)
        kwargs = dict(device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        return cls(
            av=None if av is None else ActivationVerbalizer.from_pretrained(av, **kwargs),
            ar=None if ar is None else load_reconstructor(ar, **kwargs),  # a linear AR too
        )

    @property
    def layer(self) -> int | None:
        """The block index K the pair reads."""
        if self.ar is not None:
            return self.ar.layer
        return self.av.meta.layer

    @property
    def d_model(self) -> int:
        return (self.av or self.ar).meta.d_model

    def _need(self, half: str):
        model = getattr(self, half)
        if model is None:
            flag = {"av": "av=", "ar": "ar="}[half]
            raise NLAKitError(
                f"this needs the {half.upper()}; load it with NLA.from_pretrained({flag}...)"
            )
        return model

    def explain(
        self,
        vectors: torch.Tensor,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        max_new_tokens: int = 200,
        batch_size: int = 64,
        seed: int | None = None,
        progress: bool = False,
        engine: str = "hf",
        compile: bool = True,
    ) -> list[Explanation]:
        """One explanation per row of `vectors [n, d_model]` (raw activations), batched;
        `engine` is the rollout engine (`nlakit/engines.py`: hf or vllm)."""
        av = self._need("av")
        config = SamplingConfig(
            temperature, top_p, top_k, max_new_tokens, batch_size, engine=engine, compile=compile
        )
        generator = None
        if seed is not None:
            generator = torch.Generator(device=av.device).manual_seed(seed)
        samples = sample_explanations(av, vectors, config, generator, progress=progress)
        return [
            Explanation(
                text=s.explanation or "",
                raw=s.raw,
                token_ids=s.token_ids,
                n_tokens=s.n_tokens,
                finished=s.finished,
                logprobs=s.logprobs,
            )
            for s in samples
        ]

    def reconstruct(
        self, texts: list[str], batch_size: int = 64, contexts: list[str] | None = None
    ) -> torch.Tensor:
        """Predicted activations `[n, d_model]` (fp32, CPU) for explanation texts
        (`contexts`: the text before each token, which a context AR reads)."""
        return self._need("ar").reconstruct(list(texts), batch_size, contexts=contexts)

    def score(
        self,
        vectors: torch.Tensor,
        texts: list[str],
        batch_size: int = 64,
        contexts: list[str] | None = None,
    ) -> Scores:
        """mse_nrm and cosine between each vector and the AR's reconstruction of its text."""
        ar = self._need("ar")
        vectors = check_vectors(vectors, ar.meta.d_model)
        if len(texts) != vectors.shape[0]:
            raise NLAKitError(f"got {vectors.shape[0]} vectors but {len(texts)} texts")
        pred = self.reconstruct(texts, batch_size, contexts)
        gold = vectors.float().cpu()
        return Scores(mse_nrm=mse_nrm(pred, gold, ar.meta.mse_scale_value), cos=cosine(pred, gold))

    def explain_text(
        self,
        target_model,
        text: str,
        positions: list[int] | None = None,
        tokenizer=None,
        layer: int | None = None,
        **sampling,
    ) -> list[TokenExplanation]:
        """Extract layer-K activations of `text` from the target model and explain them.

        `target_model` is a loaded model (pass its `tokenizer`) or a directory / Hub id.
        `positions` defaults to every non-special token. With an AR loaded, each row
        is also scored.
        """
        av = self._need("av")
        if isinstance(target_model, str | os.PathLike):
            target_model, tokenizer = load_causal_lm(target_model, av.device, av.dtype)
        if tokenizer is None:
            raise NLAKitError("pass the target model's tokenizer with `tokenizer=`")
        layer = self.layer if layer is None else layer
        if layer is None:
            raise NLAKitError("the AV sidecar records no layer; pass `layer=K`")
        if sites.hidden_size(target_model) != self.d_model:
            raise ArchitectureError(
                f"the target model has hidden size {sites.hidden_size(target_model)}, the NLA "
                f"expects d_model {self.d_model}: this NLA was trained on another model."
            )
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=True)
        ids = enc["input_ids"].to(sites.embedding(target_model).weight.device)
        special = set(tokenizer.all_special_ids)
        if positions is None:
            positions = [i for i, t in enumerate(ids[0].tolist()) if t not in special]
        n = ids.shape[1]
        bad = [p for p in positions if not -n <= p < n]
        if bad:
            raise NLAKitError(
                f"--positions {bad}: outside the text's {n} tokens (0 to {n - 1}, or -{n} to -1 "
                "counting from the end)"
            )
        positions = [p % n for p in positions]
        with torch.no_grad():
            hidden = sites.extract_layer(target_model, ids, None, layer)[0]
        vectors = hidden[positions].float()
        explanations = self.explain(vectors, **sampling)
        # the text up to each position: what a context AR reads besides the explanation
        contexts = [tokenizer.decode(ids[0, : p + 1], skip_special_tokens=True) for p in positions]
        texts = [e.text for e in explanations]
        scores = self.score(vectors, texts, contexts=contexts) if self.ar else None
        rows = []
        for i, (pos, exp) in enumerate(zip(positions, explanations, strict=True)):
            rows.append(
                TokenExplanation(
                    position=pos,
                    token=tokenizer.decode([int(ids[0, pos])]),
                    explanation=exp,
                    mse_nrm=None if scores is None else float(scores.mse_nrm[i]),
                    cos=None if scores is None else float(scores.cos[i]),
                )
            )
        return rows
