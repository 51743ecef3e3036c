"""The target script: which characters are its own, and which byte strings only its text can contain.

A vocabulary extension may only touch text written in the target script. Scripts are ISO 15924 codes
(``Thai``, ``Grek``, ``Arab``, ``Deva``) matched against the Unicode Script property, so a shared mark
such as the Devanagari danda (Script=Common, used by Bengali and Hindi alike) is never the target's.
A language code gives its script through the FLORES-200 table (``th`` → ``tha_Thai`` → ``Thai``) or its
own script subtag (``sr-Cyrl``); without either, the corpus's most frequent script is taken.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import regex

from ..errors import PivotuneError
from ..languages import FLORES_CODES, primary

#: ISO 15924 codes of writing systems that Unicode spells as several scripts.
_COMPOSITE = {"Hans": ("Hani",), "Hant": ("Hani",), "Jpan": ("Hira", "Kana", "Hani"), "Kore": ("Hang", "Hani")}
#: Scripts no extension may claim: English's own, and the ones every language shares (Common, Inherited, Unknown).
SHARED_SCRIPTS = ("Latn", "Zyyy", "Zinh", "Zzzz")
#: Scripts tried when the corpus names its own (those of the FLORES-200 table and a few more).
_KNOWN = tuple(sorted({s for code in FLORES_CODES.values() for s in _COMPOSITE.get(code[4:], (code[4:],))}
                      | {"Copt", "Syrc", "Thaa", "Tibt", "Tfng", "Cher", "Cans", "Mong", "Olck", "Nkoo"}))
_INHERITED = regex.compile(r"\p{sc=Zinh}")


def language_scripts(code: str) -> tuple[str, ...] | None:
    """The Unicode scripts a language code names (``zh`` → ``Hani``; ``sr-Latn`` → ``Latn``), or None."""
    parts = code.replace("_", "-").split("-")
    subtag = next((p for p in parts[1:] if len(p) == 4), None)
    if subtag is None and primary(code) in FLORES_CODES:
        subtag = FLORES_CODES[primary(code)][4:]
    return None if subtag is None else _COMPOSITE.get(subtag, (subtag,))


def detect_scripts(texts: Iterable[str]) -> tuple[str, ...]:
    """The corpus's most frequent script among its letters and marks (one script; empty when none is known)."""
    counts = Counter(ch for text in texts for ch in text if unicodedata.category(ch)[0] in "LM")
    by_script: Counter[str] = Counter()
    for ch, n in counts.items():
        script = next((s for s in _KNOWN if _pattern((s,)).match(ch)), None)
        if script is not None:
            by_script[script] += n
    return (by_script.most_common(1)[0][0],) if by_script else ()


@functools.lru_cache(maxsize=None)
def _pattern(scripts: tuple[str, ...]) -> regex.Pattern:
    return regex.compile("[" + "".join(rf"\p{{sc={s}}}" for s in scripts) + "]")


@dataclass(frozen=True)
class OptionNames:
    """What the user calls the settings an extension's errors point to: the CLI's options, or the run config's keys."""

    n_new: str = "--n-new"
    language: str = "--lang"
    script: str = "--script"


CLI_NAMES = OptionNames()
CONFIG_NAMES = OptionNames("vocab.n_new", "vocab.languages", "vocab.scripts")


@dataclass(frozen=True)
class TargetScripts:
    """The scripts an extension serves; checked on construction (``names``: how errors name the settings)."""

    codes: tuple[str, ...]
    names: OptionNames = field(default=CLI_NAMES, compare=False)

    def __post_init__(self):
        if not self.codes:
            raise PivotuneError(f"No target script: give the language ({self.names.language}) or the script "
                                f"({self.names.script}, e.g. Thai).")
        for code in self.codes:
            try:
                _pattern((code,))
            except regex.error:
                raise PivotuneError(f"'{code}' is not a Unicode script code; use an ISO 15924 code such as Thai, "
                                    "Grek, Arab, Deva, Beng, Ethi, Hani.") from None
            if code in SHARED_SCRIPTS:
                raise PivotuneError(
                    f"Cannot extend the vocabulary for script '{code}': "
                    + ("English is written in Latin script, so new Latin tokens would change how English "
                       "tokenizes. " if code == "Latn" else "its characters belong to every language. ")
                    + "Vocabulary extension serves a target language written in a script of its own (Thai, "
                      f"Greek, Arabic, Devanagari, ...); name that script ({self.names.script}), or leave the "
                      "tokenizer as it is.")

    def is_target(self, ch: str) -> bool:
        return bool(_pattern(self.codes).match(ch))

    def is_word(self, text: str) -> bool:
        """Text made of target-script characters (and combining marks), with at least one of the former."""
        return any(self.is_target(c) for c in text) and all(self.is_target(c) or _INHERITED.match(c) for c in text)

    def marks(self) -> str:
        r"""The script's combining marks (Unicode category M) as character-class text: ``\x{0E31}\x{0E34}…``."""
        return _marks(self.codes)

    def binds(self, data: bytes) -> bool:
        """Whether every text whose UTF-8 contains ``data`` contains a target-script character.

        True when ``data`` holds a whole target character, or ends in the start of a character that can
        only be a target one (``E0 B9`` opens U+0E40–U+0E7F, Thai or unassigned; ``E0 B8`` does not: U+0E3F,
        the baht sign, is Common). Leading continuation bytes belong to a character that began before and
        decide nothing.
        """
        i, n = 0, len(data)
        while i < n and 0x80 <= data[i] < 0xC0:
            i += 1
        while i < n:
            width = _utf8_width(data[i])
            if width == 0:
                return False
            if i + width > n:
                return _only_target_completions(bytes(data[i:]), self.codes, width)
            try:
                ch = data[i:i + width].decode("utf-8")
            except UnicodeDecodeError:
                return False
            if self.is_target(ch):
                return True
            i += width
        return False


def _utf8_width(lead: int) -> int:
    """The byte length of a UTF-8 character from its first byte (0: not a first byte)."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead < 0xE0:
        return 2
    if 0xE0 <= lead < 0xF0:
        return 3
    if 0xF0 <= lead < 0xF5:
        return 4
    return 0


_MAX_COMPLETIONS = 4096   # a lone 3- or 4-byte lead opens too many characters to be any one script's


@functools.lru_cache(maxsize=65536)
def _only_target_completions(prefix: bytes, codes: tuple[str, ...], width: int) -> bool:
    missing = width - len(prefix)
    try:
        lo = (prefix + b"\x80" * missing).decode("utf-8")
        hi = (prefix + b"\xbf" * missing).decode("utf-8")
    except UnicodeDecodeError:   # an overlong or surrogate prefix: no valid text contains it
        return False
    if ord(hi) - ord(lo) >= _MAX_COMPLETIONS:
        return False
    assigned = [chr(c) for c in range(ord(lo), ord(hi) + 1) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    return bool(assigned) and all(_pattern(codes).match(c) for c in assigned)


@functools.lru_cache(maxsize=None)
def _marks(codes: tuple[str, ...]) -> str:
    pattern = _pattern(codes)
    return "".join(f"\\x{{{c:04X}}}" for c in range(0x30000)
                   if unicodedata.category(chr(c))[0] == "M" and pattern.match(chr(c)))
