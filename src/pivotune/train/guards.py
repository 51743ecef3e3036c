"""Guards that stop a run early and clearly instead of late and obscurely.

* :class:`NonFiniteLossGuard`: a NaN/inf loss stops training *before* the optimizer step that would
  write it into the weights (and before any checkpoint of those weights), naming the step and the
  samples of the offending micro-batch (data source, file and line). Checked once per optimizer step,
  after one all-reduce of a flag, so every rank stops together instead of the others hanging.
* :func:`check_disk_space`: before training, the output directory's file system must hold a
  checkpoint and the final model.
* :func:`write_failures_reported`: a write that fails mid-run (disk full, permissions; as Python, torch.save
  or safetensors report it) stops the run with one message naming the last complete checkpoint.
* :class:`IndexedDataset` / :class:`IndexedCollator`: batches carry ``sample_index`` (the row of the
  encoded mixture), so an error can name the samples a batch held.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pickle
import re
import shutil
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..errors import PivotuneError

log = logging.getLogger(__name__)

SAMPLE_INDEX = "sample_index"


class IndexedDataset(torch.utils.data.Dataset):
    """``(index, item)`` pairs of a dataset, for :class:`IndexedCollator`."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return i, self.items[i]


class IndexedCollator:
    """Wraps a collator of items; adds the batch's dataset indices as ``sample_index``."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, pairs):
        batch = self.collator([item for _, item in pairs])
        batch[SAMPLE_INDEX] = torch.tensor([i for i, _ in pairs], dtype=torch.long)
        return batch


class NonFiniteLossError(PivotuneError):
    """The loss became NaN or infinite."""


class NonFiniteLossGuard(TrainerCallback):
    """Collects each micro-batch's loss flag (no device sync) and checks once before the optimizer step.

    ``describe(index)`` names one encoded sample (its source, origin, role and language).
    """

    def __init__(self, describe, max_named: int = 8):
        self.describe = describe
        self.max_named = max_named
        self.trainer = None
        self._flags: list[torch.Tensor] = []
        self._indices: list[torch.Tensor] = []

    def observe(self, loss: torch.Tensor, inputs: dict) -> None:
        self._flags.append(torch.isfinite(loss.detach()).all())
        self._indices.append(inputs.get(SAMPLE_INDEX, torch.empty(0, dtype=torch.long)))

    def on_step_begin(self, args, state, control, **kwargs):
        self._flags, self._indices = [], []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if not self._flags:
            return
        flags = torch.stack(self._flags)
        bad_here = (~flags).sum()
        bad_all = bad_here
        if args.world_size > 1 and self.trainer is not None:
            bad_all = self.trainer.accelerator.reduce(bad_here.clone(), reduction="sum")
        if int(bad_all) == 0:   # the one host sync per optimizer step
            self._flags, self._indices = [], []
            return
        step = state.global_step + 1
        if int(bad_here) == 0:
            raise NonFiniteLossError(f"Training stopped at optimizer step {step}: the loss was NaN or infinite "
                                     f"on another process (this is rank {args.process_index}; its message names "
                                     "the samples). The weights were not updated with it; the last complete "
                                     "checkpoint is kept.")
        named: list[str] = []
        for ok, idx in zip(flags.tolist(), self._indices):
            if not ok:
                named += [self.describe(int(i)) for i in idx.tolist()]
        more = f" (and {len(named) - self.max_named} more)" if len(named) > self.max_named else ""
        raise NonFiniteLossError(
            f"Training stopped at optimizer step {step} (epoch {state.epoch or 0:.2f}): the loss was NaN or "
            f"infinite on {int(bad_here)} micro-batch(es) of rank {args.process_index}. The batch held: "
            f"{'; '.join(named[: self.max_named])}{more}. The weights were not updated with it and the last "
            "complete checkpoint is kept. Usual causes: a learning rate too high, float16 overflow (try "
            "bfloat16), or a corrupt row in the sources named here.")


def _sample_text(samples, j: int) -> str | None:
    """Sample ``j``'s source and origin (None: no such sample)."""
    s = samples[j] if 0 <= j < len(samples) else None
    if s is None:
        return None
    return f"source '{s.source or '?'}' ({s.origin or 'generated'}; role {s.role}, language {s.lang})"


def sample_describer(encoded, samples):
    """``describe(i)`` for :class:`NonFiniteLossGuard`: encoded row ``i`` → its sample's source and origin
    (``Encoded.sample_index`` is the sample's position, rows dropped by encoding notwithstanding)."""
    def describe(i: int) -> str:
        return _sample_text(samples, encoded[i].sample_index) or f"row {i} of the encoded mixture"
    return describe


def packed_describer(rows, samples):
    """``describe(i)`` for :class:`NonFiniteLossGuard` over packed rows (:class:`pivotune.data.packing.PackedRow`):
    row ``i`` → each of its samples' source and origin."""
    def describe(i: int) -> str:
        texts = [_sample_text(samples, e.sample_index) or f"sample {e.sample_index}" for e in rows[i].samples]
        return f"packed row {i}: " + ", ".join(texts)
    return describe


def checkpoint_bytes(model, with_optimizer: bool = True) -> int:
    """Bytes one checkpoint takes: the trainable weights twice more for Adam's moments, plus the model."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)   # fp32 moments
    return total + (2 * trainable if with_optimizer else 0)


def check_disk_space(run_dir: Path, model, *, checkpoints: bool = True, margin: float = 1.1) -> None:
    """Fail before training when ``run_dir``'s file system cannot hold a checkpoint and the final model."""
    need = int((checkpoint_bytes(model, checkpoints) + checkpoint_bytes(model, False)) * margin)
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise PivotuneError(f"Not enough disk space for output_dir {run_dir}: {free / 2**30:.2f} GiB free, but a "
                            f"checkpoint and the final model need about {need / 2**30:.2f} GiB. Free space or "
                            "point output_dir at a larger file system.")


#: errno values of a write that failed for want of space or permission (not a bug in pivotune)
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS)
# torch.save's C++ writer raises a bare RuntimeError that names no errno; these mark its failed writes
TORCH_WRITER_FAILED = ("PytorchStreamWriter failed", "inline_container.cc")


def write_failure(err: BaseException) -> str | None:
    """Why a write failed, when ``err`` is a failed write to disk (full, quota, permissions, read-only) as Python,
    torch.save or safetensors raise it; None for any other error."""
    from safetensors import SafetensorError

    text = str(err)
    first = text.splitlines()[0][:300] if text else type(err).__name__
    if isinstance(err, OSError):
        if err.errno not in WRITE_ERRNOS:
            return None
        return f"{err.strerror or err}{': ' + str(err.filename) if err.filename else ''}"
    if isinstance(err, RuntimeError) and any(mark in text for mark in TORCH_WRITER_FAILED):
        return f"torch's file writer stopped part-way, usually because the disk is full: {first}"
    code = re.search(r"os error (\d+)", text) if isinstance(err, SafetensorError) else None
    if code and int(code.group(1)) in WRITE_ERRNOS:
        return f"{os.strerror(int(code.group(1)))}, in safetensors' writer"
    return None


def output_dir_error(err: BaseException, run_dir: Path) -> BaseException:
    """A training-time write failure as a user-facing error that says which checkpoint survives (``err`` itself
    when it is not a write failure)."""
    from .resume import complete_checkpoints

    reason = write_failure(err)
    if reason is None:
        return err
    done = complete_checkpoints(run_dir)
    kept = (f"the last complete checkpoint, {done[-1].name}, is intact; once the problem is fixed, --resume "
            "continues from it (or, when it is the run's last step, writes the final model from it)" if done
            else "no complete checkpoint had been written yet")
    return PivotuneError(f"Training stopped: writing to output_dir {run_dir} failed ({reason}). A half-written "
                         f"checkpoint or model never replaces a complete one and is removed: {kept}.")


@contextlib.contextmanager
def write_failures_reported(run_dir: Path):
    """Run the block; a failed write in it (see :func:`write_failure`) becomes :func:`output_dir_error`'s message."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - only write failures are replaced; the rest propagate unchanged
        err = output_dir_error(e, run_dir)
        if err is e:
            raise
        raise err from e


def training_guards(checkpoint: Path | None, fingerprint: str, describe) -> dict:
    """The guards of a run's trainer, as :class:`~pivotune.train.trainer.PivotuneTrainer` keyword arguments:
    checkpoints written atomically that carry the run's identity (``checkpoint``'s run's when continuing it) and
    data ``fingerprint``, and a stop on a non-finite loss naming the rows by ``describe``."""
    from .resume import AtomicCheckpoints, run_id

    return {"checkpoints": AtomicCheckpoints(fingerprint, run_id(checkpoint)),
            "loss_guard": NonFiniteLossGuard(describe)}


def guarded_train(trainer, run_dir: Path, checkpoint: Path | None):
    """Every training stage's last step, for a ``trainer`` built with :func:`training_guards`: refuse a
    ``checkpoint`` that would not continue this run exactly, and turn a write failure into a message naming the
    surviving checkpoint. A ``checkpoint`` at the run's last step is not trained past: its weights and state are
    loaded, for the caller to write the final outputs. Returns ``trainer.train``'s result."""
    from .resume import check_resumable, finish_from, geometry, is_last_step, untrusted_file_error

    if checkpoint is not None:   # (an earlier run's checkpoints are never there otherwise: train.rundir)
        check_resumable(checkpoint, trainer.atomic_checkpoints.fingerprint, geometry(trainer.args))
        log.info("resuming from %s", checkpoint)
    if checkpoint is not None and is_last_step(checkpoint):   # killed after its last checkpoint: nothing to train
        return finish_from(trainer, checkpoint)
    try:
        with write_failures_reported(run_dir):   # disk full or permissions changed mid-run: say where, what is kept
            return trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    except pickle.UnpicklingError as e:   # torch's weights_only loader refused a file of the checkpoint
        if checkpoint is None:
            raise
        raise untrusted_file_error(checkpoint, e) from None
