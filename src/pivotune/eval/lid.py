"""Which language a line of text is in: by writing system (script) and by a statistical identifier.

- **Script** (:func:`script_of`, :func:`main_script`): the Unicode script of a text's letters, read
  from the Unicode character names (``GREEK SMALL LETTER ALPHA`` → ``GREEK``; CJK ideographs →
  ``CJK``). Only letters count (digits, punctuation and combining vowel signs carry no script).
- **The toy world's languages** are identified by script alone (:func:`toy_language`): each toy
  language writes every word in its own script (Greek, Thai, Arabic letters) and English in Latin,
  so the script of a text *is* its toy language.
- **Real languages** go to :func:`identify`, py3langid, chosen because its model (an ``npz`` array
  file, no pickle) ships inside the PyPI wheel: nothing is downloaded at run time, it is pure Python
  over numpy, deterministic, and covers 140 languages including every PROM and CLO language.
  A label whose probability is at most :data:`MIN_PROBABILITY` is ``"unknown"`` (the Language
  Confusion Benchmark's rule for its fastText identifier).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter

from ..errors import PivotuneError
from ..languages import FLORES_CODES, LanguageCodeError, check_syntax, iso639_1

MIN_PROBABILITY = 0.3
UNKNOWN = "unknown"

# ISO 15924 script codes (the FLORES-200 code's suffix, ``tha_Thai``) -> the first word of the Unicode
# names of that script's letters.
_UNICODE_SCRIPTS: dict[str, frozenset[str]] = {
    "Latn": frozenset({"LATIN"}), "Grek": frozenset({"GREEK"}), "Cyrl": frozenset({"CYRILLIC"}),
    "Arab": frozenset({"ARABIC"}), "Hebr": frozenset({"HEBREW"}), "Thai": frozenset({"THAI"}),
    "Deva": frozenset({"DEVANAGARI"}), "Beng": frozenset({"BENGALI"}), "Guru": frozenset({"GURMUKHI"}),
    "Gujr": frozenset({"GUJARATI"}), "Orya": frozenset({"ORIYA"}), "Taml": frozenset({"TAMIL"}),
    "Telu": frozenset({"TELUGU"}), "Knda": frozenset({"KANNADA"}), "Mlym": frozenset({"MALAYALAM"}),
    "Sinh": frozenset({"SINHALA"}), "Ethi": frozenset({"ETHIOPIC"}), "Armn": frozenset({"ARMENIAN"}),
    "Geor": frozenset({"GEORGIAN"}), "Khmr": frozenset({"KHMER"}), "Laoo": frozenset({"LAO"}),
    "Mymr": frozenset({"MYANMAR"}), "Hans": frozenset({"CJK"}), "Hant": frozenset({"CJK"}),
    "Jpan": frozenset({"CJK", "HIRAGANA", "KATAKANA"}), "Hang": frozenset({"HANGUL"}),
}


def script_of(ch: str) -> str | None:
    """The script of one letter (``LATIN``, ``THAI``, ``CJK``...); None for anything that is not a letter."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    return "CJK" if name.startswith("CJK") else (name.split(" ", 1)[0] or None)


def letter_scripts(text: str) -> Counter:
    """How many letters of ``text`` each script holds."""
    return Counter(s for s in map(script_of, text) if s is not None)


def main_script(text: str) -> str | None:
    """The script holding most of ``text``'s letters (None when it has none)."""
    counts = letter_scripts(text)
    return counts.most_common(1)[0][0] if counts else None


# -- the toy world ------------------------------------------------------------------------------------

@functools.cache
def _toy_scripts() -> dict[str, str]:
    from ..toy.language import ENGLISH, LANGUAGES

    table = {script_of(spec.script.onsets[0]): code for code, spec in LANGUAGES.items()}
    table["LATIN"] = ENGLISH
    assert len(table) == len(LANGUAGES) + 1, "two toy languages share a script"
    return table


def toy_languages() -> tuple[str, ...]:
    return tuple(_toy_scripts().values())


def toy_language(text: str) -> str | None:
    """The toy language of ``text``: the one whose script holds most of its letters (None: no letters,
    or letters of a script no toy language uses)."""
    script = main_script(text)
    return None if script is None else _toy_scripts().get(script)


def check_toy_language(lang: str, where: str = "") -> str:
    if lang not in _toy_scripts().values():
        raise LanguageCodeError(f"{where + ': ' if where else ''}'{lang}' is not a toy world language "
                                f"({', '.join(toy_languages())}).")
    return lang


# -- real languages -----------------------------------------------------------------------------------

@functools.cache
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def known_languages() -> frozenset[str]:
    """The identifier's labels (ISO 639-1 where one exists)."""
    return frozenset(_identifier().labels)


def lid_code(lang: str, where: str = "") -> str:
    """The identifier's label for the language code ``lang`` (``th`` for ``th``, ``tha``, ``tha_Thai``
    or ``th-TH``); a clear error for a code that is not one or a language the identifier lacks."""
    check_syntax(lang, where)
    code = iso639_1(lang)
    if code not in known_languages():
        raise PivotuneError(f"{where + ': ' if where else ''}the language identifier (py3langid) does not "
                            f"know '{lang}', so language confusion cannot be measured for it; it knows "
                            f"{len(known_languages())} languages ({', '.join(sorted(known_languages())[:12])}, ...).")
    return code


def identify(line: str) -> str:
    """The identifier's label for ``line``, or ``"unknown"`` when its probability is at most 0.3."""
    label, prob = _identifier().classify(line)
    return label if prob > MIN_PROBABILITY else UNKNOWN


def language_scripts(lang: str) -> frozenset[str]:
    """The scripts ``lang`` is written in (from its FLORES-200 code); empty when the table lacks it."""
    given = re.fullmatch(r"[a-z]{2,3}[-_]([A-Z][a-z]{3})(?:[-_].*)?", lang)   # a script subtag: tha_Thai, sr-Latn
    script = given.group(1) if given else FLORES_CODES.get(iso639_1(lang), "").rpartition("_")[2]
    return _UNICODE_SCRIPTS.get(script, frozenset())


@functools.cache
def _script_users() -> Counter:
    return Counter(s for code in FLORES_CODES.values() for s in _UNICODE_SCRIPTS.get(code.split("_")[1], ()))


def own_script(lang: str) -> bool:
    """Whether ``lang``'s scripts are used by no other language of the FLORES table (Thai, Greek, Tamil...):
    then a line in that script is in ``lang``, however short."""
    scripts = language_scripts(lang)
    return bool(scripts) and all(_script_users()[s] == 1 for s in scripts)
