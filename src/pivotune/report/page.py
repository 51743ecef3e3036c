"""The study report page: ``pivotune report RUN... --out DIR`` writes ``DIR/report.html`` (self-contained
apart from the PNG figures beside it, in ``DIR/figures/``) and its Markdown twin ``DIR/report.md``.

The page is built once as a list of blocks (heading, paragraph, list, table, image, preformatted text)
and rendered to both formats, so the two always say the same thing. The whole directory is written
atomically: an error leaves no half-written report.
"""

from __future__ import annotations

import argparse
import html
import shutil
from pathlib import Path

from ..io import child_path
from ..outputs import replaced_output_dir
from .collect import METRICS, Study, case_stats, fmt_mean_sd, interference_level, read_inputs
from .differences import WIN_RULE, difference_table, win_lose
from .findings import findings
from .generations import CONFUSION_NOTE, CONFUSION_TITLE, generation_tables
from .lens import lens_blocks, lens_findings
from .losses import loss_blocks
from .sweep import sweep_blocks, sweep_finding

HTML_FILE, MD_FILE, FIG_DIR = "report.html", "report.md", "figures"


def _results_blocks(study: Study, baseline: str) -> list[tuple]:
    if not study.scores:
        return []
    stats = case_stats(study)
    seeds = {m: len(v) for m, v in study.scores.items()}
    names = dict(METRICS)
    seed_note = ", ".join(f"{m}: {n}" for m, n in seeds.items())
    rows = [[lang, names[key], *(fmt_mean_sd(*stats[m][(lang, key)], seeds[m]) for m in stats)]
            for lang, key in next(iter(stats.values()))]
    blocks = [("h2", "Results"),
              ("p", f"Mean ± sample standard deviation over seeds, in % ({seed_note} seed(s))."),
              ("table", ["language", "metric", *stats], rows)]
    if baseline in stats:
        wl_rows = []
        for m in stats:
            if m != baseline:
                wl = win_lose(study, m, baseline)
                wl_rows.append([m, str(len(wl.wins)), str(len(wl.losses)), str(len(wl.undecided)),
                                str(len(wl.intervals))])
        blocks += [("h3", f"Differences against {baseline} (95 % intervals)"),
                   ("p", WIN_RULE + " The last row is the difference on the mean over the target languages."),
                   ("table", *difference_table(study, baseline)),
                   ("h3", f"Wins / losses against {baseline}"),
                   ("table", ["method", "wins", "losses", "undecided", "cases"], wl_rows)]
    return blocks


def _generation_blocks(study: Study) -> list[tuple]:
    """Language confusion and toy-FLORES per method and language, from the demo runs' harness results."""
    blocks: list[tuple] = []
    for title, header, rows in generation_tables(study):
        blocks += [("h2", title), *([("p", CONFUSION_NOTE)] if title == CONFUSION_TITLE else []),
                   ("table", header, rows)]
    return blocks


def _vocab_blocks(study: Study) -> list[tuple]:
    """A demo with --extend-vocab: the tokens added and tokens per word before and after, by language."""
    if not study.vocab.get("tokens_per_word"):
        return []
    from ..vocab.measure import fertility_table

    v = study.vocab
    return [("h2", "Vocabulary extension"),
            ("p", f"Every run first added {v['n_new']} tokens for {', '.join(v['languages'])} to the base tokenizer "
                  "(a vocab: block). Tokens per word on held-out text (the evaluation questions and contexts), "
                  "base tokenizer before and the runs' extended one after."),
            ("table", *fertility_table(v["tokens_per_word"]))]


def _harness_blocks(study: Study, baseline: str) -> list[tuple]:
    if not study.harness:
        return []
    from ..eval.compare import build_tables
    from ..eval.confusion import read_line_passes

    base = baseline if baseline in study.harness else None
    line_items = {label: read_line_passes(study.harness_dirs[label], res) for label, res in study.harness.items()
                  if label in study.harness_dirs} if base else None
    tables = build_tables(study.harness, base, items=study.harness_items, line_items=line_items)
    blocks: list[tuple] = [("h2", "Evaluation tables")]
    for t in tables:
        blocks += [("h3", t.title), ("table", t.header, t.cells())]
    return blocks


def _regulation_blocks(study: Study, figures: Path) -> list[tuple]:
    rows, images = [], []
    for run in study.runs:
        probe_langs = (run.probe or {}).get("languages") or {}
        for lang, d in ((run.regulation or {}).get("decisions") or {}).items():
            lam = ((run.regulation or {}).get("lambda_per_language") or {}).get(lang)
            sugg = ((probe_langs.get(lang) or {}).get("suggestion") or {}).get("layer")
            rows.append([run.name, lang, str(d.get("pivot_layer", "–")), f"{d.get('p_en_mean', float('nan')):.4f}",
                         f"{d.get('p_tgt_mean', float('nan')):.4f}", "–" if lam is None else f"{lam:g}",
                         "λ = 0 (no English pivot)" if d.get("lambda_zero") else "keep λ (English pivot)",
                         "–" if sugg is None else str(sugg)])
        for fig in run.lens_figures:
            dest = child_path(figures, f"{run.name}-{fig.name}")
            shutil.copyfile(fig, dest)
            images.append(("img", f"{FIG_DIR}/{dest.name}", f"{run.name}: {fig.stem.replace('_', ' ')}"))
    if not rows and not images:
        return []
    blocks: list[tuple] = [("h2", "Regulation decisions and pivot layers")]
    if rows:
        blocks.append(("table", ["run", "language", "pivot layer", "P(en)", "P(target)", "λ", "decision",
                                 "suggested pivot layer"], rows))
    if images:
        blocks += [("h3", "Logit-lens language probabilities per layer (base model)"), *images]
    return blocks


def _interference_blocks(study: Study, figures: Path) -> list[tuple]:
    from ..analysis.interference_report import logged_series, plot_interference

    series, rows = [], []
    for run in study.runs:
        lvl = interference_level(run)
        if lvl is None:
            continue
        s = logged_series(run.path, lvl[0])
        series.append({"label": run.name, "pair": lvl[0], **s})
        rows.append([run.name, lvl[0], f"{lvl[1]:+.4f}", str(len(s["steps"]))])
    if not series:
        return []
    pairs = list(dict.fromkeys(s["pair"] for s in series))
    plot_interference(series, pairs, figures / "interference.png", title="gradient interference during training")
    return [("h2", "Gradient interference"),
            ("table", ["run", "source pair", "mean cosine over steps", "logged steps"], rows),
            ("img", f"{FIG_DIR}/interference.png", "gradient cosine similarity over training")]


def _config_blocks(study: Study) -> list[tuple]:
    cfgs = [("pre", run.name, run.config) for run in study.runs if run.config]
    return [("h2", "Run configurations"), *cfgs] if cfgs else []


def _sweep_findings(study: Study) -> list[str]:
    return [sweep_finding(s, label if len(study.sweeps) > 1 else "", study.sweep_items.get(label))
            for label, s in study.sweeps.items()]


def build_blocks(study: Study, baseline: str, figures: Path) -> list[tuple]:
    return [("h2", "Findings"), ("p", "Generated from the numbers below."),
            ("ul", [*findings(study, baseline), *_sweep_findings(study), *lens_findings(study)]),
            *_results_blocks(study, baseline), *_generation_blocks(study), *_vocab_blocks(study),
            *sweep_blocks(study.sweeps, study.sweep_items), *_harness_blocks(study, baseline),
            *_regulation_blocks(study, figures), *lens_blocks(study, figures), *_interference_blocks(study, figures),
            *loss_blocks(study.runs, figures, FIG_DIR), *_config_blocks(study)]


def to_markdown(blocks: list[tuple], title: str) -> str:
    out = [f"# {title}"]
    for b in blocks:
        kind = b[0]
        if kind in ("h2", "h3"):
            out.append(f"{'#' * int(kind[1])} {b[1]}")
        elif kind == "p":
            out.append(b[1])
        elif kind == "ul":
            out.append("\n".join(f"- {x}" for x in b[1]))
        elif kind == "table":
            lines = ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
            out.append("\n".join(lines + ["| " + " | ".join(r) + " |" for r in b[2]]))
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
        elif kind == "pre":
            out.append(f"<details><summary>{b[1]}</summary>\n\n```yaml\n{b[2].rstrip()}\n```\n\n</details>")
    return "\n\n".join(out) + "\n"


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin-bottom:1.5em}"
         "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
         "th{background:#f4f4f4}img{max-width:100%;display:block;margin:1em 0}pre{background:#f8f8f8;padding:1em}")


def to_html(blocks: list[tuple], title: str) -> str:
    e = html.escape
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h2", "h3", "p"):
            out.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in b[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b[2])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            out.append(f'<figure><img src="{e(b[1])}" alt="{e(b[2])}"><figcaption>{e(b[2])}</figcaption></figure>')
        elif kind == "pre":
            out.append(f"<details><summary>{e(b[1])}</summary><pre>{e(b[2])}</pre></details>")
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title><style>{STYLE}</style>'
            f"</head><body><h1>{e(title)}</h1>\n" + "\n".join(out) + "\n</body></html>\n")


def write_report(inputs: list[str | Path], out_dir: str | Path, baseline: str = "xllama",
                 title: str = "pivotune study report", force: bool = False) -> Path:
    """Write ``out_dir/report.html``, ``report.md`` and ``figures/`` from demo or run directories, replacing
    ``out_dir`` as a whole (only a new or empty one, an earlier report, or with ``force`` anything but an input or
    a directory holding one: :func:`pivotune.outputs.claim_output_dir`); returns the HTML path."""
    out_dir = Path(out_dir)
    study = read_inputs(inputs)
    with replaced_output_dir(out_dir, "report", force=force, inputs=inputs) as tmp:
        (tmp / FIG_DIR).mkdir(parents=True)
        blocks = build_blocks(study, baseline, tmp / FIG_DIR)
        (tmp / HTML_FILE).write_text(to_html(blocks, title), encoding="utf-8")
        (tmp / MD_FILE).write_text(to_markdown(blocks, title), encoding="utf-8")
    return out_dir / HTML_FILE


def _cmd(args) -> int:
    path = write_report(args.runs, args.out, baseline=args.baseline, force=args.force)
    study = read_inputs(args.runs)
    print(to_markdown([("ul", [*findings(study, args.baseline), *_sweep_findings(study), *lens_findings(study)])],
                      "findings"))
    print(f"report: {path} (and {Path(args.out) / MD_FILE}, figures in {Path(args.out) / FIG_DIR})")
    return 0


def add_parser(sub) -> None:
    """Register ``pivotune report``."""
    p = sub.add_parser("report", help="the study report (HTML + Markdown + PNG figures) from demo or run directories",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Read `pivotune demo` output directories (results.json and METHOD-seedN runs), "
                                   "run directories or harness results, and write one HTML page with a Markdown "
                                   "twin: findings generated from the numbers, results as mean ± sd over seeds, "
                                   "differences from --baseline with 95 % paired bootstrap intervals (a win or "
                                   "loss only where the interval excludes zero), language confusion (line and "
                                   "word pass rates) per method and language, toy-FLORES chrF++/BLEU, regulation "
                                   "decisions and pivot-layer suggestions, logit-lens and interference figures, the "
                                   "training loss per role and language over steps, "
                                   "each run's configuration, and a `pivotune sweep` directory's table (Table 4). "
                                   "OUT is replaced as a whole: it must be new, empty or an earlier report (or "
                                   "--force), and never a RUN or a directory holding one.",
                       epilog="example:\n  pivotune report runs/demo --out runs/demo/report")
    p.add_argument("runs", nargs="+", metavar="RUN", help="demo output directories, run directories or results files")
    p.add_argument("--out", required=True, help="output directory (report.html, report.md, figures/)")
    p.add_argument("--force", action="store_true", help="replace OUT even if it holds something other than an "
                                                        "earlier report (never a RUN or a directory holding one)")
    p.add_argument("--baseline", default="xllama", help="method or run to count wins and losses against "
                                                       "(default xllama)")
    p.set_defaults(func=_cmd)
