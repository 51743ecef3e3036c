"""Translators behind one interface: texts of named records and fields in, their translations out.

The pipeline hands a translator :class:`Unit` items (a text plus the record id
and field it came from) and gets one translation per unit back. Machine
translators (:mod:`pivotune.translate.seq2seq`) see single sentences and are
cached; the two here translate whole fields and need no cache:

- :class:`PretranslatedTranslator` joins an already-translated file by record id
  (translations made elsewhere, e.g. with a commercial API, as in the PROM paper);
- :class:`ToyLexiconTranslator` is the toy world's exact lexicon translation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.readers import iter_json_file, iter_jsonl
from ..errors import DataError, PivotuneError


@dataclass(frozen=True)
class Unit:
    text: str
    record: str           # the record's id (or "line N" when rows have no id)
    field: str            # "instruction", "messages[2].content"


class Translator:
    """Base of every translator; subclasses set the attributes and implement :meth:`translate`."""

    key: str = ""                 # identity in the cache: model and decoding settings
    sentence_level: bool = True   # the pipeline cuts fields into sentences and protects spans
    cached: bool = True           # results go through the SQLite cache
    needs_ids: bool = False       # units must carry real record ids
    batch_size: int = 16
    calls: int = 0                # batches sent to the model, for tests and logs

    def check_languages(self, src: str, tgt: str) -> None:
        """Fail early (before any reading or loading work) for a language pair the translator cannot do."""

    def translate(self, units: list[Unit], src: str, tgt: str) -> list[str]:
        raise NotImplementedError


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def field_value(row: Any, path: str) -> Any:
    """The value at ``path`` ("output", "messages[2].content") of a record; KeyError when absent."""
    value = row
    for name, index in _PATH_PART.findall(path):
        if name:
            if not isinstance(value, dict) or name not in value:
                raise KeyError(path)
            value = value[name]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                raise KeyError(path)
            value = value[int(index)]
    return value


class PretranslatedTranslator(Translator):
    """Translations read from one file per target language, joined to the input by record id."""

    sentence_level = False
    cached = False
    needs_ids = True

    def __init__(self, files: dict[str, str | Path], id_field: str = "id"):
        self.files = {lang: Path(p) for lang, p in files.items()}
        self.id_field = id_field
        self.key = "pretranslated"
        self._rows: dict[str, dict[str, dict]] = {}

    def check_languages(self, src: str, tgt: str) -> None:
        if tgt not in self.files:
            raise PivotuneError(f"no pre-translated file for target language '{tgt}'; given: "
                                f"{', '.join(sorted(self.files)) or 'none'}. Pass one per language as LANG=FILE.")

    def _load(self, tgt: str) -> dict[str, dict]:
        if tgt in self._rows:
            return self._rows[tgt]
        path = self.files[tgt]
        shown = str(path)
        reader = iter_jsonl if path.suffix.lower() in (".jsonl", ".ndjson") else iter_json_file
        rows: dict[str, dict] = {}
        seen_at: dict[str, str] = {}
        for raw in reader(path, shown):
            if raw.problem is not None:
                raise DataError(f"{shown}, {raw.label}: {raw.problem.reason}. {raw.problem.hint}",
                                path=shown, row=raw.number)
            row = raw.value
            if not isinstance(row, dict) or row.get(self.id_field) is None:
                raise DataError(f"{shown}, {raw.label}: a pre-translated row needs an '{self.id_field}' field to "
                                "join it to the input record (set --id-field if yours is named otherwise).",
                                path=shown, row=raw.number, field=self.id_field)
            rid = str(row[self.id_field])
            if rid in rows:
                raise DataError(f"{shown}, {raw.label}: id '{rid}' appears twice (first at {seen_at[rid]}); each "
                                "record must be translated once.", path=shown, row=raw.number, field=self.id_field)
            rows[rid], seen_at[rid] = row, raw.label
        self._rows[tgt] = rows
        return rows

    def translate(self, units: list[Unit], src: str, tgt: str) -> list[str]:
        rows, shown = self._load(tgt), str(self.files[tgt])
        self.calls += 1
        out = []
        for u in units:
            if u.record not in rows:
                raise DataError(f"{shown}: no row with {self.id_field} '{u.record}', which the input has; the "
                                "pre-translated file must translate every input record.", path=shown,
                                field=self.id_field)
            try:
                value = field_value(rows[u.record], u.field)
            except KeyError:
                value = None
            if not isinstance(value, str) or (u.text.strip() and not value.strip()):
                got = "missing" if value is None else f"{type(value).__name__} {value!r}"[:80]
                raise DataError(f"{shown}, {self.id_field} '{u.record}', field '{u.field}': expected the translated "
                                f"text (a non-empty string), got {got}. The pre-translated record must have the "
                                "same fields as the input record.", path=shown, field=u.field)
            out.append(value)
        return out


class ToyLexiconTranslator(Translator):
    """The toy world's exact translation (a bijective lexicon, plus word order for Arabic)."""

    sentence_level = False
    cached = False

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.key = f"toy-lexicon:{seed}"

    def check_languages(self, src: str, tgt: str) -> None:
        from ..toy.language import ENGLISH, LANGUAGES

        known = [ENGLISH, *LANGUAGES]
        for role, lang in (("source", src), ("target", tgt)):
            if lang not in known:
                raise PivotuneError(f"unknown {role} language '{lang}' for the toy lexicon translator; the toy "
                                    f"world's languages are {', '.join(known)}.")

    def translate(self, units: list[Unit], src: str, tgt: str) -> list[str]:
        from ..toy.language import translate

        self.calls += 1
        out = []
        for u in units:
            try:
                out.append(translate(u.text, src, tgt, self.seed))
            except ValueError as exc:
                raise DataError(f"record {u.record}, field '{u.field}': the toy lexicon cannot translate this text "
                                f"({exc}); only text of the toy world's grammar can be translated exactly.",
                                field=u.field) from None
        return out
