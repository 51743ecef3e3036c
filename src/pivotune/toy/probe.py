"""Logit-lens probes written in the toy world's own formats.

The toy base model never saw quotes or ``Name: "word"`` lines, so Wendler et al.'s prompt shapes are
out of its distribution. Its corpus has its own shapes instead: gap-fill exercises
``{sentence with ___} answer : {word}`` (``grammar.GAP_FILL``) and bilingual lines
``english : w greek : w'`` (``grammar.BILINGUAL``).

The regulation's probe in the toy world is the cloze (what PROM's paper ran: Wendler et al.'s cloze task
translated into each target language): a known fact of the world's knowledge base written in the target
language with its last content word gapped (``Άννα ... ___ .``), so no English word is in the prompt and
English can only show up as the model's own hidden pivot. The translation pairs (``english : w greek :``)
stay as the option that shows the English word.
"""

from __future__ import annotations

from pathlib import Path

from . import grammar
from .grammar import Grammar
from .language import ENGLISH, translate, translate_gapped

#: ``grammar.BILINGUAL`` as a probe template (fields of :mod:`pivotune.analysis.probe_items`).
TRANSLATION_TEMPLATE = grammar.BILINGUAL.format(src_lang="{source_name}", src="{source}",
                                                tgt_lang="{target_name}", tgt="{target}")
#: ``grammar.GAP_FILL`` as a cloze probe template: the sentence with ``___``, the word for "answer", the answer
CLOZE_TEMPLATE = grammar.GAP_FILL.replace("answer :", "{label} :")


def answer_label(lang: str, seed: int) -> str:
    """The toy word for "answer" in ``lang``."""
    return translate("answer", ENGLISH, lang, seed)


def cloze_rows(g: Grammar, lang: str, seed: int) -> list[tuple[str, str, str]]:
    """``(english word, target word, target sentence with ___)``: every known fact of ``g``'s knowledge base
    (``grammar.KB_GAPS`` per name), in the cloze-file format of
    :func:`pivotune.analysis.probe_items.read_cloze_file`; a pure function of the grammar and ``seed``."""
    rows = []
    for name in grammar.NAMES:
        for fact, slot in grammar.KB_GAPS:
            sentence, word = g.kb_gap(name, fact, slot)
            rows.append((word, translate(word, ENGLISH, lang, seed),
                         translate_gapped(sentence, word, ENGLISH, lang, seed)))
    return rows


def write_cloze_file(rows: list[tuple[str, str, str]], path: str | Path) -> Path:
    """Write :func:`cloze_rows` as a cloze file (``english<TAB>target<TAB>sentence`` lines)."""
    from ..io import write_text_atomic

    path = Path(path)
    write_text_atomic(path, "".join(f"{e}\t{t}\t{s}\n" for e, t, s in rows))
    return path


__all__ = ["CLOZE_TEMPLATE", "TRANSLATION_TEMPLATE", "answer_label", "cloze_rows", "write_cloze_file"]
