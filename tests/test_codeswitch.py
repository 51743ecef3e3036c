"""Lexicon files (MUSE two-column format) and code-switching at a ratio, deterministic by seed."""

from __future__ import annotations

import random
import re

import pytest
from lingualift_helpers import english_samples, lexicon_pairs, write_tiny_lexicon

from pivotune.methods.lingualift.codeswitch import (FUNCTION_WORDS, Lexicon, code_switch, codeswitch_samples, read_lexicon,
                                      switch_count)
from pivotune.errors import DataError


def test_read_lexicon_muse_format_with_tabs_spaces_and_several_translations(tmp_path):
    f = tmp_path / "en-xx.txt"
    f.write_text("cat tac\ndog\tgod\n\ncat kitty\n", encoding="utf-8")
    lex = read_lexicon(f, "xx")
    assert lex.entries == {"cat": ("tac", "kitty"), "dog": ("god",)} and lex.lang == "xx"


@pytest.mark.parametrize("body, line, what", [
    ("cat tac\ndog\nbird drib\n", 2, "got 1 field"),
    ("cat tac\nbig red der\n", 2, "got 3 field"),
    ("cat tac\n\nfish h\xe9\n".encode("latin-1"), 3, "not valid UTF-8"),
])
def test_bad_lexicon_line_names_file_and_line(tmp_path, body, line, what):
    f = tmp_path / "bad.txt"
    f.write_bytes(body if isinstance(body, bytes) else body.encode())
    with pytest.raises(DataError) as e:
        read_lexicon(f, "xx")
    msg = str(e.value)
    assert f"bad.txt, line {line}" in msg and what in msg and e.value.row == line


def test_empty_lexicon_is_an_error(tmp_path):
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(DataError, match="no word pairs"):
        read_lexicon(tmp_path / "e.txt", "xx")


def test_switch_count_rounds_half_up():
    assert [switch_count(0.5, n) for n in range(6)] == [0, 1, 1, 2, 2, 3]
    assert switch_count(0.0, 9) == 0 and switch_count(1.0, 9) == 9


def _content_words(text: str, lex: Lexicon) -> list[str]:
    return [w for w in re.findall(r"\w+", text) if w.lower() not in FUNCTION_WORDS and w.lower() in lex.entries]


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 1.0])
def test_code_switch_replaces_exactly_round_ratio_of_content_words(ratio):
    lex = Lexicon("xx", {e: (t,) for e, t in lexicon_pairs()})
    forward = {t: e for e, t in lexicon_pairs()}
    rng = random.Random(0)
    for s in english_samples(40):
        text = f"{s.instruction}, {s.input}!"
        n = len(_content_words(text, lex))           # counted independently of code_switch
        out = code_switch((text,), [lex], ratio, rng).texts[0]
        # same separators, word for word; replaced words are the lexicon's translations
        before, after = re.findall(r"\w+", text), re.findall(r"\w+", out)
        assert re.sub(r"\w+", "W", text) == re.sub(r"\w+", "W", out) and len(before) == len(after)
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        assert len(changed) == int(ratio * n + 0.5)
        assert all(forward[b] == a.lower() and a.lower() not in FUNCTION_WORDS for a, b in changed)


def test_codeswitch_samples_deterministic_by_seed_and_keep_response():
    lex = Lexicon("xx", {e: (t,) for e, t in lexicon_pairs()})
    samples = english_samples(30)
    a = codeswitch_samples(samples, [lex], 0.5, seed=7)
    b = codeswitch_samples(samples, [lex], 0.5, seed=7)
    c = codeswitch_samples(samples, [lex], 0.5, seed=8)
    assert a == b and a != c
    assert all(x.role == "cs" and x.lang == "xx" and x.output == s.output for x, s in zip(a, samples))
    total = sum(x.meta["content_words"] for x in a)
    assert sum(x.meta["switched"] for x in a) == sum(int(0.5 * x.meta["content_words"] + 0.5) for x in a)
    assert total > 50


def test_each_switched_word_takes_a_language_that_has_it():
    en_xx = Lexicon("xx", {"cat": ("tacx",), "dog": ("godx",)})
    en_yy = Lexicon("yy", {"cat": ("tacy",)})
    seen = set()
    for seed in range(40):
        out = code_switch(("cat dog",), [en_xx, en_yy], 1.0, random.Random(seed)).texts[0]
        seen.add(out)
        assert out.split()[1] == "godx"              # only xx has "dog"
    assert seen == {"tacx godx", "tacy godx"}        # "cat" drawn from both languages


def test_lexicon_file_round_trip(tmp_path):
    lex = read_lexicon(write_tiny_lexicon(tmp_path / "l.txt"), "xx")
    assert lex.entries == {e: (t,) for e, t in lexicon_pairs()}
