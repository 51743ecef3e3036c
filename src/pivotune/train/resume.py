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

A run whose latest checkpoint is its last step (killed while it wrote its final model, or after) is finished
on resume: the checkpoint's weights and trainer state are loaded, nothing is trained, and the final outputs
are written as an uninterrupted run writes them. ``RUN/run.json`` is written last and records the run (an id
every checkpoint of the run keeps) and the step its outputs came from, so a run that did finish is told apart
and not rewritten.
Checkpoint files holding pickles (optimizer, scheduler, RNG states) load with torch's ``weights_only``
unpickler only; one that holds anything else is named in a clear refusal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shutil
from pathlib import Path

from ..errors import PivotuneError
from ..io import atomic_leftovers, write_json_atomic

log = logging.getLogger(__name__)

RESUME_INFO = "pivotune_resume.json"
TRAINER_STATE = "trainer_state.json"
RUN_INFO = "run.json"
FINISHED = "finished_from"   # RUN_INFO's record of the state the final outputs were written from
PARTIAL_PREFIX = ".partial-"
#: checkpoint files the Trainer unpickles on resume: optimizer, scheduler, grad scaler, RNG states
PICKLED_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def encoded_fields(e) -> list:
    """What the fingerprint reads of an encoded row: ids, labels, role, language, weight."""
    return [e.input_ids, e.labels, e.role, e.lang, e.weight]


def data_fingerprint(encoded, fields=encoded_fields) -> str:
    """sha256 over the encoded rows in training order (by default ids, labels, role, language, weight)."""
    h = hashlib.sha256()
    for e in encoded:
        h.update(json.dumps(fields(e)).encode())
    return h.hexdigest()


def packed_fingerprint(rows) -> str:
    """:func:`data_fingerprint` of packed rows (:class:`pivotune.data.packing.PackedRow`): their samples, row by row,
    so a packed run never resumes from an unpacked one or from rows packed otherwise."""
    return data_fingerprint(rows, fields=lambda row: [encoded_fields(e) for e in row.samples])


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
        if m and is_complete_checkpoint(p):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def is_complete_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint that was published whole (its trainer state and resume info are written
    last, before the rename that publishes it)."""
    return (path / TRAINER_STATE).is_file() and (path / RESUME_INFO).is_file()


def remove_partials(run_dir: str | os.PathLike) -> list[str]:
    """Delete what a killed run left half-written (checkpoints, and the temporaries of the final model and
    other atomically written files); returns their names."""
    run_dir = Path(run_dir)
    gone = ([p for p in run_dir.glob(f"{PARTIAL_PREFIX}*") if p.is_dir()] + atomic_leftovers(run_dir)
            if run_dir.is_dir() else [])
    for p in gone:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if gone:
        log.warning("removed %d half-written file(s) or checkpoint(s) of an interrupted run: %s",
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
        path = done[-1] if done else None
    elif resume is True or resume == "latest":
        if not done:
            raise PivotuneError(f"--resume: {run_dir} holds no complete checkpoint (checkpoint-N with "
                                f"{TRAINER_STATE} and {RESUME_INFO}); train without --resume to start the run.")
        path = done[-1]
    else:
        path = Path(resume)
        if not is_complete_checkpoint(path):
            raise PivotuneError(f"--resume {path}: not a complete pivotune checkpoint (it needs {TRAINER_STATE} and "
                                f"{RESUME_INFO}); complete ones in {run_dir}: "
                                f"{', '.join(p.name for p in done) or 'none'}.")
    if path is not None:
        check_unfinished(path, Path(run_dir))
    return path


def _state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))


def is_last_step(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds its run's last step (training was done when it was saved)."""
    state = _state(checkpoint)
    return bool(state.get("max_steps")) and state.get("global_step", 0) >= state["max_steps"]


def run_id(checkpoint: Path | None) -> str:
    """The identity of the run training continues: ``checkpoint``'s run's, or a new one for a fresh start."""
    import uuid

    info = json.loads((checkpoint / RESUME_INFO).read_text(encoding="utf-8")) if checkpoint is not None else {}
    return info.get("run_id") or uuid.uuid4().hex


def finished_record(trainer) -> dict:
    """What ``run.json`` records of the state the run's final outputs were written from (see :func:`run_finished`);
    ``trainer`` went through ``guards.guarded_train``."""
    return {FINISHED: {"run_id": trainer.atomic_checkpoints.run_id, "global_step": trainer.state.global_step}}


def run_finished(run_dir: Path, checkpoint: Path) -> bool:
    """Whether ``run_dir`` holds the final outputs written from ``checkpoint``'s state: its model, and its
    ``run.json`` (written last) records the checkpoint's run and step (a ``run.json`` without a record, from an
    older pivotune, counts; one of an earlier run in the same directory does not)."""
    path = run_dir / RUN_INFO
    if not path.is_file() or not (run_dir / "model").is_dir():
        return False
    try:
        record = json.loads(path.read_text(encoding="utf-8")).get(FINISHED)
    except (ValueError, AttributeError):
        return False   # not a run.json pivotune wrote whole
    info = json.loads((checkpoint / RESUME_INFO).read_text(encoding="utf-8"))
    return record is None or record == {"run_id": info.get("run_id"), "global_step": _state(checkpoint)["global_step"]}


def check_unfinished(checkpoint: Path, run_dir: Path) -> None:
    """Refuse to resume from ``checkpoint`` when it is the last step of a run that finished in ``run_dir`` (the
    final outputs are written; resuming would only rewrite them)."""
    if is_last_step(checkpoint) and run_finished(run_dir, checkpoint):
        state = _state(checkpoint)
        raise PivotuneError(f"Nothing to resume: {checkpoint.name} is the last step of its run ({state['global_step']} "
                            f"of {state['max_steps']}) and the run finished ({run_dir / RUN_INFO} records its final "
                            f"outputs; the model is in {run_dir / 'model'}). To train again, resume from an earlier "
                            "checkpoint or start a new run in another output_dir.")


def check_resumable(checkpoint: Path, fingerprint: str, geo: dict) -> None:
    """Refuse to resume when the data or the batch geometry differ from the checkpoint's run."""
    check_same_run(json.loads((checkpoint / RESUME_INFO).read_text(encoding="utf-8")), fingerprint, geo, checkpoint)


def finish_from(trainer, checkpoint: Path):
    """A run whose last step is ``checkpoint`` (killed while, or before, it wrote its final outputs): put the
    checkpoint's weights and trainer state into ``trainer`` instead of training (the Trainer would train a step
    past it). Returns what ``trainer.train`` returns; there is no loss of steps trained here."""
    from transformers import TrainerState
    from transformers.trainer_utils import TrainOutput

    state = _state(checkpoint)
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        raise PivotuneError(f"{checkpoint} is the last step of its run, but FSDP and DeepSpeed load a checkpoint's "
                            "weights only inside training, so the run cannot be finished from it here. Export it "
                            f"instead (pivotune export {checkpoint} OUT; it needs full weights, model.safetensors), "
                            "or finish the run without FSDP or DeepSpeed.")
    planned = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())[-1]
    if planned != state["max_steps"]:
        raise PivotuneError(f"Cannot finish the run from {checkpoint}: it is the last step of a {state['max_steps']}-"
                            f"step run, but this config trains {planned} steps (train.epochs or train.max_steps "
                            "changed). Resume with the checkpoint's settings, or start a new run in another "
                            "output_dir.")
    log.info("%s is the run's last step: writing the final outputs from it, nothing left to train", checkpoint)
    trainer._load_from_checkpoint(str(checkpoint))   # the weights, as train(resume_from_checkpoint) loads them
    trainer.state = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE))
    return TrainOutput(trainer.state.global_step, None, {})


def untrusted_file_error(checkpoint: Path, err: pickle.UnpicklingError) -> PivotuneError:
    """The refusal of a checkpoint file that torch's ``weights_only`` unpickler would not load (``err``): which
    file (found by loading each pickled one the same way, memory-mapped, so no tensor data is read), and why."""
    import torch
    from transformers.trainer_pt_utils import safe_globals

    def refusal(f: Path) -> pickle.UnpicklingError | None:
        for mmap in (True, False):   # a file of the older, non-zip format cannot be memory-mapped
            try:
                with safe_globals():   # numpy's RNG state, allowed as the Trainer allows it
                    torch.load(f, map_location="cpu", weights_only=True, mmap=mmap)
                return None
            except pickle.UnpicklingError as e:
                return e
            except Exception:  # noqa: BLE001 - not this refusal; the other load path decides
                continue
        return None

    found = next(((f, e) for pattern in PICKLED_STATE for f in sorted(checkpoint.glob(pattern))
                  if (e := refusal(f)) is not None), None)
    where, err = (found[0].name, found[1]) if found else ("one of its files", err)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    why = next((line for line in lines[1:] if not line.startswith("Check the documentation")), lines[0] if lines else "")
    return PivotuneError(f"Cannot resume from {checkpoint}: {where} is not trusted. It holds pickled objects beyond "
                         f"tensors ({why[:300]}), and pivotune loads checkpoint files with torch's weights_only "
                         "unpickler, which refused it before anything in it ran. A checkpoint written by pivotune "
                         "holds none, so the file was replaced or altered. Resume from another checkpoint "
                         "(--resume RUN/checkpoint-N) or start the run afresh in a new output_dir.")


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

    def __init__(self, fingerprint: str, run_id: str):
        self.fingerprint = fingerprint
        self.run_id = run_id   # kept by every checkpoint of the run, across resumes
        self.staging: str | None = None   # while set, the Trainer's output dir for the checkpoint

    def save(self, trainer, parent_save, model, trial) -> None:
        from transformers.trainer_utils import rotate_checkpoints

        run_dir = Path(trainer.args.output_dir)
        name = f"checkpoint-{trainer.state.global_step}"
        staging = run_dir / f"{PARTIAL_PREFIX}{name}"
        self.staging = str(staging)
        try:
            try:
                parent_save(model, trial)   # writes staging/checkpoint-N on every rank that holds a part
            finally:
                self.staging = None
            trainer.accelerator.wait_for_everyone()
            if trainer.args.should_save:
                staged, final = staging / name, run_dir / name
                write_json_atomic(staged / RESUME_INFO, {
                    "global_step": trainer.state.global_step, "epoch": trainer.state.epoch,
                    "data_fingerprint": self.fingerprint, "geometry": geometry(trainer.args), "run_id": self.run_id})
                publish(staged, final)
                rotate_checkpoints(output_dir=str(run_dir), save_total_limit=trainer.args.save_total_limit)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)   # a failed save (disk full) leaves nothing half-written
            raise
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
