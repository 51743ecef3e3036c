"""Turn user data files into validated records, every row checked up front.

:func:`load_instructions` reads Alpaca or chat instruction data into
:class:`~pivotune.data.records.Sample`; :func:`load_parallel` reads a parallel
corpus into :class:`~pivotune.data.records.ParallelPair`. Each returns a
:class:`LoadResult`. A bad row raises :class:`~pivotune.errors.DataError`
naming the file, line and field, unless ``skip_invalid`` is set, in which case
the row is dropped and listed in ``LoadResult.skipped``. Loading writes nothing.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..errors import DataError, short_repr
from .readers import (SKIP_HINT, RawRow, RowProblem, iter_dataset_rows,
                      iter_json_file, iter_jsonl, read_bytes, text_lines)
from .records import ParallelPair, Sample

__all__ = ["LoadResult", "is_hub_dataset", "load_instructions", "load_parallel", "INSTRUCTION_FIELDS"]

INSTRUCTION_FIELDS = ("instruction", "input", "output", "messages")
CHAT_ROLES = ("system", "user", "assistant")
_JSON_EXTS = (".json",)
_JSONL_EXTS = (".jsonl", ".ndjson")
_DATASETS_EXTS = {".parquet": "parquet", ".csv": "csv"}
_KNOWN_EXTS = (".json", ".jsonl", ".ndjson", ".parquet", ".csv", ".tsv", ".txt")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


@dataclass
class LoadResult:
    """Validated records from one file or dataset, plus the rows that were skipped."""

    records: list
    skipped: list[str] = field(default_factory=list)   # "file, line N, field 'x': reason"
    path: str = ""
    total: int = 0                                     # rows seen (valid + skipped)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def summary(self) -> str:
        text = f"{self.path}: loaded {len(self.records)} of {self.total} rows"
        if not self.skipped:
            return text + "."
        shown = "; ".join(self.skipped[:3])
        more = f"; and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
        return f"{text}, skipped {len(self.skipped)} invalid: {shown}{more}."


# ---------------------------------------------------------------------------- sources

def is_hub_dataset(spec: str | os.PathLike) -> bool:
    """True when the loaders would read ``spec`` as a hub dataset name, not a local file."""
    return _resolve(spec)[1] is None


def _resolve(spec: str | os.PathLike) -> tuple[str, Path | None]:
    """(shown name, local path) — path is None when ``spec`` is a hub dataset name."""
    shown = os.fspath(spec)
    path = Path(shown).expanduser()
    if isinstance(spec, os.PathLike) or path.exists():
        return shown, path
    looks_local = (shown.startswith((".", "/", "~")) or "\\" in shown
                   or path.suffix.lower() in _KNOWN_EXTS
                   or ("/" not in shown and path.suffix != "")
                   or ("/" in shown and path.parent.is_dir()))   # "data/x": a local folder
    if looks_local or not _HUB_NAME.fullmatch(shown):
        return shown, path           # read_bytes reports "file not found"
    return shown, None


def _unknown_format(shown: str, ext: str, supported: str) -> DataError:
    what = f"extension '{ext}'" if ext else "no file extension"
    return DataError(f"unknown data format for {shown}: {what} is not supported. Supported: "
                     f"{supported}. Rename or convert the file; --skip-invalid does not apply "
                     "to a file whose format is unknown.", path=shown)


def _instruction_rows(spec, split: str) -> tuple[str, bool, Iterable[RawRow]]:
    """(shown name, is a hub dataset, rows)."""
    shown, path = _resolve(spec)
    if path is None:
        return shown, True, iter_dataset_rows(shown, shown, split=split)
    read_bytes(path, shown)          # not found / directory -> clear error before format
    ext = path.suffix.lower()
    # JSON/JSONL are read by our own line reader, not `datasets`, so every error
    # can name the exact line (datasets only knows row indices, and fails whole files).
    if ext in _JSON_EXTS:
        return shown, False, iter_json_file(path, shown)
    if ext in _JSONL_EXTS:
        return shown, False, iter_jsonl(path, shown)
    if ext in _DATASETS_EXTS:
        return shown, False, iter_dataset_rows(_DATASETS_EXTS[ext], shown,
                                               data_files=str(path), **_csv_kwargs(path))
    raise _unknown_format(shown, ext, ".json (an array of records, or JSON Lines), .jsonl, "
                          ".ndjson, .parquet, .csv, or a hub dataset name")


def _csv_kwargs(path: Path) -> dict:
    """Keep every CSV cell a string: no "NA" -> null, no "42" -> int, "" stays ""."""
    if path.suffix.lower() != ".csv":
        return {}
    kwargs: dict[str, Any] = {"na_filter": False}
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return kwargs                    # let datasets report what is wrong with the file
    if header and all(header) and len(set(header)) == len(header):
        import datasets
        kwargs["features"] = datasets.Features({c: datasets.Value("string") for c in header})
    return kwargs


# ---------------------------------------------------------------------------- checks

def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _text(row: Mapping, col: str, *, required: bool, strip: bool = False,
          rename_hint: str = "") -> str:
    value = row.get(col)
    if value is None:
        if not required:
            return ""
        why = "is missing" if col not in row else "is null"
        keys = ", ".join(short_repr(k, 40) for k in list(row)[:8]) or "none"
        raise RowProblem(f"required field {why} (the row's fields are {keys}); expected a "
                         "non-empty string", field=col,
                         hint=f"Add a non-empty string '{col}' to every row{rename_hint}.")
    if not isinstance(value, str):
        raise RowProblem(f"expected a string, got {_kind(value)}", field=col,
                         hint=f"Write '{col}' as a JSON string, e.g. \"{col}\": \"...\" "
                              "(quote numbers; join lists into one string).")
    if required and not value.strip():
        raise RowProblem("field is empty; expected a non-empty string", field=col,
                         hint=f"Fill in '{col}' or remove the row.")
    return value.strip() if strip else value


def _messages(value: Any, col: str) -> tuple[dict, ...]:
    hint = ('Chat rows need "messages": [{"role": "user", "content": "..."}, '
            '{"role": "assistant", "content": "..."}]; roles are system, user, assistant.')
    if isinstance(value, tuple) or (value is not None and type(value).__name__ == "ndarray"):
        value = list(value)
    if not isinstance(value, list):
        raise RowProblem(f"expected a list of turns, got {_kind(value)}", field=col, hint=hint)
    turns = []
    for i, turn in enumerate(value):
        where = f"{col}[{i}]"
        if not isinstance(turn, Mapping):
            raise RowProblem(f"expected a turn object with 'role' and 'content', got "
                             f"{_kind(turn)}", field=where, hint=hint)
        role, content = turn.get("role"), turn.get("content")
        if role not in CHAT_ROLES:
            got = "missing" if role is None else short_repr(role, 40)
            raise RowProblem(f"bad role {got}; expected one of {', '.join(CHAT_ROLES)}",
                             field=f"{where}.role", hint=hint)
        if not isinstance(content, str):
            raise RowProblem(f"expected a string, got {_kind(content)}",
                             field=f"{where}.content", hint=hint)
        if role != "system" and not content.strip():
            raise RowProblem(f"{role} turn is empty; expected non-empty text",
                             field=f"{where}.content", hint=hint)
        turns.append({"role": role, "content": content})
    for needed in ("user", "assistant"):
        if not any(t["role"] == needed for t in turns):
            raise RowProblem(f"no {needed} turn; a chat row needs at least one user and one "
                             "assistant turn", field=col, hint=hint)
    return tuple(turns)


def _row_form(row: Any, cols: Mapping[str, str]) -> str:
    if not isinstance(row, Mapping):
        raise RowProblem(f"expected an object (one record), got {_kind(row)}",
                         hint="Each row must be an object such as {\"instruction\": \"...\", "
                              "\"input\": \"\", \"output\": \"...\"} or {\"messages\": [...]}.")
    if row.get(cols["messages"]) is not None:
        return "chat"
    if row.get(cols["instruction"]) is not None or row.get(cols["output"]) is not None:
        return "alpaca"
    keys = ", ".join(short_repr(k, 40) for k in list(row)[:8]) or "none"
    raise RowProblem(
        f"row has neither '{cols['instruction']}'/'{cols['output']}' (Alpaca form) nor "
        f"'{cols['messages']}' (chat form); its fields are {keys}", field=cols["output"],
        hint="If your columns have other names, map them with fields= (e.g. "
             "fields={'instruction': 'prompt', 'output': 'completion'}).")


# ---------------------------------------------------------------------------- driver

def _collect(shown: str, rows: Iterable[RawRow], build: Callable[[RawRow], Any],
             skip_invalid: bool, rename: Mapping[str, str] | None = None) -> LoadResult:
    """Validate every row with ``build``; raise on the first problem or skip and record it."""
    records, skipped, total, first_error = [], [], 0, None
    rename = rename or {}
    for raw in rows:
        total += 1
        try:
            if raw.problem is not None:
                raise raw.problem
            records.append(build(raw))
        except RowProblem as p:
            where = p.path or shown
            loc = f"{where}, {raw.label}"
            if p.field is not None:
                mapped = f" (used as '{rename[p.field]}')" if p.field in rename else ""
                loc += f", field '{p.field}'{mapped}"
            if not skip_invalid:
                text = " ".join(t for t in (f"{loc}: {p.reason}.", p.hint, SKIP_HINT) if t)
                raise DataError(text, path=where, row=raw.number, field=p.field) from None
            skipped.append(f"{loc}: {p.reason}")
            first_error = first_error or skipped[-1]
    if total == 0:
        raise DataError(f"no rows in {shown}: the file or dataset is empty (or has only blank "
                        "lines). Point to a file with data.", path=shown)
    if not records:
        raise DataError(f"no valid rows in {shown}: {total} rows, all invalid; first problem: "
                        f"{first_error}. Fix the data (see the problem above); --skip-invalid "
                        "only helps when some rows are valid.", path=shown, problems=skipped)
    return LoadResult(records=records, skipped=skipped, path=shown, total=total)


def load_instructions(spec: str | os.PathLike, *, role: str, lang: str,
                      source: str | None = None, weight: float = 1.0,
                      skip_invalid: bool = False, split: str = "train",
                      fields: Mapping[str, str] | None = None) -> LoadResult:
    """Load Alpaca or chat instruction data as validated :class:`Sample` records.

    ``spec`` is a local ``.json`` (array or JSON Lines), ``.jsonl``, ``.parquet`` or
    ``.csv`` file, or a hub dataset name (loaded with ``datasets.load_dataset(name,
    split=split)``). The form (Alpaca ``instruction``/``input``/``output`` or chat
    ``messages``) is taken from the first valid row; a file mixing forms is invalid.
    ``fields`` maps our field names to the file's columns, e.g.
    ``{"instruction": "prompt", "output": "completion"}``.
    """
    cols = {name: name for name in INSTRUCTION_FIELDS}
    for ours, theirs in (fields or {}).items():
        if ours not in cols:
            raise DataError(f"fields: unknown field '{ours}' (mapped to '{theirs}'); the fields "
                            f"you can rename are {', '.join(INSTRUCTION_FIELDS)}.", field=ours)
        if not isinstance(theirs, str) or not theirs:
            raise DataError(f"fields: '{ours}' must map to a column name (a non-empty string), "
                            f"got {short_repr(theirs, 60)}.", field=ours)
        cols[ours] = theirs
    rename = {theirs: ours for ours, theirs in cols.items() if theirs != ours}
    shown, is_hub, rows = _instruction_rows(spec, split)
    if source is None:
        source = shown if is_hub else Path(shown).stem
    form: dict[str, str] = {}

    def build(raw: RawRow) -> Sample:
        row = raw.value
        this = _row_form(row, cols)
        if form and form["form"] != this:
            name = {"alpaca": "Alpaca", "chat": "chat"}
            raise RowProblem(
                f"this row is in {name[this]} form but the file is in {name[form['form']]} form "
                f"(from {form['at']}); one file must use one form",
                hint="Split Alpaca rows and chat rows into separate files.")
        common = dict(role=role, lang=lang, source=source, weight=weight,
                      origin=f"{shown}, {raw.label}")
        if this == "chat":
            sample = Sample(messages=_messages(row.get(cols["messages"]), cols["messages"]),
                            **common)
        else:
            hint = " (or map your own column names with fields=)"
            sample = Sample(instruction=_text(row, cols["instruction"], required=True,
                                              rename_hint=hint),
                            input=_text(row, cols["input"], required=False),
                            output=_text(row, cols["output"], required=True, rename_hint=hint),
                            **common)
        form.setdefault("form", this)
        form.setdefault("at", raw.label)
        return sample

    return _collect(shown, rows, build, skip_invalid, rename)


def load_parallel(spec: str | os.PathLike, target_spec: str | os.PathLike | None = None, *,
                  src_lang: str = "en", tgt_lang: str, skip_invalid: bool = False,
                  source_field: str = "source", target_field: str = "target",
                  split: str = "train") -> LoadResult:
    """Load a parallel corpus as validated :class:`ParallelPair` records.

    Forms: two line-aligned plain-text files (``spec`` and ``target_spec``, any
    extension); one ``.tsv`` with two tab-separated columns (an optional header
    row ``source<TAB>target`` is skipped); ``.jsonl``/``.json``/``.parquet``/``.csv``
    rows with ``source_field``/``target_field``; or a hub dataset name (``split``).
    Sentences are stripped of surrounding whitespace; an empty side is invalid.
    """
    hint = " (or name the columns with source_field=/target_field=)"

    def pair(row: Mapping, raw: RawRow, s_col: str, t_col: str) -> ParallelPair:
        return ParallelPair(source=_text(row, s_col, required=True, strip=True,
                                         rename_hint=hint),
                            target=_text(row, t_col, required=True, strip=True,
                                         rename_hint=hint),
                            src_lang=src_lang, tgt_lang=tgt_lang,
                            origin=f"{shown}, {raw.label}")

    if target_spec is not None:
        shown_s, path_s = os.fspath(spec), Path(os.fspath(spec)).expanduser()
        shown_t, path_t = os.fspath(target_spec), Path(os.fspath(target_spec)).expanduser()
        left, right = text_lines(path_s, shown_s), text_lines(path_t, shown_t)
        if len(left) != len(right):
            raise DataError(
                f"parallel files are not line-aligned: {shown_s} has {len(left)} lines but "
                f"{shown_t} has {len(right)}. Line N of one must translate line N of the "
                "other; fix the files (look for a missing or extra line, or a sentence split "
                "in two). --skip-invalid cannot repair misaligned files.", path=shown_s)
        joined = [RawRow(a.label, a.number, (a.value, b.value), _side_problem(a, shown_s, b, shown_t))
                  for a, b in zip(left, right)]

        def aligned(raw: RawRow) -> ParallelPair:
            for text, where in zip(raw.value, (shown_s, shown_t)):
                if not text.strip():    # named after the file that holds the empty line
                    raise RowProblem("empty line; every line of a line-aligned pair needs a sentence",
                                     path=where, hint="Write the sentence, or delete this line from both "
                                     "files so line N of one still translates line N of the other.")
            return ParallelPair(source=raw.value[0].strip(), target=raw.value[1].strip(), src_lang=src_lang,
                                tgt_lang=tgt_lang, origin=f"{shown_s}, {raw.label}")

        return _collect(shown_s, joined, aligned, skip_invalid)

    shown, path = _resolve(spec)
    if path is None:
        rows = iter_dataset_rows(shown, shown, split=split)
    else:
        read_bytes(path, shown)
        ext = path.suffix.lower()
        if ext == ".tsv":
            rows = _tsv_rows(path, shown, source_field, target_field)
        elif ext in _JSON_EXTS:
            rows = iter_json_file(path, shown)
        elif ext in _JSONL_EXTS:
            rows = iter_jsonl(path, shown)
        elif ext in _DATASETS_EXTS:
            rows = iter_dataset_rows(_DATASETS_EXTS[ext], shown, data_files=str(path),
                                     **_csv_kwargs(path))
        elif ext == ".txt":
            raise DataError(f"{shown} is a plain-text file; a plain-text parallel corpus is two "
                            "line-aligned files, so also pass the target-language file "
                            "(target_spec), or use one .tsv with two columns.", path=shown)
        else:
            raise _unknown_format(shown, ext, ".tsv (two tab-separated columns), .jsonl/.json "
                                  f"with '{source_field}'/'{target_field}', .parquet, .csv, two "
                                  "line-aligned plain-text files, or a hub dataset name")

    def build(raw: RawRow) -> ParallelPair:
        if not isinstance(raw.value, Mapping):
            raise RowProblem(f"expected an object with '{source_field}' and '{target_field}', "
                             f"got {_kind(raw.value)}",
                             hint=f"Write rows like {{\"{source_field}\": \"...\", "
                                  f"\"{target_field}\": \"...\"}} (field names are "
                                  "configurable with source_field/target_field).")
        return pair(raw.value, raw, source_field, target_field)

    return _collect(shown, rows, build, skip_invalid)


def _side_problem(a: RawRow, shown_s: str, b: RawRow, shown_t: str) -> RowProblem | None:
    """The first undecodable side of an aligned line, named after its own file."""
    for row, where in ((a, shown_s), (b, shown_t)):
        if row.problem is not None:
            row.problem.path = where
            return row.problem
    return None


def _tsv_rows(path: Path, shown: str, source_field: str, target_field: str) -> list[RawRow]:
    rows = []
    for raw in text_lines(path, shown):
        if raw.problem is not None:
            rows.append(raw)
            continue
        cells = raw.value.split("\t")
        if raw.number == 1 and [c.strip() for c in cells] == [source_field, target_field]:
            continue                                             # header row
        if len(cells) != 2:
            raw = RawRow(raw.label, raw.number, problem=RowProblem(
                f"expected 2 tab-separated columns (source, target), found {len(cells)}",
                hint="Put exactly one TAB between the source and target sentence, and no "
                     "TAB inside a sentence."))
        else:
            raw = RawRow(raw.label, raw.number, {source_field: cells[0], target_field: cells[1]})
        rows.append(raw)
    return rows
