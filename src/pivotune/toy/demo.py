"""``pivotune demo``: the study, end to end, in the toy world.

Build (or load from cache) the world and its English-centric base model, train
every method through the same road a real run takes (a YAML config, the
loaders, ``pivotune.train``), evaluate each trained model on toy-MGSM and
toy-XQuAD in English and every target language and on toy-FLORES between English
and each target (with language confusion on every generation), and write the tables.

Every method gets the same number of optimizer steps and the same batch, so
the comparison is compute-matched: a method with more data sees each sample
fewer times, as it would under a fixed GPU budget.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import load_config
from ..errors import PivotuneError
from ..io import write_json_atomic, write_text_atomic
from ..languages import check_choice
from ..methods import METHODS, ToyRun
from . import grammar
from . import probe as toy_probe
from .console import StudyConsole
from .model import ToyPaths, entry_dir, get_or_build
from .parallel import Job, default_jobs, run_jobs
from .world import WorldConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPlan:
    """Fine-tuning settings shared by every method in the demo."""

    steps: int
    batch_size: int = 16
    lr: float = 1e-3
    max_seq_len: int = 320
    eval_limit: int | None = None

    @classmethod
    def for_world(cls, quick: bool) -> "DemoPlan":
        return cls(steps=60, eval_limit=24) if quick else cls(steps=170)


def toy_languages(requested: list[str] | None, world_cfg: WorldConfig) -> list[str]:
    """``--languages`` of demo and sweep: codes of the toy world's languages (default: its well- and its
    under-represented one, the two the study compares; the others on request)."""
    have = list(world_cfg.languages)
    default = [world_cfg.well_represented, world_cfg.under_represented]
    return [check_choice(lang, have, "--languages", what="the toy world's languages") for lang in requested or default]


def toy_mt_instructions(lang: str) -> list[str]:
    """The toy world's own translation-task wordings (its vocabulary is lower-case, space-tokenised)."""
    return [t.format(lang=grammar.LANG_WORDS[lang]) for t in grammar.TRANSLATE_INSTRUCTIONS]


def run_config(paths: ToyPaths, method: str, languages: list[str], seed: int, out: Path,
               plan: DemoPlan, vocab: dict | None = None) -> dict:
    """The run config a user would write for this method in the toy world (saved beside the run): the world's
    data, the plan's steps and batch, the ``vocab`` section when given (``--extend-vocab``), and what the method's
    registration changes for the demo (:attr:`pivotune.methods.base.DemoEntry.adjust`)."""
    world = paths.world
    data = [{"path": str(world / "instructions" / "en.jsonl"), "role": "en", "lang": "en"}]
    for lang in languages:
        data.append({"path": str(world / "instructions" / f"{lang}.jsonl"), "role": "tgt", "lang": lang})
        data.append({"path": str(world / "parallel" / f"en-{lang}.jsonl"), "role": "mt", "lang": lang,
                     "mt_instructions": toy_mt_instructions(lang)})
    raw = {
        "model": str(paths.base), "method": method, "languages": list(languages), "data": data,
        "max_seq_len": plan.max_seq_len, "seed": seed, "output_dir": str(out),
        "train": {"lr": plan.lr, "max_steps": plan.steps, "per_device_batch_size": plan.batch_size,
                  "grad_accum": 1, "warmup_ratio": 0.05, "scheduler": "cosine", "weight_decay": 0.0,
                  "logging_steps": max(1, plan.steps // 10), "progress_bar": False},
    }
    if vocab:
        raw["vocab"] = dict(vocab)
    demo = METHODS[method].demo
    if demo.interference:
        # claim 2's evidence (gradient cosine between English and target rows at PROM's pivot block), logged
        # five times per run on the same 4 batch pairs: about a fifth more compute for these methods
        raw["interference"] = {"every": max(1, plan.steps // 4), "batches": 4, "layers": "pivot",
                               "pairs": [["en", "tgt"]]}
    if demo.adjust is not None:
        probe = probe_settings(world, languages, paths.config.seed)
        raw = demo.adjust(raw, ToyRun(paths, list(languages), plan.steps, plan.batch_size, probe))
    return raw


def probe_settings(world: Path, languages: list[str], world_seed: int = 0) -> dict:
    """PROM's regulation probe in the toy world: the cloze on the world's known facts written in each target
    language (no English in the prompt, as in PROM's paper), in the corpus's own gap-fill format."""
    return {"probe_task": "cloze", "probe_template": toy_probe.CLOZE_TEMPLATE,
            "probe_pairs": {lang: str(world / "probe" / f"{lang}.cloze.tsv") for lang in languages},
            "probe_labels": {lang: toy_probe.answer_label(lang, world_seed) for lang in languages}}


def probe_lens(model_dir: Path, out_dir: Path, world: Path, languages: list[str], world_seed: int,
               pivot_layer: int | None = None) -> tuple[dict, float]:
    """The logit lens of ``model_dir`` on PROM's regulation probe (the paper's Figures 1, 3, 4): the base
    model before training, each trained model after. Probe seed 0 for every model, so all of them see the
    same prompts. Writes ``out_dir/probe.json``; returns it and the seconds taken."""
    from ..analysis.probe import run_probe

    t0 = time.perf_counter()
    s = probe_settings(world, languages, world_seed)
    report = run_probe(str(model_dir), s["probe_pairs"], out_dir, pivot_layer=pivot_layer, task=s["probe_task"],
                       template=s["probe_template"], labels=s["probe_labels"], seed=0,
                       force=True)   # inside the demo's own directory
    return report, round(time.perf_counter() - t0, 1)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


METRICS = (("mgsm", "toy-MGSM acc"), ("xquad_em", "toy-XQuAD EM"), ("xquad_f1", "toy-XQuAD F1"))


def results_table(scores: dict, langs: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: a row per (language, metric), a column per method; mean ± sd over seeds, in %."""
    header = ["language", "metric", *scores]
    rows = []
    for lang in langs:
        for key, label in METRICS:
            row = [lang, label]
            for per_seed in scores.values():
                m, sd = _mean_sd([s[lang][key] for s in per_seed])
                row.append(f"{m:.1f}" + (f" ± {sd:.1f}" if len(per_seed) > 1 else ""))
            rows.append(row)
    return header, rows


def _mean_score(per_seed: list[dict], langs: list[str]) -> float:
    return statistics.fmean(s[lang][key] for s in per_seed for lang in langs for key, _ in METRICS)


def retention_table(scores: dict, languages: list[str], under: str | None) -> tuple[list[str], list[list[str]]]:
    """A row per method: mean of the three toy metrics over the target languages, the under-represented one
    (when it is among them), and English after adaptation (English retention, CLO's claim), in %."""
    groups = [languages, *([[under]] if under in languages else []), ["en"]]
    header = ["method", "targets", *([f"{under} (under-represented)"] if under in languages else []),
              "English (retention)"]
    rows = [[m, *(f"{_mean_score(per_seed, langs):.1f}" for langs in groups)] for m, per_seed in scores.items()]
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_table(header, rows, title: str, left: tuple[str, ...] = ("language", "metric", "task", "direction"),
                highlight: int | None = None) -> None:
    """A table on the terminal: ``left`` columns left-aligned, the others right; row ``highlight`` in bold."""
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        for h in header:
            t.add_column(h, justify="left" if h in left else "right")
        for i, r in enumerate(rows):
            t.add_row(*r, style="bold green" if i == highlight else None)
        Console().print(t)
    except ImportError:  # rich is a dependency; plain text keeps the demo usable without it
        print(title)
        print(markdown_table(header, rows))


def train_and_evaluate(raw: dict, world: Path, eval_langs: list[str], plan: DemoPlan,
                       console: StudyConsole | None = None) -> tuple[dict, dict]:
    """Train one run config on the road a real run takes, evaluate its model through lm-evaluation-harness
    (RUN/results.json, RUN/eval.json, every item's scores in RUN/samples/); returns (headline scores, timings).
    ``console`` is told when evaluation begins. RUN lies in the demo's (or sweep's) own directory, so an earlier
    run there is replaced."""
    from ..eval.toy_tasks import evaluate_toy_with_harness, toy_headline
    from ..train.run import train

    run_dir = Path(raw["output_dir"])
    t0 = time.perf_counter()
    train(load_config(base=raw), save_checkpoints=False, overwrite=True)
    t1 = time.perf_counter()
    if console is not None:
        console.stage("evaluate", raw["method"], raw["seed"])
    res = evaluate_toy_with_harness(run_dir / "model", world, eval_langs, limit=plan.eval_limit, out_dir=run_dir)
    write_json_atomic(run_dir / "eval.json", res)
    t2 = time.perf_counter()
    log.info("%s: trained in %.0fs, evaluated in %.0fs", run_dir.name, t1 - t0, t2 - t1)
    return toy_headline(res), {"train_s": round(t1 - t0, 1), "eval_s": round(t2 - t1, 1)}


def run_one(raw: dict, label: str, world: Path, eval_langs: list[str], plan: DemoPlan, languages: list[str],
            world_seed: int, pivot_layer: int | None, console: StudyConsole) -> tuple[dict, dict]:
    """One run of the study: train and evaluate (:func:`train_and_evaluate`), then the logit lens of a causal LM
    after training at the base's pivot layer (not LinguaLIFT's bridge; none where ``pivot_layer`` is None).
    ``label`` names the run on the console (the method, or a sweep's setting). Returns (headline scores,
    timings)."""
    method, seed, run_dir = raw["method"], raw["seed"], Path(raw["output_dir"])
    console.stage("train", label, seed, steps=plan.steps)
    headline, timings = train_and_evaluate(raw, world, eval_langs, plan, console)
    if pivot_layer is not None and METHODS[method].causal_lm:
        console.stage("probe", label, seed)
        _, timings["probe_s"] = probe_lens(run_dir / "model", run_dir / "probe-after", world, languages, world_seed,
                                           pivot_layer)
    return headline, timings


#: what `pivotune demo` trains without --methods (a method's registration says)
DEFAULT_METHODS = [name for name, m in METHODS.items() if m.demo.default]


def run_demo(quick: bool = False, languages: list[str] | None = None, methods: list[str] | None = None,
             seeds: int = 1, out_dir: str | Path | None = None, rebuild: bool = False,
             cache_dir: str | Path | None = None, force: bool = False, verbose: bool = False,
             jobs: int | None = None, extend_vocab: bool = False) -> dict:
    """Run the study; returns ``{"scores": {method: [per-seed headline]}, ...}`` and writes it to ``out_dir`` (new,
    empty or an earlier demo's, unless ``force``; everything in it is the demo's to replace). The console shows
    the progress (:mod:`.console`); the libraries' logs go to ``out_dir/demo.log`` (``verbose``: on the console
    too, as they come). ``jobs``: runs side by side (:mod:`.parallel`; default one per core, at most four).
    ``extend_vocab``: every run extends the base's tokenizer for the target languages first (:mod:`.vocab`)."""
    from ..outputs import claim_output_dir, mark_output

    started = time.perf_counter()
    world_cfg = WorldConfig.quick() if quick else WorldConfig()
    plan = DemoPlan.for_world(quick)
    languages = toy_languages(languages, world_cfg)
    methods = list(methods or DEFAULT_METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise PivotuneError(f"unknown method(s) {unknown}; available: {', '.join(METHODS)}")
    if seeds < 1:
        raise PivotuneError("--seeds must be at least 1")
    if jobs is not None and jobs < 1:
        raise PivotuneError(f"--jobs must be at least 1, got {jobs}")
    out = Path(out_dir or ("runs/demo-quick" if quick else "runs/demo"))
    mark_output(claim_output_dir(out, "demo", force=force), "demo")

    if rebuild:
        shutil.rmtree(entry_dir(world_cfg, cache_dir), ignore_errors=True)
    with StudyConsole(out / LOG_FILE, runs=len(methods) * seeds, verbose=verbose) as console:
        summary, printed = _study(console, world_cfg, plan, languages, methods, seeds, out, cache_dir, quick, started,
                                  jobs, extend_vocab)
    for header, rows, title in printed["tables"]:
        print_table(header, rows, title)
    print(printed["text"])
    print(f"results: {out / 'results.md'}; report: {out / 'report' / 'report.html'}; log: {out / LOG_FILE} "
          f"(total {time.perf_counter() - started:.0f}s)")
    return summary


def _study(console: StudyConsole, world_cfg: WorldConfig, plan: DemoPlan, languages: list[str], methods: list[str],
           seeds: int, out: Path, cache_dir, quick: bool, started: float, jobs_n: int | None,
           extend_vocab: bool = False) -> tuple[dict, dict]:
    """Everything the demo computes and writes; returns the summary and what to print once the console is
    done (tables, text)."""
    from ..eval.compare import PAPER_TABLES, compare, to_markdown

    console.stage("world/base", note="built once, then read from the cache")
    t0 = time.perf_counter()
    paths = get_or_build(world_cfg, cache_dir, progress=console.note)
    timings = {"world_and_base_s": round(time.perf_counter() - t0, 1)}
    log.info("toy world %s ready (%s)", world_cfg.config_hash(), paths.root)

    # the lens before training, once; each causal-LM method is probed the same way after it (below)
    console.stage("probe", note="the base model's logit lens")
    base_lens, timings["probe_base_s"] = probe_lens(paths.base, out / "probe-base", paths.world, languages,
                                                    world_cfg.seed)
    eval_langs = ["en", *languages]
    vocab = None
    if extend_vocab:
        from .vocab import vocab_block

        vocab = vocab_block(paths.base, paths.world, languages, method_steps=plan.steps)
    # the run configs are written here, before any run starts (LinguaLIFT's toy encoder is installed once)
    jobs = [Job((method, seed), run_one, (run_config(paths, method, languages, seed, out / f"{method}-seed{seed}",
                                                     plan, vocab), method, paths.world, eval_langs, plan, languages,
                                          world_cfg.seed, base_lens["pivot_layer"]))
            for method in methods for seed in range(seeds)]
    console.first_run()
    results = run_jobs(jobs, console, jobs_n or default_jobs(len(jobs)))
    scores: dict[str, list[dict]] = {}
    for method in methods:
        for seed in range(seeds):
            headline, timings[f"{method}-seed{seed}"] = results[(method, seed)]
            scores.setdefault(method, []).append(headline)

    console.stage("report")
    header, rows = results_table(scores, eval_langs)
    title = (f"toy world {'quick' if quick else 'default'} — well represented: {world_cfg.well_represented}, "
             f"under-represented: {world_cfg.under_represented}; {plan.steps} steps × batch "
             f"{plan.batch_size} per method")
    r_header, r_rows = retention_table(scores, languages, world_cfg.under_represented)
    # the paper-style tables (per-case scores, win/lose against xLLaMA2(t+e)) from the harness results
    evaluated = [m for m in methods if (out / f"{m}-seed0" / "results.json").is_file()]
    tables_md = ""
    if evaluated:
        tables = compare([str(out / f"{m}-seed0") for m in evaluated], labels=evaluated,
                         baseline="xllama" if "xllama" in evaluated else None, out_dir=out / "tables",
                         win_lose_skip=("en",), force=True)   # as the paper's Table 3: target languages only
        tables_md = to_markdown(tables)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    summary = {"world": world_cfg.to_dict(), "world_hash": world_cfg.config_hash(), "plan": plan.__dict__,
               "languages": languages, "methods": methods, "seeds": seeds, "scores": scores,
               "timings": timings}
    fertility: tuple[list[str], list[list[str]]] | None = None
    if vocab is not None:
        from ..vocab.measure import fertility_table
        from .vocab import run_tokenizer_dir, tokens_per_word_by_language

        by_language = tokens_per_word_by_language(paths.base, run_tokenizer_dir(out / f"{methods[0]}-seed0"),
                                                  paths.world, eval_langs)
        summary["vocab"] = {**vocab, "tokens_per_word": by_language}
        fertility = fertility_table(by_language)
    write_json_atomic(out / "results.json", summary)
    from ..report.collect import read_inputs
    from ..report.generations import CONFUSION_NOTE, CONFUSION_TITLE, generation_tables

    study = read_inputs([out])
    d_header, d_rows, claims_text = differences(study)
    generated = generation_tables(study)   # language confusion and toy-FLORES, from the runs' harness results
    write_text_atomic(out / "results.md", f"# {title}\n\n" + markdown_table(header, rows)
                      + "\n## English retention (mean of toy-MGSM acc, toy-XQuAD EM and F1, %)\n\n"
                      + markdown_table(r_header, r_rows)
                      + (f"\n## {DIFF_TITLE}\n\n" + markdown_table(d_header, d_rows) if d_rows else "")
                      + "".join(f"\n## {g_title}\n\n" + (f"{CONFUSION_NOTE}\n\n" if g_title == CONFUSION_TITLE else "")
                                + markdown_table(g_header, g_rows) for g_title, g_header, g_rows in generated)
                      + (f"\n## {FERTILITY_TITLE}\n\n" + markdown_table(*fertility) if fertility else "")
                      + "\n## Claims\n\n" + "".join(f"- {c}\n" for c in claims_text)
                      + (f"\n## Paper-style tables (seed 0)\n\n{tables_md}\n" if tables_md else ""))
    write_text_atomic(out / "demo.yaml", yaml.safe_dump(
        {"quick": quick, "languages": languages, "methods": methods, "seeds": seeds,
         **({"extend_vocab": True} if extend_vocab else {})}, sort_keys=False))
    from ..report import write_report   # the study's page: tables, lens figures, regulation, findings

    write_report([str(out)], out / "report", baseline="xllama", force=True)
    printed = [(header, rows, title), (r_header, r_rows, "mean of toy-MGSM acc, toy-XQuAD EM and F1 (%)")]
    if d_rows:
        printed.append((d_header, d_rows, DIFF_TITLE))
    printed += [(g_header, g_rows, g_title) for g_title, g_header, g_rows in generated]
    if fertility:
        printed.append((*fertility, FERTILITY_TITLE))
    text = "\n" + "\n".join(claims_text)
    if tables_md:   # on the console, the paper's tables only: Tables 4-5 are per run and task, shown above per method
        text += (f"\n\npaper-style tables (seed 0, lm-evaluation-harness), also in {out / 'tables'} with Tables 4-5 "
                 f"(language confusion, translation: per run and task):\n\n"
                 + to_markdown([t for t in tables if t.number in PAPER_TABLES]))
    return summary, {"tables": printed, "text": text}


LOG_FILE = "demo.log"
FERTILITY_TITLE = "tokens per word on held-out text, base tokenizer and the runs' extended one (--extend-vocab)"
DIFF_TITLE = ("difference from xllama in points, with its 95 % interval (paired bootstrap); "
              "(win) or (loss) where the interval excludes zero")


def differences(study) -> tuple[list[str], list[list[str]], list[str]]:
    """The differences table against xllama (empty without it) and the three claims, from the demo's files
    (read into a ``report.collect.Study``)."""
    from ..report.collect import TPLUSE
    from ..report.differences import difference_table
    from ..report.findings import claims

    header, rows = difference_table(study, TPLUSE) if TPLUSE in study.scores else ([], [])
    return header, rows, claims(study)


__all__ = ["DemoPlan", "print_table", "probe_lens", "probe_settings", "retention_table", "run_config", "run_demo",
           "results_table", "toy_languages", "train_and_evaluate"]
