"""Output directories: a command writes only its own.

Every command that writes a directory (``report``, ``export``, ``probe``, ``interference``, ``compare``,
``eval``, ``translate``, ``demo``, ``sweep``, and the CTranslate2 conversion) first *claims* it with
:func:`claim_output_dir`: the directory must be new, empty, or hold that command's own earlier output,
recognised by the marker file :data:`MARKER` the command writes into it. Anything else is refused with a
message that says what the directory holds and which flag overrides (``--force``). A command that replaces
its directory as a whole (:func:`replaced_output_dir`: ``report``, ``export``) never replaces one that is or
contains one of its inputs, not even with ``--force``. Training runs have their own rules on top of the same
marker (:mod:`pivotune.train.rundir`).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from .errors import PivotuneError

#: written into every output directory a command owns; ``{"kind": COMMAND}``
MARKER = ".pivotune-output.json"
#: how many entries a message lists
_SHOWN = 6


def output_kind(path: str | os.PathLike) -> str | None:
    """The command whose output ``path`` holds (its marker's ``kind``), or ``None``."""
    try:
        obj = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = obj.get("kind") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) else None


def mark_output(path: str | os.PathLike, kind: str) -> Path:
    """Create ``path`` if needed and record that it holds ``kind``'s output."""
    from . import __version__
    from .io import write_json_atomic

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if output_kind(path) != kind:
        write_json_atomic(path / MARKER, {"kind": kind, "pivotune": __version__})
    return path


def listing(entries: Iterable[Path]) -> str:
    """``model/, checkpoint-4/, config.yaml`` (directories with a slash), at most a few, then a count."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in entries)
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def describe_dir(path: Path, entries: list[Path] | None = None) -> str:
    """What ``path`` holds, for a message: ``the output of `pivotune report` (report.html, figures/)``."""
    entries = [p for p in path.iterdir() if p.name != MARKER] if entries is None else entries
    kind = output_kind(path)
    if kind == "train":
        return f"a pivotune run ({listing(entries)})"
    if kind is not None:
        return f"the output of `pivotune {kind}` ({listing(entries)})"
    return listing(entries)


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def inputs_inside(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> list[Path]:
    """Those of ``inputs`` that exist and are ``path`` or lie inside it (symbolic links resolved; a hub name is no
    local path and never clashes)."""
    out = Path(path).resolve()
    return [Path(p) for p in inputs if p is not None and Path(p).exists() and _within(Path(p).resolve(), out)]


def claim_output_dir(path: str | os.PathLike, kind: str, *, force: bool = False, flag: str = "--force",
                     inputs: Iterable[str | os.PathLike | None] = (), replaces: bool = False) -> Path:
    """Check that ``pivotune kind`` may write the directory ``path``; writes nothing.

    Allowed: ``path`` does not exist, is empty, or holds ``kind``'s own earlier output (its marker); anything
    else only with ``force`` (``flag`` names the option in the message). ``replaces``: the command replaces the
    directory as a whole, so ``path`` must not be or contain one of ``inputs``, whatever ``force`` says.
    """
    path = Path(path)
    command = f"`pivotune {kind}`"
    if replaces:
        clash = inputs_inside(path, inputs)
        if clash:
            what = "is" if clash[0].resolve() == path.resolve() else "contains"
            raise PivotuneError(f"{path} {what} an input of {command} ({clash[0]}), and {command} replaces its "
                                "output directory as a whole: choose another output directory (even "
                                f"{flag} never replaces its own input).")
    if not path.exists() and not path.is_symlink():
        return path
    if not path.is_dir():
        raise PivotuneError(f"{path} exists and is not a directory; {command} writes a directory there. Choose "
                            "another output directory, or remove it.")
    entries = [p for p in path.iterdir() if p.name != MARKER]
    if not entries or output_kind(path) == kind or force:
        return path
    how = "replaces it as a whole" if replaces else "writes its files into it"
    raise PivotuneError(f"{path} already holds {describe_dir(path, entries)}, which {command} did not write; "
                        f"{command} {how} only when it is new, empty or holds its own earlier output. Choose "
                        f"another output directory, or pass {flag} to {'replace' if replaces else 'write into'} "
                        "it anyway.")


@contextlib.contextmanager
def replaced_output_dir(path: str | os.PathLike, kind: str, *, force: bool = False, flag: str = "--force",
                        inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Claim ``path`` for ``kind`` (:func:`claim_output_dir` with ``replaces``), then yield a temporary directory
    that replaces it as a whole, marker included, only when the block succeeds (:func:`pivotune.io.atomic_path`)."""
    from .io import atomic_path

    claim_output_dir(path, kind, force=force, flag=flag, inputs=inputs, replaces=True)
    with atomic_path(path) as tmp:
        yield tmp
        mark_output(tmp, kind)
