"""Every difference the report states, with its 95 % interval (:mod:`.stats`), and the win/lose rule.

A method's difference from the baseline on a (language, metric) case, or on the mean over the target
languages' cases, is the paired bootstrap over the evaluation items (their scores logged in each demo
run's ``samples/``) and over seeds. Where no per-item scores were logged, the same bootstrap runs over the
per-seed scores alone, which needs at least two seeds per method; with one seed and no items nothing is
decided. A case is a *win* when its interval lies above zero, a *loss* when below, and *undecided*
otherwise: a difference counts only when the interval excludes zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .collect import METRICS, Run, Study, _method_of, cases, interference_points
from .stats import ITERATIONS, SEED, Interval, normal_interval, paired_bootstrap, unpaired_bootstrap

Case = tuple[str, str]   # (language, metric key)

WIN_RULE = ("Each difference is the method's mean minus the baseline's with a 95 % interval: a percentile "
            f"bootstrap ({ITERATIONS:,} replicates, seed {SEED}) that resamples the evaluation items, paired "
            "between the two methods, and each method's seeds. A case (target language, metric) is a win when the "
            "interval lies above zero, a loss when it lies below, and undecided when it contains zero.")
NO_INTERVAL = "no interval: one seed and no per-item scores"


def _item_matrices(study: Study, method: str, baseline: str, wanted: list[Case]):
    """(a, b, pools) for :func:`paired_bootstrap` from the per-item scores: each case's items common to every
    seed of both methods, in one order; cases with the same item ids form one pool. None where missing."""
    ia, ib = study.items.get(method) or [], study.items.get(baseline) or []
    if not ia or not ib or any(d is None or any(c not in d for c in wanted) for d in ia + ib):
        return None
    a, b, pools = [], [], []
    for c in wanted:
        ids = sorted(set.intersection(*(set(d[c]) for d in ia + ib)))
        if not ids:
            return None
        a.append([[d[c][i] for i in ids] for d in ia])
        b.append([[d[c][i] for i in ids] for d in ib])
        pools.append(tuple(ids))
    return a, b, pools


def difference(study: Study, method: str, baseline: str, wanted: list[Case]) -> Interval | None:
    """``method`` minus ``baseline``, averaged over the cases ``wanted``, with its interval; None when
    neither items nor several seeds allow one."""
    if not wanted:
        return None
    got = _item_matrices(study, method, baseline, wanted)
    if got is not None:
        return paired_bootstrap(*got)
    sa, sb = study.scores[method], study.scores[baseline]
    if len(sa) < 2 or len(sb) < 2:
        return None
    return paired_bootstrap([[[s[lang][key]] for s in sa] for lang, key in wanted],
                            [[[s[lang][key]] for s in sb] for lang, key in wanted])


def basis(study: Study, method: str, baseline: str) -> str:
    """What the intervals of ``method`` against ``baseline`` resample, in words."""
    seeds = min(len(study.scores[method]), len(study.scores[baseline]))
    if _item_matrices(study, method, baseline, cases(study)) is not None:
        n = len((study.items[method][0] or {}).get(cases(study)[0], {})) if cases(study) else 0
        return f"paired over items ({n} per case)" + (f" and over seeds ({seeds})" if seeds > 1 else ", one seed")
    return f"over seeds ({seeds}), no per-item scores" if seeds > 1 else NO_INTERVAL


def target_cases(study: Study) -> list[Case]:
    """The cases counted for wins and losses: target languages only (the paper's Table 3), not English."""
    return [c for c in cases(study) if c[0] != "en"]


@dataclass
class WinLose:
    wins: list[Case] = field(default_factory=list)
    losses: list[Case] = field(default_factory=list)
    undecided: list[Case] = field(default_factory=list)
    intervals: dict[Case, Interval | None] = field(default_factory=dict)
    targets: Interval | None = None    # the difference on the mean over the target-language cases


def win_lose(study: Study, method: str, baseline: str) -> WinLose:
    """Each target case's interval and verdict, and the interval of the target-language mean."""
    out = WinLose(targets=difference(study, method, baseline, target_cases(study)))
    for c in target_cases(study):
        iv = out.intervals[c] = difference(study, method, baseline, [c])
        sign = iv.sign if iv else 0
        (out.wins if sign > 0 else out.losses if sign < 0 else out.undecided).append(c)
    return out


def fmt(iv: Interval | None) -> str:
    return "–" if iv is None else iv.fmt()


def difference_table(study: Study, baseline: str) -> tuple[list[str], list[list[str]]]:
    """A row per (language, metric) and one for the target-language mean, a column per method other than
    ``baseline``: the difference with its interval; target cases marked (win) or (loss) when decided."""
    methods = [m for m in study.scores if m != baseline]
    names = dict(METRICS)
    rows = []
    for c in cases(study):
        row = [c[0], names[c[1]]]
        for m in methods:
            iv = difference(study, m, baseline, [c])
            mark = "" if iv is None or c[0] == "en" or iv.sign == 0 else (" (win)" if iv.sign > 0 else " (loss)")
            row.append(fmt(iv) + mark)
        rows.append(row)
    rows.append(["targets", "mean", *(fmt(difference(study, m, baseline, target_cases(study))) for m in methods)])
    return ["language", "metric", *methods], rows


def verdict(sign: int) -> str:
    return {1: "reproduced", -1: "refuted (the interval excludes zero the other way)", 0: "not decided"}[sign]


# ------------------------------------------------------------------ claim 2: gradient interference


def interference_matrix(runs: list[Run]) -> list[list[float]] | None:
    """Seeds × logged points of the runs' mean cosines (each seed cut to the points every seed logged)."""
    series = [got[1] for r in runs if (got := interference_points(r)) is not None]
    if not series:
        return None
    n = min(len(s) for s in series)
    return [s[:n] for s in series]


def interference_difference(study: Study, method: str, baseline: str) -> tuple[Interval, int, int] | None:
    """(``method`` minus ``baseline`` in mean gradient cosine, its interval, and the points on each side):
    each side's seeds, then its logged points, resampled on their own (nothing pairs two methods' batches)."""
    a = interference_matrix([r for r in study.runs if _method_of(r) == method])
    b = interference_matrix([r for r in study.runs if _method_of(r) == baseline])
    if a is None or b is None:
        return None
    return unpaired_bootstrap(a, b), sum(map(len, a)), sum(map(len, b))


# ------------------------------------------------------------------ claim 1: the logit lens at the pivot layer


def lens_gap(probe: dict, lang: str, layer: int) -> Interval | None:
    """Mean P(en) − mean P(target) at ``layer`` from a ``probe.json`` (which logs per-layer means, spreads and
    the item count, not the items) with a conservative 95 % interval: the normal one with the spread of the
    paired difference bounded by sd(P(en)) + sd(P(target)), which holds whatever their correlation. The
    probe's spreads are population ones; they are turned into sample ones first. None where absent."""
    entry = ((probe or {}).get("languages") or {}).get(lang) or {}
    try:
        n = int(entry["n_items"])
        means = [float(entry[k]["mean"][layer]) for k in ("p_en", "p_tgt")]
        sds = [float(entry[k]["sd"][layer]) for k in ("p_en", "p_tgt")]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if n < 2:
        return None
    return normal_interval(means[0] - means[1], sum(sds) * math.sqrt(n / (n - 1)), n)


__all__ = ["NO_INTERVAL", "WIN_RULE", "WinLose", "basis", "difference", "difference_table",
           "interference_difference", "lens_gap", "target_cases", "verdict", "win_lose"]
