"""Figures of the analyses (matplotlib, Agg canvas: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .logit_lens import LensResult, RegulationDecision

# ----------------------------------------------------------------------------------------------------
# Figure
# ----------------------------------------------------------------------------------------------------

def plot_language_probabilities(result: LensResult, path: str | Path, *, lang: str, pivot_layer: int,
                                decision: RegulationDecision | None = None, title: str | None = None) -> None:
    """PNG: layer on x, mean P(en) and P(target) with ±sd bands, a vertical line at the pivot layer,
    the regulation decision in the title. Written atomically."""
    # the Agg canvas directly, not pyplot: no global backend switch, no figure registry
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from ..io import atomic_path

    x = np.array(result.layers)
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for mean, sd, label, color in ((result.mean_en(), result.sd_en(), "P(en)", "tab:blue"),
                                   (result.mean_tgt(), result.sd_tgt(), f"P({lang})", "tab:orange")):
        ax.plot(x, mean, label=label, color=color, marker="o", markersize=3)
        ax.fill_between(x, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), color=color, alpha=0.2)
    ax.axvline(pivot_layer, color="gray", linestyle="--", label=f"pivot n={pivot_layer}")
    ax.set_xlabel("layer (output of decoder block k; 0 = embeddings)")
    ax.set_ylabel("probability")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # the paper's 0..1 scale, zoomed in when every curve stays small so the curves stay readable
    top = float(max((result.mean_en() + result.sd_en()).max(), (result.mean_tgt() + result.sd_tgt()).max()))
    ax.set_ylim(0, 1 if top > 0.5 else max(1.1 * top, 1e-3))
    ax.legend(loc="upper left")
    if title is None:
        title = f"{lang} ({result.n_items} items)"
        if decision is not None:
            title += ": " + ("λ_t = 0" if decision.lambda_zero else "keep λ")
            title += f"\nP(en) {decision.p_en:.3g} vs P({lang}) {decision.p_tgt:.3g} at n={decision.pivot_layer}"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


