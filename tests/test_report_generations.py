"""Language confusion and toy-FLORES per method in the report and the demo's tables: the cells are the runs'
harness results (mean ± sd over seeds), the LPR difference carries a paired interval over the responses."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from test_report import make_demo

from pivotune.eval import confusion
from pivotune.report import write_report
from pivotune.report.collect import read_inputs
from pivotune.report.generations import confusion_finding, confusion_table, lpr_difference, translation_table
from pivotune.toy.language import translate

N = 20
SENTENCE = "anna lives in rome ."
#: task -> the language its responses should be in
TASKS = {"pivotune_toy_mgsm_en": "en", "pivotune_toy_mgsm_el": "el", "pivotune_toy_mgsm_th": "th",
         "pivotune_toy_flores_en-el": "el", "pivotune_toy_flores_el-en": "en"}
#: responses in the expected language, per method and seed (of N; the rest in another toy language)
GOOD = {"xllama": [8, 10], "prom": [18, 19]}


def _response(lang: str, ok: bool) -> str:
    if ok:
        return SENTENCE if lang == "en" else translate(SENTENCE, "en", lang, 0)
    return translate(SENTENCE, "en", "el", 0) if lang == "en" else SENTENCE


def add_evaluations(demo: Path, with_samples: bool = True) -> Path:
    """Each run of a make_demo directory gets harness results (rates from confusion.annotate over its
    responses; chrF++/BLEU made up) and, ``with_samples``, the logged samples they came from."""
    for method, goods in GOOD.items():
        for seed, good in enumerate(goods):
            run = demo / f"{method}-seed{seed}"
            samples = {t: [{"doc_id": i, "doc": {"id": f"item-{i:02d}"}, "resps": [[_response(lang, i < good)]],
                            "metrics": [], "filter": "none"} for i in range(N)] for t, lang in TASKS.items()}
            res = {"results": {t: {} for t in TASKS}, "configs": {t: {"output_type": "generate_until"}
                                                                  for t in TASKS}}
            confusion.annotate(res, samples)
            for t in TASKS:
                if "flores" in t:
                    res["results"][t].update({"chrf++,none": 30.0 + good + seed, "bleu,none": 10.0 + good})
            (run / "results.json").write_text(json.dumps(res))
            if with_samples:
                (run / "samples").mkdir()
                for t, rows in samples.items():
                    (run / "samples" / f"{t}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return demo


def _file_values(demo: Path, method: str, task: str, key: str) -> list[float]:
    return [json.loads((demo / f"{method}-seed{s}" / "results.json").read_text())["results"][task][key]
            for s in range(2)]


def _cell(values: list[float]) -> str:
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def test_tables_are_the_runs_results_over_seeds(tmp_path):
    """Every confusion cell is LPR / WPR (%) from the runs' results files, mean ± sd over the two seeds, a row
    per expected language and task; every translation cell chrF++ / BLEU likewise."""
    demo = add_evaluations(make_demo(tmp_path / "demo"))
    study = read_inputs([demo])
    header, rows = confusion_table(study)
    assert header == ["language", "task", "judged", "xllama", "prom"]
    assert [r[:2] for r in rows] == [["en", "toy-FLORES el→en"], ["en", "toy-MGSM"], ["el", "toy-FLORES en→el"],
                                     ["el", "toy-MGSM"], ["th", "toy-MGSM"]]
    for row in rows:
        task = next(t for t, lang in TASKS.items() if lang == row[0] and confusion.task_label(t).startswith(
            row[1]))
        assert row[2] == str(N)
        for method in ("xllama", "prom"):
            lpr = [100 * v for v in _file_values(demo, method, task, "line_pass_rate,none")]
            wpr = [100 * v for v in _file_values(demo, method, task, "word_pass_rate,none")]
            assert row[header.index(method)] == f"{_cell(lpr)} / {_cell(wpr)}"
    t_header, t_rows = translation_table(study)
    assert t_header == ["direction", "xllama", "prom"]
    assert [r[0] for r in t_rows] == ["toy-FLORES en→el", "toy-FLORES el→en"]
    for row in t_rows:
        task = "pivotune_toy_flores_" + row[0].split()[-1].replace("→", "-")
        for method in ("xllama", "prom"):
            chrf, bleu = (_file_values(demo, method, task, k) for k in ("chrf++,none", "bleu,none"))
            assert row[t_header.index(method)] == f"{_cell(chrf)} / {_cell(bleu)}"


def test_lpr_difference_is_paired_over_responses_and_seeds(tmp_path):
    """The finding's means are the target tasks' LPRs averaged naively; prom's difference from xllama is the
    naive mean difference with an interval above zero, paired over the logged responses; without samples it
    falls back to the seeds, and a demo without harness results has neither table nor finding."""
    demo = add_evaluations(make_demo(tmp_path / "demo"))
    study = read_inputs([demo])
    targets = [t for t, lang in TASKS.items() if lang != "en"]
    naive = {m: statistics.fmean(100 * v for t in targets for v in _file_values(demo, m, t, "line_pass_rate,none"))
             for m in GOOD}
    iv, basis = lpr_difference(study, "prom", "xllama", sorted(targets))
    assert basis == "paired over the responses both judged"
    assert iv.diff == pytest.approx(naive["prom"] - naive["xllama"]) and iv.low > 0
    line = confusion_finding(study, "xllama")
    assert f"xllama {naive['xllama']:.1f}, prom {naive['prom']:.1f}" in line
    assert f"minus xllama, 95 % intervals (paired over the responses both judged): prom {iv.fmt()}." in line
    # a method with a target task no response of which was judged is named apart, not averaged over fewer tasks
    for seed in range(2):
        path = demo / f"prom-seed{seed}" / "results.json"
        res = json.loads(path.read_text())
        del res["results"]["pivotune_toy_mgsm_th"]["line_pass_rate,none"]
        path.write_text(json.dumps(res))
    line = confusion_finding(read_inputs([demo]), "xllama")
    assert line.endswith(f"xllama {naive['xllama']:.1f}; not measured for prom (a target task without a judged "
                         "response).")
    bare = read_inputs([add_evaluations(make_demo(tmp_path / "bare"), with_samples=False)])
    iv2, basis2 = lpr_difference(bare, "prom", "xllama", sorted(targets))
    assert basis2.startswith("over seeds") and iv2.diff == pytest.approx(iv.diff)
    old = read_inputs([make_demo(tmp_path / "old")])
    assert confusion_table(old) is None and translation_table(old) is None and confusion_finding(old, "xllama") is None


def test_report_page_shows_confusion_and_translation(tmp_path):
    """The page has both sections and both findings; without harness results it has neither."""
    demo = add_evaluations(make_demo(tmp_path / "demo"))
    write_report([demo], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Language confusion: line / word pass rate (%)" in md
    assert "| language | task | judged | xllama | prom |" in md
    assert "## Translation (toy-FLORES): chrF++ / BLEU" in md and "- Language confusion (line-level pass rate" in md
    assert "- Translation (toy-FLORES chrF++, mean over 2 direction(s) and the seeds)" in md
    write_report([make_demo(tmp_path / "old")], tmp_path / "old-report")
    assert "Language confusion" not in (tmp_path / "old-report" / "report.md").read_text(encoding="utf-8")


def test_report_of_evaluated_runs_has_tables_4_and_5_with_intervals(tmp_path):
    """Run directories evaluated by `pivotune eval` (eval/results.json, eval/samples/) get compare's Tables 4
    and 5 on the page, each LPR difference from the baseline run with its paired interval."""
    task, flores_task = "pivotune_toy_mgsm_el", "pivotune_toy_flores_en-el"
    for name, good in (("base", 5), ("mine", 20)):
        run = tmp_path / name
        (run / "eval" / "samples").mkdir(parents=True)
        (run / "config.yaml").write_text("method: xllama\n")
        samples = {t: [{"doc_id": i, "doc": {"id": f"i{i}"}, "resps": [[_response("el", i < good)]], "metrics": [],
                        "filter": "none"} for i in range(N)] for t in (task, flores_task)}
        res = {"results": {task: {"accuracy,none": 0.1}, flores_task: {"chrf++,none": 40.0, "bleu,none": 9.0}},
               "configs": {t: {"output_type": "generate_until"} for t in samples}}
        confusion.annotate(res, samples)
        (run / "eval" / "results.json").write_text(json.dumps(res))
        for t, rows in samples.items():
            (run / "eval" / "samples" / f"{t}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_report([tmp_path / "base", tmp_path / "mine"], tmp_path / "report", baseline="base")
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "### Table 4: language confusion, line / word pass rate (%)" in md and "### Table 5: translation" in md
    assert "| mine | toy-MGSM el | 100.0 | 100.0 | 20 | +75.0 [+" in md
