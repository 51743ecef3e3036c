"""The report's differences carry 95 % intervals from the per-item scores the demo's evaluations log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pivotune.report import write_report
from pivotune.report.collect import cases, read_inputs
from pivotune.report.differences import difference, difference_table, win_lose
from pivotune.report.findings import findings
from pivotune.report.stats import paired_bootstrap

LANGS = ["el", "th"]
N = 100


def _items(correct: int, seed: int) -> dict[str, list[float]]:
    """Per-item scores in [0, 1] for one language: the first ``correct`` items right (F1 a little noisy)."""
    rng = np.random.default_rng(seed)
    hit = [1.0 if i < correct else 0.0 for i in range(N)]
    return {"accuracy": hit, "exact_match": hit,
            "f1": [h if h else round(float(rng.random()) * 0.5, 3) for h in hit]}


def make_item_demo(root: Path, correct: dict[str, list[int]]) -> Path:
    """A demo directory whose runs logged their harness samples: ``correct[method][seed]`` items right in every
    language and task; the headline scores are those items' means, as the demo writes them."""
    root.mkdir(parents=True)
    scores = {}
    for m, per_seed in correct.items():
        scores[m] = []
        for seed, k in enumerate(per_seed):
            run = root / f"{m}-seed{seed}"
            (run / "samples").mkdir(parents=True)
            (run / "config.yaml").write_text(f"method: {m}\n")
            (run / "eval.json").write_text("{}")
            headline = {}
            for lang in ["en", *LANGS]:
                vals = _items(k, seed)
                for task, metrics in (("mgsm", ["accuracy"]), ("xquad", ["exact_match", "f1"])):
                    rows = [{"doc_id": i, "doc": {"id": f"toy-{task}-{i:04d}"}, "filter": "none", "metrics": metrics,
                             **{x: vals[x][i] for x in metrics}} for i in range(N)]
                    (run / "samples" / f"pivotune_toy_{task}_{lang}.jsonl").write_text(
                        "".join(json.dumps(r) + "\n" for r in rows))
                headline[lang] = {"mgsm": 100 * np.mean(vals["accuracy"]),
                                  "xquad_em": 100 * np.mean(vals["exact_match"]),
                                  "xquad_f1": 100 * np.mean(vals["f1"])}
            scores[m].append(headline)
    (root / "results.json").write_text(json.dumps({
        "world": {"well_represented": "el", "under_represented": "th"}, "languages": LANGS,
        "methods": list(scores), "seeds": max(map(len, correct.values())), "scores": scores}))
    return root


def _claim3(items: list[str]) -> str:
    return next(x for x in items if x.startswith("Claim 3"))


def test_one_point_on_one_seed_is_undecided(tmp_path):
    """The listed bug: one seed, prom one item ahead of xllama in every case (+1 point on 100 items). The old
    rule counted six wins (the spread over one seed is zero); the paired interval contains zero."""
    study = read_inputs([make_item_demo(tmp_path / "d", {"xllama": [40], "prom": [41]})])
    wl = win_lose(study, "prom", "xllama")
    assert (len(wl.wins), len(wl.losses), len(wl.undecided)) == (0, 0, 6)
    assert wl.intervals[("el", "mgsm")].fmt() == "+1.0 [+0.0, +3.0]"
    assert ": not decided — difference on the target-language mean +1." in _claim3(findings(study, "xllama"))
    assert "paired over items (100 per case), one seed" in _claim3(findings(study, "xllama"))


def test_clear_difference_on_one_seed_is_decided(tmp_path):
    """Twenty items ahead of 100 in every case is a win everywhere, and claim 3 is reproduced."""
    study = read_inputs([make_item_demo(tmp_path / "d", {"xllama": [40], "prom": [60]})])
    wl = win_lose(study, "prom", "xllama")
    assert len(wl.wins) == 6 and wl.targets.low > 0
    assert ": reproduced — difference on the target-language mean +" in _claim3(findings(study, "xllama"))


def test_intervals_match_a_bootstrap_built_by_hand(tmp_path):
    """The table's cells are paired_bootstrap on the items read straight from the sample files: one case on
    its own, and the targets mean with each task's items resampled together across languages and metrics."""
    demo = make_item_demo(tmp_path / "d", {"xllama": [40, 45], "prom": [50, 52], "english": [30, 35]})
    study = read_inputs([demo])

    def item_matrix(m, task, lang, metric):
        return [[json.loads(line)[metric] * 100 for line in
                 (demo / f"{m}-seed{s}" / "samples" / f"pivotune_toy_{task}_{lang}.jsonl").read_text().splitlines()]
                for s in range(2)]

    header, rows = difference_table(study, "xllama")
    assert header == ["language", "metric", "prom", "english"]
    one = paired_bootstrap([item_matrix("prom", "xquad", "th", "f1")], [item_matrix("xllama", "xquad", "th", "f1")])
    row = next(r for r in rows if r[:2] == ["th", "toy-XQuAD F1"])
    assert row[2] == one.fmt() + (" (win)" if one.sign > 0 else "")
    spec = [(task, lang, metric) for lang in LANGS for task, metric in
            (("mgsm", "accuracy"), ("xquad", "exact_match"), ("xquad", "f1"))]
    targets = paired_bootstrap([item_matrix("english", *s) for s in spec], [item_matrix("xllama", *s) for s in spec],
                               pools=[task for task, _, _ in spec])
    assert rows[-1][:2] == ["targets", "mean"] and rows[-1][3] == targets.fmt()
    assert win_lose(study, "english", "xllama").targets == targets


def test_page_prints_every_difference_with_its_interval(tmp_path):
    """The study page has the differences table (every case and the targets mean) and the win/lose counts."""
    demo = make_item_demo(tmp_path / "d", {"xllama": [40], "prom": [60]})
    md = write_report([demo], tmp_path / "r").with_suffix(".md").read_text(encoding="utf-8")
    assert "### Differences against xllama (95 % intervals)" in md
    assert "| el | toy-MGSM acc | +20.0 [" in md and "] (win) |" in md and "| targets | mean | +" in md
    assert "| prom | 6 | 0 | 0 | 6 |" in md
    assert ("Claim 3 (PROM beats t+e on the target languages): reproduced — difference on the target-language "
            "mean") in md


@pytest.mark.parametrize("seeds", [1, 2])
def test_without_items_one_seed_decides_nothing(tmp_path, seeds):
    """No per-item scores: with one seed there is no interval ('–', not decided), with two the seeds give one."""
    demo = make_item_demo(tmp_path / "d", {"xllama": [40] * seeds, "prom": [70] * seeds})
    for run in demo.glob("*-seed*"):
        for f in (run / "samples").iterdir():
            f.unlink()
    study = read_inputs([demo])
    wl = win_lose(study, "prom", "xllama")
    if seeds == 1:
        assert wl.targets is None and len(wl.undecided) == 6
        assert "not decided (no interval: one seed and no per-item scores" in _claim3(findings(study, "xllama"))
        assert difference_table(study, "xllama")[1][-1] == ["targets", "mean", "–"]
    else:
        assert wl.targets.sign == 1 and len(wl.wins) == 6
        assert "over seeds (2), no per-item scores" in _claim3(findings(study, "xllama"))


@pytest.mark.parametrize("target, none, verdict", [
    (60, 30, "holds on every target language (each interval above zero)"),
    (40, 41, "not decided on el, th"),
    (20, 60, "FAILS on el, th: target data hurt there"),
])
def test_positive_control_is_decided_by_its_intervals(tmp_path, target, none, verdict):
    """bactrian minus english per target language, with the paired interval the other differences use; the
    verdict follows the intervals' signs."""
    study = read_inputs([make_item_demo(tmp_path / "d", {"english": [none], "bactrian": [target]})])
    line = next(x for x in findings(study, "xllama") if x.startswith("Positive control"))
    el = [c for c in cases(study) if c[0] == "el"]
    assert f"el {difference(study, 'bactrian', 'english', el).fmt()}" in line and verdict in line
