"""Matplotlib figures for the analyses (headless: the Agg backend, no display needed).

matplotlib is the `plots` extra (`pip install 'nlakit[plots]'`); everything but the
PNGs works without it.
"""

from __future__ import annotations

import io

from nlakit.errors import require


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a clear error saying how to install it.

    Imported here, not at the top: matplotlib is an optional extra, and importing it
    costs a second that `nlakit report` and the tables-only paths need not pay."""
    matplotlib = require("matplotlib", "plots", "plots")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (7.0, 4.2)):
    """(figure, axes) with a title and labelled axes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size, dpi=110)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def figure_png(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed (`outputs.write_analysis` writes them)."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    return buffer.getvalue()


def bar_with_ci(
    title: str,
    labels: list[str],
    values: list[float],
    lows: list[float] | None = None,
    highs: list[float] | None = None,
    ylabel: str = "FVE",
    xlabel: str = "condition",
    legend: str = "FVE (95% bootstrap CI)",
):
    """A bar chart of one value per label with optional confidence intervals."""
    fig, ax = figure(title, xlabel, ylabel, size=(max(6.0, 1.1 * len(labels) + 2), 4.2))
    errors = None
    if lows is not None and highs is not None:
        errors = [
            [max(v - lo, 0) for v, lo in zip(values, lows, strict=True)],
            [max(hi - v, 0) for v, hi in zip(values, highs, strict=True)],
        ]
    ax.bar(range(len(labels)), values, yerr=errors, capsize=4, color="#4C72B0", label=legend)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend(loc="best")
    return fig
