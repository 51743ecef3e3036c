"""The toy world's evaluation sets as harness tasks, so the demo evaluates through the same road as
a real run (``lm_eval.simple_evaluate`` with the Hugging Face backend).

``write_tasks`` turns ``WORLD/eval/{mgsm,xquad}_LANG.jsonl`` into ``pivotune_toy_TASK_LANG`` task
files (which include the shipped ``tasks/toy/*_common_yaml``) plus their data; prompts and scoring
are those of :mod:`pivotune.eval.toy_scoring`, through :mod:`pivotune.eval.task_utils`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from ..errors import PivotuneError
from ..io import child_path, write_jsonl_atomic, write_text_atomic
from ..toy.language import ENGLISH
from .registry import TASKS_DIR, toy_task
from .toy_scoring import TASKS, load_eval


def world_languages(world_dir: str | Path) -> list[str]:
    meta = Path(world_dir) / "world.json"
    if not meta.is_file():
        raise PivotuneError(f"{world_dir} is not a toy world directory: {meta} is missing "
                            "(build one with `pivotune demo`, or point at its cache entry's world/).")
    return json.loads(meta.read_text(encoding="utf-8"))["languages"]


def task_name(task: str, lang: str) -> str:
    return f"pivotune_toy_{task}_{lang}"


def write_tasks(world_dir: str | Path, out_dir: str | Path, languages: Sequence[str] | None = None,
                tasks: Sequence[str] = TASKS, limit: int | None = None) -> list[str]:
    """Write the task files and data for ``tasks`` × ``languages`` (default: all the world's)."""
    have = world_languages(world_dir)
    languages = list(languages or have)
    missing = [l for l in languages if l not in have]
    if missing:
        raise PivotuneError(f"the toy world at {world_dir} has no language {missing}; it has {have}.")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise PivotuneError(f"unknown toy task(s) {unknown}; known: {', '.join(TASKS)}.")
    out_dir = Path(out_dir)
    names = []
    for task in tasks:
        for lang in languages:
            rows = [{**r, "lang": lang} for r in load_eval(world_dir, task, lang, limit)]
            data = child_path(out_dir, f"toy_{task}_{lang}.jsonl")   # lang: from world.json
            write_jsonl_atomic(data, rows)
            name = task_name(task, lang)
            cfg = {"include": str(TASKS_DIR / "toy" / f"pivotune_toy_{task}_common_yaml"), "task": name,
                   "dataset_kwargs": {"data_files": {"test": str(data.resolve())}}}
            write_text_atomic(child_path(out_dir, f"{name}.yaml"), yaml.safe_dump(cfg, sort_keys=False))
            names.append(name)
    return names


def translation_tasks(languages: Sequence[str]) -> list[str]:
    """toy-FLORES in both directions between English and each other of ``languages``."""
    from .flores import task_name as flores_task

    return [flores_task(s, t, toy=True) for lang in languages if lang != ENGLISH
            for s, t in ((ENGLISH, lang), (lang, ENGLISH))]


def evaluate_toy_with_harness(model, world_dir: str | Path, languages: Sequence[str] | None = None, *,
                              tokenizer=None, tasks: Sequence[str] = TASKS, limit: int | None = None,
                              batch_size: int = 64, out_dir: str | Path | None = None,
                              log_samples: bool = False, translation: bool = True) -> dict:
    """Evaluate ``model`` (a directory, or a loaded model with ``tokenizer``) on the toy tasks and, with
    ``translation``, toy-FLORES between English and each other language (:func:`translation_tasks`; the first
    ``limit`` sentences, as the other tasks' items).

    ``batch_size`` 64: a quarter faster than 32 on a CPU for the toy models, with the same generations.

    Returns the harness's results (see :func:`pivotune.eval.harness.evaluate`); with ``out_dir``
    they are also written to ``out_dir/results.json``, and every item's output and scores to
    ``out_dir/samples/`` (the report's paired intervals read them: :func:`toy_item_scores`);
    ``log_samples`` also returns them. :func:`toy_headline` turns the results into the demo's
    ``{lang: {"mgsm", "xquad_em", "xquad_f1"}}`` rows.
    """
    from .flores import write_tasks as write_flores_tasks
    from .harness import evaluate

    with tempfile.TemporaryDirectory(prefix="pivotune-toy-tasks-") as tmp:
        names = write_tasks(world_dir, tmp, languages, tasks, limit)
        if translation:
            names += write_flores_tasks(translation_tasks(languages or world_languages(world_dir)), tmp,
                                        toy_world=world_dir, limit=limit)
        res = evaluate(model, names, tokenizer=tokenizer, batch_size=batch_size, out_dir=out_dir,
                       extra_task_dirs=[Path(tmp)], bootstrap_iters=0, log_samples=True)
    if not log_samples:
        res.pop("samples", None)
    return res


#: the toy headline key of each per-item headline score, per toy task
ITEM_KEYS = {"mgsm": {"acc": "mgsm"}, "xquad": {"em": "xquad_em", "f1": "xquad_f1"}}


def toy_item_scores(results_dir: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{lang: {"mgsm" | "xquad_em" | "xquad_f1": {item id: score in %}}}`` from the samples an evaluation
    logged in ``results_dir`` (the per-item counterpart of :func:`toy_headline`; their means are its
    numbers); ``{}`` where none were logged. Item ids are the world's (``toy-mgsm-0007``): one item has
    the same id in every language, so two runs' items pair up."""
    from .harness import read_item_scores

    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, items in read_item_scores(results_dir).items():
        got = toy_task(name)
        if got is None:
            continue
        task, lang = got
        for score, key in ITEM_KEYS[task].items():
            out.setdefault(lang, {})[key] = {i: s[score] for i, s in items.items()}
    return out


def toy_headline(results: dict) -> dict[str, dict[str, float]]:
    """``{lang: {"mgsm": acc, "xquad_em": em, "xquad_f1": f1}}`` in percent, as ``toy_scoring.headline``."""
    out: dict[str, dict[str, float]] = {}
    for name, metrics in results["results"].items():
        for task in TASKS:
            prefix = f"pivotune_toy_{task}_"
            if not name.startswith(prefix):
                continue
            row = out.setdefault(name[len(prefix):], {})
            if task == "mgsm":
                row["mgsm"] = 100 * metrics["accuracy,none"]
            else:
                row["xquad_em"] = 100 * metrics["exact_match,none"]
                row["xquad_f1"] = 100 * metrics["f1,none"]
    return out
