"""The ``pivotune`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .errors import PivotuneError
from .languages import add_extra_languages_option

EPILOG_MAIN = """examples:
  pivotune demo --quick                      # the whole study in the toy world, offline on a CPU
  pivotune sweep --quick --seeds 2           # PROM's pivot layer x alpha x lambda grid (Table 4) there
  pivotune train examples/llama2-7b-thai-xllama.yaml --set train.lr=1e-5
  pivotune export runs/thai-xllama exported/llama2-thai
"""


def _cmd_demo(args) -> int:
    from .toy.demo import run_demo

    run_demo(quick=args.quick, languages=args.languages, methods=args.methods, seeds=args.seeds,
             out_dir=args.out, rebuild=args.rebuild, force=args.force,
             verbose=args.verbose, jobs=args.jobs, extend_vocab=args.extend_vocab)
    return 0


def _cmd_sweep(args) -> int:
    from .toy.sweep import run_sweep

    run_sweep(quick=args.quick, pivot_layers=args.pivot_layers, alphas=args.alphas, lambdas=args.lambdas,
              languages=args.languages, seeds=args.seeds, out_dir=args.out, steps=args.steps,
              references=(args.baseline or ["xllama"]) if args.baseline is not None else (),   # bare: xllama
              regulation=not args.no_regulation, force=args.force,
              verbose=args.verbose, jobs=args.jobs)
    return 0


def _cmd_train(args) -> int:
    from .config import load_config
    from .train.run import train

    overrides = list(args.set or [])
    if args.skip_invalid:
        overrides.append("skip_invalid=true")
    if args.output_dir:
        # quoted, so a directory named like a YAML number/bool/null ("2024", "on") stays a string
        overrides.append("output_dir=" + json.dumps(args.output_dir, ensure_ascii=False))
    cfg = load_config(args.config, overrides)
    if args.check:
        from .check import check_config

        print(check_config(cfg, args.config))
        return 0
    trainer = train(cfg, resume=args.resume or False, overwrite=args.overwrite)
    print(f"done: {trainer.state.global_step} steps; run directory {cfg.output_dir}")
    return 0


def _cmd_export(args) -> int:
    from .export import export

    out = export(args.run_dir, args.out_dir, dtype=args.dtype, force=args.force)
    print(f"exported a plain Hugging Face model to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pivotune", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_MAIN,
        description="Adapt English-centric LLMs to other languages by instruction tuning "
                    "(PROM and the baselines Bactrian+(t) and xLLaMA2(t+e); CLO and LinguaLIFT are being added), "
                    "with an offline toy world for a CPU.")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug logging; demo and sweep also show the libraries' logs and progress bars on the "
                        "console (otherwise only in OUT/demo.log or OUT/sweep.log)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="run the study end to end in the synthetic toy world (offline, CPU)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Build (or load from cache) the toy world and its English-centric base "
                                   "model, train each method, evaluate every language, print the table.",
                       epilog="example:\n  pivotune demo --quick --methods english xllama --languages el")
    d.add_argument("--quick", action="store_true", help="a much smaller world and model (about 2 minutes)")
    d.add_argument("--languages", nargs="+", help="target languages (default: the world's well- and under-represented "
                                                      "ones, el th; ar on request)")
    from .methods import METHODS

    d.add_argument("--methods", nargs="+", help=f"methods to train, of {', '.join(METHODS)} (default: "
                   f"{', '.join(n for n, m in METHODS.items() if m.demo.default)})")
    d.add_argument("--seeds", type=int, default=1, help="training seeds per method (default 1)")
    d.add_argument("--out", default=None, help="run directory (default: runs/demo[-quick]): new, empty or an "
                                               "earlier demo's, whose runs are replaced")
    d.add_argument("--force", action="store_true", help="write into --out even if it holds other files")
    d.add_argument("--rebuild", action="store_true", help="rebuild the cached world (the default world's base "
                                                          "model is the shipped one; `pivotune toy build-base` "
                                                          "retrains it)")
    d.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="training runs side by side, each in its own process with its share of the cores "
                        "(default: one per core, at most 4; 1 runs them one after another in this process)")
    d.add_argument("--extend-vocab", action="store_true",
                   help="every run first extends the base's tokenizer for the target languages' scripts (a vocab: "
                        "block in each run config; 300 tokens per language, or what the data yield, their rows "
                        "warmed up alone first) and the "
                        "report adds tokens per word before and after")
    d.set_defaults(func=_cmd_demo)

    sw = sub.add_parser("sweep", help="PROM's pivot layer × α × λ grid (the paper's Table 4) in the toy world",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Train PROM at every grid point on the demo's road (same steps, batch and "
                                    "seeds), evaluate every language through lm-evaluation-harness, and print a "
                                    "Table-4-style table (per-language mean of the toy metrics, the targets mean, "
                                    "best row marked). Writes OUT/sweep.json, OUT/sweep.md and the study page "
                                    "OUT/report/. λ is prom.lambda_en: by default the regulation still sets "
                                    "λ_t = 0 for a language whose logit lens shows no English pivot at layer n; "
                                    "--no-regulation applies λ to every language (method prom-noreg).",
                        epilog="example:\n  pivotune sweep --pivot-layers 2 3 --alphas 0 0.1 --lambdas 0.5 1 "
                               "--seeds 2 --baseline")
    sw.add_argument("--quick", action="store_true", help="the demo's much smaller world and model")
    sw.add_argument("--pivot-layers", nargs="+", type=int, metavar="N",
                    help="pivot layers n, 1 <= n < the model's blocks (default: middle to one below the top: "
                         "4 5 6 7, or 1 with --quick)")
    sw.add_argument("--alphas", nargs="+", type=float, metavar="A",
                    help="label smoothing α of the pivot term, 0 <= α < 1 (default 0 0.1)")
    sw.add_argument("--lambdas", nargs="+", type=float, metavar="L",
                    help="pivot-term weight λ = prom.lambda_en, 0 <= λ <= 100 (default 0.5 1)")
    sw.add_argument("--languages", nargs="+", help="target languages (default: the world's well- and under-represented "
                                                      "ones, el th; ar on request)")
    sw.add_argument("--seeds", type=int, default=1, help="training seeds per setting (default 1)")
    sw.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: the demo's)")
    sw.add_argument("--baseline", nargs="*", metavar="METHOD", default=None,
                    help="also train these methods on the same plan as reference rows (bare --baseline: xllama; "
                         "e.g. --baseline xllama lens-local)")
    sw.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="runs side by side, as in the demo (default: one per core, at most 4)")
    sw.add_argument("--no-regulation", action="store_true",
                    help="train prom-noreg: λ for every language, no logit-lens probe")
    sw.add_argument("--out", default=None, help="output directory (default: runs/sweep[-quick]): new, empty or an "
                                                "earlier sweep's, whose runs are replaced")
    sw.add_argument("--force", action="store_true", help="write into --out even if it holds other files")
    sw.set_defaults(func=_cmd_sweep)

    t = sub.add_parser("train", help="train a model from a YAML run config",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Validate CONFIG (before any model loads), build the method's data "
                                   "mixture, train, and write the run directory: a new or empty output_dir, the "
                                   "run there with --resume, or an earlier run deleted first with --overwrite. "
                                   "The directory is locked while the run lasts; a run that fails before its "
                                   "first complete checkpoint leaves nothing it created.",
                       epilog="example:\n  pivotune train examples/llama2-7b-thai-xllama.yaml "
                              "--set train.lr=1e-5 --set lora.enabled=true")
    t.add_argument("config", help="YAML run config")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value (dotted key; list items by index), repeatable")
    t.add_argument("--skip-invalid", action="store_true", help="drop invalid data rows and report them")
    t.add_argument("--output-dir", help="override output_dir")
    t.add_argument("--check", action="store_true",
                   help="run every check that needs no model weights (config, every data file and row, the "
                        "method's data, local model/tokenizer/encoder paths, PROM's probe files, LinguaLIFT's "
                        "lexicons), list every problem, and exit (2 on any); writes nothing")
    t.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                   help="continue from the latest complete checkpoint in output_dir (or CHECKPOINT); "
                        "'--resume auto' resumes if there is one and starts afresh otherwise")
    t.add_argument("--overwrite", action="store_true",
                   help="delete an earlier run in output_dir and start afresh (without it, or --resume, a "
                        "directory holding a run's model or checkpoints is refused)")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("export", help="write a run's model as a plain Hugging Face directory",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Merge LoRA adapters, drop training-only parts, and save model + "
                                   "tokenizer so AutoModelForCausalLM loads them without pivotune.",
                       epilog="example:\n  pivotune export runs/thai-xllama exported/llama2-thai")
    e.add_argument("run_dir", help="a finished run directory (holds model/)")
    e.add_argument("out_dir", help="where to write the plain model directory")
    e.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="cast weights on export")
    e.add_argument("--force", action="store_true",
                   help="replace out_dir even if it holds something other than an earlier export (never the run "
                        "itself or a directory holding it)")
    e.set_defaults(func=_cmd_export)

    def _cmd_probe(args) -> int:  # lazy: the lens module imports torch
        from .analysis.probe import cli_probe

        return cli_probe(args)

    pr = sub.add_parser("probe", help="logit-lens language probabilities per layer and PROM's regulation decision",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="For each target language, prompt MODEL with few-shot word translation (or "
                                    "repetition) and read P(English) and P(target) at every layer through the "
                                    "logit lens (Wendler et al., 2024). Writes OUT/probe.json (per-layer means and "
                                    "spreads, single/multi-token item counts, the lambda_t = 0 decision at the "
                                    "pivot layer, a suggested pivot layer) and OUT/lens_LANG.png. Word-pair files: "
                                    "'english<TAB>target' per line, '#' comments and blank lines allowed.",
                        epilog="example:\n  pivotune probe meta-llama/Llama-2-7b-hf --pairs th=probe/th.tsv "
                               "ta=probe/ta.tsv --pivot-layer 24 --out runs/probe-llama2")
    pr.add_argument("model", help="model directory or hub name")
    pr.add_argument("--pairs", nargs="+", required=True, metavar="LANG=FILE",
                    help="word-pair file per language; LANG is a language code (th, tha, pt-BR), and one outside "
                         "pivotune's table (ISO 639-1, FLORES-200) is declared with --extra-languages")
    pr.add_argument("--pivot-layer", type=int, default=None,
                    help="PROM pivot layer n, the output of decoder block n, below the top: 1 <= n < N "
                         "(default round(0.75*N))")
    pr.add_argument("--out", required=True, help="output directory (new, empty or an earlier probe's)")
    pr.add_argument("--force", action="store_true", help="write into --out even if it holds other files")
    pr.add_argument("--task", choices=["translation", "repetition", "cloze"], default="translation",
                    help="prompt type (default translation); cloze reads 'english<TAB>target<TAB>sentence "
                         "with ___' files in --pairs")
    pr.add_argument("--template", default=None,
                    help="prompt line replacing the task's default, e.g. '{source_name} : {source} "
                         "{target_name} : {target}' (cloze: '{sentence} {label}: \"{answer}\"')")
    pr.add_argument("--labels", nargs="+", metavar="LANG=WORD",
                    help="the word for 'Answer' per language in cloze prompts (for codes outside the "
                         "built-in table)")
    pr.add_argument("--source-lang", default="en",
                    help="source language of translation prompts (default en; another --pairs language "
                         "keeps English out of the prompt, as in the original)")
    pr.add_argument("--names", nargs="+", metavar="LANG=NAME",
                    help="language names for the prompts, written in their own language (needed for codes "
                         "outside the built-in table)")
    pr.add_argument("--batch-size", type=int, default=8, help="prompts per forward (default 8)")
    pr.add_argument("--seed", type=int, default=0, help="seed for choosing demonstrations (default 0)")
    pr.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                    help="model weights dtype (default float32)")
    add_extra_languages_option(pr)
    pr.set_defaults(func=_cmd_probe)
    from .translate.cli import add_parser as add_translate_parser
    add_translate_parser(sub)
    from .eval import compare, harness
    harness.add_parser(sub)
    compare.add_parser(sub)
    from .analysis.interference_report import add_parser as add_interference_parser
    add_interference_parser(sub)
    from .report import add_parser as add_report_parser
    add_report_parser(sub)
    from .vocab.cli import add_parser as add_vocab_parser
    add_vocab_parser(sub)
    from .toy.shipped import add_parser as add_toy_parser
    add_toy_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except PivotuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
