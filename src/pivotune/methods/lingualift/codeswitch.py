"""Bilingual lexicons and code-switching for LinguaLIFT's stage 1.

Lexicon file format (MUSE's bilingual dictionaries, e.g. ``en-th.txt``): UTF-8 text, one word pair per line,
``english<space or tab>translation``; a word may appear on several lines (several translations, one drawn at
random per replacement); blank lines are ignored. Anything else on a line is an error naming the file and line.

Code-switching replaces content words of English text with a translation from one of the lexicons. A content
word is a word (a run of letters/digits) whose lower-cased form has a lexicon entry and is not an English
function word (``FUNCTION_WORDS``). For a sample with ``n`` such words, exactly ``round(ratio · n)`` (half up)
are replaced, chosen by a generator seeded from ``(seed, sample index)``: the same inputs give the same output
on every run and machine. Each replaced word takes its language uniformly among the lexicons that have it,
so one sample mixes languages. The English response is kept: the LM learns to answer in English from
code-switched input.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

from ...data.readers import text_lines
from ...data.records import Sample
from ...errors import DataError

#: English function words that are never switched (articles, pronouns, auxiliaries, prepositions, conjunctions).
FUNCTION_WORDS = frozenset(
    "a an the this that these those is are was were be been being am do does did has have had will would shall "
    "should can could may might must of to in on at by for from with about into over under after before than "
    "as and or but if then so not no nor i you he she it we they me him her us them my your his its our their "
    "what which who whom whose when where why how there here".split())

_WORDS = re.compile(r"(\w+)")   # re.split with a group: words at odd indexes, separators at even


@dataclass(frozen=True)
class Lexicon:
    """English word (lower case) → its translations, in file order, for one target language."""

    lang: str
    entries: dict[str, tuple[str, ...]]
    path: str = ""

    def __len__(self) -> int:
        return len(self.entries)


def read_lexicon(path: str | Path, lang: str) -> Lexicon:
    """Read a MUSE-style two-column lexicon (see the module docstring)."""
    shown = str(path)
    entries: dict[str, list[str]] = {}
    for row in text_lines(Path(path), shown):
        if row.problem is not None:
            raise DataError(f"{shown}, line {row.number}: {row.problem.reason}. {row.problem.hint}".strip(),
                            path=shown, row=row.number)
        if not row.value.strip():
            continue
        fields = row.value.split()
        if len(fields) != 2:
            raise DataError(
                f"{shown}, line {row.number}: expected two columns, 'english translation' separated by a space or "
                f"tab (the MUSE dictionary format), got {len(fields)} field(s): {row.value[:80]!r}.",
                path=shown, row=row.number)
        entries.setdefault(fields[0].lower(), []).append(fields[1])
    if not entries:
        raise DataError(f"{shown}: the lexicon has no word pairs.", path=shown)
    return Lexicon(lang, {k: tuple(v) for k, v in entries.items()}, shown)


def write_lexicon(path: str | Path, pairs: list[tuple[str, str]]) -> None:
    """Write pairs in the same format (one ``english translation`` per line)."""
    from ...io import write_text_atomic

    for english, target in pairs:
        if len(english.split()) != 1 or len(target.split()) != 1:
            raise ValueError(f"lexicon entries must be single words, got {english!r} → {target!r}")
    write_text_atomic(path, "".join(f"{e} {t}\n" for e, t in pairs))


def switch_count(ratio: float, n: int) -> int:
    """Words to replace among ``n`` content words: round(ratio · n), halves rounded up."""
    return math.floor(ratio * n + 0.5)


@dataclass(frozen=True)
class Switched:
    texts: tuple[str, ...]
    content_words: int
    switched: int


def code_switch(texts: tuple[str, ...] | list[str], lexicons: list[Lexicon], ratio: float,
                rng: random.Random) -> Switched:
    """Replace ``round(ratio · n)`` of the ``n`` content words across ``texts`` (one draw for all of them)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"the switch ratio must be in [0, 1], got {ratio}")
    pieces = [_WORDS.split(t) for t in texts]   # words at odd indexes
    slots = [(i, j) for i, p in enumerate(pieces) for j in range(1, len(p), 2)
             if p[j].lower() not in FUNCTION_WORDS and any(p[j].lower() in lex.entries for lex in lexicons)]
    chosen = sorted(rng.sample(range(len(slots)), switch_count(ratio, len(slots))))
    for k in chosen:
        i, j = slots[k]
        word = pieces[i][j].lower()
        lex = rng.choice([lex for lex in lexicons if word in lex.entries])
        pieces[i][j] = rng.choice(lex.entries[word])
    return Switched(tuple("".join(p) for p in pieces), len(slots), len(chosen))


def codeswitch_samples(samples: list[Sample], lexicons: list[Lexicon], ratio: float, seed: int) -> list[Sample]:
    """Role ``cs`` samples: each English sample's instruction and input code-switched, its output kept."""
    if not lexicons:
        raise DataError("code-switching needs at least one lexicon (lingualift.lexicons).")
    out = []
    for index, s in enumerate(samples):
        if s.messages is not None:
            raise DataError(f"{s.origin or s.source}: code-switching takes Alpaca-form samples "
                            "(instruction/input/output), not chat messages.", path=s.source)
        rng = random.Random(f"pivotune-codeswitch:{seed}:{index}")
        sw = code_switch((s.instruction, s.input), lexicons, ratio, rng)
        out.append(dataclasses.replace(s, instruction=sw.texts[0], input=sw.texts[1], role="cs",
                                       lang="+".join(sorted(lex.lang for lex in lexicons)),
                                       meta={**s.meta, "content_words": sw.content_words, "switched": sw.switched}))
    return out
