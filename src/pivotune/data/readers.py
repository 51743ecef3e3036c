"""Low-level readers behind :mod:`pivotune.data.load`: bytes in, located raw rows out.

Each reader yields :class:`RawRow` items that carry a human-readable location
("line 7", "line 7 (array index 2)", "row 5") and either the parsed value or a
:class:`RowProblem` (an undecodable or malformed line) that the caller may skip.
Problems that make the rest of a file unreadable raise :class:`DataError` at once.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError, short_repr
from ..io import JSON_TOO_DEEP, parse_json

SKIP_HINT = ("Pass --skip-invalid (skip_invalid=True) to drop invalid rows, "
             "report them, and load the rest.")
_NO_SKIP_HINT = ("--skip-invalid cannot help here, because the rest of the file cannot be "
                 "read past this point.")
_BOM = b"\xef\xbb\xbf"


class RowProblem(Exception):
    """One invalid row: ``reason`` is short (for the skipped list), ``hint`` says how to fix. ``path``: the
    file that holds the problem when it is not the one the row is named after (the target file of a
    line-aligned pair)."""

    def __init__(self, reason: str, *, field: str | None = None, hint: str = "", path: str | None = None):
        super().__init__(reason)
        self.reason, self.field, self.hint, self.path = reason, field, hint, path


@dataclass
class RawRow:
    label: str                    # "line 7", "line 7 (array index 2)", "row 5"
    number: int                   # the line (or row) number, for DataError.row
    value: Any = None
    problem: RowProblem | None = None


def file_error(path: str, message: str, *, row: int | None = None,
               field: str | None = None, skippable: bool = False) -> DataError:
    """A one-paragraph DataError about a whole file (or a spot that stops reading)."""
    tail = SKIP_HINT if skippable else _NO_SKIP_HINT
    return DataError(f"{message} {tail}", path=path, row=row, field=field)


def read_bytes(path: Path, shown: str) -> bytes:
    if not path.exists():
        raise DataError(f"file not found: {shown} (resolved to {path.absolute()}). "
                        "Check the path in your config or on the command line; "
                        "--skip-invalid does not apply to missing files.", path=shown)
    if path.is_dir():
        raise DataError(f"{shown} is a directory, not a data file; point to a single "
                        ".json, .jsonl, .parquet, .csv, .tsv or .txt file inside it.",
                        path=shown)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {shown}: {exc.strerror or exc}.", path=shown) from exc


def split_lines(data: bytes) -> list[bytes]:
    """Lines of a file as bytes: BOM at file start dropped, ``\\n`` / ``\\r\\n`` endings."""
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":               # a final newline ends the last line, adds none
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def decode_line(raw: bytes) -> str:
    """Strict UTF-8 decode of one line; RowProblem naming the bad byte on failure."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.start + 1].hex()
        raise RowProblem(
            f"bytes are not valid UTF-8 (byte 0x{bad} at byte offset {exc.start} of the line)",
            hint="Re-save the file as UTF-8 (for example `iconv -f latin1 -t utf-8 in > out`).",
        ) from None


def text_lines(path: Path, shown: str) -> list[RawRow]:
    """Every line of a plain-text file, decoded strictly; undecodable lines become problems."""
    rows = []
    for i, raw in enumerate(split_lines(read_bytes(path, shown)), start=1):
        try:
            rows.append(RawRow(f"line {i}", i, decode_line(raw)))
        except RowProblem as p:
            rows.append(RawRow(f"line {i}", i, problem=p))
    return rows


def iter_jsonl(path: Path, shown: str, data: bytes | None = None) -> Iterator[RawRow]:
    """One JSON value per line; blank lines are skipped silently."""
    if data is None:
        data = read_bytes(path, shown)
    for i, raw in enumerate(split_lines(data), start=1):
        label = f"line {i}"
        try:
            text = decode_line(raw)
        except RowProblem as p:
            yield RawRow(label, i, problem=p)
            continue
        if not text.strip():
            continue
        try:
            yield RawRow(label, i, parse_json(text))
        except ValueError as exc:
            what = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            yield RawRow(label, i, problem=RowProblem(
                f"malformed JSON ({what})",
                hint="Each non-blank line of a JSON Lines file must be one complete JSON "
                     "object, e.g. {\"instruction\": \"...\", \"output\": \"...\"}."))


def iter_json_file(path: Path, shown: str) -> Iterator[RawRow]:
    """A ``.json`` file: a JSON array of records, or (if it does not start with ``[``) JSONL."""
    data = read_bytes(path, shown)
    body = data[len(_BOM):] if data.startswith(_BOM) else data
    if not body.lstrip().startswith(b"["):
        _reject_single_object(body, shown)
        yield from iter_jsonl(path, shown, data)
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise file_error(shown, f"{shown}, line {line}: bytes are not valid UTF-8 (byte "
                         f"0x{body[exc.start:exc.start + 1].hex()}); a JSON array file "
                         "must be UTF-8 throughout. Re-save it as UTF-8.", row=line) from None
    yield from _iter_json_array(text, shown)


def _reject_single_object(body: bytes, shown: str) -> None:
    """A pretty-printed single JSON object is neither an array nor JSON Lines: say so."""
    if len([ln for ln in body.splitlines() if ln.strip()]) < 2:
        return
    try:
        whole = parse_json(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return                       # JSON Lines (or broken); the line reader reports it
    keys = ", ".join(short_repr(k, 40) for k in list(whole)[:5]) if isinstance(whole, dict) else ""
    raise file_error(shown, f"{shown} holds a single JSON value spread over several lines"
                     + (f" (an object with keys {keys})" if keys else "") + ", not an array of "
                     "records or JSON Lines. If the records sit under a key (e.g. "
                     "{\"data\": [...]}), save that list on its own as the file's content.")


def _iter_json_array(text: str, shown: str) -> Iterator[RawRow]:
    # Step through the array element by element with raw_decode so each element
    # gets its index and the line it starts on (json.load would give neither).
    dec = json.JSONDecoder()
    n, pos, line, counted = len(text), 0, 1, 0

    def skip_ws(p: int) -> int:
        while p < n and text[p] in " \t\r\n":
            p += 1
        return p

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, p)
        counted = p
        return line

    def broken(p: int, what: str) -> DataError:
        ln = line_at(p)
        return file_error(shown, f"{shown}, line {ln}: malformed JSON array ({what}). Fix the "
                          "JSON syntax there (a validator such as `python -m json.tool` "
                          "shows the spot), or convert the file to JSON Lines.", row=ln)

    pos = skip_ws(skip_ws(0) + 1)       # past the opening "["
    index = 0
    if pos < n and text[pos] == "]":
        if skip_ws(pos + 1) != n:
            raise broken(skip_ws(pos + 1), "extra data after the closing ']'")
        return
    while True:
        if pos >= n:
            raise broken(n, "the file ends before the closing ']'")
        try:
            value, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise broken(exc.pos, f"element {index}: {exc.msg}") from None
        except RecursionError:
            raise broken(pos, f"element {index}: {JSON_TOO_DEEP}") from None
        ln = line_at(pos)
        yield RawRow(f"line {ln} (array index {index})", ln, value)
        index += 1
        pos = skip_ws(end)
        if pos < n and text[pos] == ",":
            pos = skip_ws(pos + 1)
            continue
        if pos < n and text[pos] == "]":
            if skip_ws(pos + 1) != n:
                raise broken(skip_ws(pos + 1), "extra data after the closing ']'")
            return
        raise broken(pos, f"expected ',' or ']' after element {index - 1}")


def iter_dataset_rows(loader: str, shown: str, *, data_files: str | None = None,
                      split: str = "train", **kwargs: Any) -> Iterator[RawRow]:
    """Rows of a ``datasets`` dataset: a local parquet/csv file or a hub dataset name.

    Local files are loaded with a throwaway cache dir, so loading writes nothing
    that outlives the call; hub datasets use the normal cache (that is what lets
    them load offline after a download elsewhere).
    """
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a hard dependency
        raise DataError(f"reading {shown} needs the `datasets` package: {exc}.",
                        path=shown) from exc
    with tempfile.TemporaryDirectory(prefix="pivotune-load-", ignore_cleanup_errors=True) as tmp:
        try:
            if data_files is None:
                ds = datasets.load_dataset(loader, split=split, **kwargs)
            else:
                ds = datasets.load_dataset(loader, data_files=data_files, split="train",
                                           cache_dir=os.path.join(tmp, "cache"), **kwargs)
        except Exception as exc:  # datasets raises many types; the user needs one message
            detail = f"{type(exc).__name__}: {exc}"
            if data_files is None:
                raise DataError(
                    f"could not load dataset '{loader}' (split '{split}') with "
                    f"datasets.load_dataset, and no local file by that name exists either "
                    f"({detail}). If you are offline or the name is wrong, download the data "
                    "where you have network access, save it as .jsonl/.json/.parquet/.csv, "
                    "and pass that local path instead.", path=shown) from exc
            raise DataError(f"could not read {shown} as {loader} ({detail}). Check that the "
                            f"file really is {loader} and is not truncated; --skip-invalid "
                            "cannot skip rows of a file that cannot be opened.",
                            path=shown) from exc
        for i, row in enumerate(ds, start=1):
            yield RawRow(f"row {i}", i, row)
