"""What the study report reads: demo scores over seeds and their per-item scores, the runs' regulation
decisions, pivot-layer suggestions and interference logs (intervals and findings: :mod:`.differences`,
:mod:`.findings`).

Inputs are ``pivotune demo`` output directories (``results.json`` with per-seed ``scores`` and run
directories ``METHOD-seedN/``, whose ``results.json`` holds the harness's results, language confusion and
toy-FLORES included, and whose ``samples/`` hold every evaluation item's output and scores), run directories
(``config.yaml``, maybe ``eval/results.json``) or harness results files, and ``pivotune sweep`` output
directories (``sweep.json``, read by :mod:`.sweep`). Every number in the findings is computed from those
files; nothing is hand-written.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PivotuneError
from ..eval.harness import read_item_scores
from ..io import read_json_object

METRICS = (("mgsm", "toy-MGSM acc"), ("xquad_em", "toy-XQuAD EM"), ("xquad_f1", "toy-XQuAD F1"))
#: the paper's t+e baseline and its method, for the three claims
TPLUSE, PROM = "xllama", "prom"
#: the positive control: target-language data (bactrian) must beat none (english) in every target language
TARGET_DATA, NO_TARGET_DATA = "bactrian", "english"


@dataclass
class Run:
    """One run directory and what the report uses from it (None where the file is absent)."""
    name: str
    path: Path
    config: str | None = None                  # config.yaml as written
    regulation: dict | None = None             # regulation.json (PROM)
    probe: dict | None = None                  # probe/probe.json (PROM)
    lens_figures: list[Path] = field(default_factory=list)
    interference: dict | None = None           # interference.json logged during training
    losses: dict | None = None                 # run.json's loss per role and language over the logging steps
    harness: dict | None = None                # eval/results.json (lm-eval-harness format)


@dataclass(frozen=True)
class Evaluation:
    """One run's harness results (``results.json``) and the directory holding them and their ``samples/``."""
    path: Path
    results: dict


@dataclass
class Study:
    """Everything read from the inputs."""
    scores: dict[str, list[dict]] = field(default_factory=dict)   # method -> per-seed headline dicts
    languages: list[str] = field(default_factory=list)            # evaluation languages, "en" first
    well: str | None = None                                       # the toy world's well-represented language
    under: str | None = None                                      # ... and its under-represented one
    runs: list[Run] = field(default_factory=list)
    harness: dict[str, dict] = field(default_factory=dict)        # label -> harness results
    harness_items: dict[str, dict] = field(default_factory=dict)  # label -> its logged per-item scores
    harness_dirs: dict[str, Path] = field(default_factory=dict)   # label -> the directory of its results
    # method -> per seed the harness results of METHOD-seedN/ (language confusion, toy-FLORES), None where absent
    evaluations: dict[str, list[Evaluation | None]] = field(default_factory=dict)
    # method -> per seed {(lang, metric): {item id: score}} from METHOD-seedN/samples/, None where not logged
    items: dict[str, list[dict | None]] = field(default_factory=dict)
    sweeps: dict[str, dict] = field(default_factory=dict)         # label -> sweep.json (`pivotune sweep`)
    sweep_items: dict[str, dict] = field(default_factory=dict)    # label -> its runs' per-item scores
    vocab: dict = field(default_factory=dict)   # a demo's --extend-vocab: tokens added, tokens per word by language


def read_run(path: Path) -> Run:
    run = Run(path.name, path)
    if (path / "config.yaml").is_file():
        run.config = (path / "config.yaml").read_text(encoding="utf-8")
    if (path / "regulation.json").is_file():
        run.regulation = read_json_object(path / "regulation.json")
    if (path / "probe" / "probe.json").is_file():
        run.probe = read_json_object(path / "probe" / "probe.json")
        run.lens_figures = sorted((path / "probe").glob("lens_*.png"))
    if (path / "interference.json").is_file():
        run.interference = read_json_object(path / "interference.json")
    if (path / "run.json").is_file():
        from .losses import check_series

        run.losses = check_series(path / "run.json", read_json_object(path / "run.json").get("losses"))
    harness = path / "eval" / "results.json"
    if harness.is_file():
        res = read_json_object(harness)
        if isinstance(res.get("results"), dict):
            run.harness = res
    return run


def read_items(run_dir: Path) -> dict[tuple[str, str], dict[str, float]] | None:
    """``{(lang, metric): {item id: score in %}}`` from a demo run's logged evaluation samples, or None."""
    from ..eval.toy_tasks import toy_item_scores

    got = toy_item_scores(run_dir) if run_dir.is_dir() else {}
    return {(lang, key): items for lang, per_key in got.items() for key, items in per_key.items()} or None


def read_evaluation(run_dir: Path) -> Evaluation | None:
    """A demo run's harness results (``RUN/results.json``, written by its toy evaluation), or None."""
    path = run_dir / "results.json"
    res = read_json_object(path) if path.is_file() else None
    return Evaluation(run_dir, res) if res is not None and isinstance(res.get("results"), dict) else None


def _check_scores(path: Path, scores) -> None:
    if not isinstance(scores, dict) or not scores:
        raise PivotuneError(f"{path}: field 'scores' must be a non-empty object {{method: [per-seed scores]}}.")
    for method, per_seed in scores.items():
        if not isinstance(per_seed, list) or not per_seed:
            raise PivotuneError(f"{path}: scores.{method} must be a non-empty list (one entry per seed).")
        for i, s in enumerate(per_seed):
            for lang, row in (s.items() if isinstance(s, dict) else [(None, None)]):
                if not isinstance(row, dict) or not all(isinstance(v, (int, float)) for v in row.values()):
                    raise PivotuneError(f"{path}: scores.{method}[{i}].{lang} must map metrics to numbers.")


def read_inputs(inputs: list[str | Path]) -> Study:
    """Read demo directories, run directories and harness results into one :class:`Study`."""
    if not inputs:
        raise PivotuneError("give at least one demo output directory or run directory.")
    study = Study()
    for item in map(Path, inputs):
        if not item.exists():
            raise PivotuneError(f"{item}: no such file or directory.")
        results = item if item.is_file() else item / "results.json"
        obj = read_json_object(results) if results.is_file() else None
        if obj is not None and "scores" in obj:                    # a `pivotune demo` output directory
            _check_scores(results, obj["scores"])
            for method, per_seed in obj["scores"].items():
                if method in study.scores:
                    raise PivotuneError(f"{results}: method {method!r} also appears in an earlier input.")
                study.scores[method] = per_seed
            langs = obj.get("languages") or []
            study.languages = list(dict.fromkeys(["en", *study.languages, *langs]))
            world = obj.get("world") or {}
            study.vocab = study.vocab or obj.get("vocab") or {}
            study.well = study.well or world.get("well_represented")
            study.under = study.under or world.get("under_represented")
            study.runs += [read_run(p) for p in sorted(results.parent.iterdir())
                           if p.is_dir() and ((p / "config.yaml").is_file() or (p / "eval.json").is_file())]
            for method, per_seed in obj["scores"].items():
                study.items[method] = [read_items(results.parent / f"{method}-seed{i}")
                                       for i in range(len(per_seed))]
                study.evaluations[method] = [read_evaluation(results.parent / f"{method}-seed{i}")
                                             for i in range(len(per_seed))]
        elif obj is not None and isinstance(obj.get("results"), dict):   # a harness results file
            label = item.stem if item.is_file() else item.name
            study.harness[label], study.harness_items[label] = obj, read_item_scores(results.parent)
            study.harness_dirs[label] = results.parent
        elif _is_sweep(item):                                         # a `pivotune sweep` output directory
            _add_sweep(study, item)
        elif item.is_dir() and ((item / "config.yaml").is_file() or (item / "eval").is_dir()):
            run = read_run(item)
            study.runs.append(run)
            if run.harness is not None:
                study.harness[run.name] = run.harness
                study.harness_items[run.name] = read_item_scores(run.path / "eval")
                study.harness_dirs[run.name] = run.path / "eval"
        else:
            raise PivotuneError(f"{item}: no results found (looked for a demo's results.json with 'scores', a "
                                f"harness results.json, a sweep's sweep.json, or a run directory with config.yaml); "
                                "run `pivotune demo`, `pivotune sweep` or `pivotune train`/`pivotune eval` first.")
    if not study.scores and not study.harness and not study.sweeps and not any(
            r.regulation or r.interference or r.losses for r in study.runs):
        raise PivotuneError(f"{', '.join(map(str, inputs))}: no scores, harness results, regulation decisions, "
                            "interference logs or training losses to report.")
    return study


def _is_sweep(item: Path) -> bool:
    from .sweep import SWEEP_FILE

    return (item / SWEEP_FILE).is_file() if item.is_dir() else item.name == SWEEP_FILE


def _add_sweep(study: Study, item: Path) -> None:
    from .sweep import SWEEP_FILE, read_sweep, sweep_items

    path = item / SWEEP_FILE if item.is_dir() else item
    label = path.parent.name
    if label in study.sweeps:
        raise PivotuneError(f"{path}: a sweep named {label!r} (its directory's name) is already among the inputs.")
    study.sweeps[label] = read_sweep(path)
    study.sweep_items[label] = sweep_items(path.parent, study.sweeps[label])


# ---------------------------------------------------------------- numbers


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 with one seed)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt_mean_sd(mean: float, sd: float, n: int) -> str:
    """A table cell: the mean, with ± sd when it is over more than one seed."""
    return f"{mean:.1f}" + (f" ± {sd:.1f}" if n > 1 else "")


def cases(study: Study) -> list[tuple[str, str]]:
    """(language, metric) pairs present in every method's every seed."""
    return [(lang, key) for lang in study.languages for key, _ in METRICS
            if all(key in s.get(lang, {}) for per_seed in study.scores.values() for s in per_seed)]


def case_stats(study: Study) -> dict[str, dict[tuple[str, str], tuple[float, float]]]:
    """``{method: {(lang, metric): (mean, sd)}}`` over seeds."""
    return {m: {c: mean_sd([s[c[0]][c[1]] for s in per_seed]) for c in cases(study)}
            for m, per_seed in study.scores.items()}


def interference_points(run: Run) -> tuple[str, list[float]] | None:
    """(pair, the mean cosine at each logged step) of the run's first pair with defined values."""
    recs = (run.interference or {}).get("records") or []
    for pair in dict.fromkeys(r.get("pair") for r in recs):
        vals = [r["mean"] for r in recs if r.get("pair") == pair and isinstance(r.get("mean"), (int, float))]
        if vals:
            return pair, vals
    return None


def interference_level(run: Run) -> tuple[str, float] | None:
    """(pair, mean cosine over the logged steps) of the run's first pair with defined values."""
    got = interference_points(run)
    return (got[0], statistics.fmean(got[1])) if got else None


def _method_of(run: Run) -> str:
    return run.name.rsplit("-seed", 1)[0]
