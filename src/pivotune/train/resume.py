"""Atomic checkpoints and exact resume.

A checkpoint is written by the Trainer under ``RUN/.partial-checkpoint-N/checkpoint-N`` (every rank
writes its part there: model, optimizer, scheduler, its RNG state) and, once every rank has finished,
renamed to ``RUN/checkpoint-N`` in one ``os.replace``. A run killed while saving leaves only a
``.partial-*`` directory, which never looks like a checkpoint and is removed when the next run starts.

The data position is the Trainer's (global step → epoch and batches to skip) and the data order is a
pure function of the run: the mixture is a seeded shuffle of the configured data, and the sampler's
order in epoch ``e`` is seeded by ``data_seed + e`` (accelerate's seedable sampler), so nothing about
the order lives in mutable state. What must not change between the interrupted and the resumed run,
the encoded data and the batch geometry, is recorded in ``checkpoint-N/pivotune_resume.json`` and
checked before resuming; a mismatch is an error, not a silently different run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from ..errors import PivotuneError
from ..io import write_json_atomic

log = logging.getLogger(__name__)

RESUME_INFO = "pivotune_resume.json"
TRAINER_STATE = "trainer_state.json"
PARTIAL_PREFIX = ".partial-"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def data_fingerprint(encoded, fields=lambda e: [e.input_ids, e.labels, e.role, e.lang, e.weight]) -> str:
    """sha256 over the encoded rows in training order (by default ids, labels, role, language, weight)."""
    h = hashlib.sha256()
    for e in encoded:
        h.update(json.dumps(fields(e)).encode())
    return h.hexdigest()


def geometry(args) -> dict:
    """What fixes which samples form optimizer step k: batch size, accumulation, ranks, data seed."""
    return {"per_device_batch_size": args.per_device_train_batch_size,
            "grad_accum": args.gradient_accumulation_steps, "world_size": args.world_size,
            "data_seed": args.data_seed if args.data_seed is not None else args.seed}


def complete_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """``checkpoint-N`` directories that were published whole, oldest step first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for p in run_dir.iterdir():
        m = _CKPT.match(p.name)
        if m and (p / TRAINER_STATE).is_file() and (p / RESUME_INFO).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def remove_partials(run_dir: str | os.PathLike) -> list[str]:
    """Delete checkpoints a killed run left half-written; returns their names."""
    run_dir = Path(run_dir)
    gone = [p for p in run_dir.glob(f"{PARTIAL_PREFIX}*") if p.is_dir()] if run_dir.is_dir() else []
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    if gone:
        log.warning("removed %d half-written checkpoint(s) from an interrupted run: %s",
                    len(gone), ", ".join(p.name for p in gone))
    return [p.name for p in gone]


def find_resume_checkpoint(run_dir: str | os.PathLike, resume: bool | str | None) -> Path | None:
    """The checkpoint to resume from.

    ``resume``: False/None → none; ``"auto"`` → the latest complete checkpoint if there is one;
    True or ``"latest"`` → the latest complete checkpoint, an error if there is none; anything else is
    a checkpoint directory.
    """
    if not resume:
        return None
    done = complete_checkpoints(run_dir)
    if resume == "auto":
        return done[-1] if done else None
    if resume is True or resume == "latest":
        if not done:
            raise PivotuneError(f"--resume: {run_dir} holds no complete checkpoint (checkpoint-N with "
                                f"{TRAINER_STATE} and {RESUME_INFO}); train without --resume to start the run.")
        return done[-1]
    path = Path(resume)
    if not (path / TRAINER_STATE).is_file() or not (path / RESUME_INFO).is_file():
        raise PivotuneError(f"--resume {path}: not a complete pivotune checkpoint (it needs {TRAINER_STATE} and "
                            f"{RESUME_INFO}); complete ones in {run_dir}: "
                            f"{', '.join(p.name for p in done) or 'none'}.")
    return path


def is_last_step(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds its run's last step (the run was done when it was saved)."""
    state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    return bool(state.get("max_steps")) and state.get("global_step", 0) >= state["max_steps"]


def check_resumable(checkpoint: Path, fingerprint: str, geo: dict) -> None:
    """Refuse to resume when the data or the batch geometry differ from the checkpoint's run, or when the
    checkpoint is the run's last step (the Trainer would train one step past it)."""
    if is_last_step(checkpoint):
        state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
        raise PivotuneError(f"Nothing to resume: {checkpoint.name} is the last step of its run ({state['global_step']} "
                            f"of {state['max_steps']}); the run finished (its model is in {checkpoint.parent}/model "
                            "unless it was killed while writing it; export from the checkpoint then).")
    check_same_run(json.loads((checkpoint / RESUME_INFO).read_text(encoding="utf-8")), fingerprint, geo, checkpoint)


def check_same_run(info: dict, fingerprint: str, geo: dict, what: Path,
                   data: str = "the training data differ from the data that run trained on (the encoded mixture's "
                               "fingerprint changed: data files, their order, template, max_seq_len, tokenizer or "
                               "seed)") -> None:
    """Refuse to continue from ``what`` (whose resume info is ``info``) when it trained on other data
    (``data`` says what may have changed) or with another batch geometry."""
    if info.get("data_fingerprint") != fingerprint:
        raise PivotuneError(f"Cannot resume from {what}: {data}. Resume with the same config and data, or start a "
                            "new run in another output_dir.")
    changed = {k: (info.get("geometry", {}).get(k), v) for k, v in geo.items()
               if info.get("geometry", {}).get(k) != v}
    if changed:
        text = "; ".join(f"{k}: checkpoint {a}, now {b}" for k, (a, b) in changed.items())
        raise PivotuneError(f"Cannot resume from {what} exactly: the batch geometry changed ({text}), so "
                            "the saved data position no longer names the same samples. Resume with the "
                            "checkpoint's settings and number of processes.")


class AtomicCheckpoints:
    """The Trainer side of atomic checkpoints: ``PivotuneTrainer._save_checkpoint`` calls :meth:`save`."""

    def __init__(self, fingerprint: str):
        self.fingerprint = fingerprint
        self.staging: str | None = None   # while set, the Trainer's output dir for the checkpoint

    def save(self, trainer, parent_save, model, trial) -> None:
        from transformers.trainer_utils import rotate_checkpoints

        run_dir = Path(trainer.args.output_dir)
        name = f"checkpoint-{trainer.state.global_step}"
        self.staging = str(run_dir / f"{PARTIAL_PREFIX}{name}")
        try:
            parent_save(model, trial)   # writes staging/checkpoint-N on every rank that holds a part
        finally:
            self.staging = None
        trainer.accelerator.wait_for_everyone()
        if trainer.args.should_save:
            staged, final = Path(f"{run_dir}/{PARTIAL_PREFIX}{name}") / name, run_dir / name
            write_json_atomic(staged / RESUME_INFO, {
                "global_step": trainer.state.global_step, "epoch": trainer.state.epoch,
                "data_fingerprint": self.fingerprint, "geometry": geometry(trainer.args)})
            publish(staged, final)
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=trainer.args.save_total_limit)
        trainer.accelerator.wait_for_everyone()


def publish(staged: Path, final: Path) -> None:
    """Move a finished checkpoint into place; an older one of the same name goes only after."""
    old = None
    if final.exists():
        old = final.with_name(f"{PARTIAL_PREFIX}old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staged, final)
    shutil.rmtree(staged.parent, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
