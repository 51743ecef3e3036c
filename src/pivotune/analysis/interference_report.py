"""The `pivotune interference` command: gradient interference per method, as JSON and a PNG figure.

Inputs are run directories (their config, final model and, for PROM, pivot head) or, with ``--config``,
base models measured under each of ``--methods``' objectives on that config's data. A run that logged
interference during training (``interference.every`` > 0, RUN/interference.json) is plotted over
training steps (the PROM paper's Figure 2); otherwise the final model is measured and shown as a bar.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..errors import PivotuneError

log = logging.getLogger(__name__)
LOG_FILE = "interference.json"


# ---------------------------------------------------------------- models and data of a run

def _load_lm(run_dir: Path, cfg):
    """RUN/model as a trainable causal LM (a LoRA adapter on its base model)."""
    from ..models.loading import load_adapter, load_model

    model_dir = run_dir / "model"
    if not model_dir.is_dir():
        raise PivotuneError(f"{run_dir} is not a finished pivotune run: {model_dir} is missing.")
    if (model_dir / "adapter_config.json").exists():
        return load_adapter(load_model(cfg.model), model_dir, is_trainable=True)
    return load_model(str(model_dir))


def prepared(cfg, lm, run_dir: Path | None = None):
    """(model, objective) for ``cfg.method``; a PROM run's trained pivot head is loaded from ``run_dir``."""
    from ..models.pivot_head import HEAD_WEIGHTS, PivotedModel
    from ..objectives import build_objective

    objective = build_objective(cfg)
    model = objective.prepare_model(lm)
    if isinstance(model, PivotedModel) and run_dir is not None:
        from safetensors.torch import load_file

        if not (run_dir / HEAD_WEIGHTS).exists() and model.pivot_head.kind != "tied":
            raise PivotuneError(f"{run_dir} is a {cfg.method} run without {HEAD_WEIGHTS}: its pivot head is "
                                "needed for the English gradient.")
        state = load_file(str(run_dir / HEAD_WEIGHTS)) if (run_dir / HEAD_WEIGHTS).exists() else {}
        model.pivot_head.load_state_dict(state)
    return model, objective


def encoded_data(cfg, tokenizer):
    """The method's mixture encoded as training encodes it, and the language ids it uses."""
    from ..data.collate import encode_all
    from ..data.mixture import mixture_for_config

    lang_ids = {lang: i for i, lang in enumerate(["en", *[x for x in cfg.languages if x != "en"]])}
    return encode_all(mixture_for_config(cfg), tokenizer, template=cfg.template, max_seq_len=cfg.max_seq_len,
                      lang_ids=lang_ids), lang_ids


def measure_model(cfg, model, objective, tokenizer, pairs: list[tuple[str, str]], *, batches: int,
                  batch_size: int | None, layers: str, profile: bool, seed: int) -> dict:
    """``{pair label: summary (+ profile)}`` for one model under its method's objective."""
    from ..models.arch import arch_info
    from ..models.pivot_head import resolve_pivot_layer
    from .interference import (
        draw_batches,
        language_model,
        measure_interference,
        resolve_blocks,
        source_items,
    )

    encoded, lang_ids = encoded_data(cfg, tokenizer)
    n = arch_info(language_model(model)).num_layers
    pivot = resolve_pivot_layer(cfg.prom.pivot_layer, n)
    blocks = resolve_blocks(layers, n, pivot)
    measured = list(range(1, n + 1)) if profile else blocks
    size = batch_size or cfg.train.per_device_batch_size
    out = {"blocks": blocks, "num_layers": n, "pivot_layer": pivot, "pairs": {}}
    for a, b in pairs:
        ba, bb = (draw_batches(source_items(encoded, spec, lang_ids), batches, size, seed=seed,
                               pad_token_id=tokenizer.pad_token_id, tag=f"{side}:{spec}")
                  for side, spec in (("a", a), ("b", b)))
        res = measure_interference(model, objective, ba, bb, measured)
        entry = res.summary(blocks)
        if profile:
            entry["profile"] = res.profile()
        out["pairs"][f"{a}~{b}"] = entry
    return out


# ---------------------------------------------------------------- series for the figure

def logged_series(run_dir: Path, pair: str, block: int | None = None) -> dict | None:
    """Steps, means and sds logged during training for ``pair`` (a profile block if ``block``)."""
    path = run_dir / LOG_FILE
    if not path.exists():
        return None
    from ..io import read_json_object

    meta = read_json_object(path)
    recs = [r for r in meta["records"] if r["pair"] == pair]
    if not recs:
        return None
    if block is not None:
        if "profile" not in recs[0] or str(block) not in recs[0]["profile"]:
            raise PivotuneError(f"{path}: no per-block profile for block {block} (log it with "
                                "interference.profile=true, or use --recompute).")
        recs = [{"step": r["step"], **r["profile"][str(block)]} for r in recs]
    return {"steps": [r["step"] for r in recs], "mean": [r["mean"] for r in recs], "sd": [r["sd"] for r in recs],
            "blocks": [block] if block is not None else meta["blocks"], "method": meta["method"]}


def plot_interference(series: list[dict], pairs: list[str], path: str | Path, *, title: str = "") -> None:
    """PNG, one panel per source pair: a line with a ±sd band per run when every series has steps,
    otherwise a bar (±sd) per run. Written atomically."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..io import atomic_path

    curves = all(len(s.get("steps") or []) > 1 for s in series)
    fig = Figure(figsize=(5.6 * len(pairs), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    for i, pair in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), i + 1)
        rows = [s for s in series if s["pair"] == pair]
        for j, s in enumerate(rows):
            mean = np.array([np.nan if m is None else m for m in s["mean"]], dtype=float)
            sd = np.array([0.0 if v is None else v for v in s["sd"]], dtype=float)
            color = f"C{j}"
            label = s["label"] + (" (undefined: zero gradient)" if np.isnan(mean).all() else "")
            if curves:
                x = np.array(s["steps"])
                ax.plot(x, mean, marker="o", markersize=3, color=color, label=label)
                ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.2)
            else:
                ax.bar(j, 0.0 if np.isnan(mean[-1]) else mean[-1], yerr=sd[-1], color=color, capsize=4, label=label)
        if curves:
            ax.set_xlabel("optimizer step")
        else:
            ax.set_xticks(range(len(rows)), [s["label"] for s in rows])
        ax.axhline(0, color="gray", linewidth=0.8)
        ax.set_ylabel("gradient cosine similarity")
        blocks = rows[0]["blocks"] if rows else []
        ax.set_title(f"{pair.replace('~', ' vs ')} (block{'s' if len(blocks) > 1 else ''} "
                     f"{','.join(map(str, blocks))})", fontsize=10)
        ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# ---------------------------------------------------------------- the command

def run_interference(inputs: list[str], out_dir: str | Path, *, config: str | None = None,
                     methods: list[str] | None = None, pairs: list[tuple[str, str]] | None = None, batches: int = 4,
                     batch_size: int | None = None, layers: str = "last", profile: bool = False,
                     block: int | None = None, seed: int = 0, recompute: bool = False, force: bool = False) -> dict:
    """Measure or read each input, write ``out_dir/interference.json`` and ``out_dir/interference.png`` (``out_dir``:
    new, empty or an earlier interference output, unless ``force``)."""
    from ..config import load_config
    from ..io import write_json_atomic
    from ..models.loading import load_model, load_tokenizer
    from ..outputs import claim_output_dir, mark_output

    claim_output_dir(out_dir, "interference", force=force)

    pairs = [tuple(p) for p in (pairs or [("en", "tgt")])]
    labels = [f"{a}~{b}" for a, b in pairs]
    if batches < 1 or (batch_size is not None and batch_size < 1):
        raise PivotuneError(f"--batches ({batches}) and --batch-size ({batch_size}) must be at least 1.")
    if block is not None:
        layers = str(block)
    opts = {"batches": batches, "batch_size": batch_size, "layers": layers, "profile": profile, "seed": seed}
    series, results = [], {}

    def add_measured(name: str, cfg, model, objective, tokenizer):
        res = measure_model(cfg, model, objective, tokenizer, pairs, **opts)
        results[name] = {"method": cfg.method, "source": "measured", **res}
        for label in labels:
            s = res["pairs"][label]
            series.append({"label": name, "method": cfg.method, "pair": label, "source": "measured",
                           "steps": None, "mean": [s["mean"]], "sd": [s["sd"]], "blocks": res["blocks"]})

    if config is not None:
        for model_name in inputs or [None]:
            for method in methods or [None]:
                over = ([f"method={method}"] if method else []) + (
                    [f"model={json.dumps(model_name)}"] if model_name else [])
                cfg = load_config(config, over)
                tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
                model, objective = prepared(cfg, load_model(cfg.model))
                name = cfg.method if len(inputs) <= 1 else f"{cfg.method} ({Path(cfg.model).name})"
                add_measured(name, cfg, model, objective, tokenizer)
    else:
        if not inputs:
            raise PivotuneError("Give run directories, or base models with --config.")
        for run in inputs:
            if not (Path(run) / "config.yaml").is_file():
                raise PivotuneError(f"{run} is not a pivotune run directory (no config.yaml); to measure a "
                                    "base model, pass --config with a run config for its data.")
        cfgs = {run: load_config(Path(run) / "config.yaml") for run in inputs}
        run_methods = [c.method for c in cfgs.values()]
        for run, cfg in cfgs.items():
            run_dir = Path(run)
            name = cfg.method if run_methods.count(cfg.method) == 1 else run_dir.name   # two runs of one method
            logged = None if recompute else {p: logged_series(run_dir, p, block) for p in labels}
            if logged and all(logged.values()):
                results[name] = {"method": cfg.method, "source": "log", "run": str(run_dir)}
                series += [{"label": name, "pair": p, "source": "log", **logged[p]} for p in labels]
                continue
            tokenizer = load_tokenizer(str(run_dir / "model"))
            model, objective = prepared(cfg, _load_lm(run_dir, cfg), run_dir)
            add_measured(name, cfg, model, objective, tokenizer)
    out_dir = mark_output(out_dir, "interference")
    summary = {"pairs": labels, "options": opts, "runs": results, "series": series}
    write_json_atomic(out_dir / "interference.json", summary)
    plot_interference(series, labels, out_dir / "interference.png", title="gradient interference")
    return summary


def _cmd(args) -> int:
    pairs = []
    for p in args.pairs or ["en,tgt"]:
        a, sep, b = p.partition(",")
        if not sep or not a or not b:
            raise PivotuneError(f"--pairs {p!r}: expected A,B with sources ROLE or ROLE:LANG, e.g. en,tgt:el.")
        pairs.append((a, b))
    summary = run_interference(args.inputs, args.out, config=args.config, methods=args.methods, pairs=pairs,
                               batches=args.batches, batch_size=args.batch_size, layers=args.layers,
                               profile=args.profile, block=args.block, seed=args.seed, recompute=args.recompute,
                               force=args.force)
    for s in summary["series"]:
        m, sd = s["mean"][-1], s["sd"][-1]
        where = f"step {s['steps'][-1]}" if s.get("steps") else "measured"
        value = "undefined (zero gradient)" if m is None else f"{m:+.4f} ± {sd:.4f}"
        print(f"{s['label']:<20} {s['pair']:<20} {where:<12} cos {value}")
    print(f"wrote {Path(args.out) / 'interference.json'} and interference.png")
    return 0


def add_parser(sub) -> None:
    """Register ``pivotune interference``."""
    import argparse

    p = sub.add_parser(
        "interference", help="gradient cosine between two data sources, per method (JSON + PNG)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Cosine similarity between the gradients that batches of two data sources (ROLE or ROLE:LANG: "
                    "en, tgt, tgt:el, mt) induce on a set of decoder blocks, through each method's own objective "
                    "(PROM: the English gradient is the pivoted one, which never reaches blocks above its pivot "
                    "layer; there the cosine is reported as undefined). Mean and sd over K batch pairs. Run "
                    "directories that logged interference during training (interference.every > 0) are plotted "
                    "over steps; other runs' final models are measured, one bar per run. With --config, INPUTS "
                    "are base models (default: the config's) measured under each of --methods (PROM's λ does "
                    "not change a cosine, so no regulation probe runs).",
        epilog="examples:\n  pivotune interference runs/demo/xllama-seed0 runs/demo/prom-seed0 --pairs en,tgt:el "
               "--out runs/interference\n  pivotune interference --config th.yaml --methods xllama prom "
               "--layers all --profile --out runs/interference-base")
    p.add_argument("inputs", nargs="*", help="run directories (or base models with --config)")
    p.add_argument("--out", required=True, help="output directory (interference.json, interference.png): new, "
                                                "empty or an earlier interference output")
    p.add_argument("--force", action="store_true", help="write into --out even if it holds other files")
    p.add_argument("--config", help="run config giving data, languages and template: measure base models")
    p.add_argument("--methods", nargs="+", help="with --config: methods whose objectives to use (default: its own)")
    p.add_argument("--pairs", nargs="+", metavar="A,B", help="source pairs (default en,tgt)")
    p.add_argument("--batches", type=int, default=4, help="K batch pairs (default 4)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per batch (default: the run's batch size)")
    p.add_argument("--layers", default="last", help="last (default), pivot, all, or blocks such as 3 or 2,4")
    p.add_argument("--profile", action="store_true", help="also measure every block on its own")
    p.add_argument("--block", type=int, default=None,
                   help="one block: a logged run's profile entry for it, or the block to measure")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch draw (default 0)")
    p.add_argument("--recompute", action="store_true", help="measure final models even when logs exist")
    p.set_defaults(func=_cmd)
