"""Language confusion and toy-FLORES translation per method, for the study report and the demo's results.md.

Read from each demo run's harness results (``METHOD-seedN/results.json``: :class:`.collect.Evaluation`):

- the confusion table: a row per (expected language, task), a column per method, each cell the Language
  Confusion Benchmark's line / word pass rate (LPR / WPR, %; :mod:`pivotune.eval.confusion`), mean ± sd
  over seeds; "judged" is how many responses the rates count (its range over methods and seeds);
- the translation table: a row per toy-FLORES direction, each cell chrF++ / BLEU, mean ± sd over seeds;
- a finding each: every method's LPR on the target-language tasks (their mean), and its difference from
  the baseline with a 95 % interval, paired over the responses both judged and over seeds
  (:func:`pivotune.report.stats.paired_bootstrap`; each response's verdict from the runs' logged samples,
  :func:`pivotune.eval.confusion.read_line_passes`), or over seeds alone where no samples were logged;
  every method's chrF++ (mean over the directions; a corpus score, so no item interval).
"""

from __future__ import annotations

import statistics

from ..eval import confusion, flores
from ..eval.registry import case_of
from .collect import Evaluation, Study, fmt_mean_sd, mean_sd
from .stats import Interval, paired_bootstrap

LPR, WPR, JUDGED = "line_pass_rate,none", "word_pass_rate,none", "confusion_judged,none"
CHRF, BLEU = "chrf++,none", "bleu,none"
CONFUSION_TITLE = "Language confusion: line / word pass rate (%)"
TRANSLATION_TITLE = "Translation (toy-FLORES): chrF++ / BLEU"
CONFUSION_NOTE = ("LPR: the share of responses whose every line is in the expected language; WPR: among those, "
                  "the share with no word of another language (the Language Confusion Benchmark's rates; in the "
                  "toy world, by script). Mean ± sd over seeds; judged: the responses counted.")


def _measured(study: Study, key: str) -> set[str]:
    return {t for per_seed in study.evaluations.values() for e in per_seed if e is not None
            for t, m in e.results["results"].items() if key in m}


def _values(per_seed: list[Evaluation | None], task: str, key: str, scale: float = 1.0) -> list[float]:
    return [scale * e.results["results"][task][key] for e in per_seed
            if e is not None and key in e.results["results"].get(task, {})]


def _cell(values: list[float]) -> str:
    return fmt_mean_sd(*mean_sd(values), len(values)) if values else "–"


def _expected(task: str) -> str:
    return confusion.task_judge(task).lang


def _order(study: Study, lang: str) -> tuple[int, str]:
    return (study.languages.index(lang) if lang in study.languages else len(study.languages), lang)


def _label(task: str) -> str:
    """The task without its language (the row names that): toy-MGSM, toy-FLORES el→en."""
    case = case_of(task)
    return case.benchmark if case is not None else confusion.task_label(task)


def confusion_table(study: Study) -> tuple[list[str], list[list[str]]] | None:
    """Header and rows of the confusion table (None: no run measured confusion)."""
    tasks = sorted(_measured(study, LPR), key=lambda t: (_order(study, _expected(t)), _label(t)))
    if not tasks:
        return None
    rows = []
    for task in tasks:
        judged = [int(v) for per_seed in study.evaluations.values() for v in _values(per_seed, task, JUDGED)]
        span = "–" if not judged else str(min(judged)) if min(judged) == max(judged) else \
            f"{min(judged)}–{max(judged)}"
        rows.append([_expected(task), _label(task), span,
                     *(f"{_cell(_values(e, task, LPR, 100))} / {_cell(_values(e, task, WPR, 100))}"
                       for e in study.evaluations.values())])
    return ["language", "task", "judged", *study.evaluations], rows


def _direction_key(study: Study, task: str) -> tuple:
    d = flores.direction(task)
    return d.src != "en", _order(study, d.tgt if d.src == "en" else d.src)


def translation_table(study: Study) -> tuple[list[str], list[list[str]]] | None:
    """Header and rows of the translation table (None: no run was scored on toy-FLORES or FLORES)."""
    tasks = sorted(_measured(study, CHRF), key=lambda t: _direction_key(study, t))
    if not tasks:
        return None
    rows = [[confusion.task_label(t), *(f"{_cell(_values(e, t, CHRF))} / {_cell(_values(e, t, BLEU))}"
                                        for e in study.evaluations.values())] for t in tasks]
    return ["direction", *study.evaluations], rows


# ------------------------------------------------------------------ findings


def _target_lprs(per_seed: list[Evaluation | None], tasks: list[str]) -> list[float]:
    """Per seed that measured every task, the mean LPR (%) over ``tasks``."""
    return [statistics.fmean(100 * e.results["results"][t][LPR] for t in tasks) for e in per_seed
            if e is not None and all(LPR in e.results["results"].get(t, {}) for t in tasks)]


def _line_items(per_seed: list[Evaluation | None], tasks: list[str]) -> list[dict] | None:
    """Per seed ``{task: {item id: 0 or 100}}`` from the logged samples; None unless every seed has every task's."""
    if not per_seed or any(e is None for e in per_seed):
        return None
    got = [confusion.read_line_passes(e.path, e.results) for e in per_seed]
    return got if all(t in g for g in got for t in tasks) else None


def lpr_difference(study: Study, method: str, baseline: str, tasks: list[str]) -> tuple[Interval, str] | None:
    """``method`` minus ``baseline`` in LPR (%), averaged over ``tasks``, with its 95 % interval and what it
    resamples: the responses both judged (paired) and the seeds, or the seeds alone where no samples were
    logged (two or more each); None where neither allows one."""
    a_seeds, b_seeds = study.evaluations[method], study.evaluations[baseline]
    a, b = _line_items(a_seeds, tasks), _line_items(b_seeds, tasks)
    if a is not None and b is not None:
        ma, mb, pools = [], [], []
        for t in tasks:
            ids = sorted(set.intersection(*(set(d[t]) for d in a + b)))
            if not ids:
                return None
            ma.append([[d[t][i] for i in ids] for d in a])
            mb.append([[d[t][i] for i in ids] for d in b])
            pools.append(tuple(ids))   # a toy item keeps its id in every language: those are resampled together
        return paired_bootstrap(ma, mb, pools), "paired over the responses both judged"
    if len(a_seeds) < 2 or len(b_seeds) < 2 or any(len(_target_lprs([e], tasks)) == 0 for e in a_seeds + b_seeds):
        return None
    per_task = [[[_values([e], t, LPR, 100)[0]] for e in seeds] for seeds in (a_seeds, b_seeds) for t in tasks]
    return paired_bootstrap(per_task[:len(tasks)], per_task[len(tasks):]), "over seeds, no logged responses"


def confusion_finding(study: Study, baseline: str) -> str | None:
    """Each method's mean LPR on the target-language tasks, and its difference from ``baseline`` with the
    interval (None: no confusion measured on a target language). A method with a target task no seed judged
    a response of is named apart: a mean over fewer tasks would not compare."""
    tasks = sorted(t for t in _measured(study, LPR) if _expected(t) != "en")
    means = {m: v for m, e in study.evaluations.items() if (v := _target_lprs(e, tasks))}
    if not tasks or not means:
        return None
    line = ("Language confusion (line-level pass rate over the target-language tasks, %, mean over seeds): "
            + ", ".join(f"{m} {statistics.fmean(v):.1f}" for m, v in means.items()))
    got = {m: lpr_difference(study, m, baseline, tasks) for m in means if m != baseline} if baseline in means else {}
    if got:
        bases = sorted({g[1] for g in got.values() if g})
        one = len(bases) == 1   # what the intervals resample, said once when it is the same for all
        cells = [f"{m} " + ("– (no interval: one seed and no logged responses)" if g is None else
                            g[0].fmt() + ("" if one else f" ({g[1]})")) for m, g in got.items()]
        line += f"; minus {baseline}, 95 % intervals" + (f" ({bases[0]})" if one else "") + ": " + ", ".join(cells)
    apart = [m for m in study.evaluations if m not in means]
    if apart:
        line += f"; not measured for {', '.join(apart)} (a target task without a judged response)"
    return line + "."


def translation_finding(study: Study) -> str | None:
    """Each method's chrF++, mean over the directions and seeds (None: no translation scored)."""
    tasks = sorted(_measured(study, CHRF))
    means = {m: statistics.fmean(v) for m, e in study.evaluations.items()
             if (v := [x for t in tasks for x in _values(e, t, CHRF)])}
    if not means:
        return None
    best = max(means, key=means.get)
    return (f"Translation (toy-FLORES chrF++, mean over {len(tasks)} direction(s) and the seeds): "
            + ", ".join(f"{m} {v:.1f}" for m, v in means.items()) + f"; highest: {best}.")


def generation_tables(study: Study) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` of each table the study has."""
    return [(title, *got) for title, got in ((CONFUSION_TITLE, confusion_table(study)),
                                             (TRANSLATION_TITLE, translation_table(study))) if got]


__all__ = ["CONFUSION_NOTE", "CONFUSION_TITLE", "TRANSLATION_TITLE", "confusion_finding", "confusion_table",
           "generation_tables", "lpr_difference", "translation_finding", "translation_table"]
