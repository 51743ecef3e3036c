"""Text to learn target tokens from: plain-text files, instruction files and parallel corpora.

Only words written in the target script are learned from, so a file may mix languages (an English
instruction with its Thai response, a translation-task sample) without harm.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..data.load import _collect, load_instructions, load_parallel
from ..data.readers import text_lines
from ..data.records import ParallelPair, Sample

PLAIN_TEXT = ".txt"


def texts_of(records: Iterable[Sample | ParallelPair]) -> list[str]:
    """The non-empty texts of samples (instruction, input, output, chat turns) and of parallel pairs (the
    target side)."""
    out: list[str] = []
    for rec in records:
        if isinstance(rec, ParallelPair):
            parts = [rec.target]
        elif rec.messages is not None:
            parts = [m.get("content", "") for m in rec.messages]
        else:
            parts = [rec.instruction, rec.input, rec.output]
        out += [p for p in parts if p]
    return out


def read_texts(path: str | Path, *, lang: str = "", skip_invalid: bool = False) -> list[str]:
    """The texts of one file: a ``.txt`` file line by line, any other an instruction file (Alpaca or chat
    ``.json``/``.jsonl``/``.parquet``/``.csv``); errors name the file and line."""
    shown = str(path)
    if Path(shown).suffix.lower() == PLAIN_TEXT:
        # the loaders' row validation, so an undecodable line is reported (or skipped) as in any data file
        lines = _collect(shown, text_lines(Path(shown), shown), lambda raw: raw.value.strip(), skip_invalid)
        return [line for line in lines if line]
    return texts_of(load_instructions(shown, role="tgt", lang=lang, skip_invalid=skip_invalid))


def read_parallel_targets(path: str | Path, *, lang: str = "", skip_invalid: bool = False) -> list[str]:
    """The target sides of a parallel corpus (``.tsv``, or ``.jsonl``/``.json``/``.parquet``/``.csv`` with
    ``source``/``target``)."""
    return texts_of(load_parallel(str(path), tgt_lang=lang, skip_invalid=skip_invalid))
