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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import PivotuneError
from ..io import write_json_atomic, write_text_atomic
from ..models.pivot_head import resolve_pivot_layer
from ..report import write_report
from ..report.sweep import point_stats, sweep_finding, sweep_table
from .demo import DemoPlan, markdown_table, print_table, run_config, train_and_evaluate
from .model import get_or_build
from .world import WorldConfig

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = (0.0, 0.1)
DEFAULT_LAMBDAS = (0.5, 1.0)
MAX_LAMBDA = 100.0   # prom.lambda_en's bound in the run config


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
    """Blocks from the middle of the model to just below the top: {2, 3} for the default world's 4 blocks,
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
              baseline: bool = False, regulation: bool = True, cache_dir: str | Path | None = None) -> dict:
    """Train and evaluate every grid point (and, with ``baseline``, xllama for reference); writes
    ``out_dir/sweep.json``, ``sweep.md`` and the study page ``out_dir/report/``; returns the sweep."""
    started = time.perf_counter()
    world_cfg = WorldConfig.quick() if quick else WorldConfig()
    languages = list(languages or world_cfg.languages)
    unknown = [lang for lang in languages if lang not in world_cfg.languages]
    if unknown:
        raise PivotuneError(f"the toy world has no language {unknown}; it has {list(world_cfg.languages)}")
    for flag, v in (("--seeds", seeds), ("--steps", steps), ("eval_limit", eval_limit)):
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
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths = get_or_build(world_cfg, cache_dir, progress=lambda m: log.info("%s", m))
    timings = {"world_and_base_s": round(time.perf_counter() - t0, 1)}
    eval_langs = ["en", *languages]

    def fit(method: str, name: str, seed: int, prom: dict | None = None) -> dict:
        """Train one run on the demo's road, evaluate it through the harness; its headline scores."""
        run_dir = out / f"{name}-seed{seed}"
        raw = run_config(paths.world, paths.base, method, languages, seed, run_dir, plan, world_cfg.seed)
        if prom:
            raw.setdefault("prom", {}).update(prom)
        # the demo logs gradient interference for its claim 2; the sweep reports scores only, so it skips that
        # extra compute (it does not change training)
        raw.pop("interference", None)
        headline, timings[run_dir.name] = train_and_evaluate(raw, paths.world, eval_langs, plan)
        return headline

    method = "prom" if regulation else "prom-noreg"
    rows = []
    for i, point in enumerate(grid):
        log.info("sweep setting %d/%d: %s %s", i + 1, len(grid), method, point.name)
        name = f"{method}-{point.name}"
        per_seed = [fit(method, name, seed, asdict(point)) for seed in range(seeds)]
        lambdas_t = None
        if regulation:   # what the probe made of λ for each language (it may differ with the pivot layer)
            lambdas_t = [json.loads((out / f"{name}-seed{s}" / "regulation.json").read_text())
                         ["lambda_per_language"] for s in range(seeds)]
        rows.append({"name": name, "method": method, **asdict(point),
                     "runs": [f"{name}-seed{s}" for s in range(seeds)], "lambda_per_language": lambdas_t,
                     "scores": per_seed, **point_stats(per_seed, languages)})
    reference = None
    if baseline:
        per_seed = [fit("xllama", "xllama", seed) for seed in range(seeds)]
        reference = {"name": "xllama", "method": "xllama", "runs": [f"xllama-seed{s}" for s in range(seeds)],
                     "scores": per_seed, **point_stats(per_seed, languages)}

    summary = {"world": world_cfg.to_dict(), "world_hash": world_cfg.config_hash(), "plan": plan.__dict__,
               "languages": languages, "seeds": seeds, "regulation": regulation, "grid": values, "rows": rows,
               "reference": reference}
    header, table_rows, best = sweep_table(summary)
    summary["best"] = rows[best]["name"]
    timings["total_s"] = round(time.perf_counter() - started, 1)
    summary["timings"] = timings
    title = (f"PROM sweep, toy world {'quick' if quick else 'default'}: {plan.steps} steps × batch {plan.batch_size} "
             f"per setting, {seeds} seed(s), regulation {'on' if regulation else 'off'}")
    print_table(header, table_rows, title + " — mean of toy-MGSM acc, toy-XQuAD EM and F1 (%)",
                left=("method", "best"), highlight=best)
    finding = sweep_finding(summary)
    print(finding)
    write_json_atomic(out / "sweep.json", summary)
    write_text_atomic(out / "sweep.md", f"# {title}\n\nPer language: the mean of toy-MGSM acc, toy-XQuAD EM and "
                      f"F1, mean ± sd over seeds, in %.\n\n" + markdown_table(header, table_rows) + f"\n{finding}\n")
    report = write_report([str(out)], out / "report", baseline="xllama")
    print(f"sweep: {out / 'sweep.md'}; report: {report} (total {time.perf_counter() - started:.0f}s)")
    return summary


__all__ = ["DEFAULT_ALPHAS", "DEFAULT_LAMBDAS", "GridPoint", "default_pivot_layers", "expand_grid", "run_sweep"]
