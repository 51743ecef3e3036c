"""``pivotune sweep``: PROM's hyper-parameter grid (the paper's Table 4) in the toy world.

For each grid point (pivot layer n × label smoothing α × λ) PROM is trained from the toy base model on the
demo's road (the demo's run config, steps, batch and seeds, with ``prom.pivot_layer``,
``prom.label_smoothing`` and ``prom.lambda_en`` set), evaluated on toy-MGSM and toy-XQuAD through
lm-evaluation-harness, and tabulated: a row per grid point, a column per language with the mean of the
three toy metrics, and their mean over the target languages ("targets mean").

λ is ``prom.lambda_en``. With regulation (the default, as in the demo) the logit-lens probe of the base
model at layer n still sets λ_t = 0 for a target language without an English pivot there, so λ reaches only
the languages the probe kept (English rows are weighted by the mean λ_t). ``regulation=False`` trains
``prom-noreg``, which applies λ to every language.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import PivotuneError
from ..io import write_json_atomic, write_text_atomic
from ..outputs import claim_output_dir, mark_output
from ..models.pivot_head import resolve_pivot_layer
from ..report import write_report
from ..report.sweep import point_stats, sweep_finding, sweep_items, sweep_table
from .console import StudyConsole
from ..methods import METHODS
from .demo import DemoPlan, markdown_table, print_table, run_config, run_one, toy_languages
from .parallel import Job, default_jobs, run_jobs
from .model import get_or_build
from .world import WorldConfig

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = (0.0, 0.1)
DEFAULT_LAMBDAS = (0.5, 1.0)
MAX_LAMBDA = 100.0   # prom.lambda_en's bound in the run config
LOG_FILE = "sweep.log"


@dataclass(frozen=True)
class GridPoint:
    """One setting of PROM's three hyper-parameters, named as in the run config's ``prom`` section."""

    pivot_layer: int
    label_smoothing: float
    lambda_en: float

    @property
    def name(self) -> str:
        return f"n{self.pivot_layer}-a{self.label_smoothing:g}-l{self.lambda_en:g}"


def default_pivot_layers(num_layers: int) -> list[int]:
    """Blocks from the middle of the model to just below the top: {4, …, 7} for the default world's 8 blocks,
    {1} for the quick world's 2."""
    return list(range(max(1, round(num_layers / 2)), num_layers))


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def expand_grid(num_layers: int, pivot_layers, alphas, lambdas) -> list[GridPoint]:
    """Check every value against its range, then return the grid: pivot layer outermost, then α, then λ,
    each in the order given."""
    for flag, values in (("--pivot-layers", pivot_layers), ("--alphas", alphas), ("--lambdas", lambdas)):
        if not values:
            raise PivotuneError(f"{flag} needs at least one value.")
        dups = [v for v, c in Counter(values).items() if c > 1]
        if dups:
            raise PivotuneError(f"{flag} lists {dups[0]!r} more than once; give each grid value once.")
    for n in pivot_layers:
        resolve_pivot_layer(n, num_layers, "--pivot-layers")
    for a in alphas:
        if not _real(a) or not 0.0 <= a < 1.0:
            raise PivotuneError(f"--alphas: {a!r} is outside [0, 1). α is the label smoothing of the pivot term's "
                                "cross-entropy (prom.label_smoothing); 0 is plain cross-entropy.")
    for lam in lambdas:
        if not _real(lam) or not 0.0 <= lam <= MAX_LAMBDA:
            raise PivotuneError(f"--lambdas: {lam!r} is outside [0, {MAX_LAMBDA:g}]. λ is the weight of the pivot "
                                "term (prom.lambda_en); 0 turns it off.")
    return [GridPoint(n, float(a), float(lam)) for n, a, lam in itertools.product(pivot_layers, alphas, lambdas)]


def run_sweep(quick: bool = False, pivot_layers: list[int] | None = None, alphas: list[float] | None = None,
              lambdas: list[float] | None = None, languages: list[str] | None = None, seeds: int = 1,
              out_dir: str | Path | None = None, steps: int | None = None, eval_limit: int | None = None,
              references: Sequence[str] = (), regulation: bool = True, cache_dir: str | Path | None = None,
              force: bool = False, verbose: bool = False, jobs: int | None = None) -> dict:
    """Train and evaluate every grid point (and each method of ``references``, e.g. xllama or lens-local, on the
    same plan for reference; runs side by side as in the demo, ``jobs``); writes
    ``out_dir/sweep.json``, ``sweep.md`` and the study page ``out_dir/report/``; returns the sweep. The console
    shows the progress (:mod:`.console`); the libraries' logs go to ``out_dir/sweep.log`` (``verbose``: on the
    console too). ``out_dir``: new, empty or an earlier sweep's, unless ``force`` (everything in it is the
    sweep's to replace)."""
    started = time.perf_counter()
    world_cfg = WorldConfig.quick() if quick else WorldConfig()
    languages = toy_languages(languages, world_cfg)
    references = list(dict.fromkeys(references))
    allowed = [m for m in METHODS if m not in ("prom", "prom-noreg")]   # the grid itself trains PROM
    for ref in references:
        if ref not in allowed:
            raise PivotuneError(f"--baseline: '{ref}' is not a method to train beside the grid; choose from "
                                f"{', '.join(allowed)}.")
    jobs_n = jobs
    for flag, v in (("--seeds", seeds), ("--steps", steps), ("eval_limit", eval_limit), ("--jobs", jobs)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise PivotuneError(f"{flag} must be a whole number of at least 1, got {v!r}.")
    values = {"pivot_layers": list(default_pivot_layers(world_cfg.num_layers) if pivot_layers is None
                                   else pivot_layers),
              "alphas": list(DEFAULT_ALPHAS if alphas is None else alphas),
              "lambdas": list(DEFAULT_LAMBDAS if lambdas is None else lambdas)}
    grid = expand_grid(world_cfg.num_layers, values["pivot_layers"], values["alphas"], values["lambdas"])
    plan = DemoPlan.for_world(quick)
    plan = replace(plan, steps=steps or plan.steps, eval_limit=eval_limit or plan.eval_limit)
    out = Path(out_dir or ("runs/sweep-quick" if quick else "runs/sweep"))
    mark_output(claim_output_dir(out, "sweep", force=force), "sweep")
    with StudyConsole(out / LOG_FILE, runs=(len(grid) + len(references)) * seeds, verbose=verbose,
                      name="sweep") as console:
        console.stage("world/base", note="built once, then read from the cache")
        t0 = time.perf_counter()
        paths = get_or_build(world_cfg, cache_dir, progress=console.note)
        timings = {"world_and_base_s": round(time.perf_counter() - t0, 1)}
        eval_langs = ["en", *languages]

        def job(method: str, name: str, seed: int, prom: dict | None = None) -> Job:
            """One run on the demo's road: its config (the grid point's PROM settings), trained and evaluated."""
            raw = run_config(paths, method, languages, seed, out / f"{name}-seed{seed}", plan)
            if prom:
                raw.setdefault("prom", {}).update(prom)
            # the demo logs gradient interference for its claim 2; the sweep reports scores only, so it skips that
            # extra compute (it does not change training)
            raw.pop("interference", None)
            return Job((name, seed), run_one, (raw, name, paths.world, eval_langs, plan, languages, world_cfg.seed,
                                               None))

        method = "prom" if regulation else "prom-noreg"
        names = [f"{method}-{point.name}" for point in grid]
        jobs = [job(method, name, seed, asdict(point)) for name, point in zip(names, grid) for seed in range(seeds)]
        jobs += [job(ref, ref, seed) for ref in references for seed in range(seeds)]
        console.first_run()
        results = run_jobs(jobs, console, jobs_n or default_jobs(len(jobs)))
        for (name, seed), (_, run_timings) in results.items():
            timings[f"{name}-seed{seed}"] = run_timings
        rows = []
        for name, point in zip(names, grid):
            per_seed = [results[(name, seed)][0] for seed in range(seeds)]
            lambdas_t = None
            if regulation:   # what the probe made of λ for each language (it may differ with the pivot layer)
                lambdas_t = [json.loads((out / f"{name}-seed{s}" / "regulation.json").read_text())
                             ["lambda_per_language"] for s in range(seeds)]
            rows.append({"name": name, "method": method, **asdict(point),
                         "runs": [f"{name}-seed{s}" for s in range(seeds)], "lambda_per_language": lambdas_t,
                         "scores": per_seed, **point_stats(per_seed, languages)})
        reference_rows = []
        for ref in references:
            per_seed = [results[(ref, seed)][0] for seed in range(seeds)]
            reference_rows.append({"name": ref, "method": ref, "runs": [f"{ref}-seed{s}" for s in range(seeds)],
                                   "scores": per_seed, **point_stats(per_seed, languages)})

        console.stage("report")
        summary = {"world": world_cfg.to_dict(), "world_hash": world_cfg.config_hash(), "plan": plan.__dict__,
                   "languages": languages, "seeds": seeds, "regulation": regulation, "grid": values, "rows": rows,
                   "references": reference_rows}
        header, table_rows, best = sweep_table(summary)
        summary["best"] = rows[best]["name"]
        timings["total_s"] = round(time.perf_counter() - started, 1)
        summary["timings"] = timings
        title = (f"PROM sweep, toy world {'quick' if quick else 'default'}: {plan.steps} steps × batch "
                 f"{plan.batch_size} per setting, {seeds} seed(s), regulation {'on' if regulation else 'off'}")
        finding = sweep_finding(summary, items=sweep_items(out, summary))
        write_json_atomic(out / "sweep.json", summary)
        write_text_atomic(out / "sweep.md", f"# {title}\n\nPer language: the mean of toy-MGSM acc, toy-XQuAD EM "
                          f"and F1, mean ± sd over seeds, in %.\n\n" + markdown_table(header, table_rows)
                          + f"\n{finding}\n")
        report = write_report([str(out)], out / "report", baseline="xllama", force=True)
    print_table(header, table_rows, title + " — mean of toy-MGSM acc, toy-XQuAD EM and F1 (%)",
                left=("method", "best"), highlight=best)
    print(finding)
    print(f"sweep: {out / 'sweep.md'}; report: {report}; log: {out / LOG_FILE} "
          f"(total {time.perf_counter() - started:.0f}s)")
    return summary


__all__ = ["DEFAULT_ALPHAS", "DEFAULT_LAMBDAS", "GridPoint", "default_pivot_layers", "expand_grid", "run_sweep"]
