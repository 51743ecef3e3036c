"""The field-level translators (pre-translated file, toy lexicon) and the other models' language codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pivotune.cli import main
from pivotune.errors import DataError, PivotuneError
from pivotune.translate.backends import PretranslatedTranslator, ToyLexiconTranslator
from pivotune.translate.codes import convention_for
from pivotune.translate.pipeline import translate_file

ROWS = [{"id": 1, "instruction": "Say hi.", "input": "", "output": "Hi there."},
        {"id": 2, "instruction": "Say bye.", "input": "now", "output": "Bye."}]


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_pretranslated_file_is_joined_by_id_not_by_order(tmp_path):
    src = _write(tmp_path / "in.jsonl", ROWS)
    th = _write(tmp_path / "th.jsonl", [{"id": 2, "instruction": "ลาก่อน", "input": "ตอนนี้", "output": "บาย"},
                                        {"id": 1, "instruction": "ทักทาย", "input": "", "output": "สวัสดี"}])
    res = translate_file(src, tmp_path / "out", ["th"], PretranslatedTranslator({"th": th}))
    out = [json.loads(x) for x in res.outputs["th"].read_text(encoding="utf-8").splitlines()]
    assert out == [{"id": 1, "instruction": "ทักทาย", "input": "", "output": "สวัสดี"},
                   {"id": 2, "instruction": "ลาก่อน", "input": "ตอนนี้", "output": "บาย"}]
    assert not (tmp_path / "out" / ".translate-cache.sqlite").exists()


def test_pretranslated_errors_name_the_file_id_and_field(tmp_path):
    src = _write(tmp_path / "in.jsonl", ROWS)
    missing = _write(tmp_path / "m.jsonl", [{"id": 1, "instruction": "a", "input": "", "output": "b"}])
    with pytest.raises(DataError, match="no row with id '2'"):
        translate_file(src, tmp_path / "o1", ["th"], PretranslatedTranslator({"th": missing}))
    nofield = _write(tmp_path / "f.jsonl", [{"id": 1, "instruction": "a", "output": "b"},
                                            {"id": 2, "instruction": "a", "output": "b"}])
    with pytest.raises(DataError, match=r"f.jsonl, id '2', field 'input': expected the translated text"):
        translate_file(src, tmp_path / "o2", ["th"], PretranslatedTranslator({"th": nofield}))
    with pytest.raises(PivotuneError, match="no pre-translated file for target language 'el'"):
        translate_file(src, tmp_path / "o3", ["el"], PretranslatedTranslator({"th": missing}))
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3"))


def test_toy_engine_is_the_exact_lexicon_translation(tmp_path, capsys):
    from pivotune.toy.language import translate

    rows = [{"id": "t1", "instruction": "solve the problem .", "input": "anna has 3 apples .",
             "output": "so anna has 3 apples ."}]
    src = _write(tmp_path / "toy.jsonl", rows)
    assert main(["translate", str(src), "--to", "el", "ar", "--engine", "toy", "--out-dir", str(tmp_path / "o")]) == 0
    for lang in ("el", "ar"):
        (row,) = [json.loads(x) for x in (tmp_path / "o" / f"toy.{lang}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert row == {k: (v if k == "id" else translate(v, "en", lang, 0)) for k, v in rows[0].items()}
    bad = _write(tmp_path / "bad.jsonl", [{"id": "b", "instruction": "fly to the moon .", "output": "ok ."}])
    with pytest.raises(DataError, match="record b, field 'instruction': the toy lexicon cannot translate"):
        translate_file(bad, tmp_path / "o2", ["el"], ToyLexiconTranslator(0))


def test_m2m100_mbart_and_marian_conventions():
    m2m = convention_for("m2m_100", {"__en__", "__th__", "__sw__", "▁the"}, "m2m")
    assert m2m.name == "m2m100" and m2m.resolve("th") == "th"
    with pytest.raises(PivotuneError, match="Nearest codes the model knows: .*sw"):
        m2m.resolve("swh")
    mbart = convention_for("mbart", {"en_XX", "th_TH"}, "mbart")
    assert mbart.resolve("th") == "th_TH"
    multi = convention_for("marian", {">>tha<<", ">>ell<<", "▁a"}, "opus-mt-en-mul")
    assert multi.name == "marian-multi" and multi.resolve("th") == ">>tha<<" and multi.resolve("el") == ">>ell<<"
    assert convention_for("marian", {"▁a"}, "opus-mt-en-de").name == "marian-pair"
    with pytest.raises(PivotuneError, match="model_type 't5', which is not a supported translation model"):
        convention_for("t5", set(), "t5-small")


def test_relative_input_path_keeps_every_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "toy.jsonl", [{"id": "t1", "instruction": "solve the problem .", "output": "anna has 3 apples ."}])
    res = translate_file("./toy.jsonl", "out", ["th"], ToyLexiconTranslator(0))
    assert res.records == 1 and len(res.outputs["th"].read_text(encoding="utf-8").splitlines()) == 1
