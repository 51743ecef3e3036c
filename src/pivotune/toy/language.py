"""Target languages of the toy world: exact, invertible transforms of English.

Each target language maps every English word of the grammar to a distinct
pseudo-word written in its own script (a seeded bijection), so a tokenizer
trained on the mix splits them differently, as it does real scripts. Digits and
punctuation are kept. Thai and Arabic also move adjectives after their noun
(``red car`` -> ``car red``), as the real languages do, so their word order
differs from English's while Greek's matches it; the grammar never puts a noun
directly before an adjective, which keeps that exactly invertible (and
:func:`translate` refuses text that would break it).
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

from . import grammar

ENGLISH = "en"


@dataclass(frozen=True)
class Script:
    onsets: tuple[str, ...]
    vowels: tuple[str, ...]
    capitalise_names: bool = False


_GREEK = Script(tuple("βγδζθκλμνξπρστφχ"), tuple("αεηιουω") + ("αι", "ου", "ει"), True)
# Thai: consonant + following vowel sign or a preposed vowel; no case.
_THAI = Script(tuple("กขคงจชซดตทนบปผพฟมยรลวสห"), ("า", "ิ", "ี", "ุ", "ู", "ะ", "ำ", "เ", "แ", "โ", "ไ"))
_ARABIC = Script(tuple("بتثجحخدذرزسشصضطعغفقكلمنهوي"), ("ا", "و", "ي", ""))
_PREPOSED_THAI = {"เ", "แ", "โ", "ไ"}


@dataclass(frozen=True)
class LanguageSpec:
    code: str
    english_name: str        # the grammar word naming it (``greek``)
    script: Script
    adjective_after_noun: bool = False


LANGUAGES: dict[str, LanguageSpec] = {
    "el": LanguageSpec("el", "greek", _GREEK),
    "th": LanguageSpec("th", "thai", _THAI, adjective_after_noun=True),
    "ar": LanguageSpec("ar", "arabic", _ARABIC, adjective_after_noun=True),
}

# Words are maximal runs of anything but whitespace and ASCII punctuation; Thai vowel
# signs are combining marks that ``\w`` would not match, hence this class.
_SPLIT = re.compile(r"(\s+|[.,?!:;'\"()\-])")


def _syllable(rng: random.Random, script: Script) -> str:
    c, v = rng.choice(script.onsets), rng.choice(script.vowels)
    if v in _PREPOSED_THAI:
        return v + c
    return c + v


@functools.lru_cache(maxsize=None)
def lexicon(lang: str, seed: int) -> dict[str, str]:
    """English word -> pseudo-word of ``lang``; a bijection, a pure function of (lang, seed)."""
    spec = _spec(lang)
    rng = random.Random(f"pivotune-lexicon:{lang}:{seed}")
    out, taken = {}, set()
    names = set(grammar.NAMES)
    for word in grammar.vocabulary():
        n_syll = 1 if len(word) <= 3 else 2 if len(word) <= 6 else 3
        while True:
            w = "".join(_syllable(rng, spec.script) for _ in range(n_syll))
            if word in names and spec.script.capitalise_names:
                w = w[0].upper() + w[1:]
            if w not in taken and not w.isdigit():
                break
            n_syll += rng.random() < 0.2  # crowded short forms: let some grow
        taken.add(w)
        out[word] = w
    return out


@functools.lru_cache(maxsize=None)
def _inverse(lang: str, seed: int) -> dict[str, str]:
    return {v: k for k, v in lexicon(lang, seed).items()}


def _spec(lang: str) -> LanguageSpec:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown toy language {lang!r}; known: en, {', '.join(LANGUAGES)}")
    return LANGUAGES[lang]


def _map_words(pieces: list[str], table: dict[str, str], lang: str) -> list[str]:
    out = []
    for i, p in enumerate(pieces):
        if i % 2 == 1 or not p or p.isdigit():      # odd pieces are separators
            out.append(p)
            continue
        try:
            out.append(table[p])
        except KeyError:
            raise ValueError(f"word {p!r} is not in the toy lexicon ({lang})") from None
    return out


def _reorder(pieces: list[str], first: frozenset, second: frozenset, check: frozenset | None) -> list[str]:
    """Swap ``first<space>second`` word pairs (in English words), left to right."""
    pieces = list(pieces)
    i = 0
    while i + 2 < len(pieces):
        if check is not None and pieces[i] in check and pieces[i + 1] == " " and pieces[i + 2] in first:
            raise ValueError(f"'{pieces[i]} {pieces[i + 2]}' (noun before adjective) cannot be "
                             "translated invertibly into a language that moves adjectives")
        if pieces[i] in first and pieces[i + 1] == " " and pieces[i + 2] in second:
            pieces[i], pieces[i + 2] = pieces[i + 2], pieces[i]
            i += 4
        else:
            i += 2
    return pieces


def from_english(text: str, lang: str, seed: int) -> str:
    spec = _spec(lang)
    pieces = _SPLIT.split(text)
    if spec.adjective_after_noun:
        pieces = _reorder(pieces, grammar.ADJECTIVES, grammar.NOUNS, check=grammar.NOUNS)
    return "".join(_map_words(pieces, lexicon(lang, seed), lang))


def to_english(text: str, lang: str, seed: int) -> str:
    spec = _spec(lang)
    pieces = _map_words(_SPLIT.split(text), _inverse(lang, seed), lang)
    if spec.adjective_after_noun:
        pieces = _reorder(pieces, grammar.NOUNS, grammar.ADJECTIVES, check=None)
    return "".join(pieces)


def translate_gapped(sentence: str, word: str, src: str, tgt: str, seed: int) -> str:
    """``sentence`` (which holds ``word`` once) translated, with the translation of ``word`` gapped (``___``)
    where the target language's word order puts it."""
    return grammar.gapped(translate(sentence, src, tgt, seed), translate(word, src, tgt, seed))


def _translate_gap_fill(line: str, src: str, tgt: str, seed: int) -> str:
    """A gap-fill line (``grammar.GAP_FILL``, ``{sentence with ___} . {label} : {word}``): the sentence is
    filled, translated and gapped again, so the gap moves with its word."""
    sentence, rest = line.rsplit(" . ", 1)
    word = rest.split(" ")[-1]
    return (translate_gapped(sentence.replace(grammar.GAP, word) + " .", word, src, tgt, seed) + " "
            + translate(rest, src, tgt, seed))


def translate(text: str, src: str, tgt: str, seed: int) -> str:
    """Exact translation between any two toy languages (``en`` or a target code); lines holding a gap are
    gap-fill exercises (:func:`_translate_gap_fill`)."""
    if src == tgt:
        return text
    if grammar.GAP in text:
        return "\n".join(_translate_gap_fill(line, src, tgt, seed) if grammar.GAP in line
                         else translate(line, src, tgt, seed) for line in text.split("\n"))
    english = text if src == ENGLISH else to_english(text, src, seed)
    return english if tgt == ENGLISH else from_english(english, tgt, seed)


def codeswitch(text: str, lang: str, seed: int, rng: random.Random, rate: float) -> str:
    """English ``text`` with each word switched to its ``lang`` word with probability ``rate`` (English word
    order kept, lines kept)."""
    lex = lexicon(lang, seed)
    return "\n".join(" ".join(lex[w] if w in lex and rng.random() < rate else w for w in line.split(" "))
                     for line in text.split("\n"))


def language_name(lang: str, in_lang: str, seed: int) -> str:
    """Name of ``lang`` written in ``in_lang`` (``language_name('el', 'el')`` is the endonym)."""
    english = grammar.LANG_WORDS[lang] if lang != ENGLISH else "english"
    return translate(english, ENGLISH, in_lang, seed)


def probe_pairs(lang: str, seed: int) -> list[tuple[str, str]]:
    """(English word, target word) pairs for the logit lens: nouns and content words first."""
    lex = lexicon(lang, seed)
    words = (list(grammar.THINGS) + list(grammar.OBJECTS) + grammar.PLACES + grammar.JOBS
             + grammar.COLORS + grammar.SIZES)
    return [(w, lex[w]) for w in words]
