"""PROM's hyper-parameter sweep (the paper's Table 4) in the study report.

``sweep.json`` (written by ``pivotune sweep``) holds one row per grid point (pivot layer n, label smoothing
α, λ = prom.lambda_en) with its per-seed toy scores, and optionally rows for reference (other methods). Every
number in the table and the finding is recomputed here from those per-seed scores; the summary fields the
file also carries are for readers of the JSON and are not trusted. The finding's differences (best setting
minus worst, best minus the reference) carry 95 % intervals (:mod:`.differences`), from the per-item scores
the runs beside ``sweep.json`` logged, or from the seeds alone where there are none.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PivotuneError
from ..io import read_json_object
from .collect import METRICS, fmt_mean_sd, mean_sd

SWEEP_FILE = "sweep.json"
METRIC_KEYS = tuple(key for key, _ in METRICS)


def point_stats(per_seed: list[dict], languages: list[str]) -> dict:
    """Mean and sd over seeds, in %: per (language, metric), per language (the mean of its three toy
    metrics) and over the target languages (``languages``, English excluded) — the sweep's single number."""
    langs = ["en", *languages]
    per_metric = {lang: {k: mean_sd([s[lang][k] for s in per_seed]) for k in METRIC_KEYS} for lang in langs}
    per_lang = {lang: mean_sd([sum(s[lang][k] for k in METRIC_KEYS) / len(METRIC_KEYS) for s in per_seed])
                for lang in langs}
    cells = len(languages) * len(METRIC_KEYS)
    targets = mean_sd([sum(s[lang][k] for lang in languages for k in METRIC_KEYS) / cells for s in per_seed])
    return {"mean": {lang: {k: v[0] for k, v in d.items()} for lang, d in per_metric.items()},
            "sd": {lang: {k: v[1] for k, v in d.items()} for lang, d in per_metric.items()},
            "language_mean": per_lang, "targets_mean": targets[0], "targets_sd": targets[1]}


def _check_row(path: Path, where: str, row, languages: list[str]) -> None:
    if not isinstance(row, dict):
        raise PivotuneError(f"{path}: {where} must be an object with the setting and its per-seed 'scores'.")
    for key in ("name", "method"):
        if not isinstance(row.get(key), str):
            raise PivotuneError(f"{path}: {where}.{key} must be a string.")
    scores = row.get("scores")
    if not isinstance(scores, list) or not scores:
        raise PivotuneError(f"{path}: {where}.scores must be a non-empty list (one headline per seed).")
    for i, s in enumerate(scores):
        for lang in ["en", *languages]:
            got = s.get(lang) if isinstance(s, dict) else None
            if not isinstance(got, dict) or not all(isinstance(got.get(k), (int, float)) for k in METRIC_KEYS):
                raise PivotuneError(f"{path}: {where}.scores[{i}].{lang} must map {', '.join(METRIC_KEYS)} to "
                                    "numbers (the toy headline scores in %).")


def read_sweep(path: str | Path) -> dict:
    """Read and check a ``sweep.json``; errors name the file and the field."""
    path = Path(path)
    obj = read_json_object(path)
    languages = obj.get("languages")
    if not isinstance(languages, list) or not languages or not all(isinstance(x, str) for x in languages):
        raise PivotuneError(f"{path}: field 'languages' must be a non-empty list of target language codes.")
    rows = obj.get("rows")
    if not isinstance(rows, list) or not rows:
        raise PivotuneError(f"{path}: field 'rows' must be a non-empty list (one row per grid point).")
    for i, row in enumerate(rows):
        _check_row(path, f"rows[{i}]", row, languages)
        for key in ("pivot_layer", "label_smoothing", "lambda_en"):
            if isinstance(row.get(key), bool) or not isinstance(row.get(key), (int, float)):
                raise PivotuneError(f"{path}: rows[{i}].{key} must be a number (the grid point's setting).")
    for i, ref in enumerate(reference_rows(obj)):
        _check_row(path, f"references[{i}]", ref, languages)
    return obj


def reference_rows(sweep: dict) -> list[dict]:
    """The rows trained beside the grid for reference (``references``; a sweep.json of an earlier pivotune
    holds at most one, ``reference``)."""
    if "references" in sweep:
        return list(sweep["references"] or [])
    return [sweep["reference"]] if sweep.get("reference") else []


def best_worst(sweep: dict) -> tuple[int, int, list[dict]]:
    """Indices of the grid rows with the highest targets mean (the first in grid order on a tie) and the
    lowest (the last on a tie, so that equal settings are two rows, not one), and every row's stats."""
    stats = [point_stats(r["scores"], sweep["languages"]) for r in sweep["rows"]]
    means = [s["targets_mean"] for s in stats]
    return means.index(max(means)), len(means) - 1 - means[::-1].index(min(means)), stats


def sweep_table(sweep: dict) -> tuple[list[str], list[list[str]], int]:
    """Header, rows and the best row's index: a row per grid point (then the reference, if any); a column per
    language with the mean of its three toy metrics, and the targets mean; mean ± sd over seeds, in %."""
    langs = ["en", *sweep["languages"]]
    best, _, stats = best_worst(sweep)
    header = ["method", "n", "α", "λ", *langs, "targets mean", "best"]
    rows = []
    for i, (r, s) in enumerate(zip(sweep["rows"], stats)):
        n = len(r["scores"])
        rows.append([r["method"], str(r["pivot_layer"]), f"{r['label_smoothing']:g}", f"{r['lambda_en']:g}",
                     *(fmt_mean_sd(*s["language_mean"][lang], n) for lang in langs), fmt_mean_sd(s["targets_mean"],
                                                                                  s["targets_sd"], n),
                     "best" if i == best else ""])
    for ref in reference_rows(sweep):
        s, n = point_stats(ref["scores"], sweep["languages"]), len(ref["scores"])
        rows.append([f"{ref['method']} (reference)", "–", "–", "–",
                     *(fmt_mean_sd(*s["language_mean"][lang], n) for lang in langs),
                     fmt_mean_sd(s["targets_mean"], s["targets_sd"], n), ""])
    return header, rows, best


def _setting(row: dict) -> str:
    return f"n={row['pivot_layer']}, α={row['label_smoothing']:g}, λ={row['lambda_en']:g}"


def sweep_items(folder: Path, sweep: dict) -> dict[str, list]:
    """``{row name: per seed {(lang, metric): {item id: score}} or None}`` from the run directories the rows
    name (``runs``), beside ``sweep.json`` in ``folder``."""
    from .collect import read_items

    rows = [*sweep["rows"], *reference_rows(sweep)]
    return {r["name"]: [read_items(folder / str(run)) for run in r.get("runs") or []] for r in rows}


def _difference(sweep: dict, items: dict, row: dict, other: dict):
    """``row`` minus ``other`` on the targets mean, with its interval (None where none can be had)."""
    from .collect import Study
    from .differences import difference, target_cases

    study = Study(scores={"a": row["scores"], "b": other["scores"]}, languages=["en", *sweep["languages"]],
                  items={"a": items.get(row["name"]) or [], "b": items.get(other["name"]) or []})
    return difference(study, "a", "b", target_cases(study))


def _decided(iv) -> str:
    from .differences import NO_INTERVAL

    if iv is None:
        return f"{NO_INTERVAL} (run --seeds 2 or more)"
    return "its 95 % interval excludes zero" if iv.sign else "its 95 % interval contains zero: not decided"


def sweep_finding(sweep: dict, label: str = "", items: dict | None = None) -> str:
    """One sentence: the best setting, its margin over the worst with the margin's 95 % interval, and the
    best setting against the reference row (if any) with its interval. ``items``: :func:`sweep_items`."""
    from .differences import fmt

    items = items or {}
    best, worst, stats = best_worst(sweep)
    rows = sweep["rows"]
    b, w = stats[best], stats[worst]
    seeds = min(len(rows[best]["scores"]), len(rows[worst]["scores"]))
    head = f"Sweep{f' {label}' if label else ''} ({rows[best]['method']}, {len(rows)} setting(s), {seeds} seed(s)): "
    if len(rows) == 1:
        return head + f"one setting only ({_setting(rows[0])}, targets mean {b['targets_mean']:.1f}); no margin."
    margin = _difference(sweep, items, rows[best], rows[worst])
    out = (head + f"best {_setting(rows[best])} with targets mean "
           f"{fmt_mean_sd(b['targets_mean'], b['targets_sd'], seeds)}, "
           f"{b['targets_mean'] - w['targets_mean']:.1f} points above the worst ({_setting(rows[worst])}, "
           f"{fmt_mean_sd(w['targets_mean'], w['targets_sd'], seeds)}); best minus worst {fmt(margin)}: "
           f"{_decided(margin)}.")
    for ref in reference_rows(sweep):
        r = point_stats(ref["scores"], sweep["languages"])
        d = _difference(sweep, items, rows[best], ref)
        out += (f" The {ref['method']} reference scores {r['targets_mean']:.1f}; best setting minus reference "
                f"{fmt(d)}: {_decided(d)}.")
    return out


def sweep_blocks(sweeps: dict[str, dict], items: dict[str, dict] | None = None) -> list[tuple]:
    """The report section: a Table-4-style table and the finding per sweep (``{label: sweep}``; ``items``:
    ``{label: sweep_items(...)}``)."""
    if not sweeps:
        return []
    blocks: list[tuple] = [("h2", "Hyper-parameter sweep (Table 4)")]
    for label, sweep in sweeps.items():
        header, rows, _ = sweep_table(sweep)
        if len(sweeps) > 1:
            blocks.append(("h3", label))
        reg = ("regulated: λ is prom.lambda_en, and the logit-lens probe sets λ_t = 0 for a language without an "
               "English pivot at layer n" if sweep.get("regulation", True) else
               "not regulated: λ applies to every language")
        blocks += [("p", f"Columns per language: the mean of toy-MGSM acc, toy-XQuAD EM and F1, mean ± sd over "
                         f"seeds, in %; targets mean over {', '.join(sweep['languages'])}. n is the pivot layer, "
                         f"α the pivot term's label smoothing, λ its weight ({reg})."),
                   ("table", header, rows), ("p", sweep_finding(sweep, label if len(sweeps) > 1 else "", (items or {}).get(label)))]
    return blocks
