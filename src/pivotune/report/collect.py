"""What the study report reads and computes: demo scores over seeds, wins beyond the spread, the runs'
regulation decisions, pivot-layer suggestions and interference logs, and findings derived from them.

Inputs are ``pivotune demo`` output directories (``results.json`` with per-seed ``scores`` and run
directories ``METHOD-seedN/``), run directories (``config.yaml``, maybe ``eval/results.json``) or harness
results files, and ``pivotune sweep`` output directories (``sweep.json``, read by :mod:`.sweep`). Every
number in the findings is computed here from those files; nothing is hand-written.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PivotuneError
from ..io import read_json_object

METRICS = (("mgsm", "toy-MGSM acc"), ("xquad_em", "toy-XQuAD EM"), ("xquad_f1", "toy-XQuAD F1"))
#: the paper's t+e baseline and its method, for the three claims
TPLUSE, PROM = "xllama", "prom"


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
    harness: dict | None = None                # eval/results.json (lm-eval-harness format)


@dataclass
class Study:
    """Everything read from the inputs."""
    scores: dict[str, list[dict]] = field(default_factory=dict)   # method -> per-seed headline dicts
    languages: list[str] = field(default_factory=list)            # evaluation languages, "en" first
    well: str | None = None                                       # the toy world's well-represented language
    under: str | None = None                                      # ... and its under-represented one
    runs: list[Run] = field(default_factory=list)
    harness: dict[str, dict] = field(default_factory=dict)        # label -> harness results
    sweeps: dict[str, dict] = field(default_factory=dict)         # label -> sweep.json (`pivotune sweep`)


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
    harness = path / "eval" / "results.json"
    if harness.is_file():
        res = read_json_object(harness)
        if isinstance(res.get("results"), dict):
            run.harness = res
    return run


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
            study.well = study.well or world.get("well_represented")
            study.under = study.under or world.get("under_represented")
            study.runs += [read_run(p) for p in sorted(results.parent.iterdir())
                           if p.is_dir() and ((p / "config.yaml").is_file() or (p / "eval.json").is_file())]
        elif obj is not None and isinstance(obj.get("results"), dict):   # a harness results file
            study.harness[item.stem if item.is_file() else item.name] = obj
        elif _is_sweep(item):                                         # a `pivotune sweep` output directory
            _add_sweep(study, item)
        elif item.is_dir() and ((item / "config.yaml").is_file() or (item / "eval").is_dir()):
            run = read_run(item)
            study.runs.append(run)
            if run.harness is not None:
                study.harness[run.name] = run.harness
        else:
            raise PivotuneError(f"{item}: no results found (looked for a demo's results.json with 'scores', a "
                                f"harness results.json, a sweep's sweep.json, or a run directory with config.yaml); "
                                "run `pivotune demo`, `pivotune sweep` or `pivotune train`/`pivotune eval` first.")
    if not study.scores and not study.harness and not study.sweeps and not any(
            r.regulation or r.interference for r in study.runs):
        raise PivotuneError(f"{', '.join(map(str, inputs))}: no scores, harness results, regulation decisions "
                            "or interference logs to report.")
    return study


def _is_sweep(item: Path) -> bool:
    from .sweep import SWEEP_FILE

    return (item / SWEEP_FILE).is_file() if item.is_dir() else item.name == SWEEP_FILE


def _add_sweep(study: Study, item: Path) -> None:
    from .sweep import SWEEP_FILE, read_sweep

    path = item / SWEEP_FILE if item.is_dir() else item
    label = path.parent.name
    if label in study.sweeps:
        raise PivotuneError(f"{path}: a sweep named {label!r} (its directory's name) is already among the inputs.")
    study.sweeps[label] = read_sweep(path)


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


def win_lose(stats: dict, method: str, baseline: str) -> dict:
    """A case is a win when ``method``'s mean exceeds the baseline's by more than the two spreads
    together (sd_method + sd_baseline), a loss when it falls short by more; anything else is a tie.
    Target languages only: the paper's Table 3 counts the languages being adapted, not English."""
    out = {"wins": [], "losses": [], "ties": [], "diffs": {}}
    for c, (m, sd) in stats[method].items():
        if c[0] == "en":
            continue
        bm, bsd = stats[baseline][c]
        d = m - bm
        out["diffs"][c] = d
        out["wins" if d > sd + bsd else "losses" if -d > sd + bsd else "ties"].append(c)
    return out


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


def findings(study: Study, baseline: str) -> list[str]:
    """Sentences derived from the numbers only; 'not measured' where the data are missing."""
    out: list[str] = []
    seeds = {m: len(v) for m, v in study.scores.items()}
    stats = case_stats(study) if study.scores else {}
    if stats and baseline in stats:
        for m in stats:
            if m == baseline:
                continue
            wl = win_lose(stats, m, baseline)
            diffs = list(wl["diffs"].values())
            avg = statistics.fmean(diffs) if diffs else 0.0
            out.append(f"{m} against {baseline} over {min(seeds[m], seeds[baseline])} seed(s): "
                       f"{len(wl['wins'])} wins, {len(wl['losses'])} losses, {len(wl['ties'])} within the spread "
                       f"of {len(diffs)} cases; mean difference {avg:+.1f} points.")
    elif stats:
        out.append(f"Win/lose counts: not measured (baseline {baseline!r} is not among the methods "
                   f"{', '.join(stats)}).")
    if stats:
        for lang in study.languages:
            means = {m: statistics.fmean(v for (lg, _), (v, _sd) in s.items() if lg == lang)
                     for m, s in stats.items() if any(lg == lang for lg, _ in s)}
            if means:
                ranked = sorted(means.items(), key=lambda kv: -kv[1])
                gap = ranked[0][1] - ranked[1][1] if len(ranked) > 1 else 0.0
                out.append(f"Best on {lang} (mean of the metrics): {ranked[0][0]} at {ranked[0][1]:.1f}"
                           + (f", {gap:.1f} points above {ranked[1][0]}." if len(ranked) > 1 else "."))
    out += _claims(study, stats)
    return out


def _claims(study: Study, stats: dict) -> list[str]:
    out = []
    # claim 1: English pivot (λ kept) in the well-represented language, none (λ = 0) in the under-represented one
    regs = [r.regulation for r in study.runs if r.regulation and "decisions" in r.regulation]
    decided = {}
    for reg in regs:
        for lang, d in reg["decisions"].items():
            decided.setdefault(lang, set()).add(bool(d.get("lambda_zero")))
    w, u = study.well, study.under
    if not regs or w not in decided or u not in decided:
        out.append("Claim 1 (English pivot in the well-represented language, not in the under-represented one): "
                   "not measured (no regulation decisions for " + (f"{w} and {u}" if w and u else
                                                                  "the world's languages") + ").")
    else:
        pivot_w, pivot_u = decided[w] == {False}, decided[u] == {True}
        verdict = "reproduced" if pivot_w and pivot_u else "not reproduced"
        out.append(f"Claim 1 (English pivot in the well-represented language, not in the under-represented one): "
                   f"{verdict} — the regulation kept the English pivot (λ > 0) for {w}: "
                   f"{'yes' if pivot_w else 'no'}; dropped it (λ = 0) for {u}: {'yes' if pivot_u else 'no'} "
                   f"(over {len(regs)} PROM run(s)).")
    # claim 2: lower interference (higher gradient cosine) under PROM than under t+e
    points: dict[str, list[float]] = {}   # method -> every logged step's mean cosine, over its seeds
    for r in study.runs:
        got = interference_points(r)
        if got is not None:
            points.setdefault(_method_of(r), []).extend(got[1])
    if PROM in points and TPLUSE in points:
        (p, p_sd), (t, t_sd) = mean_sd(points[PROM]), mean_sd(points[TPLUSE])
        # the win/lose rule: a difference counts only beyond the two spreads (sd over logged steps and seeds)
        verdict = ("reproduced" if p - t > p_sd + t_sd else "not reproduced" if t - p > p_sd + t_sd
                   else "not decided (the difference is within the spread)")
        out.append(f"Claim 2 (lower gradient interference under PROM than t+e): {verdict} — mean gradient cosine "
                   f"over the logged steps {p:+.4f} ± {p_sd:.4f} ({PROM}, {len(points[PROM])} points) vs "
                   f"{t:+.4f} ± {t_sd:.4f} ({TPLUSE}, {len(points[TPLUSE])} points); higher cosine means less "
                   "interference.")
    else:
        out.append(f"Claim 2 (lower gradient interference under PROM than t+e): not measured (no interference "
                   f"logs for both {PROM} and {TPLUSE} runs; set interference.every > 0).")
    # claim 3: PROM beats t+e more often than it loses
    if PROM in stats and TPLUSE in stats:
        wl = win_lose(stats, PROM, TPLUSE)
        nw, nl = len(wl["wins"]), len(wl["losses"])
        verdict = "reproduced" if nw > nl else "not reproduced"
        out.append(f"Claim 3 (PROM beats t+e more often than it loses): {verdict} — {nw} wins, {nl} losses, "
                   f"{len(wl['ties'])} within the spread against {TPLUSE}.")
    else:
        out.append(f"Claim 3 (PROM beats t+e more often than it loses): not measured (scores for both {PROM} "
                   f"and {TPLUSE} are needed).")
    return out
