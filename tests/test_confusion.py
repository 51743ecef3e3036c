"""Language identification and language confusion: the identifier on known-language strings, the toy
world's script rule, the pass rates against a naive per-line/per-word loop, and the harness-result pass."""

from __future__ import annotations

import json
import logging
import string

import pytest

from pivotune.errors import PivotuneError
from pivotune.eval import confusion, lid
from pivotune.languages import LanguageCodeError
from pivotune.toy.language import translate

KNOWN = {
    "en": "The children are playing football in the park this afternoon.",
    "th": "เด็กๆ กำลังเล่นฟุตบอลในสวนสาธารณะเมื่อบ่ายวันนี้",
    "sw": "Watoto wanacheza mpira wa miguu katika bustani mchana huu.",
    "el": "Τα παιδιά παίζουν ποδόσφαιρο στο πάρκο σήμερα το απόγευμα.",
    "ar": "الأطفال يلعبون كرة القدم في الحديقة بعد ظهر اليوم.",
    "bn": "শিশুরা আজ বিকেলে পার্কে ফুটবল খেলছে।",
    "ta": "குழந்தைகள் இன்று மதியம் பூங்காவில் கால்பந்து விளையாடுகிறார்கள்.",
    "te": "పిల్లలు ఈ మధ్యాహ్నం పార్కులో ఫుట్‌బాల్ ఆడుతున్నారు.",
    "mr": "मुले आज दुपारी उद्यानात फुटबॉल खेळत आहेत.",
    "ml": "കുട്ടികൾ ഇന്ന് ഉച്ചയ്ക്ക് പാർക്കിൽ ഫുട്ബോൾ കളിക്കുന്നു.",
    "de": "Die Kinder spielen heute Nachmittag Fußball im Park.",
    "ko": "아이들이 오늘 오후에 공원에서 축구를 하고 있습니다.",
    "yo": "Àwọn ọmọdé ń gbá bọ́ọ̀lù ní ọgbà ní ọ̀sán yìí.",
}


def test_identifier_names_known_language_strings():
    """Every PROM language (and a few CLO ones) is identified on a plain sentence, offline."""
    for lang, text in KNOWN.items():
        assert lid.identify(text) == lang, lang
    assert lid.identify("") == lid.UNKNOWN
    assert {lid.lid_code(c) for c in ("th", "tha", "tha_Thai", "th-TH")} == {"th"}
    assert lid.lid_code("swh") == "sw" and lid.lid_code("arb") == "ar"


def test_scripts_and_toy_languages_by_script():
    """Letters carry their script; each toy language is recognised by its script, English by Latin."""
    assert [lid.script_of(c) for c in "aαกب1 ."] == ["LATIN", "GREEK", "THAI", "ARABIC", None, None, None]
    assert lid.main_script("ok แมวดำ") == "THAI" and lid.main_script("12 + 3") is None
    sentence = "anna lives in rome , works as a baker and has a red car ."
    for lang in ("el", "th", "ar"):
        assert lid.toy_language(translate(sentence, "en", lang, 0)) == lang
    assert lid.toy_language(sentence) == "en" and lid.toy_language("Привет") is None
    assert lid.own_script("th") and lid.own_script("el") and not lid.own_script("ar") and not lid.own_script("sw")


def test_unknown_languages_are_clear_errors():
    """A string that is no language code, or a language the identifier lacks, fails with its name."""
    with pytest.raises(LanguageCodeError, match="'thai' is not a language code"):
        confusion.judge_for("thai", where="pivotune_flores_en-thai")
    with pytest.raises(PivotuneError, match="does not know 'xx'"):
        confusion.judge_for("xx")
    with pytest.raises(LanguageCodeError, match="'de' is not a toy world language"):
        confusion.judge_for("de", toy=True)


# -- the rates against a naive loop -------------------------------------------------------------------

def naive_rates(responses, lang, toy):
    """LCB's definitions written out directly, one response, line and word at a time."""
    judged = line_ok = clean = word_ok = 0
    for text in responses:
        for ch in string.punctuation:
            text = text.replace(ch, "")
        text = text.replace("—", " ").replace("،", "")
        line_verdicts, words = [], []
        for line in text.split("\n"):
            letters = [c for c in line if c.isalpha()]
            scripts = [lid.script_of(c) for c in line if lid.script_of(c)]
            if toy:
                if not letters:
                    continue
                verdict = lid.toy_language(line) == lang
            elif len(line.split()) >= 5:
                verdict = lid.identify(line) == lang
            elif not scripts:
                continue
            else:
                top = max(set(scripts), key=lambda s: (scripts.count(s), -scripts.index(s)))
                if top not in lid.language_scripts(lang):
                    verdict = False
                elif lid.own_script(lang):
                    verdict = True
                else:
                    continue
            line_verdicts.append(verdict)
            words += line.split()
        if not line_verdicts:
            continue
        judged += 1
        if all(line_verdicts):
            line_ok += 1
            clean += 1
            if toy:
                bad = [w for w in words if lid.toy_language(w) not in (None, lang)]
            else:
                bad = [w for w in words if w.isascii() and w.isalpha() and w.islower() and len(w) > 3]
            word_ok += not bad
    return line_ok / judged, (word_ok / clean if clean else None), judged


RESPONSES = [
    KNOWN["th"],                                          # Thai, one long line
    KNOWN["en"],                                          # English: a line error
    "แมวดำ",                                              # short Thai: passes by script
    "cat",                                                # short Latin when Thai is asked: fails
    "42",                                                 # no letters: not judged
    KNOWN["th"] + "\n" + KNOWN["en"],                     # one good line, one bad
    "เด็กๆ กำลังเล่น football ในสวนสาธารณะ",               # Thai with an English word
    "คำตอบคือ — 12, ok!",                                  # short, Thai; "ok" is too short to count
]


@pytest.mark.parametrize("lang,responses", [("th", RESPONSES),
                                            ("sw", [KNOWN["sw"], KNOWN["en"], "ndiyo", "the cat", "7"]),
                                            ("ar", [KNOWN["ar"], "نعم", "yes", KNOWN["ar"] + " football"])])
def test_rates_match_a_naive_loop(lang, responses):
    """Line and word pass rates equal a direct per-line/per-word computation of the definitions."""
    got = confusion.rates(responses, confusion.judge_for(lang))
    line, word, judged = naive_rates(responses, lang, toy=False)
    assert got["line_pass_rate"] == pytest.approx(line) and got["confusion_judged"] == judged
    assert got["word_pass_rate"] == (None if lang == "sw" else pytest.approx(word))   # LCB: no WPR for Latin


def test_hand_worked_thai_rates():
    """On the Thai list: 7 judged, 4 pass every line (long Thai, short Thai, the one with an English word,
    the short Thai answer); of those, the English word fails the word level."""
    got = confusion.rates(RESPONSES, confusion.judge_for("th"))
    assert got == {"line_pass_rate": pytest.approx(4 / 7), "word_pass_rate": pytest.approx(3 / 4),
                   "confusion_judged": 7.0}


def test_toy_rates_match_a_naive_loop():
    """In the toy world every line with a letter is judged by script, and a word in another toy script
    is a word error in every direction."""
    s = "anna lives in rome , works as a baker and has a red car ."
    el, th = translate(s, "en", "el", 0), translate(s, "en", "th", 0)
    responses = [el, s, el + "\n" + s, el + " " + th.split()[0], "12", th, el.split()[0]]
    for lang in ("el", "en"):
        got = confusion.rates(responses, confusion.judge_for(lang, toy=True))
        line, word, judged = naive_rates(responses, lang, toy=True)
        assert (got["line_pass_rate"], got["word_pass_rate"], got["confusion_judged"]) == \
            (pytest.approx(line), pytest.approx(word), judged)
    assert confusion.rates(["12", ""], confusion.judge_for("el", toy=True))["line_pass_rate"] is None


# -- harness results ----------------------------------------------------------------------------------

def _row(doc_id, text, filt="none"):
    return {"doc_id": doc_id, "resps": [[text]], "filtered_resps": ["x"], "filter": filt}


def test_annotate_adds_rates_to_generative_tasks_once_per_document(caplog):
    """Each document counts once (the harness logs one row per filter); log-likelihood tasks and tasks
    of unknown language are left alone, a language the identifier lacks is named in one log line."""
    res = {"results": {t: {} for t in ("mgsm_native_cot_th", "xnli_th", "pivotune_toy_xquad_el",
                                       "some_task", "pivotune_flores_en-ay")},
           "configs": {"mgsm_native_cot_th": {"output_type": "generate_until"},
                       "xnli_th": {"output_type": "multiple_choice"},
                       "pivotune_toy_xquad_el": {"output_type": "generate_until"},
                       "some_task": {"output_type": "generate_until"},
                       "pivotune_flores_en-ay": {"output_type": "generate_until"}}}
    samples = {"mgsm_native_cot_th": [_row(0, KNOWN["th"], "strict"), _row(1, KNOWN["en"], "strict"),
                                      _row(0, KNOWN["th"], "flexible"), _row(1, KNOWN["en"], "flexible")],
               "xnli_th": [_row(0, KNOWN["en"])], "some_task": [_row(0, "x")],
               "pivotune_toy_xquad_el": [_row(0, "rome"), _row(1, translate("rome", "en", "el", 0))],
               "pivotune_flores_en-ay": [_row(0, "x")]}
    caplog.set_level(logging.INFO)
    confusion.annotate(res, samples)
    assert res["results"]["mgsm_native_cot_th"] == {"line_pass_rate,none": 0.5, "word_pass_rate,none": 1.0,
                                                    "confusion_judged,none": 2.0}
    assert res["results"]["pivotune_toy_xquad_el"]["line_pass_rate,none"] == 0.5
    assert res["results"]["xnli_th"] == {} and res["results"]["some_task"] == {}
    assert res["higher_is_better"]["mgsm_native_cot_th"]["line_pass_rate"] is True
    assert "pivotune_flores_en-ay" in caplog.text and res["results"]["pivotune_flores_en-ay"] == {}


def test_confusion_table_rows_per_run_and_task():
    """The table holds LPR/WPR in percent and the judged count, a row per run and task (grouped by task), a dash
    where a rate is absent; a run without a task's rates has no row for it."""
    a = {"results": {"mgsm_native_cot_th": {"line_pass_rate,none": 0.5, "word_pass_rate,none": 1.0,
                                            "confusion_judged,none": 8.0}}}
    b = {"results": {"mgsm_native_cot_th": {"line_pass_rate,none": 0.25, "confusion_judged,none": 4.0},
                     "pivotune_flores_en-sw": {"line_pass_rate,none": 1.0, "confusion_judged,none": 3.0}}}
    table = confusion.confusion_table({"a": a, "b": b})
    assert table.header == ["run", "task", "LPR", "WPR", "judged"]
    assert table.cells() == [["b", "FLORES en→sw", "100.0", "–", "3"], ["a", "MGSM th", "50.0", "100.0", "8"],
                             ["b", "MGSM th", "25.0", "–", "4"]]
    assert confusion.confusion_table({"a": {"results": {"x": {}}}}) is None


def _samples(folder, task, texts, ids=None):
    """A logged-samples file as the harness writes it: each document under two filters."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"doc_id": i, "doc": {"id": (ids or {}).get(i, f"d{i}")}, "resps": [[t]], "filter": f}
            for i, t in enumerate(texts) for f in ("strict", "flexible")]
    (folder / f"{task}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _annotated(task, texts):
    res = {"results": {task: {}}, "configs": {task: {"output_type": "generate_until"}}}
    confusion.annotate(res, {task: [{"doc_id": i, "resps": [[t]]} for i, t in enumerate(texts)]})
    return res


def test_line_passes_pair_runs_and_give_the_difference_an_interval(tmp_path):
    """Each logged response's verdict (by item id, each document once, unjudged ones left out) averages to the
    stored LPR; Table 4's difference from the baseline is the naive mean difference over the items both runs
    judged, with an interval that excludes zero for 20 of 20 items turned Greek and contains it for none."""
    task = "pivotune_toy_xquad_el"
    s = "anna lives in rome ."
    el = translate(s, "en", "el", 0)
    base_texts = [s] * 14 + [el] * 6 + ["42"]                       # 6 of 20 judged in Greek; "42" not judged
    mine_texts = [el] * 20 + [s]                                    # all 20 in Greek; one more item, English
    runs, items = {}, {}
    for label, texts in (("base", base_texts), ("mine", mine_texts), ("same", base_texts)):
        _samples(tmp_path / label / "samples", task, texts)
        runs[label] = _annotated(task, texts)
        items[label] = confusion.read_line_passes(tmp_path / label, runs[label])
    assert items["base"][task] == {f"d{i}": 100.0 * (i >= 14) for i in range(20)}   # d20 ("42") not judged
    for label in runs:
        got = items[label][task]
        assert sum(got.values()) / len(got) == pytest.approx(100 * runs[label]["results"][task]["line_pass_rate,none"])
    table = confusion.confusion_table(runs, baseline="base", line_items=items)
    assert table.header[-1] == "LPR − base (95 % interval)"
    diffs = {r[0]: r[-1] for r in table.rows}
    shared = sorted(items["mine"][task].keys() & items["base"][task].keys())
    naive = sum(items["mine"][task][i] - items["base"][task][i] for i in shared) / len(shared)
    assert naive == pytest.approx(70.0) and diffs["mine"].startswith(f"{naive:+.1f} [+")   # interval above zero
    assert diffs["same"] == "+0.0 [+0.0, +0.0]" and diffs["base"] is None
    no_items = confusion.confusion_table(runs, baseline="base")
    assert {r[-1] for r in no_items.rows} == {None}   # no logged responses: no interval, however far apart
    assert confusion.read_line_passes(tmp_path / "nowhere", runs["base"]) == {}
    (tmp_path / "base" / "samples" / f"{task}.jsonl").write_text(json.dumps({"doc_id": 0, "resps": [[[-1.5, True]]]})
                                                                 + "\n")
    with pytest.raises(PivotuneError, match=rf"{task}.jsonl, line 1: not a harness sample record"):
        confusion.read_line_passes(tmp_path / "base", runs["base"])
