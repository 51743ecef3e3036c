"""The logit lens before and after training in the study report (the PROM paper's Figures 1, 3, 4).

``pivotune demo`` probes the base model once into ``OUT/probe-base/probe.json`` and every trained
causal-LM run into ``RUN/probe-after/probe.json``, on the same word pairs, prompts, pivot layer and seed
(``pivotune probe``'s format). Where a demo has no ``probe-base``, a PROM run's regulation probe
(``RUN/probe/probe.json``) stands in: it is the same base model. Per target language this module draws
P(English) and P(target) against layer, the base model dashed and each method's mean over its seeds
solid, tabulates both at the pivot layer before → after, and writes one findings line (PROM against
t+e). Every number is read from those files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PivotuneError
from ..io import child_path, read_json_object
from ..languages import check_syntax
from .collect import PROM, TPLUSE, Study, _method_of

BASE_DIR, AFTER_DIR, PROBE_FILE = "probe-base", "probe-after", "probe.json"
SECTION = "Logit lens before and after training (Figures 1, 3, 4)"


@dataclass
class Curves:
    """One probe's per-layer mean probabilities for one language (index k = output of block k)."""
    p_en: np.ndarray
    p_tgt: np.ndarray
    pivot_layer: int
    source: Path


@dataclass
class Lens:
    base: dict[Path, dict[str, Curves]] = field(default_factory=dict)   # demo directory -> lang -> base curves
    after: dict[str, list[dict[str, Curves]]] = field(default_factory=dict)   # method -> per seed: lang -> curves
    home: dict[str, Path] = field(default_factory=dict)                 # method -> its demo directory
    languages: list[str] = field(default_factory=list)


def read_probe_curves(path: Path) -> dict[str, Curves]:
    """``{lang: Curves}`` from a ``probe.json``; a malformed file is an error naming the file and field."""
    obj = read_json_object(path)
    langs, pivot = obj.get("languages"), obj.get("pivot_layer")
    hint = "; write it with `pivotune probe` (or re-run `pivotune demo`)."
    if not isinstance(langs, dict) or not langs:
        raise PivotuneError(f"{path}: field 'languages' must be a non-empty object {{language: curves}}{hint}")
    if isinstance(pivot, bool) or not isinstance(pivot, int):
        raise PivotuneError(f"{path}: field 'pivot_layer' must be an integer layer index, found {pivot!r}{hint}")
    out = {}
    for lang, entry in langs.items():
        check_syntax(lang, f"{path}: field 'languages'")   # it names a figure file
        curves = []
        for key in ("p_en", "p_tgt"):
            mean = entry.get(key) if isinstance(entry, dict) else None
            mean = mean.get("mean") if isinstance(mean, dict) else None
            if not isinstance(mean, list) or not mean or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in mean):
                raise PivotuneError(f"{path}: field 'languages.{lang}.{key}.mean' must be a non-empty list of "
                                    f"numbers, one per layer (0 = embeddings){hint}")
            curves.append(np.asarray(mean, dtype=float))
        if len(curves[0]) != len(curves[1]):
            raise PivotuneError(f"{path}: fields 'languages.{lang}.p_en.mean' and 'languages.{lang}.p_tgt.mean' "
                                f"have {len(curves[0])} and {len(curves[1])} layers; they must match{hint}")
        if not 0 <= pivot < len(curves[0]):
            raise PivotuneError(f"{path}: field 'pivot_layer' is {pivot}, outside the {len(curves[0])} layers of "
                                f"'languages.{lang}'{hint}")
        out[lang] = Curves(curves[0], curves[1], pivot, path)
    return out


def read_lens(study: Study) -> Lens:
    """The base and after-training probes beside and inside the study's runs."""
    lens = Lens()
    for run in study.runs:
        path = run.path / AFTER_DIR / PROBE_FILE
        if path.is_file():
            method = _method_of(run)
            lens.after.setdefault(method, []).append(read_probe_curves(path))
            lens.home.setdefault(method, run.path.parent)
    for home in dict.fromkeys(run.path.parent for run in study.runs):
        path = home / BASE_DIR / PROBE_FILE
        if not path.is_file() and home in lens.home.values():
            # PROM's regulation probe is the same base model; seed 0's first (runs are sorted by name)
            path = next((r.path / "probe" / PROBE_FILE for r in study.runs if r.path.parent == home
                         and _method_of(r) == PROM and (r.path / "probe" / PROBE_FILE).is_file()), path)
        if path.is_file():
            lens.base[home] = read_probe_curves(path)
    found = [lang for probes in [*lens.base.values(), *(p for v in lens.after.values() for p in v)]
             for lang in probes]
    lens.languages = list(dict.fromkeys([*(lang for lang in study.languages if lang in found), *found]))
    return lens


@dataclass
class Point:
    """One method on one language at the pivot layer: the base model's values and the mean after training."""
    layer: int
    seeds: int
    after_en: float
    after_tgt: float
    base_en: float | None
    base_tgt: float | None


def _mean_curves(lens: Lens, method: str, lang: str) -> list[Curves]:
    return [probes[lang] for probes in lens.after.get(method, []) if lang in probes]


def point(lens: Lens, method: str, lang: str) -> Point | None:
    """``None`` when ``method`` has no after-training probe of ``lang``. The pivot layer is the base probe's."""
    seeds = _mean_curves(lens, method, lang)
    if not seeds:
        return None
    base = lens.base.get(lens.home[method], {}).get(lang)
    layer = base.pivot_layer if base is not None else seeds[0].pivot_layer
    ref = base if base is not None else seeds[0]
    for c in seeds:
        if len(c.p_en) != len(ref.p_en):
            raise PivotuneError(f"{c.source}: field 'languages.{lang}.p_en.mean' has {len(c.p_en)} layers but "
                                f"{ref.source} has {len(ref.p_en)}: a method's runs and its base model must be "
                                "probed on the same architecture.")
    return Point(layer, len(seeds), float(np.mean([c.p_en[layer] for c in seeds])),
                 float(np.mean([c.p_tgt[layer] for c in seeds])),
                 None if base is None else float(base.p_en[layer]), None if base is None else float(base.p_tgt[layer]))


def _methods(lens: Lens, study: Study) -> list[str]:
    return [*(m for m in study.scores if m in lens.after), *(m for m in lens.after if m not in study.scores)]


def _f(v: float | None) -> str:
    return "not measured" if v is None else f"{v:.4f}"


def _change(before: float | None, after: float) -> str:
    return "–" if before is None else f"{after - before:+.4f}"


def lens_table(lens: Lens, study: Study, lang: str) -> tuple[list[str], list[list[str]]]:
    header = ["method", "seeds", "layer", "P(en) before → after", "ΔP(en)", f"P({lang}) before → after",
              f"ΔP({lang})"]
    rows = []
    for m in _methods(lens, study):
        p = point(lens, m, lang)
        if p is not None:
            rows.append([m, str(p.seeds), str(p.layer), f"{_f(p.base_en)} → {_f(p.after_en)}",
                         _change(p.base_en, p.after_en), f"{_f(p.base_tgt)} → {_f(p.after_tgt)}",
                         _change(p.base_tgt, p.after_tgt)])
    return header, rows


def plot_lens(lens: Lens, study: Study, lang: str, path: Path) -> None:
    """PNG, two panels (P(English), P(target)) against layer: base dashed, each method's seed mean solid."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10.0, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 2, i) for i in (1, 2)]
    bases = [(home, probes[lang]) for home, probes in lens.base.items() if lang in probes]
    lines = [(f"base ({home.name})" if len(bases) > 1 else "base (before training)", c, "--", "black")
             for home, c in bases]
    for i, m in enumerate(_methods(lens, study)):
        seeds = _mean_curves(lens, m, lang)
        if seeds and point(lens, m, lang) is not None:   # point() checks the seeds' layer counts agree
            mean = Curves(np.mean([c.p_en for c in seeds], axis=0), np.mean([c.p_tgt for c in seeds], axis=0),
                          seeds[0].pivot_layer, seeds[0].source)
            label = m + (f" (mean of {len(seeds)} seeds)" if len(seeds) > 1 else "")
            lines.append((label, mean, "-", f"C{i % 10}"))
    pivots = sorted({p.layer for m in lens.after if (p := point(lens, m, lang)) is not None}
                    | {c.pivot_layer for _, c in bases})
    top = max((float(max(c.p_en.max(), c.p_tgt.max())) for _, c, _, _ in lines), default=1.0)
    for ax, key, name in ((axes[0], "p_en", "P(English)"), (axes[1], "p_tgt", f"P({lang})")):
        for label, c, style, color in lines:
            y = getattr(c, key)
            ax.plot(np.arange(len(y)), y, linestyle=style, color=color, marker="o", markersize=3, label=label)
        for n in pivots:
            ax.axvline(n, color="gray", linestyle=":", label=f"pivot n={n}")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("layer (output of decoder block k; 0 = embeddings)")
        ax.set_ylabel("probability")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # one scale for both panels; zoomed in when every curve stays small, as in the probe's own figure
        ax.set_ylim(0, 1 if top > 0.5 else max(1.1 * top, 1e-3))
    # one legend below both panels, where it hides no curve
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=min(len(lines) + len(pivots), 5),
               fontsize=8, frameon=False)
    fig.suptitle(f"{lang}: logit lens before (dashed) and after (solid) training", fontsize=11)
    fig.tight_layout(rect=(0, 0.1 * (1 + (len(lines) + len(pivots) - 1) // 5), 1, 1))
    fig.savefig(path, format="png")


def lens_blocks(study: Study, figures: Path) -> list[tuple]:
    """The report section: per language, a figure and its table; nothing when no run was probed."""
    lens = read_lens(study)
    if not lens.base and not lens.after:
        return []
    sources = sorted({str(c.source) for probes in lens.base.values() for c in probes.values()})
    blocks: list[tuple] = [
        ("h2", SECTION),
        ("p", "Logit-lens probability of the English word and of the target word at the last prompt position, "
              "per layer, on the same word pairs, prompts and seed: the base model before training (dashed) and "
              "each method after training (solid, mean over its seeds). The tables read the curves at the pivot "
              "layer; the change is after − before. Before: "
              + (", ".join(sources) if sources else "not measured (no base-model probe)") + ".")]
    if not lens.after:
        blocks.append(("p", f"No run was probed after training (RUN/{AFTER_DIR}/{PROBE_FILE})."))
    for lang in lens.languages:
        name = f"lens_before_after_{lang}.png"
        plot_lens(lens, study, lang, child_path(figures, name))
        header, rows = lens_table(lens, study, lang)
        blocks += [("h3", lang), ("img", f"{figures.name}/{name}", f"{lang}: logit lens before and after training")]
        if rows:
            blocks.append(("table", header, rows))
    return blocks


def lens_findings(study: Study) -> list[str]:
    """Per language: P(en) and P(target) at the pivot layer after PROM and after t+e, with the base model's."""
    lens = read_lens(study)
    if not lens.base and not lens.after:
        return []
    out = []
    for lang in lens.languages:
        pts = {m: point(lens, m, lang) for m in (PROM, TPLUSE)}
        ref = pts[PROM] or pts[TPLUSE]
        if ref is None:
            out.append(f"After training, P(en) on {lang}: not measured (no after-training probe for {PROM} or "
                       f"{TPLUSE}).")
            continue
        parts = []
        for key, name in (("en", "P(en)"), ("tgt", f"P({lang})")):
            vals = {m: None if p is None else getattr(p, f"after_{key}") for m, p in pts.items()}
            parts.append(f"{PROM} {_f(vals[PROM])} (base {_f(getattr(ref, f'base_{key}'))}), "
                         f"{TPLUSE} {_f(vals[TPLUSE])}")
        out.append(f"After training, P(en) at layer {ref.layer} on {lang}: {parts[0]}; P({lang}): {parts[1]}.")
    return out
