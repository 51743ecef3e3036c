"""`pivotune demo --quick` end to end, on the session's quick world (already built in its cache)."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml

from pivotune.cli import main
from pivotune.config import load_config
from pivotune.toy import parallel
from pivotune.toy.demo import DemoPlan, run_config


def test_demo_run_config_validates_and_names_real_files(quick_paths, tmp_path):
    raw = run_config(quick_paths, "xllama", ["el", "th"], 0, tmp_path / "r", DemoPlan.for_world(quick=True))
    cfg = load_config(base=raw)
    assert {(d.role, d.lang) for d in cfg.data} == {("en", "en"), ("tgt", "el"), ("mt", "el"),
                                                    ("tgt", "th"), ("mt", "th")}
    assert all((quick_paths.world / d.path).exists() for d in cfg.data)


def test_quick_demo_end_to_end(quick_paths, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIVOTUNE_CACHE", str(quick_paths.root.parent.parent))
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)   # each of the two workers: one torch thread
    out = out_dir = tmp_path / "demo"
    code = main(["demo", "--quick", "--methods", "english", "xllama", "prom", "--languages", "el",
                 "--out", str(out), "--jobs", "2"])   # two runs side by side, in worker processes
    assert code == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["methods"] == ["english", "xllama", "prom"] and summary["languages"] == ["el"]
    for method in ("english", "xllama", "prom"):
        (scores,) = summary["scores"][method]
        assert set(scores) == {"en", "el"}
        for lang in ("en", "el"):
            assert all(0.0 <= scores[lang][k] <= 100.0 for k in ("mgsm", "xquad_em", "xquad_f1"))
        run = out / f"{method}-seed0"
        assert (run / "model" / "model.safetensors").exists() and (run / "eval.json").exists()
        assert yaml.safe_load((run / "config.yaml").read_text())["method"] == method
    # PROM probed the base model on the world's word pairs and decided λ for el from it
    regulation = json.loads((out / "prom-seed0" / "regulation.json").read_text())
    assert set(regulation["lambda_per_language"]) == {"el"}
    assert (out / "prom-seed0" / "probe" / "lens_el.png").exists()
    # on the cloze of the world's known facts in el: no English word in its prompts
    assert json.loads((out / "prom-seed0" / "probe" / "probe.json").read_text())["task"] == "cloze"
    assert (out / "prom-seed0" / "pivot_head.safetensors").exists()
    table = (out / "results.md").read_text()
    assert "| el | toy-MGSM acc |" in table and "english" in table and "xllama" in table
    # evaluated through the harness (RUN/results.json), and the paper-style tables come from them
    for method in ("english", "xllama", "prom"):
        res = json.loads((out / f"{method}-seed0" / "results.json").read_text())
        mgsm = res["results"]["pivotune_toy_mgsm_el"]
        assert summary["scores"][method][0]["el"]["mgsm"] == pytest.approx(100 * mgsm["accuracy,none"])
    assert "## Paper-style tables" in table and (out / "tables" / "tables.html").exists()
    # language confusion on every generation and toy-FLORES both ways, per method, from the runs' harness results
    assert "### Table 4: language confusion" in table and "### Table 5: translation" in table
    header = next(line for line in table.splitlines() if line.startswith("| language | task | judged |"))
    column = [c.strip() for c in header.strip("|").split("|")].index("prom")
    res = json.loads((out / "prom-seed0" / "results.json").read_text())
    for task, row_start in (("pivotune_toy_mgsm_el", "| el | toy-MGSM |"), ("pivotune_toy_flores_el-en",
                                                                             "| en | toy-FLORES el→en |")):
        row = [c.strip() for c in next(line for line in table.splitlines() if line.startswith(row_start))
               .strip("|").split("|")]
        assert row[column].startswith(f"{100 * res['results'][task]['line_pass_rate,none']:.1f} / ")
        judged = [int(json.loads((out / f"{m}-seed0" / "results.json").read_text())["results"][task]
                      ["confusion_judged,none"]) for m in ("english", "xllama", "prom")]
        assert row[2] == (str(judged[0]) if len(set(judged)) == 1 else f"{min(judged)}–{max(judged)}")
    flores_row = next(line for line in table.splitlines() if line.startswith("| toy-FLORES en→el |"))
    chrf = res["results"]["pivotune_toy_flores_en-el"]["chrf++,none"]
    assert [c.strip() for c in flores_row.strip("|").split("|")][1 + ["english", "xllama", "prom"].index("prom")] \
        .startswith(f"{chrf:.1f} / ")
    page = (out / "report" / "report.md").read_text()
    assert "## Findings" in page and (out / "report" / "report.html").exists()
    assert "## Language confusion: line / word pass rate (%)" in page and "## Translation (toy-FLORES)" in page
    # the lens before training (once) and after each method, on PROM's regulation probe: the base probe equals it
    base_probe = json.loads((out / "probe-base" / "probe.json").read_text())
    regulation_probe = json.loads((out / "prom-seed0" / "probe" / "probe.json").read_text())
    assert base_probe["languages"]["el"]["p_en"]["mean"] == pytest.approx(
        regulation_probe["languages"]["el"]["p_en"]["mean"])
    for method in ("english", "xllama", "prom"):
        after = json.loads((out / f"{method}-seed0" / "probe-after" / "probe.json").read_text())
        assert after["pivot_layer"] == base_probe["pivot_layer"] and set(after["languages"]) == {"el"}
    assert "## Logit lens before and after training (Figures 1, 3, 4)" in page
    assert "](figures/lens_before_after_el.png)" in page and "After training, P(en) at layer" in page
    # claim 2's evidence: interference logged for prom and xllama (only), so the finding is measured
    for method in ("xllama", "prom"):
        log = json.loads((out / f"{method}-seed0" / "interference.json").read_text())
        assert [r["step"] for r in log["records"]] == [0, 15, 30, 45, 60]   # quick plan: 60 steps, every 15
    assert not (out / "english-seed0" / "interference.json").exists()
    # the loss per role and language, logged on the same road: in each run's run.json and drawn in the report
    for method in ("english", "xllama", "prom"):
        losses = json.loads((out / f"{method}-seed0" / "run.json").read_text())["losses"]
        assert losses["steps"] == list(range(6, 61, 6))   # every logging step, interference steps included
        assert ("tgt" in losses["role"]) == ("el" in losses["lang"]) == (method != "english")
    assert "## Training loss by role and language" in page
    assert (out / "report" / "figures" / "training_losses.png").exists()
    claim2 = next(line for line in page.splitlines() if "Claim 2" in line)
    if regulation["lambda_per_language"]["el"] > 0:
        assert "not measured" not in claim2 and "(prom, 5 points; xllama, 5 points;" in claim2
    else:   # no pivot in the quick world's tiny base: PROM's English rows carry no gradient to compare
        assert "every logged cosine of prom is undefined" in claim2
    # the console: one plain line per stage (not a terminal) naming method, seed and steps, then the tables;
    # the Trainer's dicts, the harness's bars and the libraries' logs are in OUT/demo.log only
    out, err = capsys.readouterr()
    assert "results:" in out and f"log: {out_dir / 'demo.log'}" in out
    for method in ("english", "xllama", "prom"):
        assert f"train      {method} seed 0 · 60 steps" in out and f"evaluate   {method} seed 0" in out
    assert "report" in out and "difference from xllama" in out and "Claim 3 (PROM beats t+e" in out
    assert "Language confusion: line / word pass rate (%)" in out and "Translation (toy-FLORES)" in out
    assert "Table 3: wins / losses" in out and "Table 4: language confusion" not in out   # per method above
    log = (out_dir / "demo.log").read_text(encoding="utf-8")
    for noise in ("{'loss'", "'loss': ", "Generating test split", "Running generate_until requests", "INFO lm_eval"):
        assert noise not in out + err
    assert re.search(r"train prom seed 0 step \d+/60: \{'loss'", log) and "Running generate_until requests: 100%" in log
    assert " lm_eval.evaluator: " in log
    # every evaluation item's scores, keyed by the world's item ids, for the paired intervals
    samples = (out_dir / "prom-seed0" / "samples" / "pivotune_toy_mgsm_el.jsonl").read_text().splitlines()
    assert json.loads(samples[0])["doc"]["id"] == "toy-mgsm-0000"
    # the workers logged into the study's log; a run in this process (--jobs 1) scores the same
    assert log.count("stage: train xllama seed 0 (60 steps)") == 1 and "runs done" in out
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as each worker had
    try:
        assert main(["demo", "--quick", "--methods", "english", "--languages", "el", "--out", str(tmp_path / "one"),
                     "--jobs", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    alone = json.loads((tmp_path / "one" / "results.json").read_text())["scores"]["english"]
    assert alone == summary["scores"]["english"]


def test_demo_rejects_unknown_language(tmp_path, capsys):
    assert main(["demo", "--quick", "--languages", "xx", "--out", str(tmp_path / "d")]) == 2
    assert "--languages: 'xx' is not one of the toy world's languages: el, th, ar" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_demo_with_seeds_reports_spreads(quick_paths, tmp_path, monkeypatch):
    """--seeds 2: each method trains twice (different seeds, different weights), and the report's cells are
    mean ± sd over the two seeds' harness scores."""
    import statistics

    monkeypatch.setenv("PIVOTUNE_CACHE", str(quick_paths.root.parent.parent))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--seeds", "2", "--methods", "xllama", "prom", "--languages", "el",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    md = (out / "report" / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| language | metric |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for method in ("xllama", "prom"):
        assert len(summary["scores"][method]) == 2
        a, b = ((out / f"{method}-seed{s}" / "model" / "model.safetensors").read_bytes() for s in (0, 1))
        assert a != b                                     # the seeds really differ
        for s in (0, 1):                                  # each seed's scores are its own harness run's
            res = json.loads((out / f"{method}-seed{s}" / "results.json").read_text())
            assert summary["scores"][method][s]["el"]["mgsm"] == pytest.approx(
                100 * res["results"]["pivotune_toy_mgsm_el"]["accuracy,none"])
        vals = [s["el"]["mgsm"] for s in summary["scores"][method]]
        row = next(line for line in md.splitlines() if line.startswith("| el | toy-MGSM acc |"))
        cell = [c.strip() for c in row.strip("|").split("|")][columns.index(method)]
        assert cell == f"{statistics.fmean(vals):.1f} ± {statistics.stdev(vals):.1f}"
    assert "over 2 seed(s)" in md
