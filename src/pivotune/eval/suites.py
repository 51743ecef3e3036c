"""Presets whose task lists follow the run's languages, resolved against the installed harness's own
task names (its TaskManager over each suite's task folder), so a language a suite lacks is reported
in one line before anything runs, never as an error deep inside the harness.

- ``global``: Belebele, Global-MMLU (the full 57-subject version), XCOPA, XNLI, XStoryCloze and MGSM
  (native chain of thought, as ``prom-paper``), for every target language that has them;
- ``english-retention``: MMLU, ARC-Challenge, HellaSwag, GSM8K (English; whether adaptation kept it);
- ``flores``: pivotune's FLORES tasks, English→target and target→English (local files, ``--flores-dir``).

In a pattern, ``{lang}`` is the ISO 639-1 code (``th``) and ``{flores}`` the FLORES-200 code
(``tha_Thai``) of each language.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from ..errors import PivotuneError
from ..languages import FLORES_CODES, iso639_1

_PLACEHOLDER = re.compile(r"\{(lang|flores)\}")


@dataclass(frozen=True)
class Suite:
    """One benchmark of a preset: its task-name pattern and the harness folder holding its tasks
    (None for pivotune's own tasks, which are written per run)."""

    benchmark: str
    pattern: str
    folder: str | None

    @property
    def per_language(self) -> bool:
        return _PLACEHOLDER.search(self.pattern) is not None


LANGUAGE_PRESETS: dict[str, tuple[Suite, ...]] = {
    "global": (
        Suite("Belebele", "belebele_{flores}", "belebele"),
        Suite("Global-MMLU", "global_mmlu_full_{lang}", "global_mmlu"),
        Suite("XCOPA", "xcopa_{lang}", "xcopa"),
        Suite("XNLI", "xnli_{lang}", "xnli"),
        Suite("XStoryCloze", "xstorycloze_{lang}", "xstorycloze"),
        Suite("MGSM", "mgsm_native_cot_{lang}", "mgsm"),
    ),
    "english-retention": (
        Suite("MMLU", "mmlu", "mmlu"),
        Suite("ARC-Challenge", "arc_challenge", "arc"),
        Suite("HellaSwag", "hellaswag", "hellaswag"),
        Suite("GSM8K", "gsm8k", "gsm8k"),
    ),
    "flores": (
        Suite("FLORES en→X", "pivotune_flores_en-{lang}", None),
        Suite("FLORES X→en", "pivotune_flores_{lang}-en", None),
    ),
}


def fill(pattern: str, lang: str | None) -> str | None:
    """``pattern`` for ``lang``; None when the language has no code of the kind it needs."""
    if lang is None:
        return pattern
    flores = lang if re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", lang) else FLORES_CODES.get(iso639_1(lang))
    if "{flores}" in pattern and flores is None:
        return None
    return pattern.replace("{lang}", iso639_1(lang)).replace("{flores}", flores or "")


@functools.lru_cache(maxsize=8)
def harness_names(folders: frozenset[str]) -> frozenset[str]:
    """Every task and group name the installed harness defines in ``folders`` (of its tasks directory)."""
    from lm_eval.tasks import TaskManager

    from .registry import harness_dir

    paths = [str(harness_dir() / f) for f in sorted(folders) if (harness_dir() / f).is_dir()]
    return frozenset(TaskManager(include_path=paths, include_defaults=False).task_index if paths else ())


@dataclass
class Resolved:
    names: list[str]
    lacking: dict[str, list[str]]   # benchmark -> the languages it lacks ([] when it is missing altogether)

    def line(self, preset: str) -> str:
        parts = [f"{bench} for {', '.join(langs)}" if langs else bench for bench, langs in self.lacking.items()]
        return f"preset {preset}: the installed harness has no " + "; ".join(parts)


def resolve(preset: str, languages: list[str] = (), known: Collection[str] | None = None) -> Resolved:
    """The tasks of ``preset`` for ``languages`` that the harness has (``known``: its names, looked up
    when not given), and what it lacks."""
    suites = LANGUAGE_PRESETS[preset]
    if any(s.per_language for s in suites) and not languages:
        raise PivotuneError(f"preset {preset} lists tasks per target language: evaluate a run directory (its "
                            "config's languages are used) or pass --languages (e.g. --languages th sw).")
    if known is None:
        known = harness_names(frozenset(s.folder for s in suites if s.folder))
    names, lacking = [], {}
    for suite in suites:
        for lang in (languages if suite.per_language else [None]):
            name = fill(suite.pattern, lang)
            if name is not None and (suite.folder is None or name in known):
                names.append(name)
            else:
                lacking.setdefault(suite.benchmark, []).extend([lang] if lang else [])
    if not names:
        raise PivotuneError(f"preset {preset} has no task for {', '.join(languages) or 'this harness'}: "
                            + Resolved(names, lacking).line(preset) + ".")
    return Resolved(list(dict.fromkeys(names)), lacking)


def run_languages(run_dir: str | Path | None) -> list[str]:
    """The target languages of a pivotune run (its ``config.yaml``); [] for anything else."""
    import yaml

    cfg = Path(run_dir) / "config.yaml" if run_dir is not None else None
    if cfg is None or not cfg.is_file():
        return []
    try:
        data = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise PivotuneError(f"{cfg}: cannot read the run's config ({e}).") from None
    langs = data.get("languages") if isinstance(data, dict) else None
    return [str(l) for l in langs] if isinstance(langs, list) else []
