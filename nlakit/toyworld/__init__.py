"""The toy world: an offline ground truth for NLAs.

A procedurally generated corpus whose latent variables are known at every token
(`corpus`, `genres`, `prose`, `documents`), a small LM trained on it (`lm`,
`build`), an oracle teacher that writes explanations from the latents (`oracle`),
truth scoring of any explanation against them (`truth`), and linear probes of
the LM's activations (`probe`). `World` opens a built world on disk.
"""

_LAZY = {
    "WorldConfig": "build",
    "build_world": "build",
    "world_config": "build",
    "iter_documents": "corpus",
    "make_document": "corpus",
    "Document": "documents",
    "TokenRecord": "documents",
    "Oracle": "oracle",
    "explain_record": "oracle",
    "score_claims": "truth",
    "truth_rates": "truth",
    "World": "world",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    # Lazy, so that `nlakit toyworld --help` does not import torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"nlakit.toyworld.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nlakit.toyworld' has no attribute {name!r}")
