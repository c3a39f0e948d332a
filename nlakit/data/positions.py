"""Which tokens of a document become training rows, and which split a document goes to.

Both are pure functions of `(seed, doc_id)`: the same document always yields the
same positions and the same split, however the corpus is batched, sharded or
resumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping

import numpy as np

SPLITS = ("av_sft", "ar_sft", "rl", "eval")


def _doc_key(doc_id: int | str) -> int:
    digest = hashlib.sha256(str(doc_id).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def position_rng(seed: int, doc_id: int | str) -> np.random.Generator:
    """The RNG of one document's positions, keyed by (seed, doc_id)."""
    return np.random.default_rng([seed, _doc_key(doc_id)])


def sample_positions(
    token_ids: list[int],
    special_ids: Collection[int],
    n: int,
    min_pos: int,
    seed: int,
    doc_id: int | str,
) -> list[int]:
    """Up to `n` distinct positions ≥ `min_pos` whose token is not special, sorted."""
    candidates = [p for p in range(min_pos, len(token_ids)) if token_ids[p] not in special_ids]
    if len(candidates) <= n:
        return candidates
    picked = position_rng(seed, doc_id).choice(len(candidates), size=n, replace=False)
    return sorted(candidates[i] for i in picked)


def split_for(doc_id: int | str, seed: int, fractions: Mapping[str, float]) -> str:
    """The split a document belongs to, by a hash of (seed, doc_id) and the fractions."""
    u = _doc_key(f"split:{seed}:{doc_id}") / 2**64
    total = sum(fractions.values())
    edge = 0.0
    for name, fraction in fractions.items():
        edge += fraction / total
        if u < edge:
            return name
    return next(reversed(list(fractions)))


def parse_fractions(av_sft: float, ar_sft: float, rl: float, eval_: float) -> dict[str, float]:
    """The split fractions as a mapping; they must be ≥ 0 and sum to a positive number."""
    fractions = {"av_sft": av_sft, "ar_sft": ar_sft, "rl": rl, "eval": eval_}
    if any(f < 0 for f in fractions.values()) or sum(fractions.values()) <= 0:
        raise ValueError(f"split fractions must be ≥ 0 and not all 0, got {fractions}")
    return fractions
