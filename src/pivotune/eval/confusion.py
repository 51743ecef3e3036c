"""Language confusion: does the model answer in the language it was asked in?

The Language Confusion Benchmark's two rates (Marchisio et al., 2024, "Understanding and Mitigating
Language Confusion in LLMs"; their ``compute_metrics.py``), over a task's responses:

- **line-level pass rate** = share of judged responses whose every judged line is in the expected
  language;
- **word-level pass rate** = among judged responses with no line error, the share with no word of
  another language. LCB defines it only for languages not written in Latin script, and counts a
  word as English when it is a lower-case English dictionary word longer than 3 letters.

A response is normalised as LCB does (ASCII punctuation and the Arabic comma removed, the em dash
made a space), split into lines at newlines and into words at whitespace. A line is judged:

- real languages: with 5 words or more, by the identifier (:func:`pivotune.eval.lid.identify`; its
  label, or ``unknown`` below probability 0.3, must be the expected language). LCB skips shorter lines;
  pivotune judges them by script, where the script decides: a short line whose letters are mostly in a
  script the language does not use fails, one in a script only that language uses passes (Thai, Greek,
  Tamil...), any other (a short Latin line when Swahili is expected) is skipped, as in LCB;
- toy languages: every line with a letter, by :func:`pivotune.eval.lid.toy_language` (exact).

Word errors: real languages, only where LCB defines them (not Latin-script), a word of 4+ lower-case
ASCII letters (no English dictionary ships with pivotune: any such word is Latin-script leakage);
toy languages, a word whose script is another toy language's (defined in every direction).
A response with no judged line is skipped; a rate with nothing to count is absent (LCB would say 100%).

:func:`annotate` adds ``line_pass_rate``, ``word_pass_rate`` (fractions) and ``confusion_judged`` (how
many responses were judged) to every generative task of a harness result whose expected language is
known, from the raw generations in the logged samples; :func:`confusion_table` tabulates them (``pivotune
compare``'s Table 4), with each LPR difference from a baseline run and its paired interval over the items
(:func:`read_line_passes`: each logged response's verdict). WPR gets no interval: its denominator, the
responses without a line error, differs between two runs, so its items do not pair.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import PivotuneError
from . import lid, registry

log = logging.getLogger(__name__)

MIN_LID_WORDS = 5                      # LCB: shorter lines are too short for the identifier
METRICS = ("line_pass_rate", "word_pass_rate", "confusion_judged")
_STRIP = str.maketrans({**{c: None for c in string.punctuation}, "—": " ", "،": None})
_LATIN_WORD = re.compile(r"[a-z]{4,}")


def normalize(text: str) -> str:
    """LCB's normalisation: ASCII punctuation and the Arabic comma removed, the em dash made a space."""
    return text.translate(_STRIP)


@dataclass(frozen=True)
class RealLanguage:
    """Judges lines and words against a real language (``lang``: the identifier's label)."""

    lang: str

    def line_ok(self, line: str, words: list[str]) -> bool | None:
        if len(words) >= MIN_LID_WORDS:
            return lid.identify(line) == self.lang
        script, scripts = lid.main_script(line), lid.language_scripts(self.lang)
        if script is None or not scripts:
            return None
        if script not in scripts:
            return False
        return True if lid.own_script(self.lang) else None

    @property
    def word_level(self) -> bool:
        scripts = lid.language_scripts(self.lang)
        return bool(scripts) and "LATIN" not in scripts

    def word_foreign(self, word: str) -> bool:
        return _LATIN_WORD.fullmatch(word) is not None


@dataclass(frozen=True)
class ToyLanguage:
    """Judges lines and words against a toy world language, by script."""

    lang: str
    word_level = True

    def line_ok(self, line: str, words: list[str]) -> bool | None:
        if lid.main_script(line) is None:
            return None
        return lid.toy_language(line) == self.lang

    def word_foreign(self, word: str) -> bool:
        got = lid.toy_language(word)
        return got is not None and got != self.lang


Judge = RealLanguage | ToyLanguage


def judge_for(lang: str, *, toy: bool = False, where: str = "") -> Judge:
    """The judge of responses expected in ``lang`` (a clear error for a code that is not one, or a
    language the identifier lacks)."""
    return ToyLanguage(lid.check_toy_language(lang, where)) if toy else RealLanguage(lid.lid_code(lang, where))


@dataclass(frozen=True)
class Outcome:
    """One response: judged at all, every judged line passing, and (None: not defined) no foreign word."""

    judged: bool
    line_pass: bool
    word_pass: bool | None


def judge_response(text: str, judge: Judge) -> Outcome:
    verdicts, words_seen = [], []
    for line in normalize(text).split("\n"):
        words = line.split()
        verdict = judge.line_ok(line, words)
        if verdict is not None:
            verdicts.append(verdict)
            words_seen += words
    if not verdicts:
        return Outcome(False, False, None)
    line_pass = all(verdicts)
    word_pass = (not any(judge.word_foreign(w) for w in words_seen)) if judge.word_level and line_pass else None
    return Outcome(True, line_pass, word_pass)


def rates(responses: Iterable[str], judge: Judge) -> dict[str, float | None]:
    """``{"line_pass_rate", "word_pass_rate", "confusion_judged"}`` over ``responses`` (rates as fractions;
    None where there is nothing to count)."""
    outcomes = [judge_response(r, judge) for r in responses]
    judged = [o for o in outcomes if o.judged]
    clean = [o for o in judged if o.line_pass]
    return {"line_pass_rate": sum(o.line_pass for o in judged) / len(judged) if judged else None,
            "word_pass_rate": (sum(bool(o.word_pass) for o in clean) / len(clean)
                               if clean and judge.word_level else None),
            "confusion_judged": float(len(judged))}


# -- harness results -----------------------------------------------------------------------------------

def task_judge(task: str) -> Judge | None:
    """The judge of ``task``'s responses: its target language (the translation's target for FLORES);
    None when pivotune does not know which language the task's answers should be in."""
    from . import flores

    direction = flores.direction(task)
    if direction is not None:
        return judge_for(direction.tgt, toy=direction.toy, where=task)
    case = registry.case_of(task)
    if case is None or task.startswith("mgsm_en_cot_"):   # en_cot asks for English reasoning
        return None
    return judge_for(case.lang, toy=registry.toy_task(task) is not None, where=task)


def first_responses(rows: list[dict]) -> list[str]:
    """Each document's raw generation, once (the harness logs a document once per filter)."""
    by_doc: dict = {}
    for row in rows:
        by_doc.setdefault(row["doc_id"], row["resps"][0][0])
    return list(by_doc.values())


def annotate(res: dict, samples: dict[str, list[dict]]) -> None:
    """Add the confusion rates (``METRIC,none``) to every generative task of ``res`` whose language is
    known, from ``samples`` (the harness's logged samples); tasks whose language the identifier lacks are
    named in one log line."""
    lacking = []
    for task, rows in samples.items():
        if res.get("configs", {}).get(task, {}).get("output_type") != "generate_until" or not rows:
            continue
        try:
            judge = task_judge(task)
        except PivotuneError:
            lacking.append(task)
            continue
        if judge is None:
            continue
        for name, value in rates(first_responses(rows), judge).items():
            if value is not None:
                res["results"][task][f"{name},none"] = value
                res.setdefault("higher_is_better", {}).setdefault(task, {})[name] = True
    if lacking:
        log.info("language confusion not measured for %s (the language identifier lacks the language)",
                 ", ".join(lacking))


def _response(row: dict) -> str:
    text = row["resps"][0][0]
    if not isinstance(text, str):
        raise TypeError(f"the response is a {type(text).__name__}, not a generation")
    return text


def read_line_passes(results_dir: str | Path, res: dict) -> dict[str, dict[str, float]]:
    """``{task: {item id: 100.0 or 0.0}}``, each judged response's line-level verdict (the per-item score whose
    mean is LPR, in %), for the tasks of ``res`` that have an LPR, from the samples logged beside
    ``results_dir/results.json`` (each document once, keyed as :func:`pivotune.eval.harness.item_id`); ``{}``
    where none were logged."""
    from .harness import item_id, read_samples, sample_files

    measured = {t for t, m in res["results"].items() if "line_pass_rate,none" in m}
    out: dict[str, dict[str, float]] = {}
    for path in sample_files(results_dir):
        judge = task_judge(path.stem) if path.stem in measured else None
        if judge is None:
            continue
        outcomes: dict[str, Outcome] = {}
        for row, text in read_samples(path, _response):
            key = item_id(row)
            if key not in outcomes:
                outcomes[key] = judge_response(text, judge)
        out[path.stem] = {key: 100.0 * o.line_pass for key, o in outcomes.items() if o.judged}
    return out


def line_pass_difference(mine: dict[str, float], base: dict[str, float]):
    """``mine`` minus ``base`` in LPR over the responses both judged, with its 95 % paired bootstrap interval
    (:func:`pivotune.report.stats.paired_bootstrap`); None when they share none."""
    from ..report.stats import paired_bootstrap

    ids = sorted(mine.keys() & base.keys())
    return paired_bootstrap([[mine[i] for i in ids]], [[base[i] for i in ids]]) if ids else None


def task_label(task: str) -> str:
    from . import flores

    direction = flores.direction(task)
    if direction is not None:
        return f"{'toy-' if direction.toy else ''}FLORES {direction.src}→{direction.tgt}"
    case = registry.case_of(task)
    return f"{case.benchmark} {case.lang}" if case else task


def _percent(metrics: dict, key: str) -> float | None:
    return 100 * metrics[key] if key in metrics else None


def confusion_table(runs: dict[str, dict], baseline: str | None = None,
                    line_items: dict[str, dict[str, dict[str, float]]] | None = None):
    """``compare.Table`` of the line and word pass rates (%) and the judged responses, a row per run and task
    (grouped by task; None: no run has them). With ``baseline``, each other run's LPR difference from it with
    its 95 % paired interval over the responses both judged, from ``line_items`` (:func:`read_line_passes` per
    run label; a dash where either run logged none)."""
    from .compare import Table

    tasks = sorted({t for res in runs.values() for t, m in res["results"].items() if "line_pass_rate,none" in m},
                   key=task_label)
    if not tasks:
        return None
    items = line_items or {}
    rows = []
    for task in tasks:
        for label, res in runs.items():
            m = res["results"].get(task, {})
            if "line_pass_rate,none" not in m:
                continue
            row = [label, task_label(task), _percent(m, "line_pass_rate,none"), _percent(m, "word_pass_rate,none"),
                   int(m.get("confusion_judged,none", 0))]
            if baseline is not None:
                mine, base = items.get(label, {}).get(task), items.get(baseline, {}).get(task)
                iv = line_pass_difference(mine, base) if label != baseline and mine and base else None
                row.append(None if iv is None else iv.fmt())
            rows.append(row)
    header = ["run", "task", "LPR", "WPR", "judged"] + ([f"LPR − {baseline} (95 % interval)"] if baseline else [])
    return Table("Table 4: language confusion, line / word pass rate (%)", header, rows)
