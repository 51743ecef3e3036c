"""The training loss per role and per language in the report, from each run's ``run.json`` ``losses`` (the series
:func:`pivotune.train.losses.loss_series` writes: the mean loss per supervised token of each role and language
between logging steps).

One figure, ``figures/training_losses.png``: a row per method with two panels, the loss over optimizer steps by
role and by language, every run of the method drawn (its first run labelled, the others lighter); and a table of
each run's last logged value per role and language.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PivotuneError
from .collect import Run, _method_of

FIGURE = "training_losses.png"
GROUPS = (("role", "by role"), ("lang", "by language"))


def check_series(path: Path, series) -> dict | None:
    """``series`` (run.json's ``losses``) when it has the shape the report reads, else a clear error."""
    if series is None:
        return None
    ok = isinstance(series, dict) and isinstance(series.get("steps"), list) and all(
        isinstance(series.get(g), dict) and all(isinstance(v, list) and len(v) == len(series["steps"])
                                                for v in series[g].values()) for g, _ in GROUPS)
    if not ok:
        raise PivotuneError(f"{path}: field 'losses' must be an object with a 'steps' list and 'role' and 'lang' "
                            "objects of lists as long as it (as `pivotune train` writes it).")
    return series


def _last(values: list) -> float | None:
    return next((v for v in reversed(values) if isinstance(v, (int, float))), None)


def last_values(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows: each run's last logged loss per role and language ("–": none)."""
    keys = [(g, k) for g, _ in GROUPS for k in dict.fromkeys(k for r in runs for k in r.losses[g])]
    header = ["run", "last step", *(f"{'role' if g == 'role' else 'language'} {k}" for g, k in keys)]
    rows = []
    for r in runs:
        cells = [_last(r.losses[g].get(k) or []) for g, k in keys]
        rows.append([r.name, str(r.losses["steps"][-1]) if r.losses["steps"] else "–",
                     *("–" if v is None else f"{v:.3f}" for v in cells)])
    return header, rows


def plot_losses(runs: list[Run], path: Path) -> None:
    """PNG: a row per method, the loss by role and by language over steps. Written atomically."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..io import atomic_path

    methods: dict[str, list[Run]] = {}
    for r in runs:
        methods.setdefault(_method_of(r), []).append(r)
    # one colour per role and per language on every panel
    colours = {g: {k: f"C{i}" for i, k in enumerate(dict.fromkeys(k for r in runs for k in r.losses[g]))}
               for g, _ in GROUPS}
    fig = Figure(figsize=(11.0, 3.2 * len(methods)), dpi=100)
    FigureCanvasAgg(fig)
    for i, (method, group) in enumerate(methods.items()):
        for j, (g, title) in enumerate(GROUPS):
            ax = fig.add_subplot(len(methods), 2, 2 * i + j + 1)
            keys = list(dict.fromkeys(k for r in group for k in r.losses[g]))
            for n, r in enumerate(group):
                x = np.array(r.losses["steps"], dtype=float)
                for k in keys:
                    y = np.array([np.nan if v is None else v for v in r.losses[g].get(k) or [None] * len(x)],
                                 dtype=float)
                    ax.plot(x, y, color=colours[g][k], marker="o", markersize=2, linewidth=1.2 if n == 0 else 0.8,
                            alpha=1.0 if n == 0 else 0.35, label=k if n == 0 else None)
            ax.set_title(f"{method}: loss {title}" + (f" ({len(group)} runs)" if len(group) > 1 else ""), fontsize=10)
            ax.set_xlabel("optimizer step")
            ax.set_ylabel("loss per token")
            if keys:
                ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def loss_blocks(runs: list[Run], figures: Path, fig_dir: str) -> list[tuple]:
    """The report's section: the figure and the table, or nothing when no run logged its losses so."""
    logged = [r for r in runs if r.losses is not None and r.losses["steps"]]
    if not logged:
        return []
    plot_losses(logged, figures / FIGURE)
    return [("h2", "Training loss by role and language"),
            ("p", "Mean loss per supervised token of the rows of each role (en: English instructions, tgt: target "
                  "language, mt: translation task, cs: code-switched) and of each language, over the batches "
                  "between logging steps, as each method's objective computed it (PROM's English rows: the pivot "
                  "head's label-smoothed loss), unweighted by source weight or λ. The table gives each run's last "
                  "logged value."),
            ("img", f"{fig_dir}/{FIGURE}", "training loss per role and per language over optimizer steps"),
            ("table", *last_values(logged))]
