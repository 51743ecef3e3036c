"""Cut a field into the pieces an MT model should see and the pieces it must not touch.

Sentence-level MT models (NLLB, M2M-100, OPUS-MT) are trained on single
sentences and garble code and long paragraphs. :func:`plan` turns a field into
a list of ``(text, translate)`` pieces whose concatenation is exactly the field:
fenced code blocks, line breaks, list markers, the whitespace between sentences
and anything without a letter are kept verbatim; each remaining sentence is
translated on its own.

Inline spans (inline code, URLs, e-mail addresses, numbers) stay inside their
sentence, since cutting a sentence at each of them would ruin the translation,
and :func:`spans_kept` checks them afterwards: a translation that lost or
changed one is redone with the sentence cut at its spans
(:func:`plan_around_spans`), so they always come through unchanged.
"""

from __future__ import annotations

import functools
import re
from collections import Counter

Piece = tuple[str, bool]          # (text, translate?)

_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)     # fenced code (an unclosed one runs to the end)
_INLINE = re.compile(
    r"`[^`\n]+`"                                                   # inline code
    r"|(?:https?|ftp)://[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}]"          # URL, without trailing punctuation
    r"|www\.[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}]"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"                               # e-mail address
    r"|\d+(?:[.,:]\d+)*")                                          # number
_LINE_HEAD = re.compile(r"^[ \t]*(?:(?:[-*+•]|\d+[.)]|[a-zA-Z][.)]|#+)[ \t]+)?")


@functools.lru_cache(maxsize=1)
def _segmenter():
    # pysbd: rule-based English sentence boundaries (abbreviations, decimals, ellipses) with no model download.
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def _has_letter(text: str) -> bool:
    """Whether ``text`` has a letter outside its inline spans (else there is nothing to translate)."""
    return any(ch.isalpha() for ch in _INLINE.sub("", text))


def _emit(pieces: list[Piece], text: str, translate: bool) -> None:
    """Append ``text``; a translatable piece gives its outer whitespace (and itself, if letterless) to protected."""
    if not text:
        return
    if translate:
        core = text.strip()
        if not _has_letter(core):
            translate, core = False, text
        else:
            lead = text[: len(text) - len(text.lstrip())]
            trail = text[len(text.rstrip()):]
            _emit(pieces, lead, False)
            pieces.append((core, True))
            _emit(pieces, trail, False)
            return
    if pieces and not pieces[-1][1] and not translate:
        pieces[-1] = (pieces[-1][0] + text, False)   # merge neighbouring protected text
    else:
        pieces.append((text, translate))


def sentences(line: str) -> list[str]:
    """``line`` split into sentences whose concatenation is ``line`` (whitespace stays attached).

    Inline spans are masked first, so a URL or a decimal number never ends a sentence.
    """
    if not line.strip():
        return [line] if line else []
    masked = _INLINE.sub(lambda m: "x" * len(m.group(0)), line)
    parts = _segmenter().segment(masked)
    if "".join(parts) != masked:               # pysbd may alter odd text; then keep the line whole
        return [line]
    out, pos = [], 0
    for part in parts:
        out.append(line[pos:pos + len(part)])
        pos += len(part)
    return out


def plan(text: str) -> list[Piece]:
    """Pieces of ``text``: sentences to translate, everything else kept as is; ``"".join`` gives ``text``."""
    pieces: list[Piece] = []
    pos = 0
    for m in _BLOCK.finditer(text):
        _plan_free(pieces, text[pos:m.start()])
        _emit(pieces, m.group(0), False)
        pos = m.end()
    _plan_free(pieces, text[pos:])
    return pieces


def _plan_free(pieces: list[Piece], text: str) -> None:
    for line in re.split(r"(\n)", text):
        if line == "\n":
            _emit(pieces, line, False)
            continue
        head = _LINE_HEAD.match(line).group(0)
        _emit(pieces, head, False)
        for sentence in sentences(line[len(head):]):
            _emit(pieces, sentence, True)


def plan_around_spans(sentence: str) -> list[Piece]:
    """``sentence`` cut at its inline spans: the spans are kept, the stretches between translated."""
    pieces: list[Piece] = []
    pos = 0
    for m in _INLINE.finditer(sentence):
        _emit(pieces, sentence[pos:m.start()], True)
        _emit(pieces, m.group(0), False)
        pos = m.end()
    _emit(pieces, sentence[pos:], True)
    return pieces


def spans_kept(source: str, translation: str) -> bool:
    """True when ``translation`` carries exactly the inline spans (code, URLs, numbers) of ``source``."""
    return Counter(_INLINE.findall(source)) == Counter(_INLINE.findall(translation))


def to_translate(pieces: list[Piece]) -> list[str]:
    return [text for text, translate in pieces if translate]


def rejoin(pieces: list[Piece], translated: dict[str, str]) -> str:
    """The field again, each translatable piece replaced by its translation."""
    return "".join(translated[text] if translate else text for text, translate in pieces)
