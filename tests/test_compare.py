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


def test_dominance_and_win_lose_against_brute_force():
    rng = random.Random(0)
    tasks = ["pivotune_xquad_th", "pivotune_xquad_ar", "pivotune_mlqa_ar", "pivotune_indicqa_ta",
             "mgsm_native_cot_sw", "mgsm_native_cot_th"]
    for _ in range(30):   # small integer grids make ties common
        runs = {}
        for label in ("base", "a", "b"):
            res = {}
            for t in tasks:
                res[t] = _mgsm(rng.randint(0, 2) / 10) if t.startswith("mgsm") else \
                    _qa(rng.randint(0, 2) / 10, rng.randint(0, 2) / 10)
            runs[label] = {"results": res}
        table3 = compare.build_tables(runs, baseline="base")[-1]
        for row in table3.rows:
            wins = losses = 0
            for t in tasks:
                mine, base = runs[row[0]]["results"][t], runs["base"]["results"][t]
                keys = [k for k in ("exact_match,none", "f1,none", "exact_match,flexible-extract") if k in mine]
                ge = all(mine[k] >= base[k] for k in keys)
                le = all(mine[k] <= base[k] for k in keys)
                diff = any(mine[k] != base[k] for k in keys)
                wins += ge and diff
                losses += le and diff
            assert row[1:] == [wins, losses, len(tasks) - wins - losses, len(tasks)]
        # leaving a language out of the win/lose counts drops exactly its cases
        skipped = compare.build_tables(runs, baseline="base", win_lose_skip=("ar",))[-1]
        n_ar = sum(case_of(t).lang == "ar" for t in tasks)
        assert all(r[4] == len(tasks) - n_ar for r in skipped.rows)


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
    assert "| <b> | 10.0 | 20.0 | 10.0 | 20.0 |" in md and "| r2 | 1 | 0 | 0 | 1 |" in md
    page = (tmp_path / "out" / "tables.html").read_text()
    assert "&lt;b&gt;" in page and "<b>" not in page and page.count("<table>") == 2
    rows = list(csv.reader(io.StringIO((tmp_path / "out" / "table_1.csv").read_text())))
    assert rows[1] == ["<b>", "10.0", "20.0", "10.0", "20.0"]
    assert compare.load_results(tmp_path / "r1")[0] == "r1"
    assert tables[-1].rows == [["r2", 1, 0, 0, 1]]

    with pytest.raises(PivotuneError, match="no results found"):
        compare.load_results(tmp_path / "r3")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PivotuneError, match="bad.json: not valid JSON"):
        compare.load_results(tmp_path / "bad.json")
    with pytest.raises(PivotuneError, match="same label"):
        compare.compare([str(tmp_path / "r1"), str(tmp_path / "r1")])
