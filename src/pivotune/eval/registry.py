"""Which harness tasks pivotune evaluates: presets, our own task files, name checks, and what each
task measures (benchmark, language, headline metrics) for the paper-style tables.

Our task files live in ``eval/tasks`` (shipped with the package) and are named ``pivotune_*`` so
they never shadow a harness task:

- ``pivotune_xquad_LANG``: the harness's XQuAD with a scoring function that loads under
  transformers 5 (the harness's imports a module transformers 5 removed);
- ``pivotune_mlqa_ar``: the harness's MLQA Arabic with Arabic prompt labels (the PROM paper
  prompts in the target language; the harness's MLQA prompts in English);
- ``pivotune_indicqa_LANG``: IndicQA, written per run from local data (:mod:`.indicqa`);
- ``pivotune_toy_{mgsm,xquad}_LANG``: the toy world's sets (:mod:`.toy_tasks`);
- ``pivotune_flores_SRC-TGT`` / ``pivotune_toy_flores_SRC-TGT``: translation from local FLORES files
  or the toy world's toy-FLORES (:mod:`.flores`).

Presets that follow the run's languages (``global``, ``english-retention``, ``flores``) are defined
and resolved against the installed harness in :mod:`.suites`.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import PivotuneError
from . import suites

log = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).parent / "tasks"
STATIC_DIRS = ("xquad", "mlqa")              # our task files that need no local data

INDICQA_LANGS = ("as", "bn", "gu", "hi", "kn", "ml", "mr", "or", "pa", "ta", "te")

# The PROM paper's evaluation (zero-shot, prompts in the target language). MGSM uses the harness's
# native chain-of-thought tasks (question and answer labels in the language; scored by the last
# number, "flexible-extract"); the harness's mgsm_direct_* put an English "Answer:" after the question.
PRESETS: dict[str, tuple[str, ...]] = {
    "prom-paper": (
        "pivotune_xquad_th", "pivotune_xquad_ar", "pivotune_xquad_el", "pivotune_mlqa_ar",
        "pivotune_indicqa_ta", "pivotune_indicqa_mr", "pivotune_indicqa_ml",
        "mgsm_native_cot_sw", "mgsm_native_cot_th", "mgsm_native_cot_bn", "mgsm_native_cot_te",
    ),
    **{name: tuple(s.pattern for s in group) for name, group in suites.LANGUAGE_PRESETS.items()},
}


def expand(tasks: list[str] | None, preset: str | None, languages: list[str] = ()) -> list[str]:
    """The task list of ``preset`` (for ``languages``, where it follows them) followed by ``tasks``
    (duplicates dropped, order kept); what the harness lacks is logged in one line."""
    names: list[str] = []
    if preset is not None:
        if preset not in PRESETS:
            raise PivotuneError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
        if preset in suites.LANGUAGE_PRESETS:
            resolved = suites.resolve(preset, list(languages))
            if resolved.lacking:
                log.warning("%s", resolved.line(preset))
            names += resolved.names
        else:
            names += PRESETS[preset]
    names += list(tasks or [])
    if not names:
        raise PivotuneError("no tasks to evaluate: give --tasks NAME... or --preset "
                            f"({', '.join(PRESETS)})")
    return list(dict.fromkeys(names))


def indicqa_lang(name: str) -> str | None:
    m = re.fullmatch(r"pivotune_indicqa_(\w+)", name)
    return m.group(1) if m else None


def toy_task(name: str) -> tuple[str, str] | None:
    """``(task, lang)`` for a ``pivotune_toy_TASK_LANG`` name."""
    m = re.fullmatch(r"pivotune_toy_(mgsm|xquad)_(\w+)", name)
    return (m.group(1), m.group(2)) if m else None


def harness_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def task_manager(names: list[str], extra_dirs: list[Path] = ()):
    """A harness TaskManager that knows ``names``, indexing as little as it can.

    Indexing all of the harness's ~13k task files takes tens of seconds, so names that are plain
    tasks in the folder named by their first word (``mgsm_native_cot_th`` → ``tasks/mgsm``) are
    looked up there; anything else (groups, tags, other layouts) gets the full index.
    """
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import Kind

    ours = [TASKS_DIR / d for d in STATIC_DIRS] + [Path(d) for d in extra_dirs]
    builtin = [n for n in names if not n.startswith("pivotune_")]
    if not builtin:
        return TaskManager(include_path=[str(d) for d in ours], include_defaults=False)
    families = sorted({harness_dir() / n.split("_")[0] for n in builtin})
    if all(f.is_dir() for f in families):
        tm = TaskManager(include_path=[str(d) for d in families + ours], include_defaults=False)
        entries = [tm.task_index.get(n) for n in builtin]
        if all(e is not None and e.kind == Kind.TASK for e in entries):
            return tm
    return TaskManager(include_path=[str(d) for d in ours])


def check_names(names: list[str], tm) -> None:
    """Fail with close suggestions for names the task manager does not know."""
    unknown = [n for n in names if n not in tm.task_index]
    if not unknown:
        return
    # A narrow index may not hold the name meant; the harness's file names (mostly its task names)
    # are a cheap stand-in for the full index.
    stems = {p.stem for p in harness_dir().rglob("*.yaml")}
    candidates = sorted(set(tm.all_tasks) | stems | {f"pivotune_indicqa_{l}" for l in INDICQA_LANGS})
    lines = []
    for n in unknown:
        close = difflib.get_close_matches(n, candidates, n=5, cutoff=0.6)
        lines.append(f"{n!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    raise PivotuneError(f"unknown task name(s): {'; '.join(lines)}. List the harness's tasks with "
                        "`lm-eval ls tasks`; pivotune's own are pivotune_xquad_LANG, pivotune_mlqa_ar, "
                        f"pivotune_indicqa_LANG ({', '.join(INDICQA_LANGS)}), with --flores-dir "
                        "pivotune_flores_SRC-TGT and, with --toy-world, pivotune_toy_{mgsm,xquad}_LANG and "
                        "pivotune_toy_flores_SRC-TGT; presets: " + ", ".join(PRESETS) + ".")


# -- what a task measures (for the tables) ----------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One table cell group: a benchmark in a language, measured by EM/F1 (``qa``) or accuracy."""

    benchmark: str
    lang: str
    kind: str          # "qa" (exact_match, f1) or "acc"


_FAMILIES = (
    (r"pivotune_toy_xquad_(\w+)", "toy-XQuAD", "qa"),
    (r"pivotune_toy_mgsm_(\w+)", "toy-MGSM", "acc"),
    (r"(?:pivotune_)?xquad_(\w+)", "XQuAD", "qa"),
    (r"pivotune_mlqa_(\w+)", "MLQA", "qa"),
    (r"mlqa_(\w+?)_\w+", "MLQA", "qa"),
    (r"pivotune_indicqa_(\w+)", "IndicQA", "qa"),
    (r"mgsm_(?:direct|native_cot|en_cot)_(\w+)", "MGSM", "acc"),
    (r"belebele_([a-z]{3}_[A-Z][a-z]{3})", "Belebele", "acc"),
    (r"global_mmlu_full_([a-z]{2,3})", "Global-MMLU", "acc"),
    (r"xcopa_([a-z]{2,3})", "XCOPA", "acc"),
    (r"xnli_([a-z]{2,3})", "XNLI", "acc"),
    (r"xstorycloze_([a-z]{2,3})", "XStoryCloze", "acc"),
    (r"mmlu", "MMLU", "acc"),               # English retention: no language in the name
    (r"arc_challenge", "ARC-Challenge", "acc"),
    (r"hellaswag", "HellaSwag", "acc"),
    (r"gsm8k", "GSM8K", "acc"),
)


def case_of(task: str) -> Case | None:
    for pattern, bench, kind in _FAMILIES:
        m = re.fullmatch(pattern, task)
        if m:
            return Case(bench, m.group(1) if m.groups() else "en", kind)
    return None


def _pick(metrics: dict, name: str, filters: tuple[str, ...]) -> float | None:
    for f in filters:
        v = metrics.get(f"{name},{f}")
        if isinstance(v, (int, float)):
            return float(v)
    for k, v in metrics.items():   # any other filter the task defines
        if k.split(",")[0] == name and "stderr" not in k and isinstance(v, (int, float)):
            return float(v)
    return None


def headline_scores(task: str, metrics: dict) -> dict[str, float] | None:
    """``{"em", "f1"}`` or ``{"acc"}`` in percent from one task's harness metrics (None if absent)."""
    case = case_of(task)
    kind = case.kind if case else ("qa" if any(k.startswith("f1,") for k in metrics) else "acc")
    if kind == "qa":
        em, f = _pick(metrics, "exact_match", ("none",)), _pick(metrics, "f1", ("none",))
        return None if em is None or f is None else {"em": 100 * em, "f1": 100 * f}
    for name, filters in (("accuracy", ("none",)), ("exact_match", ("flexible-extract", "none")),
                          ("acc", ("none",))):
        v = _pick(metrics, name, filters)
        if v is not None:
            return {"acc": 100 * v}
    return None
