"""Paper-style tables: case recognition, averages, win/lose counting, the three output formats."""

from __future__ import annotations

import csv
import io
import json
import random
import statistics

import pytest

from pivotune.errors import PivotuneError
from pivotune.eval import compare
from pivotune.eval.registry import Case, case_of, headline_scores


def _qa(em, f1):
    return {"exact_match,none": em, "exact_match_stderr,none": 0.01, "f1,none": f1, "f1_stderr,none": 0.01}


def _mgsm(acc):
    return {"exact_match,strict-match": 0.0, "exact_match,flexible-extract": acc}


def test_cases_and_headline_metrics():
    assert case_of("pivotune_xquad_th") == Case("XQuAD", "th", "qa") == case_of("xquad_th")
    assert case_of("mlqa_ar_ar") == Case("MLQA", "ar", "qa") == case_of("pivotune_mlqa_ar")
    assert case_of("pivotune_indicqa_ta") == Case("IndicQA", "ta", "qa")
    assert case_of("mgsm_native_cot_sw") == Case("MGSM", "sw", "acc") == case_of("mgsm_direct_sw")
    assert case_of("pivotune_toy_mgsm_el") == Case("toy-MGSM", "el", "acc")
    assert case_of("hellaswag") == Case("HellaSwag", "en", "acc")    # English retention: language-less names
    assert case_of("belebele_tha_Thai") == Case("Belebele", "tha_Thai", "acc")
    assert case_of("global_mmlu_full_el_stem") is None and case_of("wikitext") is None
    assert headline_scores("xquad_th", _qa(0.25, 0.5)) == {"em": 25.0, "f1": 50.0}
    assert headline_scores("mgsm_direct_th", _mgsm(0.04)) == {"acc": 4.0}   # flexible-extract, not strict
    assert headline_scores("pivotune_toy_mgsm_el", {"accuracy,none": 0.5}) == {"acc": 50.0}
    assert headline_scores("xquad_th", {"f1,none": 0.5}) is None


def _run(items: dict[str, list[tuple]]) -> tuple[dict, dict]:
    """(harness results, per-item headline scores) from each task's per-item (em, f1) or (acc,) scores in %."""
    results, per_item = {}, {}
    for task, vals in items.items():
        keys = ("acc",) if task.startswith("mgsm") else ("em", "f1")
        per_item[task] = {f"q{i}": dict(zip(keys, v)) for i, v in enumerate(vals)}
        means = [statistics.fmean(v[k] for v in vals) / 100 for k in range(len(keys))]
        results[task] = _mgsm(means[0]) if keys == ("acc",) else _qa(*means)
    return {"results": results}, per_item


def test_win_lose_counts_only_intervals_that_exclude_zero():
    """Table 3 from per-item scores: a case is won when a metric's paired interval lies above zero and none
    below; one item answered better of 60, mixed metrics, identical runs and cases without items decide
    nothing (the old rule counted any higher mean as a win)."""
    n = 60
    base = {"pivotune_xquad_th": [(0, 0)] * n, "mgsm_native_cot_sw": [(0,)] * 40 + [(100,)] * 20,
            "pivotune_xquad_ar": [(100, 100)] * 40 + [(0, 0)] * 20, "pivotune_mlqa_ar": [(0, 100)] * n,
            "mgsm_native_cot_th": [(100,)] * 30 + [(0,)] * 30, "pivotune_indicqa_ta": [(50, 50)] * n}
    mine = dict(base)
    mine["pivotune_xquad_th"] = [(100, 100)] * 30 + [(0, 0)] * 30          # +50 points: a win
    mine["mgsm_native_cot_sw"] = [(100,)] * 1 + base["mgsm_native_cot_sw"][1:]   # +1.7 points on one item: neither
    mine["pivotune_xquad_ar"] = [(0, 0)] * n                               # -66.7 points: a loss
    mine["pivotune_mlqa_ar"] = [(100, 0)] * n                              # EM up, F1 down: neither
    runs, items = {}, {}
    for label, scores in (("base", base), ("a", mine)):
        runs[label], items[label] = _run(scores)
    del items["a"]["pivotune_indicqa_ta"]                                  # no per-item scores: counted apart
    table3 = compare.build_tables(runs, baseline="base", items=items)[-1]
    assert table3.header == ["run", "wins", "losses", "neither", "no items", "cases"]
    assert table3.rows == [["a", 1, 1, 4, 1, 6]]
    assert compare.build_tables(runs, baseline="base")[-1].rows == [["a", 0, 0, 6, 6, 6]]   # no items at all
    # leaving a language out of the win/lose counts drops exactly its cases (th: the win)
    skipped = compare.build_tables(runs, baseline="base", win_lose_skip=("th",), items=items)[-1]
    assert skipped.rows == [["a", 0, 1, 3, 1, 4]]


def test_case_sign_matches_each_metrics_interval():
    """case_sign is the rule applied to each metric's own interval, on random per-item scores."""
    from pivotune.report.stats import paired_bootstrap

    rng = random.Random(0)
    for _ in range(20):
        mine = {f"q{i}": {"em": 100.0 * (rng.random() < 0.5), "f1": 100 * rng.random()} for i in range(30)}
        base = {f"q{i}": {"em": 100.0 * (rng.random() < 0.4), "f1": 100 * rng.random()} for i in range(30)}
        ids = sorted(mine)   # the items in id order, as case_sign takes them
        signs = {k: paired_bootstrap([[mine[i][k] for i in ids]], [[base[i][k] for i in ids]]).sign
                 for k in ("em", "f1")}
        expected = 1 if 1 in signs.values() and -1 not in signs.values() else \
            -1 if -1 in signs.values() and 1 not in signs.values() else 0
        assert compare.case_sign(mine, base) == expected


def test_tables_averages_and_missing_cells():
    runs = {"x": {"results": {"pivotune_xquad_th": _qa(0.1, 0.3), "pivotune_indicqa_ta": _qa(0.2, 0.4),
                              "mgsm_native_cot_th": _mgsm(0.05), "mgsm_native_cot_sw": _mgsm(0.01)}},
            "y": {"results": {"pivotune_xquad_th": _qa(0.3, 0.6), "mgsm_native_cot_th": _mgsm(0.02)}}}
    qa, acc = compare.build_tables(runs)
    assert qa.header == ["run", "IndicQA ta EM", "IndicQA ta F1", "XQuAD th EM", "XQuAD th F1", "avg EM", "avg F1"]
    assert qa.rows[0][-2:] == pytest.approx([statistics.fmean([10, 20]), statistics.fmean([30, 40])])
    assert qa.rows[1][1:3] == [None, None] and qa.rows[1][-2:] == pytest.approx([30, 60])
    assert acc.rows[0][-1] == pytest.approx(3.0) and acc.cells()[1] == ["y", "–", "2.0", "2.0"]   # columns: MGSM sw, th
    with pytest.raises(PivotuneError, match="baseline 'z' is not one of the runs"):
        compare.build_tables(runs, baseline="z")


def test_outputs_and_loading(tmp_path):
    (tmp_path / "r1" / "eval").mkdir(parents=True)
    (tmp_path / "r1" / "eval" / "results.json").write_text(json.dumps(
        {"results": {"pivotune_xquad_th": _qa(0.1, 0.2)}}))
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "results.json").write_text(json.dumps({"results": {"pivotune_xquad_th": _qa(0.2, 0.2)}}))
    tables = compare.compare([str(tmp_path / "r1"), str(tmp_path / "r2")], labels=["<b>", "r2"],
                             baseline="<b>", out_dir=tmp_path / "out")
    md = (tmp_path / "out" / "tables.md").read_text()
    # r2's EM is 10 points higher, but nothing logged its items: no interval, so neither a win nor a loss
    assert "| <b> | 10.0 | 20.0 | 10.0 | 20.0 |" in md and "| r2 | 0 | 0 | 1 | 1 | 1 |" in md
    page = (tmp_path / "out" / "tables.html").read_text()
    assert "&lt;b&gt;" in page and "<b>" not in page and page.count("<table>") == 2
    rows = list(csv.reader(io.StringIO((tmp_path / "out" / "table_1.csv").read_text())))
    assert rows[1] == ["<b>", "10.0", "20.0", "10.0", "20.0"]
    assert compare.load_results(tmp_path / "r1")[0] == "r1"
    assert tables[-1].rows == [["r2", 0, 0, 1, 1, 1]]
    # with the samples the harness logs (RUN/eval/samples, DIR/samples) the items pair up by their ids
    for folder, em in ((tmp_path / "r1" / "eval" / "samples", 0.0), (tmp_path / "r2" / "samples", 1.0)):
        folder.mkdir()
        (folder / "pivotune_xquad_th.jsonl").write_text("".join(json.dumps(
            {"doc_id": i, "doc": {"id": f"x{i}"}, "filter": "none", "metrics": ["exact_match", "f1"],
             "exact_match": em if i < 20 else 0.0, "f1": 0.2}) + "\n" for i in range(40)))
    assert compare.compare([str(tmp_path / "r1"), str(tmp_path / "r2")], labels=["<b>", "r2"],
                           baseline="<b>")[-1].rows == [["r2", 1, 0, 0, 0, 1]]

    with pytest.raises(PivotuneError, match="no results found"):
        compare.load_results(tmp_path / "r3")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PivotuneError, match="bad.json: not valid JSON"):
        compare.load_results(tmp_path / "bad.json")
    with pytest.raises(PivotuneError, match="same label"):
        compare.compare([str(tmp_path / "r1"), str(tmp_path / "r1")])


def test_item_scores_keep_ids_merge_filters_and_name_bad_lines(tmp_path):
    """Items are keyed by the document's own id (else its index); an item's filter rows merge into its headline
    score (MGSM: flexible-extract); a malformed line is an error naming the file and line."""
    from pivotune.eval.harness import read_item_scores

    (tmp_path / "samples").mkdir()
    rows = [{"doc_id": i, "doc": {"question": "q"}, "filter": f, "metrics": ["exact_match"],
             "exact_match": float(f == "flexible-extract" and i == 1)}
            for i in range(2) for f in ("strict-match", "flexible-extract")]
    rows += [{"doc_id": 0, "doc": {"id": "x-7"}, "filter": "none", "metrics": ["exact_match", "f1"],
              "exact_match": 1.0, "f1": 0.5}]
    (tmp_path / "samples" / "mgsm_native_cot_th.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (tmp_path / "samples" / "pivotune_xquad_th.jsonl").write_text(json.dumps(rows[4]) + "\n")
    assert read_item_scores(tmp_path) == {"mgsm_native_cot_th": {"0": {"acc": 0.0}, "1": {"acc": 100.0}},
                                          "pivotune_xquad_th": {"x-7": {"em": 100.0, "f1": 50.0}}}
    assert read_item_scores(tmp_path / "nothing") == {}
    (tmp_path / "samples" / "pivotune_xquad_th.jsonl").write_text(json.dumps(rows[4]) + "\n{\"doc_id\": 1}\n")
    with pytest.raises(PivotuneError, match=r"pivotune_xquad_th.jsonl, line 2: not a harness sample record"):
        read_item_scores(tmp_path)


def test_confusion_and_translation_tables_from_results_files(tmp_path):
    """Tables 4 and 5 join compare's output when the runs have their scores: the CSV cells are the results
    files' numbers (rates in %, judged counts, chrF++/BLEU as sacrebleu gave them), a blank where absent."""
    files = {"r1": {"pivotune_toy_flores_en-el": {"chrf++,none": 41.25, "bleu,none": 12.5,
                                                  "line_pass_rate,none": 0.75, "word_pass_rate,none": 1.0,
                                                  "confusion_judged,none": 24.0},
                    "pivotune_toy_xquad_th": {**_qa(0.1, 0.2), "line_pass_rate,none": 0.5,
                                              "word_pass_rate,none": 0.25, "confusion_judged,none": 20.0}},
             "r2": {"pivotune_toy_flores_en-el": {"chrf++,none": 50.0, "bleu,none": 20.0,
                                                  "line_pass_rate,none": 1.0, "confusion_judged,none": 24.0}}}
    for label, results in files.items():
        (tmp_path / label).mkdir()
        (tmp_path / label / "results.json").write_text(json.dumps({"results": results}))
    tables = compare.compare([str(tmp_path / "r1"), str(tmp_path / "r2")], out_dir=tmp_path / "out")
    assert [t.title.split(":")[0] for t in tables] == ["Table 1", "Table 4", "Table 5"]
    t4 = list(csv.reader(io.StringIO((tmp_path / "out" / "table_4.csv").read_text())))
    assert t4 == [["run", "task", "LPR", "WPR", "judged"],
                  ["r1", "toy-FLORES en→el", "75.0", "100.0", "24"], ["r2", "toy-FLORES en→el", "100.0", "", "24"],
                  ["r1", "toy-XQuAD th", "50.0", "25.0", "20"]]
    t5 = list(csv.reader(io.StringIO((tmp_path / "out" / "table_5.csv").read_text())))
    assert t5 == [["run", "toy-en→el chrF++", "toy-en→el BLEU"], ["r1", "41.25", "12.5"], ["r2", "50.0", "20.0"]]
    md = (tmp_path / "out" / "tables.md").read_text()
    assert "### Table 4: language confusion" in md and "| r2 | toy-FLORES en→el | 100.0 | – | 24 |" in md
