"""Logit-lens probes written in the toy world's own formats.

The toy base model never saw quotes or ``Name: "word"`` lines, so Wendler et al.'s prompt shapes are
out of its distribution and every probability stays near zero. Its pretraining text has its own shapes
instead: bilingual lines ``english : w greek : w'`` (``grammar.BILINGUAL``) and reading questions ending
``answer : a`` (``grammar.READING_QA``). The probes here use those, so the lens measures what the model
learnt rather than how it copes with an unseen format.
"""

from __future__ import annotations

import random
from pathlib import Path

from . import grammar
from .language import ENGLISH, lexicon, translate

#: ``grammar.BILINGUAL`` as a probe template (fields of :mod:`pivotune.analysis.probe_items`).
TRANSLATION_TEMPLATE = grammar.BILINGUAL.format(src_lang="{source_name}", src="{source}",
                                                tgt_lang="{target_name}", tgt="{target}")
#: a cloze line: the sentence with ``___``, then the answer as a reading question gives it
CLOZE_TEMPLATE = "{sentence} {label} : {answer}"

# one English sentence shape per word category, each holding its slot word once
_CLOZE_SHAPES = (
    ("thing", grammar.THINGS, "the {color} {thing} is {size} ."),
    ("place", grammar.PLACES, "{name} reads a book in {place} ."),
    ("job", grammar.JOBS, "{name} works as a {job} ."),
    ("color", grammar.COLORS, "the {thing} of {name} is {color} ."),
    ("size", grammar.SIZES, "the {color} {thing} is {size} ."),
)


def answer_label(lang: str, seed: int) -> str:
    """The toy word for "answer" in ``lang``."""
    return translate("answer", ENGLISH, lang, seed)


def cloze_rows(lang: str, seed: int) -> list[tuple[str, str, str]]:
    """``(english word, target word, target sentence with ___)`` for the toy's content words, in the
    cloze-file format of :func:`pivotune.analysis.probe_items.read_cloze_file`; deterministic in ``seed``."""
    lex = lexicon(lang, seed)
    rng = random.Random(f"pivotune-toy-cloze:{lang}:{seed}")
    rows = []
    for slot, words, shape in _CLOZE_SHAPES:
        for word in words:
            fill = {"name": rng.choice(grammar.NAMES), "thing": rng.choice(grammar.THINGS),
                    "color": rng.choice(grammar.COLORS), "size": rng.choice(grammar.SIZES), slot: word}
            target = translate(shape.format(**fill), ENGLISH, lang, seed).split(" ")
            # the translation is word for word, so the slot word appears once (other slots never equal it)
            i = target.index(lex[word])
            rows.append((word, lex[word], " ".join(target[:i] + ["___"] + target[i + 1:])))
    return rows


def write_cloze_file(lang: str, seed: int, path: str | Path) -> Path:
    """Write :func:`cloze_rows` as a cloze file (``english<TAB>target<TAB>sentence`` lines)."""
    from ..io import write_text_atomic

    path = Path(path)
    write_text_atomic(path, "".join(f"{e}\t{t}\t{s}\n" for e, t, s in cloze_rows(lang, seed)))
    return path
