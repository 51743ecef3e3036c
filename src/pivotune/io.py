"""Atomic file and directory writes: nothing half-written is ever left behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

# what atomic_path leaves beside its target when its process is killed: the temporary directory
# (".NAME.<8 random characters>.tmp", from mkdtemp) and a replaced directory not yet removed (".NAME.old.PID")
_LEFTOVER = re.compile(r"^\..+\.(?:[a-z0-9_]{8}\.tmp|old\.\d+)$")


def child_path(base: str | os.PathLike, *parts: str) -> Path:
    """``base/part/...`` for output names built from codes or user strings, refused (a ``PivotuneError``)
    unless it stays inside ``base``.

    Each part must be one plain path component: not empty, ``.`` or ``..``, not absolute, without a path
    separator or NUL. The joined path, resolved (symlinks followed), must lie under ``base`` resolved. This
    holds even when validation upstream was bypassed (a config constructed in Python, a hand-edited JSON).
    """
    from .errors import PivotuneError

    base = Path(base)
    seps = {"/", "\0", os.sep, *([os.altsep] if os.altsep else [])}
    for part in parts:
        if (not isinstance(part, str) or part in ("", ".", "..") or any(s in part for s in seps)
                or Path(part).is_absolute()):
            raise PivotuneError(f"Refusing to write {part!r} under {base}: an output name built from a language "
                                "code or other input must be a single file or folder name (no path separator, "
                                "'..' or absolute path), so that nothing is written outside the output directory.")
    path = base.joinpath(*parts)
    root = base.resolve()
    if not path.resolve().is_relative_to(root):
        raise PivotuneError(f"Refusing to write {path}: it resolves to {path.resolve()}, outside {root} "
                            "(a symbolic link leads out of the output directory).")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only on success.

    Works for files and directories. On an exception the temporary is removed
    and ``path`` (if it existed) is untouched; a killed process leaves what
    :func:`atomic_leftovers` finds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / "payload"
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
            os.replace(target, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_leftovers(directory: str | os.PathLike) -> list[Path]:
    """What :func:`atomic_path` calls for targets in ``directory`` left behind when their process was killed."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir() if _LEFTOVER.match(p.name)) if directory.is_dir() else []


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


JSON_TOO_DEEP = "lists or objects nested too deeply to read"


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` whose every failure is a ``ValueError`` (``json.JSONDecodeError`` for bad syntax):
    nesting too deep for Python (``[[[[...]]]]``, a ``RecursionError`` inside the json module) included."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(JSON_TOO_DEEP) from None


def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON file that must hold an object; errors name the file (a ``PivotuneError``, not a traceback)."""
    from .errors import PivotuneError

    path = Path(path)
    try:
        obj = parse_json(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise PivotuneError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(obj, dict):
        raise PivotuneError(f"{path}: expected a JSON object, found {type(obj).__name__}.")
    return obj
