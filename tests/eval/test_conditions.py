"""Scoring text conditions: only the rows whose text changed are re-scored."""

from __future__ import annotations

import torch

from nlakit.eval.conditions import score_changed


class _CountingRows:
    """Stands in for EvalRows: records which texts the AR was asked to score."""

    def __init__(self, n: int):
        self.vectors = torch.arange(n, dtype=torch.float32)[:, None].expand(n, 3)
        self.asked: list[str] = []

    def score(self, texts, vectors):
        self.asked += texts
        return vectors[:, 0] + 100


def test_score_changed_rescores_only_changed_rows():
    rows = _CountingRows(4)
    reference = ["a", "b", "c", "d"]
    errors, changed = score_changed(rows, ["a", "B", "c", "D"], reference, torch.zeros(4))
    assert rows.asked == ["B", "D"] and changed == 2
    assert errors.tolist() == [0.0, 101.0, 0.0, 103.0]
