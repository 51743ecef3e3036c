"""Language codes are checked as codes everywhere, and no output name leaves its directory."""

from __future__ import annotations

import pytest
from test_child_path import tree

from pivotune import languages as langs
from pivotune.cli import main
from pivotune.config import load_config
from pivotune.errors import ConfigError, PivotuneError

PAIRS = "cat\tdog\nhouse\ttree\nred\tblue\nwater\tfood\nbig\tsmall\ngood\tday\nriver\tbird\none\ttwo\n"
BAD_CODES = ["thai", "xx", "th/../x", ""]

# the two tables this module replaced, as they were: every entry must still be there, unchanged
FORMER_ENGLISH_NAMES = {
    "en": "English", "ar": "Arabic", "bn": "Bengali", "de": "German", "el": "Greek", "es": "Spanish",
    "fr": "French", "hi": "Hindi", "id": "Indonesian", "ja": "Japanese", "ko": "Korean",
    "ml": "Malayalam", "mr": "Marathi", "ru": "Russian", "sw": "Swahili", "ta": "Tamil", "te": "Telugu",
    "th": "Thai", "tr": "Turkish", "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}
FORMER_OWN_NAMES = {
    "en": "English", "fr": "Français", "de": "Deutsch", "es": "Español", "it": "Italiano",
    "pt": "Português", "nl": "Nederlands", "pl": "Polski", "et": "Eesti", "tr": "Türkçe",
    "id": "Bahasa Indonesia", "vi": "Tiếng Việt", "sw": "Kiswahili", "yo": "Yorùbá",
    "zh": "中文", "ja": "日本語", "ko": "한국어", "ru": "Русский", "uk": "Українська", "el": "Ελληνικά",
    "th": "ไทย", "ar": "العربية", "fa": "فارسی", "he": "עברית", "ur": "اردو",
    "hi": "हिन्दी", "mr": "मराठी", "ne": "नेपाली", "bn": "বাংলা", "gu": "ગુજરાતી",
    "ta": "தமிழ்", "te": "తెలుగు", "kn": "ಕನ್ನಡ", "ml": "മലയാളം",
}


# ---------------------------------------------------------------- the table


def test_table_has_no_duplicates_and_keeps_the_former_tables():
    """Each code appears once; the former English-name and own-name tables are all still there."""
    codes = [code for code, _ in langs._ISO_639_1 + langs._FLORES_200]
    assert len(codes) == len(set(codes))
    assert all(langs.english_name(c) == name for c, name in FORMER_ENGLISH_NAMES.items())
    assert {c: langs.OWN_NAMES[c] for c in FORMER_OWN_NAMES} == FORMER_OWN_NAMES


def test_table_covers_iso_639_1_flores_200_and_the_toy_world():
    """All ISO 639-1 codes, FLORES-200's 3-letter codes and the toy world's languages are known."""
    from pivotune.toy.language import LANGUAGES

    assert sum(len(c) == 2 for c in langs.ENGLISH_NAMES) >= 183
    assert {"tha", "arb", "swh", "zho", "yue", "npi", "taq", "ace"} <= set(langs.ENGLISH_NAMES)
    assert all(langs.primary(code) in langs.ENGLISH_NAMES for code in langs.FLORES_CODES.values())
    assert set(langs.FLORES_CODES) | set(LANGUAGES) | set(langs.OWN_NAMES) <= set(langs.ENGLISH_NAMES)


def test_codes_pass_and_errors_suggest_the_nearest_code_and_the_escape_hatch():
    """Known codes (with script/region) and declared ones pass; an unknown one names the nearest and the hatch."""
    for code in ("th", "tha", "pt-BR", "sr-Latn", "zh-Hant-TW", "tha_Thai", "es-419"):
        assert langs.check_code(code) == code
    assert langs.check_code("xx", extra=["xx"]) == "xx"
    with pytest.raises(langs.LanguageCodeError, match=r"Did you mean 'th' \(Thai\)\?") as e:
        langs.check_code("thai", "languages[0]")
    assert str(e.value).startswith("languages[0]: 'thai' is not a language code")
    with pytest.raises(ValueError, match=r"'xx' is not a language code pivotune knows.*extra_languages: \[xx\]"):
        langs.check_code("xx")
    with pytest.raises(PivotuneError, match="--extra-languages qq"):
        langs.check_code("qq", "--pairs", hatch=langs.CLI_HATCH)


# ---------------------------------------------------------------- run configs


@pytest.mark.parametrize("code", BAD_CODES)
def test_config_languages_reject_non_codes_and_unknown_codes(code):
    """languages: a name, an unknown code, a path or nothing is a config error naming the field."""
    with pytest.raises(ConfigError, match=r"languages.*not a language code") as e:
        load_config(base={"model": "m", "languages": [code]})
    assert repr(code) in str(e.value) or f"'{code}'" in str(e.value)


@pytest.mark.parametrize("code", BAD_CODES)
def test_config_data_lang_rejects_non_codes_and_unknown_codes(code):
    """data[].lang is checked the same way."""
    with pytest.raises(ConfigError, match=r"data.*not a language code"):
        load_config(base={"model": "m", "data": [{"path": "a.jsonl", "role": "en", "lang": code}]})


def test_config_code_fields_and_declared_codes():
    """Every field naming a language is checked; extra_languages lets a code the table lacks through."""
    base = {"model": "m", "method": "prom", "languages": ["th", "pt-BR"]}
    for section in ({"prom": {"probe_pairs": {"th/../x": "a.tsv"}}}, {"prom": {"probe_names": {"zz": "Z"}}},
                    {"prom": {"lambda_per_language": {"xx": 0.5}}},
                    {"interference": {"pairs": [["en", "tgt:th/../x"]]}}):
        with pytest.raises(ConfigError, match="not a language code"):
            load_config(base={**base, **section})
    with pytest.raises(ConfigError, match=r"lexicons.*'zz' is not a language code pivotune knows"):
        load_config(base={"model": "m", "method": "lingualift", "lingualift": {"encoder": "e", "lexicons": {"zz": "l"}}})
    with pytest.raises(ConfigError, match=r"extra_languages.*'thai' is not a language code"):
        load_config(base={"model": "m", "extra_languages": ["thai"]})
    cfg = load_config(base={"model": "m", "method": "prom", "extra_languages": ["xx"], "languages": ["th", "xx"],
                            "data": [{"path": "a.jsonl", "role": "tgt", "lang": "xx"}],
                            "prom": {"probe_pairs": {"th": "a.tsv", "xx": "b.tsv"}}})
    assert cfg.languages == ["th", "xx"]


def test_config_naming_a_traversing_code_is_refused_before_anything_runs(tmp_path):
    """A PROM config naming 'th/../../../../X' in languages and probe files is a config error."""
    evil = "th/../../../../X"
    raw = {"model": "m", "method": "prom", "languages": [evil], "output_dir": str(tmp_path / "a" / "b" / "run"),
           "prom": {"pivot_layer": 1, "probe_pairs": {evil: "th.tsv"}, "probe_names": {evil: "X"}}}
    with pytest.raises(ConfigError, match=r"languages.*'th/\.\./\.\./\.\./\.\./X' is not a language code") as e:
        load_config(base=raw)
    assert "prom.probe_pairs" in str(e.value) and "prom.probe_names" in str(e.value)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("code", BAD_CODES)
def test_probe_cli_rejects_bad_codes_in_pairs(code, tmp_path, capsys):
    """probe --pairs CODE=FILE: a name, an unknown code, a path or nothing fails before the model loads."""
    pairs = tmp_path / "th.tsv"
    pairs.write_text(PAIRS)
    rc = main(["probe", str(tmp_path / "no-model"), "--pairs", f"{code}={pairs}", "--names", f"{code}=X",
               "--out", str(tmp_path / "out")])
    assert rc == 2 and "not a language code" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_probe_cli_traversal_writes_nothing_outside_out(tiny_model_dir, tmp_path, capsys):
    """probe --pairs 'x/../../../X=th.tsv' is refused, and no directory above --out changes."""
    pairs = tmp_path / "th.tsv"
    pairs.write_text(PAIRS)
    out = tmp_path / "a" / "b" / "out"
    before = tree(tmp_path)
    rc = main(["probe", str(tiny_model_dir), "--pairs", f"x/../../../X={pairs}", "--names", "x/../../../X=X",
               "--out", str(out), "--batch-size", "4"])
    err = capsys.readouterr().err
    assert rc == 2 and "'x/../../../X' is not a language code" in err
    assert tree(tmp_path) == before
    rc = main(["probe", str(tiny_model_dir), "--pairs", f"th={pairs}", "--source-lang", "english", "--out", str(out)])
    assert rc == 2 and "--source-lang: 'english' is not a language code" in capsys.readouterr().err


# ---------------------------------------------------------------- other entry points


def test_translate_refuses_bad_codes(tmp_path, capsys):
    """translate --to, --from and --pretranslated take codes."""
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "1", "instruction": "the cat", "output": "a dog"}\n')
    for argv in (["--to", "thai"], ["--to", "el", "--from", "../en"], ["--to", "zz", "--engine", "toy"],
                 ["--to", "th", "--engine", "pretranslated", "--pretranslated", f"../th={src}"]):
        assert main(["translate", str(src), *argv, "--out-dir", str(tmp_path / "o")]) == 2
        assert "not a language code" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_compare_and_demo_check_codes(tmp_path, capsys):
    """compare --win-lose-skip and demo --languages take codes (the demo: the toy world's)."""
    assert main(["compare", str(tmp_path), "--win-lose-skip", "english"]) == 2
    assert "--win-lose-skip: 'english' is not a language code" in capsys.readouterr().err
    assert main(["demo", "--quick", "--languages", "../el", "--out", str(tmp_path / "d")]) == 2
    assert "'../el' is not a language code" in capsys.readouterr().err and not (tmp_path / "d").exists()
