"""The run directory: one run at a time in it, never another run's results replaced unasked, and nothing left
behind by a run that failed before it had anything to keep. Every training road enters through
:func:`run_directory`.

* **Lock.** ``RUN/.pivotune-lock`` is held (``fcntl.flock``) from before anything in the directory is touched
  (half-written checkpoints are removed only under it) until the run ends, however it ends. The kernel releases
  it when the process dies, so a lock file left by a killed run never blocks; the file names the holder (pid,
  host, start time, command) for the message a second run gets. Under DDP / torchrun / accelerate only global
  rank 0 takes it, claims the directory and cleans up: the other ranks of the launch share its directory.
* **Ownership.** A run writes into a new or empty directory, continues the run there with ``resume``, or, with
  ``overwrite``, first removes that earlier run. A directory holding an earlier run's model or checkpoints is
  otherwise refused, and one holding files no pivotune run wrote is always refused (``overwrite`` deletes only a
  run). The run's own inputs (data, a stage-1 result, lexicons) may lie inside it and are never touched.
* **Failure.** An exception before the run holds a complete checkpoint (or a finished model or stage result)
  removes what this run created: the directory itself, and the parents it made, when it made them. Once a
  complete checkpoint exists everything is kept: the run is resumable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import PivotuneError
from ..outputs import MARKER, inputs_inside, listing, mark_output, output_kind
from .resume import complete_checkpoints, remove_partials

log = logging.getLogger(__name__)

LOCK = ".pivotune-lock"
KIND = "train"   # the marker's kind for a run directory
_OURS = (LOCK, MARKER)


def is_main_process() -> bool:
    """Global rank 0 (or no distributed launch): the process that claims, locks and cleans the run directory."""
    return int(os.environ.get("RANK", "0")) == 0


def make_run_dir(path: Path) -> Path | None:
    """Create ``path`` and its parents; returns the outermost directory this call created (``None``: ``path``
    existed). Fails before training (not after hours) when the run directory cannot be created."""
    missing = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing = p
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()   # not exist_ok: of two runs starting at once, only one made the directory
        except FileExistsError:
            return None
    except OSError as e:
        raise PivotuneError(f"Cannot write to output_dir {path}: {e.strerror or e}.") from None
    return missing


class RunDirInUse(PivotuneError):
    """Another live process holds the run directory's lock."""


class RunLock:
    """An exclusive ``flock`` on ``RUN/.pivotune-lock``; :meth:`release` (or process death) frees it."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def holder(self) -> dict:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:   # no flock on this platform: run unlocked rather than not at all
            log.warning("cannot lock %s on this platform; make sure no other run uses it", self.path.parent)
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise PivotuneError(f"Cannot write to output_dir {self.path.parent}: {e.strerror or e}.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirInUse(in_use_message(self.path.parent, self.holder())) from None
        except OSError as e:   # a file system without locks (some network mounts)
            log.warning("cannot lock %s (%s); make sure no other run uses it", self.path, e.strerror or e)
        self.fd = fd
        return self

    def announce(self) -> "RunLock":
        """Write this process into the lock file, for the message another run gets (once the run goes ahead:
        a refused run leaves the file as it was)."""
        if self.fd is not None:
            me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, (json.dumps(me) + "\n").encode(), 0)
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)   # closing the last descriptor releases the flock
            self.fd = None


def in_use_message(run_dir: Path, holder: dict) -> str:
    who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
           f" ({holder.get('command', '?')})") if holder else "a process that has not written its pid yet"
    return (f"output_dir {run_dir} is in use by another pivotune run: {who}. Two runs in one directory would "
            "overwrite each other's checkpoints and model. Wait for it to finish or stop it (the lock of a process "
            "that has died is released by itself), or choose another output_dir.")


def keeps_results(p: Path) -> bool:
    """``p`` is worth keeping: a finished model, a complete checkpoint, or a directory holding either (a
    LinguaLIFT stage directory)."""
    if not p.is_dir():
        return False
    if p.name == "model" or p in complete_checkpoints(p.parent):
        return True
    return bool(complete_checkpoints(p)) or (p / "model").is_dir()


def _entries(run_dir: Path, inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """What ``run_dir`` holds, less the lock, the marker and entries holding the run's inputs."""
    inputs = list(inputs)
    return [p for p in run_dir.iterdir() if p.name not in _OURS and not inputs_inside(p, inputs)]


def _remove(paths: Iterable[Path]) -> None:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def claim_run_dir(run_dir: Path, *, resume: bool | str, overwrite: bool, inputs: Iterable[str | os.PathLike]) -> None:
    """Decide, under the lock, whether this run may use ``run_dir`` (see the module docstring); with ``overwrite``
    an earlier run's contents are removed here."""
    inputs = list(inputs)
    entries = _entries(run_dir, inputs)
    if not entries:
        return
    progress = any(keeps_results(p) for p in entries)
    # a run of this version marks its directory; an older one is known by its checkpoints or config + run.json
    ours = output_kind(run_dir) == KIND or progress or all((run_dir / f).is_file() for f in ("config.yaml", "run.json"))
    if not ours:
        raise PivotuneError(
            f"output_dir {run_dir} is not empty and holds no pivotune run ({listing(entries)}): a run writes only "
            "into a new or empty directory, or its own earlier run's. Choose another output_dir (--overwrite "
            "deletes only an earlier run).")
    if resume and (resume != "auto" or progress):
        return   # continuing: the resume checks decide whether the checkpoint fits
    if progress and not overwrite:
        raise PivotuneError(
            f"output_dir {run_dir} holds an earlier run ({listing(entries)}), and a new run would "
            "replace its model and checkpoints. Continue it with --resume, delete it and start afresh with "
            "--overwrite (train(..., overwrite=True)), or choose another output_dir.")
    # an earlier run to overwrite, or one that stopped before it had anything to keep (its leftovers go)
    log.warning("%s: removing %s before this run", run_dir,
                "the earlier run" if progress else f"an unfinished run's leftovers ({listing(entries)})")
    _remove(entries)


def _discard_new(run_dir: Path, kept: set[str], created: Path | None) -> None:
    """Remove what this run created: ``run_dir`` and the empty parents up to ``created`` when the run made them,
    else the entries of ``run_dir`` not in ``kept``."""
    if created is None:
        _remove(p for p in run_dir.iterdir() if p.name not in kept)
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    for p in run_dir.parents:
        if p == created.parent:
            break
        try:
            p.rmdir()   # only when empty: another run may have started beside it
        except OSError:
            break


@contextlib.contextmanager
def run_directory(run_dir: str | os.PathLike, *, resume: bool | str = False, overwrite: bool = False,
                  inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """The run directory for the body of a run: locked, claimed (an earlier run removed with ``overwrite``), half-
    written checkpoints removed; on an exception before anything resumable exists, what the run created is removed.
    ``inputs``: the run's input paths, left alone wherever they lie."""
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise PivotuneError("--resume continues the run in output_dir and --overwrite deletes it: pass one of them.")
    if not is_main_process():   # rank 0 of the launch claims, locks and cleans for every rank
        make_run_dir(run_dir)
        yield run_dir
        return
    created = make_run_dir(run_dir)
    kept = set(os.listdir(run_dir))   # before the lock file: a failed run removes every other name it adds
    lock = RunLock(run_dir).acquire()
    try:
        claim_run_dir(run_dir, resume=resume, overwrite=overwrite, inputs=inputs)
        lock.announce()
        kept &= set(os.listdir(run_dir))   # what the claim left of what was there
        remove_partials(run_dir)
        mark_output(run_dir, KIND)
        yield run_dir
    except BaseException:
        if not any(keeps_results(p) for p in _entries(run_dir, inputs)):
            _discard_new(run_dir, kept, created)
        raise
    finally:
        lock.release()
