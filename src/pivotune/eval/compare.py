"""Paper-style tables from several evaluated runs (PROM paper, Tables 1-3, and beyond it, Tables 4-5).

- Table 1 (QA): EM/F1 per benchmark and language, with the averages over the QA cases.
- Table 2 (accuracy, MGSM-style): accuracy per language, with the average.
- Table 3 (win/lose): against a baseline run, over every case both runs have, each headline score's
  difference (EM and F1 for QA, accuracy for MGSM) gets a 95 % paired bootstrap interval over the
  items both runs answered (:mod:`pivotune.report.stats`, from the samples ``pivotune eval`` logs
  unless ``--no-log-samples``). A run *wins* a case when one of its intervals lies above zero and none below,
  *loses* it in the mirror case; anything else is neither. A case without per-item scores on both
  sides is neither, and counted apart ("no items"): a difference in the means alone decides nothing.
- Table 4 (language confusion): LPR and WPR (%) and the judged responses per run and task
  (:mod:`.confusion`); against a baseline, each LPR difference with its 95 % paired interval over the
  responses both runs' samples judged.
- Table 5 (translation): chrF++ and BLEU per FLORES / toy-FLORES direction (:mod:`.flores`).

Written as Markdown, CSV (one file per table) and one HTML page; ``pivotune compare RUN...``.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import PivotuneError
from ..io import parse_json, write_text_atomic
from ..languages import add_extra_languages_option
from .registry import Case, case_of, headline_scores

#: Tables 1-3 are the PROM paper's; Tables 4-5 (language confusion, translation) go beyond it
PAPER_TABLES = (1, 2, 3)
#: {task: {item id: headline scores}} per run, as :func:`pivotune.eval.harness.read_item_scores` reads them
Items = dict[str, dict[str, dict[str, float]]]


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list]          # first cell: the run label; numbers as floats, None when absent

    @property
    def number(self) -> int:
        """N of the title's "Table N: ..." (the CSV file's name)."""
        return int(self.title.split(":")[0].split()[-1])

    def cells(self, digits: int = 1) -> list[list[str]]:
        return [[c if isinstance(c, str) else ("–" if c is None else
                 (str(c) if isinstance(c, int) else f"{c:.{digits}f}")) for c in r] for r in self.rows]


def _results_file(path: str | Path) -> Path | None:
    p = Path(path)
    return next((c for c in (p, p / "results.json", p / "eval" / "results.json") if c.is_file()), None)


def results_dir(path: str | Path) -> Path:
    """The directory holding ``path``'s results file (where the harness's ``samples/`` go)."""
    found = _results_file(path)
    return found.parent if found is not None else Path(path)


def load_results(path: str | Path) -> tuple[str, dict]:
    """``(label, results)`` from a results JSON, a directory holding one, or a run (``RUN/eval``)."""
    p, cand = Path(path), _results_file(path)
    if cand is None:
        raise PivotuneError(f"{p}: no results found (looked for {p}/results.json and {p}/eval/results.json; "
                            "run `pivotune eval` first).")
    try:
        res = parse_json(cand.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise PivotuneError(f"{cand}: not valid JSON ({e}).") from None
    if not isinstance(res, dict) or not isinstance(res.get("results"), dict):
        raise PivotuneError(f"{cand}: not a harness results file (no 'results' object).")
    run = cand.parent.parent if cand.parent.name == "eval" else cand.parent
    return (run.name if cand.name == "results.json" else cand.stem), res


def scores_by_case(res: dict) -> dict[Case, dict[str, float]]:
    out = {}
    for task, metrics in res["results"].items():
        case, scores = case_of(task), headline_scores(task, metrics)
        if case is not None and scores is not None:
            out[case] = scores
    return out


def case_sign(mine: dict[str, dict[str, float]], base: dict[str, dict[str, float]]) -> int:
    """+1 (win), -1 (loss) or 0 for one case from both runs' per-item headline scores ``{item id: {metric:
    score}}``: each metric's paired interval over the shared items; a win when one lies above zero and none
    below."""
    from ..report.stats import paired_bootstrap

    ids = sorted(mine.keys() & base.keys())
    if not ids:
        return 0
    signs = {paired_bootstrap([[mine[i][k] for i in ids]], [[base[i][k] for i in ids]]).sign
             for k in mine[ids[0]].keys() & base[ids[0]].keys()}
    return 1 if 1 in signs and -1 not in signs else -1 if -1 in signs and 1 not in signs else 0


def _items_by_case(items: Items | None) -> dict[Case, dict[str, dict[str, float]]]:
    return {case: per_item for task, per_item in (items or {}).items() if (case := case_of(task)) is not None}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build_tables(runs: dict[str, dict], baseline: str | None = None,
                 win_lose_skip: tuple[str, ...] = (), items: dict[str, Items] | None = None,
                 line_items: dict[str, dict] | None = None) -> list[Table]:
    """Tables 1-5 for ``{label: harness results}`` (Table 3 only with a ``baseline`` label; each only where
    the runs have its scores). ``win_lose_skip``: languages left out of Table 3 (the paper counts target
    languages only); ``items``: each run's per-item scores, for Table 3's intervals; ``line_items``: each
    run's per-response language verdicts (:func:`pivotune.eval.confusion.read_line_passes`), for Table 4's."""
    from .confusion import confusion_table
    from .flores import translation_table

    by_run = {label: scores_by_case(res) for label, res in runs.items()}
    item_cases = {label: _items_by_case((items or {}).get(label)) for label in runs}
    cases = sorted({c for s in by_run.values() for c in s}, key=lambda c: (c.benchmark, c.lang))
    qa = [c for c in cases if c.kind == "qa"]
    acc = [c for c in cases if c.kind == "acc"]
    tables = []
    if qa:
        header = ["run"] + [f"{c.benchmark} {c.lang} {m}" for c in qa for m in ("EM", "F1")] + ["avg EM", "avg F1"]
        rows = []
        for label, s in by_run.items():
            cells = [s[c][m] if c in s else None for c in qa for m in ("em", "f1")]
            rows.append([label, *cells, _mean([s[c]["em"] for c in qa if c in s]),
                         _mean([s[c]["f1"] for c in qa if c in s])])
        tables.append(Table("Table 1: question answering, exact match / F1 (%)", header, rows))
    if acc:
        header = ["run"] + [f"{c.benchmark} {c.lang}" for c in acc] + ["avg"]
        rows = [[label, *[s[c]["acc"] if c in s else None for c in acc], _mean([s[c]["acc"] for c in acc if c in s])]
                for label, s in by_run.items()]
        tables.append(Table("Table 2: accuracy (%)", header, rows))
    if baseline is not None:
        if baseline not in by_run:
            raise PivotuneError(f"baseline {baseline!r} is not one of the runs: {', '.join(by_run)}.")
        base, base_items = by_run[baseline], item_cases[baseline]
        rows = []
        for label, s in by_run.items():
            if label == baseline:
                continue
            shared = [c for c in cases if c in s and c in base and c.lang not in win_lose_skip]
            mine = item_cases[label]
            signs = [case_sign(mine[c], base_items[c]) for c in shared if c in mine and c in base_items]
            wins, losses = signs.count(1), signs.count(-1)
            rows.append([label, wins, losses, len(shared) - wins - losses, len(shared) - len(signs), len(shared)])
        tables.append(Table(f"Table 3: wins / losses against {baseline} (95 % paired bootstrap interval over "
                            "items excludes zero)", ["run", "wins", "losses", "neither", "no items", "cases"], rows))
    extra = [confusion_table(runs, baseline, line_items), translation_table(runs)]
    return tables + [t for t in extra if t is not None]


def to_markdown(tables: list[Table]) -> str:
    parts = []
    for t in tables:
        lines = [f"### {t.title}", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
        lines += ["| " + " | ".join(r) + " |" for r in t.cells()]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(table.header)
    w.writerows([["" if c is None else (round(c, 4) if isinstance(c, float) else c) for c in r] for r in table.rows])
    return buf.getvalue()


def to_html(tables: list[Table], title: str = "pivotune: evaluation tables") -> str:
    body = []
    for t in tables:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in t.cells())
        body.append(f"<h2>{html.escape(t.title)}</h2>\n<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
             "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child"
             "{text-align:left}th{background:#f4f4f4}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n")


def write_tables(tables: list[Table], out_dir: str | Path) -> list[Path]:
    """``tables.md``, ``tables.html`` and ``table_N.csv`` under ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    paths = [out_dir / "tables.md", out_dir / "tables.html"]
    write_text_atomic(paths[0], to_markdown(tables))
    write_text_atomic(paths[1], to_html(tables))
    for t in tables:
        paths.append(out_dir / f"table_{t.number}.csv")
        write_text_atomic(paths[-1], to_csv(t))
    return paths


def format_results(res: dict) -> str:
    """One run's tables as Markdown (what ``pivotune eval`` prints; the raw metrics where no table applies)."""
    tables = build_tables({res.get("pivotune", {}).get("model", "model"): res})
    return to_markdown(tables) if tables else json.dumps(res["results"], indent=1)


def compare(paths: list[str], labels: list[str] | None = None, baseline: str | None = None,
            out_dir: str | Path | None = None, win_lose_skip: tuple[str, ...] = (), force: bool = False) -> list[Table]:
    """The paper-style tables of ``paths``' results; written under ``out_dir`` when given (new, empty or earlier
    tables, unless ``force``)."""
    from ..outputs import claim_output_dir, mark_output
    from .confusion import read_line_passes
    from .harness import read_item_scores

    if out_dir is not None:
        claim_output_dir(out_dir, "compare", force=force)
    loaded = [load_results(p) for p in paths]
    if labels:
        if len(labels) != len(loaded):
            raise PivotuneError(f"--labels gives {len(labels)} names for {len(loaded)} runs.")
        loaded = [(l, r) for l, (_, r) in zip(labels, loaded)]
    runs = dict(loaded)
    if len(runs) != len(loaded):
        raise PivotuneError("two runs have the same label; give distinct ones with --labels.")
    items = {label: read_item_scores(results_dir(p)) for (label, _), p in zip(loaded, paths)}
    line_items = None
    if baseline is not None:   # Table 4's intervals: each logged response judged again (the toy world: by script)
        line_items = {label: read_line_passes(results_dir(p), res) for (label, res), p in zip(loaded, paths)}
    tables = build_tables(runs, baseline, win_lose_skip, items, line_items)
    if out_dir is not None:
        write_tables(tables, mark_output(out_dir, "compare"))
    return tables


def _cmd_compare(args) -> int:
    from ..languages import CLI_HATCH, check_code, declared

    extra = declared(args.extra_languages, "--extra-languages")
    skip = tuple(check_code(lang, "--win-lose-skip", extra=extra, hatch=CLI_HATCH) for lang in args.win_lose_skip)
    tables = compare(args.runs, args.labels, args.baseline, args.out, skip, force=args.force)
    print(to_markdown(tables))
    if args.out:
        print(f"tables: {Path(args.out) / 'tables.md'}, tables.html, table_*.csv")
    return 0


def add_parser(sub) -> None:
    c = sub.add_parser("compare", help="paper-style tables (QA, accuracy, win/lose, language confusion, "
                                       "translation) from evaluated runs",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Read each RUN's results (RUN/eval/results.json, a directory holding "
                                   "results.json, or the file) and print Table 1 (EM/F1 per QA task and language "
                                   "with averages), Table 2 (accuracy), with --baseline Table 3 (cases a run "
                                   "wins or loses against the baseline: a 95 % paired bootstrap interval over the "
                                   "items, from the samples `pivotune eval` logs, excludes zero), Table 4 "
                                   "(language confusion: line and word pass rates and judged responses per task; "
                                   "with --baseline, each LPR difference with its 95 % interval) and Table 5 "
                                   "(translation: chrF++ and BLEU per FLORES direction), each where the runs "
                                   "have its scores. --out also writes Markdown, CSV and HTML.",
                       epilog="example:\n  pivotune compare runs/th-bactrian runs/th-xllama runs/th-prom "
                              "--baseline th-xllama --out reports/th")
    c.add_argument("runs", nargs="+", metavar="RUN", help="run directories or results files")
    c.add_argument("--labels", nargs="+", help="row names, one per RUN (default: the run directory names)")
    c.add_argument("--baseline", help="label of the run to count wins and losses against (Table 3) and to "
                                       "put each language-confusion difference against (Table 4)")
    c.add_argument("--out", help="directory for tables.md, tables.html and table_N.csv (new, empty or earlier "
                                 "tables)")
    c.add_argument("--force", action="store_true", help="write into --out even if it holds other files")
    c.add_argument("--win-lose-skip", nargs="+", default=[], metavar="LANG",
                   help="languages left out of the win/lose counts (e.g. en: the paper counts target languages)")
    add_extra_languages_option(c)
    c.set_defaults(func=_cmd_compare)
