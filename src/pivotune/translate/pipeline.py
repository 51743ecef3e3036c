"""Translate an instruction file (Alpaca or chat form) into target languages, resumably.

Reading validates every row first (:func:`pivotune.data.load.load_instructions`),
so a bad row fails before any model work. Each text field (``instruction``,
``input``, ``output``, or every message ``content``) is cut into sentences and
protected spans (:mod:`pivotune.translate.protect`); the distinct sentences
are looked up in the cache, the rest are sorted by length (longest first: an
out-of-memory batch shows at once, and padding stays small) and translated in
batches, each batch committed to the cache before the next. The output file,
one per language, has the input's records with the same ids and fields, and
appears only when complete.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..data.load import load_instructions
from ..data.readers import iter_json_file, iter_jsonl
from ..errors import DataError, PivotuneError
from ..io import child_path, write_json_atomic, write_jsonl_atomic
from .backends import Translator, Unit
from .cache import TranslationCache
from .protect import plan, plan_around_spans, rejoin, spans_kept, to_translate

log = logging.getLogger(__name__)

ALPACA_TEXT_FIELDS = ("instruction", "input", "output")


@dataclass
class Record:
    rid: str              # the row's id, or its location ("line 7") when it has none
    row: dict


@dataclass
class TranslateResult:
    outputs: dict[str, Path] = field(default_factory=dict)
    records: int = 0
    translated: int = 0   # distinct texts sent to the translator in this run
    from_cache: int = 0   # distinct texts found in the cache
    skipped: list[str] = field(default_factory=list)


def read_records(path: str | Path, *, id_field: str = "id", skip_invalid: bool = False,
                 unique_ids: bool = False) -> tuple[list[Record], list[str]]:
    """The rows of a ``.json``/``.jsonl`` instruction file, validated, with everything they hold."""
    shown = str(path)
    p = Path(path)
    if p.suffix.lower() not in (".json", ".jsonl", ".ndjson"):
        raise DataError(f"{shown}: translate reads .json (array or JSON Lines) and .jsonl files, so that every "
                        "field of a record, including its id, comes through to the output; convert the file first.",
                        path=shown)
    loaded = load_instructions(shown, role="en", lang="en", skip_invalid=skip_invalid)
    valid = {s.origin[len(shown) + 2:] for s in loaded.records}          # origin is "FILE, line N"
    reader = iter_json_file if p.suffix.lower() == ".json" else iter_jsonl
    records, seen = [], {}
    for raw in reader(p, shown):
        if raw.label not in valid:
            continue
        rid = raw.value.get(id_field)
        if unique_ids:
            if rid is None:
                raise DataError(f"{shown}, {raw.label}: no '{id_field}' field; joining pre-translated records needs "
                                "an id on every row (set --id-field if yours is named otherwise).",
                                path=shown, row=raw.number, field=id_field)
            if str(rid) in seen:
                raise DataError(f"{shown}, {raw.label}: id '{rid}' also used at {seen[str(rid)]}; ids must be "
                                "unique to join translations by id.", path=shown, row=raw.number, field=id_field)
            seen[str(rid)] = raw.label
        records.append(Record(raw.label if rid is None else str(rid), raw.value))
    return records, loaded.skipped


def text_fields(row: dict) -> list[tuple[str, str]]:
    """(field path, text) of every non-empty text a record holds."""
    if row.get("messages") is not None:
        return [(f"messages[{i}].content", m["content"]) for i, m in enumerate(row["messages"])
                if m["content"].strip()]
    return [(f, row[f]) for f in ALPACA_TEXT_FIELDS if isinstance(row.get(f), str) and row[f].strip()]


def _set_field(row: dict, path: str, value: str) -> None:
    if path.startswith("messages["):
        index = int(path[len("messages["):path.index("]")])
        row["messages"][index]["content"] = value
    else:
        row[path] = value


class _Runner:
    """Translates distinct texts through the cache in length-sorted batches, with one progress bar per pass."""

    def __init__(self, translator: Translator, cache: TranslationCache | None, src: str, tgt: str,
                 progress: bool, result: TranslateResult):
        self.t, self.cache, self.src, self.tgt = translator, cache, src, tgt
        self.progress, self.result = progress, result

    def run(self, units: list[Unit], what: str) -> dict:
        """Translation per distinct text (sentence-level translators) or per (record, field) (field-level ones)."""
        by_text = self.t.sentence_level
        first: dict = {}
        for u in units:
            first.setdefault(u.text if by_text else (u.record, u.field), u)
        use_cache = by_text and self.cache is not None and self.t.cached
        done = self.cache.get_many(self.t.key, self.src, self.tgt, first) if use_cache else {}
        missing = sorted((k for k in first if k not in done), key=lambda k: len(first[k].text), reverse=True)
        bar = tqdm(total=len(first), initial=len(first) - len(missing), unit="text", disable=not self.progress,
                   desc=f"{self.src}->{self.tgt} {what}")
        size = max(1, self.t.batch_size)
        for i in range(0, len(missing), size):
            batch = missing[i:i + size]
            out = self.t.translate([first[k] for k in batch], self.src, self.tgt)
            if len(out) != len(batch):
                raise PivotuneError(f"translator {self.t.key} returned {len(out)} translations for {len(batch)} texts")
            if use_cache:
                self.cache.put_many(self.t.key, self.src, self.tgt, zip(batch, out))
            done.update(zip(batch, out))
            bar.update(len(batch))
        bar.close()
        self.result.translated += len(missing)
        self.result.from_cache += len(first) - len(missing)
        return done


def translate_records(records: list[Record], translator: Translator, *, src: str, tgt: str,
                      cache: TranslationCache | None = None, progress: bool = False,
                      result: TranslateResult | None = None) -> list[dict]:
    """Translated copies of ``records`` (same ids and fields, text fields in ``tgt``)."""
    result = result if result is not None else TranslateResult()
    runner = _Runner(translator, cache, src, tgt, progress, result)
    fields = [(r.rid, path, text) for r in records for path, text in text_fields(r.row)]
    if translator.sentence_level:
        plans = {text: plan(text) for _, _, text in fields}
        units = [Unit(s, rid, path) for rid, path, text in fields for s in to_translate(plans[text])]
        done = runner.run(units, "sentences")
        # a translation that lost or changed a number, URL or code span is redone with the sentence cut at them
        redo = {u.text: plan_around_spans(u.text) for u in units if not spans_kept(u.text, done[u.text])}
        if redo:
            log.info("%d sentences lost a number, URL or code span in translation; translating them around those",
                     len(redo))
            parts = runner.run([Unit(s, "", "") for p in redo.values() for s in to_translate(p)], "around spans")
            done.update({s: rejoin(p, parts) for s, p in redo.items()})
        translated = {(rid, path): rejoin(plans[text], done) for rid, path, text in fields}
    else:
        translated = runner.run([Unit(text, rid, path) for rid, path, text in fields], "fields")
    out = []
    for r in records:
        row = copy.deepcopy(r.row)
        for path, _ in text_fields(r.row):
            _set_field(row, path, translated[(r.rid, path)])
        out.append(row)
    return out


def output_path(input_path: str | Path, out_dir: str | Path, lang: str) -> Path:
    """``OUT_DIR/<input stem>.<lang><input suffix>``: alpaca.jsonl -> out/alpaca.th.jsonl (never outside OUT_DIR)."""
    p = Path(input_path)
    return child_path(out_dir, f"{p.stem}.{lang}{p.suffix.lower()}")


def translate_file(input_path: str | Path, out_dir: str | Path, langs: list[str], translator: Translator, *,
                   src: str = "en", cache_path: str | Path | None = None, id_field: str = "id",
                   skip_invalid: bool = False, progress: bool = False, force: bool = False) -> TranslateResult:
    """Translate ``input_path`` into each of ``langs``; one output file per language, written atomically.

    ``cache_path`` defaults to ``OUT_DIR/.translate-cache.sqlite``; rerunning after a crash (or over the same data
    with more languages) reuses every translation already made. ``out_dir`` must be new, empty or an earlier
    translation's, unless ``force`` (:func:`pivotune.outputs.claim_output_dir`).
    """
    outputs = {lang: output_path(input_path, out_dir, lang) for lang in langs}   # each refused before any work
    from ..outputs import claim_output_dir, mark_output

    claim_output_dir(out_dir, "translate", force=force)
    for lang in langs:
        translator.check_languages(src, lang)
    records, skipped = read_records(input_path, id_field=id_field, skip_invalid=skip_invalid,
                                    unique_ids=translator.needs_ids)
    result = TranslateResult(records=len(records), skipped=skipped)
    for s in skipped:
        log.warning("skipped invalid row: %s", s)
    if translator.cached:   # marked before the cache is made: a killed run's directory is still this command's
        mark_output(out_dir, "translate")
    cache = TranslationCache(cache_path or Path(out_dir) / ".translate-cache.sqlite") if translator.cached else None
    try:
        for lang in langs:
            rows = translate_records(records, translator, src=src, tgt=lang, cache=cache, progress=progress,
                                     result=result)
            mark_output(out_dir, "translate")
            out = outputs[lang]
            if out.suffix == ".json":
                write_json_atomic(out, rows)
            else:
                write_jsonl_atomic(out, rows)
            result.outputs[lang] = out
    finally:
        if cache is not None:
            cache.close()
    return result
