"""nlakit: train, run and evaluate Natural Language Autoencoders (NLAs) for open LLMs.

An NLA is a pair of fine-tuned copies of a model: the verbalizer (AV) reads one
residual-stream activation and writes an English explanation of it; the
reconstructor (AR) reads the explanation and predicts the activation back.

    import nlakit
    nla = nlakit.NLA.from_pretrained(av="path/or/hub-id-av", ar="path/or/hub-id-ar")
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "NLA": "nlakit.nla",
    "Explanation": "nlakit.nla",
    "ActivationVerbalizer": "nlakit.models",
    "ActivationReconstructor": "nlakit.models",
    "FVEBaseline": "nlakit.metrics",
    "read_meta": "nlakit.meta",
    "write_meta": "nlakit.meta",
    "new_meta": "nlakit.meta",
    "validate": "nlakit.meta",
    "extract_layer": "nlakit.sites",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    # Lazy: `nlakit --help` should not pay for importing torch and transformers.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nlakit' has no attribute {name!r}")
