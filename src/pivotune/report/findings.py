"""The report's findings: sentences computed from the numbers only, each difference with its 95 % interval
(:mod:`.differences`; language confusion and translation: :mod:`.generations`), and the study's three
claims, each "reproduced", "refuted" (its interval excludes zero the other way) or "not decided", or "not
measured" where the data are missing.
"""

from __future__ import annotations

import statistics

from .collect import (
    NO_TARGET_DATA,
    PROM,
    TARGET_DATA,
    TPLUSE,
    Study,
    _method_of,
    case_stats,
    cases,
    interference_points,
)
from .differences import (
    NO_INTERVAL,
    basis,
    difference,
    fmt,
    interference_difference,
    lens_gap,
    verdict,
    win_lose,
)
from .generations import confusion_finding, translation_finding


def findings(study: Study, baseline: str) -> list[str]:
    """Sentences derived from the numbers only; 'not measured' where the data are missing."""
    out: list[str] = []
    seeds = {m: len(v) for m, v in study.scores.items()}
    stats = case_stats(study) if study.scores else {}
    if stats and baseline in stats:
        for m in stats:
            if m == baseline:
                continue
            wl = win_lose(study, m, baseline)
            n = len(wl.intervals)
            out.append(f"{m} against {baseline} over {min(seeds[m], seeds[baseline])} seed(s): "
                       f"{len(wl.wins)} wins, {len(wl.losses)} losses, {len(wl.undecided)} undecided of {n} "
                       f"target cases (a win or loss only where the 95 % interval excludes zero); difference on "
                       f"the target-language mean {fmt(wl.targets)} points ({basis(study, m, baseline)}).")
    elif stats:
        out.append(f"Win/lose counts: not measured (baseline {baseline!r} is not among the methods "
                   f"{', '.join(stats)}).")
    for lang in study.languages if stats else []:
        lang_cases = [c for c in cases(study) if c[0] == lang]
        means = {m: statistics.fmean(s[c][0] for c in lang_cases) for m, s in stats.items()}
        if not lang_cases or not means:
            continue
        ranked = sorted(means.items(), key=lambda kv: -kv[1])
        line = f"Best on {lang} (mean of the metrics): {ranked[0][0]} at {ranked[0][1]:.1f}"
        if len(ranked) > 1:
            iv = difference(study, ranked[0][0], ranked[1][0], lang_cases)
            line += f", {fmt(iv)} points above {ranked[1][0]}" + (f" ({NO_INTERVAL})" if iv is None else "")
        out.append(line + ".")
    out += [f for f in (positive_control(study), confusion_finding(study, baseline), translation_finding(study)) if f]
    return out + claims(study)


def positive_control(study: Study) -> str | None:
    """Whether target-language data help at all (bactrian minus english on each target language's mean of the
    metrics, with its interval): if not, the world (or the run) cannot tell methods apart, whatever else holds.
    None where either method is missing."""
    if TARGET_DATA not in study.scores or NO_TARGET_DATA not in study.scores:
        return None
    parts, failed, undecided = [], [], []
    for lang in [x for x in study.languages if x != "en"]:
        iv = difference(study, TARGET_DATA, NO_TARGET_DATA, [c for c in cases(study) if c[0] == lang])
        parts.append(f"{lang} {fmt(iv)}")
        if iv is None or iv.sign == 0:
            undecided.append(lang)
        elif iv.sign < 0:
            failed.append(lang)
    if failed:
        verdict_text = (f"FAILS on {', '.join(failed)}: target data hurt there, so this world or run cannot "
                        "measure the methods")
    elif undecided:
        verdict_text = f"not decided on {', '.join(undecided)} (the interval contains zero or there is none)"
    else:
        verdict_text = "holds on every target language (each interval above zero)"
    return (f"Positive control ({TARGET_DATA} minus {NO_TARGET_DATA}, the mean of the metrics per target "
            f"language, points): {'; '.join(parts)} — {verdict_text}.")


def claims(study: Study) -> list[str]:
    return [_claim_lens(study), _claim_interference(study), _claim_scores(study)]


CLAIM1 = "Claim 1 (English pivot in the well-represented language, not in the under-represented one)"
CLAIM2 = "Claim 2 (lower gradient interference under PROM than t+e)"
CLAIM3 = "Claim 3 (PROM beats t+e on the target languages)"


def _claim_lens(study: Study) -> str:
    """Mean P(en) − P(target) at the pivot layer of the base model (each PROM run's regulation probe): above
    zero for the well-represented language and below it for the under-represented one."""
    w, u = study.well, study.under
    runs = [r for r in study.runs if r.regulation and "decisions" in r.regulation]
    if not runs or not w or not u or any(lang not in r.regulation["decisions"] for r in runs for lang in (w, u)):
        return (f"{CLAIM1}: not measured (no regulation decisions for "
                + (f"{w} and {u}" if w and u else "the world's languages") + ").")
    per_run = []
    for r in runs:
        layer = r.regulation.get("pivot_layer", (r.probe or {}).get("pivot_layer"))
        per_run.append((r, lens_gap(r.probe, w, layer), lens_gap(r.probe, u, layer)))
    if any(gw is None or gu is None for _, gw, gu in per_run):
        kept = [not r.regulation["decisions"][w].get("lambda_zero") for r in runs]
        dropped = [bool(r.regulation["decisions"][u].get("lambda_zero")) for r in runs]
        return (f"{CLAIM1}: not decided — the probe logged no spreads to put an interval on P(en) − P(target); "
                f"by the regulation's rule alone (λ = 0 where mean P(en) < mean P(target) at the pivot layer) it "
                f"kept λ > 0 for {w} in {sum(kept)} and set λ = 0 for {u} in {sum(dropped)} of {len(runs)} PROM "
                "run(s).")
    signs = [1 if gw.sign > 0 and gu.sign < 0 else -1 if gw.sign < 0 or gu.sign > 0 else 0 for _, gw, gu in per_run]
    sign = -1 if -1 in signs else 1 if all(s == 1 for s in signs) else 0
    run, gw, gu = per_run[0]
    return (f"{CLAIM1}: {verdict(sign)} — mean P(en) − P(target) at the pivot layer of the base model "
            f"{gw.fmt(3)} for {w} and {gu.fmt(3)} for {u} ({run.name}'s probe; normal 95 % interval with the "
            f"spread bounded by sd(P(en)) + sd(P(target)), as the probe logs spreads, not items); the claim holds "
            f"in {signs.count(1)} of {len(runs)} PROM run(s).")


def _claim_interference(study: Study) -> str:
    got = interference_difference(study, PROM, TPLUSE)
    if got is None:
        logged = {m: [r for r in study.runs if _method_of(r) == m and r.interference]
                  for m in (PROM, TPLUSE)}
        if all(logged.values()):   # logs exist, but every cosine in one method's is undefined
            empty = [m for m, runs in logged.items() if not any(interference_points(r) for r in runs)]
            return (f"{CLAIM2}: not measured — every logged cosine of {', '.join(empty)} is undefined (one side's "
                    "gradient is zero at the measured blocks: PROM's English rows carry none where the regulation "
                    "set λ = 0 for every target language).")
        return (f"{CLAIM2}: not measured (no interference logs for both {PROM} and {TPLUSE} runs; set "
                "interference.every > 0).")
    iv, n_prom, n_tpluse = got
    return (f"{CLAIM2}: {verdict(iv.sign)} — mean gradient cosine {PROM} minus {TPLUSE} {iv.fmt(4)} "
            f"({PROM}, {n_prom} points; {TPLUSE}, {n_tpluse} points; bootstrap over each method's seeds and "
            "logged steps); higher cosine means less interference.")


def _claim_scores(study: Study) -> str:
    if PROM not in study.scores or TPLUSE not in study.scores:
        return f"{CLAIM3}: not measured (scores for both {PROM} and {TPLUSE} are needed)."
    wl = win_lose(study, PROM, TPLUSE)
    if wl.targets is None:
        return f"{CLAIM3}: not decided ({NO_INTERVAL}; evaluate with per-item samples or run several seeds)."
    return (f"{CLAIM3}: {verdict(wl.targets.sign)} — difference on the target-language mean {wl.targets.fmt()} "
            f"points ({basis(study, PROM, TPLUSE)}); {len(wl.wins)} wins, {len(wl.losses)} losses, "
            f"{len(wl.undecided)} undecided against {TPLUSE}.")


__all__ = ["CLAIM1", "CLAIM2", "CLAIM3", "claims", "findings"]
