"""``pivotune eval``: a model or a run through lm-evaluation-harness (``simple_evaluate``, Hugging Face
backend, or vLLM with ``--backend vllm``: :mod:`.backends`), results saved as JSON.

``OUT/results.json`` holds the harness's own output (``results``, ``configs``, ``versions``,
``n-samples``, ...) plus a ``pivotune`` block (model, tasks, backend, settings, seconds); every
generative task's metrics also hold its language-confusion rates (:mod:`.confusion`). Each task's
prompts, generations and per-item scores go to ``OUT/samples/TASK.jsonl`` (``pivotune eval`` writes them
unless ``--no-log-samples``), from which :func:`read_item_scores` reads each item's headline scores and
:func:`pivotune.eval.confusion.read_line_passes` each response's language verdict (for paired intervals
between two runs in ``pivotune compare``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from ..data.parallel import FLORES_SPLITS
from ..errors import PivotuneError
from ..io import child_path, write_json_atomic, write_jsonl_atomic
from ..languages import add_extra_languages_option
from . import backends, confusion, registry
from .flores import DEFAULT_SPLIT

log = logging.getLogger(__name__)

SAMPLES_DIR = "samples"
T = TypeVar("T")


def model_source(path: str) -> tuple[str, Path | None]:
    """``(model directory or hub name, run directory or None)`` for a model dir, a run dir or a hub name."""
    p = Path(path)
    if (p / "model").is_dir():
        return str(p / "model"), p
    if p.is_dir():
        if (p / "config.json").is_file() or (p / "bridge.json").is_file():
            return str(p), None
        if (p / "run.json").is_file() or (p / "config.yaml").is_file():
            raise PivotuneError(f"{p} is a pivotune run directory with no model: {p / 'model'} is missing "
                                "(did training finish?).")
        raise PivotuneError(f"{p} holds neither a model (config.json) nor a run (model/).")
    if p.exists():
        raise PivotuneError(f"{p} is a file; give a model directory, a run directory or a hub name.")
    return path, None   # a hub name; loading explains if it is not one


def _load(model_dir: str, dtype: str):
    import torch

    from ..models.loading import load_model, load_tokenizer

    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    model = load_model(model_dir, dtype=dtype)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model, load_tokenizer(model_dir)


def _version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def _build_tasks(names: list[str], tm) -> list:
    """Task objects (groups stay names), each loaded on its own so a failure names its task."""
    from lm_eval.api.task import Task

    out = []
    for name in names:
        try:
            built = tm.load([name])
        except Exception as e:   # data/hub failures surface deep inside datasets, as any type
            first = str(e).splitlines()[0] if str(e) else ""
            raise PivotuneError(f"could not load task {name!r}: {type(e).__name__}: {first}. Harness tasks "
                                "read their data from the Hugging Face hub; offline, download it first "
                                "(or use pivotune's local-data tasks).") from e
        if built.get("groups"):
            out.append(name)
        else:
            out += [t for t in built["tasks"].values() if isinstance(t, Task)]
    return out


def evaluate(model, tasks: Sequence[str], *, tokenizer=None, batch_size: int = 8, dtype: str = "auto",
             limit: float | None = None, out_dir: str | Path | None = None,
             extra_task_dirs: Sequence[Path] = (), log_samples: bool = False, bootstrap_iters: int = 1000,
             max_length: int | None = None, backend: str = backends.DEFAULT) -> dict:
    """Run ``tasks`` on ``model`` (a model directory/hub name, or a loaded model with ``tokenizer``).

    Returns the harness's result dict (without per-sample logs) plus a ``pivotune`` block; writes
    it to ``out_dir/results.json`` when ``out_dir`` is given.
    """
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.utils import handle_non_serializable

    backends.check_available(backend)
    names = list(dict.fromkeys(tasks))
    tm = registry.task_manager(names, list(extra_task_dirs))
    registry.check_names(names, tm)
    source = model if isinstance(model, (str, Path)) else getattr(model, "name_or_path", "in-memory model")
    built = _build_tasks(names, tm)
    if backend in backends.BUILDERS:   # vllm: builds its own model from the directory
        lm = backends.BUILDERS[backend](model, dtype=dtype, max_length=max_length)
    elif isinstance(model, (str, Path)) and (Path(model) / "bridge.json").is_file():
        from .bridge_lm import (
            BridgeLM,  # LinguaLIFT: the prompt goes to the encoder, not the LM
        )

        lm = BridgeLM(pretrained=str(model), batch_size=batch_size,
                      dtype="float32" if dtype == "auto" else dtype)
    else:
        if isinstance(model, (str, Path)):
            model, tokenizer = _load(str(model), dtype)
        elif tokenizer is None:
            raise PivotuneError("evaluate() was given a loaded model without its tokenizer.")
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)
    t0 = time.perf_counter()
    # Samples are always collected: language confusion is measured on the raw generations.
    res = simple_evaluate(model=lm, tasks=built, task_manager=tm, limit=limit, log_samples=True,
                          bootstrap_iters=bootstrap_iters)
    samples = res.pop("samples", None) or {}
    confusion.annotate(res, samples)
    if not log_samples:
        samples = {}
    res = json.loads(json.dumps(res, default=handle_non_serializable, ensure_ascii=False))
    res["pivotune"] = {"model": str(source), "tasks": names, "backend": backend, "batch_size": batch_size,
                       "dtype": str(getattr(model, "dtype", dtype)), "limit": limit, "lm_eval": _version(),
                       "seconds": round(time.perf_counter() - t0, 2)}
    if out_dir is not None:
        out_dir = Path(out_dir)
        for stale in sample_files(out_dir):   # an earlier evaluation's: they would pair with these results
            if stale.stem not in samples:
                stale.unlink()
        for task, rows in samples.items():
            write_jsonl_atomic(child_path(out_dir, SAMPLES_DIR, f"{task}.jsonl"),
                               [json.loads(json.dumps(r, default=handle_non_serializable)) for r in rows])
        write_json_atomic(out_dir / "results.json", res)
    if log_samples:
        res["samples"] = samples
    return res



def item_id(row: dict) -> str:
    """A logged sample's stable item id: the document's own ``id`` where it has one, else its index."""
    doc = row.get("doc")
    own = doc.get("id") if isinstance(doc, dict) else None
    return str(own) if isinstance(own, (str, int)) and not isinstance(own, bool) else str(row.get("doc_id"))


def sample_files(results_dir: str | Path) -> list[Path]:
    """The harness's logged samples beside ``results_dir/results.json`` (``samples/TASK.jsonl``), by task name."""
    folder = Path(results_dir) / SAMPLES_DIR
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def read_samples(path: Path, parse: Callable[[dict], T]) -> Iterator[tuple[dict, T]]:
    """Each logged sample of ``path`` with what ``parse`` reads from it; a line that is no sample record, or lacks
    what ``parse`` reads, is an error naming the file and line."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                got = parse(row)
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
                raise PivotuneError(f"{path}, line {line_no}: not a harness sample record ({e!r}); re-run the "
                                    "evaluation (it logs samples unless --no-log-samples).") from None
            yield row, got


def read_item_scores(results_dir: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{task: {item id: headline scores}}`` (``{"em", "f1"}`` or ``{"acc"}`` in %, as the tables) from the
    samples the harness logged beside ``results_dir/results.json``; ``{}`` where none were logged. A task
    whose samples have no headline metric is left out; a malformed file is an error naming it."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for path in sample_files(results_dir):
        per_item: dict[str, dict[str, float]] = {}
        for row, metrics in read_samples(path, lambda r: {f"{m},{r.get('filter', 'none')}": r[m]
                                                          for m in r["metrics"]}):
            per_item.setdefault(item_id(row), {}).update(metrics)
        scores = {i: registry.headline_scores(path.stem, m) for i, m in per_item.items()}
        if scores and all(v is not None for v in scores.values()):
            out[path.stem] = scores
    return out


def run_eval(target: str, tasks: list[str] | None = None, preset: str | None = None, *,
             out_dir: str | Path | None = None, indicqa_dir: str | Path | None = None,
             toy_world: str | Path | None = None, languages: list[str] | None = None,
             flores_dir: str | Path | None = None, flores_split: str = DEFAULT_SPLIT,
             force: bool = False, log_samples: bool = True, **kwargs) -> tuple[dict, Path]:
    """``pivotune eval``: resolve the model and tasks, write local-data tasks, evaluate, save (``out_dir``: new, empty
    or an earlier evaluation's, unless ``force``; with ``log_samples``, every item's output and scores too).
    ``languages``: for the presets that follow them (default: the run's)."""
    from ..outputs import claim_output_dir, mark_output
    from . import flores, indicqa, suites, toy_tasks

    model_dir, run_dir = model_source(target)
    names = registry.expand(tasks, preset, languages or suites.run_languages(run_dir))
    if out_dir is None:
        if run_dir is None and not Path(model_dir).is_dir():
            raise PivotuneError(f"{target} is a hub name; say where to write results with --out.")
        out_dir = (run_dir or Path(model_dir)) / "eval"
    claim_output_dir(out_dir, "eval", force=force)
    work = Path(tempfile.mkdtemp(prefix="pivotune-eval-"))
    try:
        indic = [l for n in names if (l := registry.indicqa_lang(n))]
        if indic:
            if indicqa_dir is None:
                raise PivotuneError(f"IndicQA ({', '.join(indic)}) reads local data: pass --indicqa-dir DIR. "
                                    + indicqa.HOW_TO_GET)
            indicqa.write_tasks(indicqa_dir, indic, work, limit=kwargs.get("limit"))
        toy = [t for n in names if (t := registry.toy_task(n))]
        if toy:
            if toy_world is None:
                raise PivotuneError("pivotune_toy_* tasks need --toy-world DIR (a toy world's directory).")
            for task in sorted({t for t, _ in toy}):
                toy_tasks.write_tasks(toy_world, work, sorted({l for t2, l in toy if t2 == task}), [task])
        flores.write_tasks(names, work, flores_dir=flores_dir, toy_world=toy_world, split=flores_split,
                           limit=kwargs.get("limit"))
        if run_dir is not None and (Path(model_dir) / "adapter_config.json").is_file():
            from ..export import export  # a LoRA run: merge into a plain model first

            model_dir = str(export(run_dir, work / "merged"))
        res = evaluate(model_dir, names, out_dir=out_dir, extra_task_dirs=[work], log_samples=log_samples,
                       **kwargs)
        mark_output(out_dir, "eval")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return res, Path(out_dir)


def _cmd_eval(args) -> int:
    res, out = run_eval(args.model, args.tasks, args.preset, out_dir=args.out, indicqa_dir=args.indicqa_dir,
                        toy_world=args.toy_world, batch_size=args.batch_size, dtype=args.dtype,
                        limit=args.limit, log_samples=args.log_samples, backend=args.backend,
                        languages=_languages(args), flores_dir=args.flores_dir, flores_split=args.flores_split,
                        force=args.force)
    from .compare import format_results

    print(format_results(res))
    print(f"results: {out / 'results.json'}")
    return 0


def _languages(args) -> list[str]:
    from ..languages import CLI_HATCH, check_code, declared

    extra = declared(args.extra_languages, "--extra-languages")
    return [check_code(l, "--languages", extra=extra, hatch=CLI_HATCH) for l in args.languages or []]


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="evaluate a model or a run with lm-evaluation-harness",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Zero-shot evaluation through lm-evaluation-harness (Hugging Face backend, "
                                   "or vLLM with --backend vllm). MODEL is a model directory, a run directory (its "
                                   "model/, merged first when it is a LoRA adapter) or a hub name. Writes "
                                   "OUT/results.json (default RUN/eval). "
                                   "Preset prom-paper: XQuAD th/ar/el, MLQA ar, IndicQA ta/mr/ml, MGSM sw/th/bn/te "
                                   "with target-language prompts (pivotune_* tasks are our own variants: see "
                                   "pivotune.eval.registry). Presets global (Belebele, Global-MMLU, XCOPA, XNLI, "
                                   "XStoryCloze, MGSM), english-retention (MMLU, ARC-Challenge, HellaSwag, GSM8K) and "
                                   "flores (FLORES en<->target, --flores-dir) follow the run's languages. Every "
                                   "generative task also reports language confusion (line/word pass rates). Each "
                                   "item's output and scores go to OUT/samples/ (--no-log-samples to skip), which "
                                   "`pivotune compare` pairs between runs for its intervals.",
                       epilog="examples:\n  pivotune eval runs/thai-prom --preset prom-paper --indicqa-dir indicqa\n"
                              "  pivotune eval meta-llama/Llama-2-7b-hf --tasks mgsm_native_cot_th "
                              "pivotune_xquad_th --out runs/llama2/eval")
    e.add_argument("model", help="model directory, run directory or hub name")
    e.add_argument("--tasks", nargs="+", metavar="TASK", help="harness or pivotune task names")
    e.add_argument("--preset", choices=sorted(registry.PRESETS), help="a named task set")
    e.add_argument("--out", help="results directory (default RUN/eval or MODEL_DIR/eval): new, empty or an earlier "
                                 "evaluation's")
    e.add_argument("--force", action="store_true", help="write into --out even if it holds other files")
    e.add_argument("--indicqa-dir", help="local IndicQA data (see pivotune.eval.indicqa for how to get it)")
    e.add_argument("--toy-world", help="a toy world directory, for pivotune_toy_{mgsm,xquad}_LANG and "
                                       "pivotune_toy_flores_SRC-TGT tasks")
    e.add_argument("--batch-size", type=int, default=8, help="generation batch size (default 8, as the paper)")
    e.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="weights dtype (default: bfloat16 on a GPU, float32 on a CPU)")
    e.add_argument("--limit", type=int, help="evaluate only the first N items per task (for a quick look)")
    e.add_argument("--log-samples", action=argparse.BooleanOptionalAction, default=True,
                   help="write each item's prompt, output and scores to OUT/samples/ (the default; "
                        "--no-log-samples skips them, and then `pivotune compare` puts no interval on this "
                        "run's differences)")
    e.add_argument("--backend", choices=backends.NAMES, default=backends.DEFAULT,
                   help="generation backend: hf (default) or vllm (the harness's vLLM model; pip install vllm)")
    e.add_argument("--languages", nargs="+", metavar="LANG",
                   help="target languages for the presets that follow them (default: the run's config)")
    e.add_argument("--flores-dir", help="local FLORES-200/FLORES+ files, for pivotune_flores_SRC-TGT tasks")
    e.add_argument("--flores-split", choices=FLORES_SPLITS, default=DEFAULT_SPLIT,
                   help=f"FLORES split to translate (default {DEFAULT_SPLIT})")
    add_extra_languages_option(e)
    e.set_defaults(func=_cmd_eval)
