"""The toy languages: bijective lexicons, exact invertible translation, seed-purity."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import unicodedata

import pytest

from pivotune.toy import grammar
from pivotune.toy.grammar import Grammar
from pivotune.toy.language import LANGUAGES, codeswitch, language_name, lexicon, probe_pairs, translate

SCRIPTS = {"el": "GREEK", "th": "THAI", "ar": "ARABIC"}


def _samples(seed: int = 0, n: int = 60) -> list[str]:
    g, rng = Grammar(seed), random.Random(7)
    out = []
    for _ in range(n):
        out.append(g.document(rng))
        rec = g.instruction(rng)
        out += [rec["instruction"], rec["input"], rec["output"]]
        out.append(g.training_sentence(rng))
        out.append(g.qa_item(rng, eval_split=True).context)
        out.append(g.math_item(rng, eval_split=True).question)
    return out


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_lexicon_is_a_bijection_into_the_languages_script(lang):
    lex = lexicon(lang, 0)
    assert sorted(lex) == grammar.vocabulary()
    assert len(set(lex.values())) == len(lex)
    for word in lex.values():
        assert word and not word.isdigit() and " " not in word
        letters = [unicodedata.name(c) for c in word]
        assert all(SCRIPTS[lang] in n for n in letters), (word, letters)


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_translation_round_trips_every_generator(lang):
    for text in _samples():
        tgt = translate(text, "en", lang, 0)
        assert translate(tgt, lang, "en", 0) == text
        # digits and punctuation survive untouched, in the same order
        keep = lambda s: [c for c in s if c.isdigit() or c in ".,?:\n"]  # noqa: E731
        assert keep(tgt) == keep(text)
        assert tgt != text or not text


def test_translation_between_two_targets_goes_through_english():
    text = "anna has a red car and 3 apples ."
    th = translate(text, "en", "th", 0)
    el = translate(text, "en", "el", 0)
    assert translate(el, "el", "th", 0) == th
    assert translate(th, "th", "el", 0) == el


def test_arabic_moves_adjectives_after_nouns_and_refuses_what_it_cannot_invert():
    ar = translate("the red car .", "en", "ar", 0)
    lex = lexicon("ar", 0)
    assert ar == f"{lex['the']} {lex['car']} {lex['red']} ."
    with pytest.raises(ValueError, match="noun before adjective"):
        translate("the car red .", "en", "ar", 0)
    with pytest.raises(ValueError, match="not in the toy lexicon"):
        translate("the zebra .", "en", "el", 0)


def test_a_gap_moves_with_its_word_and_code_switching_keeps_english_order():
    """A gap-fill line is translated filled and gapped again (Arabic puts the gapped colour after its noun);
    code-switching swaps words in place, at its rate."""
    lex = lexicon("ar", 0)
    line = "anna wants a ___ car . answer : red"
    ar = translate(line, "en", "ar", 0)
    assert ar.startswith(f"{lex['anna']} {lex['wants']} {lex['a']} {lex['car']} ___ .") and ar.endswith(lex["red"])
    assert translate(ar, "ar", "en", 0) == line
    assert translate(line + "\nben has 3 apples .", "en", "el", 0).split("\n")[1] == \
        translate("ben has 3 apples .", "en", "el", 0)
    text = "anna has a red car .\nben lives in rome ."
    assert codeswitch(text, "el", 0, random.Random(0), 1.0) == translate(text, "en", "el", 0)
    mixed = codeswitch(text, "el", 0, random.Random(0), 0.5)
    el = lexicon("el", 0)
    back = {g: e for e, g in el.items()}
    assert mixed.count("\n") == 1 and [back.get(w, w) for w in mixed.split()] == text.split()
    assert set(mixed.split()) & set(el) and set(mixed.split()) & set(el.values())


def test_lexicon_depends_on_the_seed_only():
    assert lexicon("el", 0) == lexicon("el", 0)
    assert lexicon("el", 0) != lexicon("el", 1)
    code = ("import json; from pivotune.toy.language import lexicon; "
            "print(json.dumps([lexicon(l, 3) for l in ('el', 'th', 'ar')], sort_keys=True))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": h}).stdout for h in ("1", "2")}
    assert len(outs) == 1
    assert json.loads(outs.pop())[0] == lexicon("el", 3)


def test_language_names_and_probe_pairs():
    assert language_name("el", "en", 0) == "greek"
    assert language_name("el", "el", 0) == lexicon("el", 0)["greek"]
    assert language_name("en", "th", 0) == lexicon("th", 0)["english"]
    pairs = probe_pairs("th", 0)
    assert len(pairs) >= 40
    assert pairs[0] == ("car", lexicon("th", 0)["car"])
    assert all(translate(e, "en", "th", 0) == t for e, t in pairs)
