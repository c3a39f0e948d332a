"""The toy world: an offline ground truth for NLAs.

A procedurally generated corpus whose latent variables are known at every token
(`corpus`, `genres`, `prose`, `documents`), a small LM trained on it (`lm`,
`build`), an oracle teacher that writes explanations from the latents (`oracle`),
truth scoring of any explanation against them (`truth`), and linear probes of
the LM's activations (`probe`). `World` opens a built world on disk.
"""

from nlakit.toyworld.build import WorldConfig, build_world, world_config
from nlakit.toyworld.corpus import iter_documents, make_document
from nlakit.toyworld.documents import Document, TokenRecord
from nlakit.toyworld.oracle import Oracle, explain_record
from nlakit.toyworld.truth import score_claims, truth_rates
from nlakit.toyworld.world import World

__all__ = [
    "Document",
    "Oracle",
    "TokenRecord",
    "World",
    "WorldConfig",
    "build_world",
    "explain_record",
    "iter_documents",
    "make_document",
    "score_claims",
    "truth_rates",
    "world_config",
]
