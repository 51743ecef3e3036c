"""CLO's data-efficiency claim in the toy world: CLO on N English items vs SFT on 2N target-language items.

The paper (Lee et al., ACL 2025) reports that CLO with 3,200 items beats SFT with 6,400 in low-resource
languages and keeps English where SFT loses it. Here, for the world's under-represented language:

  clo(N)   method ``clo``: the first N English instructions paired with their exact translations
           (2 preference pairs per item), attention projections only.
  sft(2N)  method ``bactrian`` on the first 2N translated instructions alone (no translation task):
           plain SFT on target-language data, every weight trained.

Both train the same number of epochs over their own data from the same cached base model, with the same
batch in sequences (a CLO unit is 4 sequences, so 4 units vs 16 rows); CLO therefore takes twice the
optimizer steps of sft(2N) for N items. Each run is evaluated on toy-MGSM and toy-XQuAD in the target
language and in English (retention). Printed side by side: scores, steps, training seconds and ratios.

Usage: nice -n 19 python bench/clo_data_efficiency.py [--quick] [--n 200 400] [--epochs 3] [--eval-limit 100]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pivotune.config import load_config
from pivotune.eval.toy_scoring import evaluate_toy, headline
from pivotune.toy.model import get_or_build
from pivotune.toy.world import WorldConfig
from pivotune.train.run import train

KEYS = ("mgsm", "xquad_em", "xquad_f1")


def run_one(paths, method: str, lang: str, n: int, epochs: float, out: Path, seed: int) -> dict:
    world = paths.world
    if method == "clo":
        data = [{"path": str(world / "instructions" / "en.jsonl"), "role": "en", "lang": "en"},
                {"path": str(world / "instructions" / f"{lang}.jsonl"), "role": "tgt", "lang": lang}]
        extra, batch = {"clo": {"max_items": n, "reference_batch_size": 32}}, 4
    else:
        data = [{"path": str(world / "instructions" / f"{lang}.jsonl"), "role": "tgt", "lang": lang,
                 "max_samples": n}]
        extra, batch = {}, 16
    raw = {"model": str(paths.base), "method": method, "languages": [lang], "data": data, "max_seq_len": 320,
           "seed": seed, "output_dir": str(out),
           "train": {"lr": 1e-3, "epochs": epochs, "per_device_batch_size": batch, "grad_accum": 1,
                     "warmup_ratio": 0.05, "scheduler": "cosine", "logging_steps": 50, "progress_bar": False},
           **extra}
    t0 = time.perf_counter()
    trainer = train(load_config(base=raw), save_checkpoints=False)
    seconds = time.perf_counter() - t0
    return {"steps": trainer.state.global_step, "train_s": seconds, "out": out}


def score(paths, run: dict, lang: str, limit: int) -> dict:
    h = headline(evaluate_toy(run["out"] / "model", None, paths.world, langs=[lang, "en"], limit=limit))
    return {k: statistics.fmean(h[k2][m] for m in KEYS) for k, k2 in (("tgt", lang), ("en", "en"))} | {
        f"{lang}_{m}": h[lang][m] for m in KEYS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the quick world (400 instructions) instead of the default")
    ap.add_argument("--n", type=int, nargs="+", default=[200, 400], help="CLO item counts N (SFT gets 2N)")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--eval-limit", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=None, help="toy-world cache (default: pivotune's)")
    opts = ap.parse_args()
    cfg = WorldConfig.quick() if opts.quick else WorldConfig()
    if 2 * max(opts.n) > cfg.n_instructions:
        ap.error(f"2N must be at most the world's {cfg.n_instructions} instructions")
    paths = get_or_build(cfg, opts.cache_dir)
    lang = cfg.under_represented
    print(f"toy world {'quick' if opts.quick else 'default'}, target {lang} (under-represented), {opts.epochs:g} epochs, "
          f"eval on {opts.eval_limit} items per task; scores = mean of toy-MGSM acc, toy-XQuAD EM and F1 (%)")
    print(f"{'N':>5} | {'clo(N) ' + lang:>11} {'sft(2N) ' + lang:>12} {'diff':>6} | {'clo(N) en':>10} "
          f"{'sft(2N) en':>11} | {'clo steps':>9} {'sft steps':>9} | {'clo s':>7} {'sft s':>7} {'ratio':>6}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in opts.n:   # each row printed as soon as it is measured
            clo = run_one(paths, "clo", lang, n, opts.epochs, Path(tmp) / f"clo-{n}", opts.seed)
            sft = run_one(paths, "bactrian", lang, 2 * n, opts.epochs, Path(tmp) / f"sft-{2 * n}", opts.seed)
            cs, ss = score(paths, clo, lang, opts.eval_limit), score(paths, sft, lang, opts.eval_limit)
            rows.append((n, cs, ss))
            print(f"{n:>5} | {cs['tgt']:>11.1f} {ss['tgt']:>12.1f} {cs['tgt'] - ss['tgt']:>+6.1f} | {cs['en']:>10.1f} "
                  f"{ss['en']:>11.1f} | {clo['steps']:>9d} {sft['steps']:>9d} | {clo['train_s']:>7.1f} "
                  f"{sft['train_s']:>7.1f} {clo['train_s'] / sft['train_s']:>6.2f}", flush=True)
    print(f"per metric ({lang}):")
    for n, cs, ss in rows:
        print(f"  N={n}: " + ", ".join(f"{m} clo {cs[f'{lang}_{m}']:.1f} / sft {ss[f'{lang}_{m}']:.1f}" for m in KEYS))


if __name__ == "__main__":
    main()
