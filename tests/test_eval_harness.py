"""Evaluation through lm-evaluation-harness: preset names, our task variants' scoring against the
reference functions, IndicQA reading, clear errors, and an offline end-to-end run with a tiny model."""

from __future__ import annotations

import json

import pytest

from pivotune.cli import main
from pivotune.errors import DataError, PivotuneError
from pivotune.eval import compare, confusion, indicqa, registry, task_utils
from pivotune.eval.harness import read_item_scores
from pivotune.outputs import MARKER

mlqa = pytest.importorskip("lm_eval.tasks.mlqa.utils")


# -- the prom-paper preset ----------------------------------------------------------------------------

def test_prom_paper_preset_resolves_to_installed_harness_tasks():
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    names = [n for n in registry.PRESETS["prom-paper"] if not registry.indicqa_lang(n)]
    tm = registry.task_manager(names)
    registry.check_names(names, tm)
    for name in names:
        entry = tm.task_index[name]
        assert entry.kind == Kind.TASK, name
        cfg = load_yaml(entry.yaml_path, resolve_func=True)   # imports every !function it names
        assert cfg["task"] == name and cfg["output_type"] == "generate_until"
    # our XQuAD variants: the harness's data and prompts, only the scoring function differs
    builtin = registry.harness_dir() / "xquad"
    for lang in ("th", "ar", "el"):
        ours = load_yaml(tm.task_index[f"pivotune_xquad_{lang}"].yaml_path, resolve_func=True)
        theirs = load_yaml(builtin / f"xquad_{lang}.yaml", resolve_func=False)
        for key in ("dataset_path", "dataset_name", "doc_to_text", "doc_to_target", "metric_list"):
            assert ours[key] == theirs[key], (lang, key)
        assert ours["process_results"] is task_utils.xquad_results
    mlqa_cfg = load_yaml(tm.task_index["pivotune_mlqa_ar"].yaml_path, resolve_func=True)
    assert mlqa_cfg["process_results"] is mlqa.process_results_ar
    assert mlqa_cfg["dataset_name"] == "mlqa.ar.ar"
    assert {registry.indicqa_lang(n) for n in registry.PRESETS["prom-paper"]} - {None} == {"ta", "mr", "ml"}
    assert sum(1 for n in registry.PRESETS["prom-paper"] if registry.case_of(n)) == 11   # Table 3's cases


# -- scoring: our variants against the reference functions -----------------------------------------

SHARED = [("The cat sat.", "a cat sat down"), ("Rome", "rome"), ("in rome, italy", "rome"),
          ("an apple an apple", "apple"), ("baker!", "the baker"), ("red blue red", "red red green"),
          ("x y z", "a b c"), ("  Rome  ", "Rome")]


def test_xquad_variant_scores_like_squad_reference():
    # SQuAD's normalisation is MLQA's English rules on ASCII text; the cases with tokens are shared.
    for pred, gold in SHARED:
        got = task_utils.xquad_results({"answers": {"text": [gold, "ignored second gold"]}}, [pred])
        assert got["f1"] == pytest.approx(mlqa.f1_score(pred, gold, "en")), (pred, gold)
        assert got["exact_match"] == float(mlqa.exact_match_score(pred, gold, "en")), (pred, gold)
    # SQuAD v2's convention where a side is empty: both empty match, one empty misses
    assert task_utils.xquad_results({"answers": {"text": ["the"]}}, [""]) == {"exact_match": 1.0, "f1": 1.0}
    assert task_utils.xquad_results({"answers": {"text": ["rome"]}}, [""]) == {"exact_match": 0.0, "f1": 0.0}
    # English articles go in every language, as in the harness's XQuAD; Thai stays one token
    assert task_utils.xquad_results({"answers": {"text": ["กรุงเทพ"]}}, ["the กรุงเทพ"])["exact_match"] == 1.0


INDIC = [("சென்னை நகரம்।", "சென்னை நகரம்"), ("मुंबई", "मुंबई शहर"), ("തിരുവനന്തപുരം, കേരളം", "കേരളം"),
         ("पुणे आणि मुंबई", "नागपूर")]


def test_indicqa_scores_like_mlqa_reference():
    for pred, gold in INDIC:
        got = task_utils.indicqa_scores(pred, [gold])
        assert got["f1"] == pytest.approx(mlqa.f1_score(pred, gold, "hi")), (pred, gold)
        assert got["exact_match"] == float(mlqa.exact_match_score(pred, gold, "hi"))
    # hand-worked: the danda is punctuation; 1 shared token of 2 predicted / 1 gold -> F1 2/3
    assert task_utils.indicqa_scores("சென்னை நகரம்।", ["சென்னை நகரம்"])["exact_match"] == 1.0
    assert task_utils.indicqa_scores("मुंबई शहर", ["मुंबई"])["f1"] == pytest.approx(2 / 3)
    # max over golds; unanswerable items (no non-empty gold) need an empty prediction
    assert task_utils.indicqa_scores("नागपूर", ["पुणे", "नागपूर"])["exact_match"] == 1.0
    assert task_utils.indicqa_scores("", [""]) == {"exact_match": 1.0, "f1": 1.0}
    assert task_utils.indicqa_scores(" । ", []) == {"exact_match": 1.0, "f1": 1.0}
    assert task_utils.indicqa_scores("पुणे", [""]) == {"exact_match": 0.0, "f1": 0.0}


def test_toy_task_scoring_matches_toy_scorer():
    from pivotune.eval.toy_scoring import score

    rows = [{"answers": {"text": ["rome"]}, "lang": "en"}, {"answers": {"text": ["the baker"]}, "lang": "el"}]
    preds = [" a Rome", "baker"]
    ours = [task_utils.toy_xquad_results(r, [p]) for r, p in zip(rows, preds)]
    for lang, i in (("en", 0), ("el", 1)):
        ref = score("xquad", lang, [rows[i]], [preds[i].strip()])
        assert (ours[i]["exact_match"], ours[i]["f1"]) == (ref["exact_match"], ref["f1"])
    assert task_utils.toy_mgsm_results({"answer_number": 12}, [" 6 times 2 is 12 ."]) == {"accuracy": 1.0}


# -- IndicQA files ------------------------------------------------------------------------------------

def _squad_file(path, items):
    paras = [{"context": c, "qas": [{"id": f"q{i}", "question": q,
                                     "answers": [{"text": a, "answer_start": c.find(a)}] if a else []}]}
             for i, (c, q, a) in enumerate(items)]
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": paras}]}, ensure_ascii=False), encoding="utf-8")


ITEMS = [("the cat sees the dog .", "who sees the dog ?", "the cat"),
         ("one bird eats food .", "what eats food ?", "bird"),
         ("the river is big .", "is the tree red ?", "")]


def test_read_indicqa_layouts_and_errors(tmp_path):
    _squad_file(tmp_path / "indicqa.ta.json", ITEMS)
    rows = indicqa.read_indicqa(indicqa.find_file(tmp_path, "ta"))
    assert [r["answers"]["text"] for r in rows] == [["the cat"], ["bird"], []]
    assert rows[0]["answers"]["answer_start"] == [0]
    flat = tmp_path / "flat" / "mr.jsonl"
    flat.parent.mkdir()
    flat.write_text(json.dumps({"id": "a", "context": "c", "question": "q",
                                "answers": {"text": ["c"], "answer_start": [0]}}) + "\n"
                    + json.dumps({"id": "b", "context": "c", "question": " "}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"mr\.jsonl, line 2, field 'question'"):
        indicqa.read_indicqa(indicqa.find_file(tmp_path, "mr"))
    with pytest.raises(PivotuneError, match="no IndicQA file for language 'ml'.*huggingface-cli download"):
        indicqa.find_file(tmp_path, "ml")
    with pytest.raises(PivotuneError, match="does not exist"):
        indicqa.find_file(tmp_path / "nowhere", "ta")


# -- errors -------------------------------------------------------------------------------------------

def test_unknown_task_names_get_suggestions():
    tm = registry.task_manager(["mgsm_native_cot_th"])
    with pytest.raises(PivotuneError, match="mgsm_native_cot_thx.*did you mean mgsm_native_cot_th"):
        registry.check_names(["mgsm_native_cot_thx"], tm)
    with pytest.raises(PivotuneError, match="unknown preset"):
        registry.expand(None, "prom-paperr")


def test_cli_errors(tmp_path, tiny_model_dir, capsys):
    assert main(["eval", str(tiny_model_dir), "--tasks", "pivotune_xquad_thx", "--out", str(tmp_path / "o")]) == 2
    assert "did you mean pivotune_xquad_th" in capsys.readouterr().err
    assert main(["eval", str(tiny_model_dir), "--preset", "prom-paper", "--out", str(tmp_path / "o")]) == 2
    assert "--indicqa-dir" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("method: xllama\n")
    assert main(["eval", str(run), "--tasks", "pivotune_xquad_th"]) == 2
    assert "run directory with no model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (run / "eval").exists()


# -- offline end to end -------------------------------------------------------------------------------

def _fake_world(root):
    """The files the toy tasks read: world.json and eval/{mgsm,xquad}_LANG.jsonl (two items each)."""
    (root / "eval").mkdir(parents=True)
    (root / "world.json").write_text(json.dumps({"languages": ["en", "el"]}))
    for lang in ("en", "el"):
        math = [{"id": f"m{i}", "instruction": "solve the problem .", "input": f"{i} and {i} ?",
                 "question": f"{i} and {i} ?", "answer_number": 2 * i, "answer": str(2 * i)} for i in (1, 2)]
        qa = [{"id": f"x{i}", "instruction": "answer the question .", "input": f"the {w} runs . question : who ?",
               "context": f"the {w} runs .", "question": "who ?",
               "answers": {"text": [w], "answer_start": [4]}} for i, w in enumerate(("cat", "dog"))]
        for name, rows in (("mgsm", math), ("xquad", qa)):
            (root / "eval" / f"{name}_{lang}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_eval_and_compare_end_to_end(tmp_path, tiny_model_dir, one_thread, capsys):
    world, data = tmp_path / "world", tmp_path / "indicqa"
    _fake_world(world)
    data.mkdir()
    _squad_file(data / "indicqa.ta.json", ITEMS)
    tasks = ["pivotune_toy_mgsm_el", "pivotune_toy_xquad_el", "pivotune_toy_xquad_en", "pivotune_indicqa_ta"]
    out = tmp_path / "tiny" / "eval"
    assert main(["eval", str(tiny_model_dir), "--tasks", *tasks, "--toy-world", str(world), "--indicqa-dir",
                 str(data), "--out", str(out), "--batch-size", "4"]) == 0   # samples are written by default
    res = json.loads((out / "results.json").read_text())
    assert set(res["results"]) == set(tasks) and res["pivotune"]["tasks"] == tasks
    assert res["n-samples"]["pivotune_indicqa_ta"]["effective"] == 3
    samples = [json.loads(l) for l in (out / "samples" / "pivotune_indicqa_ta.jsonl").read_text().splitlines()]
    # the stored metric is the mean of the per-item scores, recomputed from the model's outputs
    per_item = [task_utils.indicqa_scores(s["filtered_resps"][0], s["doc"]["answers"]["text"]) for s in samples]
    assert res["results"]["pivotune_indicqa_ta"]["f1,none"] == pytest.approx(sum(p["f1"] for p in per_item) / 3)

    # a second "run" with known scores, then the tables
    other = json.loads(json.dumps(res))
    for m in other["results"].values():
        for k in list(m):
            if k in ("exact_match,none", "f1,none", "accuracy,none"):
                m[k] = 1.0
    (tmp_path / "perfect").mkdir()
    (tmp_path / "perfect" / "results.json").write_text(json.dumps(other))
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "tiny"), str(tmp_path / "perfect"), "--baseline", "tiny",
                 "--out", str(tmp_path / "tables")]) == 0
    printed = capsys.readouterr().out
    assert "Table 1" in printed and "Table 2" in printed and "Table 3" in printed
    names = sorted(p.name for p in (tmp_path / "tables").iterdir())
    assert names == [MARKER, "table_1.csv", "table_2.csv", "table_3.csv", "table_4.csv", "tables.html", "tables.md"]
    # "perfect" logged no per-item scores: its higher means decide nothing (counted under "no items")
    row = (tmp_path / "tables" / "table_3.csv").read_text().splitlines()[1].split(",")
    assert row == ["perfect", "0", "0", "4", "4", "4"]
    # with its samples (every item scored 1), a case is won wherever tiny scored 0 on every item
    (tmp_path / "perfect" / "samples").mkdir()
    for f in (out / "samples").iterdir():
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        (tmp_path / "perfect" / "samples" / f.name).write_text("".join(
            json.dumps({**r, **{m: 1.0 for m in r["metrics"]}}) + "\n" for r in rows))
    tiny_items = read_item_scores(out)
    all_zero = sum(all(v == 0 for scores in tiny_items[t].values() for v in scores.values()) for t in tasks)
    table3 = compare.compare([str(tmp_path / "tiny"), str(tmp_path / "perfect")], baseline="tiny")[2]
    (_, wins, losses, neither, no_items, cases), = table3.rows
    assert wins >= all_zero and losses == 0 and no_items == 0 and wins + neither == cases == 4
    # Table 4: the results' rates in %, and (the same responses on both sides) a zero LPR difference
    table4 = compare.compare([str(tmp_path / "tiny"), str(tmp_path / "perfect")], baseline="tiny")[3]
    judged = {t: m for t, m in res["results"].items() if "line_pass_rate,none" in m}
    assert len(table4.rows) == 2 * len(judged) and {r[0] for r in table4.rows} == {"tiny", "perfect"}
    for label, task, lpr, _, n, diff in table4.rows:
        m = judged[next(t for t in judged if confusion.task_label(t) == task)]
        assert (lpr, n) == (pytest.approx(100 * m["line_pass_rate,none"]), m["confusion_judged,none"])
        assert diff == (None if label == "tiny" else "+0.0 [+0.0, +0.0]")


def test_eval_without_samples_leaves_none_behind(tmp_path, tiny_model_dir, one_thread):
    """--no-log-samples writes no samples, and an earlier evaluation's in the same directory are removed:
    they would pair with the new results."""
    world, out = tmp_path / "world", tmp_path / "eval"
    _fake_world(world)
    common = ["eval", str(tiny_model_dir), "--toy-world", str(world), "--out", str(out), "--batch-size", "2"]
    assert main([*common, "--tasks", "pivotune_toy_mgsm_el", "pivotune_toy_xquad_el"]) == 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["pivotune_toy_mgsm_el.jsonl",
                                                                   "pivotune_toy_xquad_el.jsonl"]
    assert main([*common, "--tasks", "pivotune_toy_mgsm_el", "--no-log-samples"]) == 0
    assert read_item_scores(out) == {} and not list((out / "samples").iterdir())
