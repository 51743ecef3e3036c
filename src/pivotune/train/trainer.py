"""The Hugging Face Trainer with a pluggable objective.

The one thing the stock Trainer lacks is a loss whose normaliser spans the
whole optimizer step for every term of a multi-term objective (PROM divides
each term by its own token count). So this subclass gathers the objective's
token counts over the step's micro-batches and all ranks, and the objective
divides by them; the loss is then already scaled for accumulation.

An objective that wraps the model (PROM: the LM plus its pivot head, see
``pivotune.models.pivot_head``) gets checkpoints laid out like the run directory:
the LM via its ``save_pretrained`` and the head beside it (``save_pivot_head``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback

BATCH_KEYS = ("input_ids", "attention_mask", "labels", "roles", "langs", "weights")


def split_pivoted_state(state_dict: dict | None) -> tuple[dict | None, dict | None]:
    """A ``PivotedModel``'s full state dict (gathered by FSDP / DeepSpeed) as (LM's, pivot head's)."""
    if not state_dict:
        return None, None
    return ({k.removeprefix("lm."): v for k, v in state_dict.items() if k.startswith("lm.")},
            {k.removeprefix("pivot_head."): v for k, v in state_dict.items() if k.startswith("pivot_head.")})


#: callbacks for every trainer built inside :func:`reporting_to` (the demo's progress view), in place of the
#: stock printers that write each log dict or a bar to the terminal
_REPORTERS: ContextVar[tuple[TrainerCallback, ...]] = ContextVar("pivotune_trainer_reporters", default=())


@contextmanager
def reporting_to(*callbacks: TrainerCallback) -> Iterator[None]:
    """Within this block every PivotuneTrainer reports progress and logs through ``callbacks`` only."""
    token = _REPORTERS.set(callbacks)
    try:
        yield
    finally:
        _REPORTERS.reset(token)


class PivotuneTrainer(Trainer):
    loss_is_scaled_for_ga = True

    def __init__(self, *args, objective, **kwargs):
        super().__init__(*args, **kwargs)
        for reporter in _REPORTERS.get():
            self.remove_callback(PrinterCallback)
            self.remove_callback(ProgressCallback)
            self.add_callback(reporter)
        self.objective = objective
        self._step_norms: dict[str, torch.Tensor] | None = None
        self._pending_logs: dict | None = None   # the objective's extra metrics, merged into the next log
        self.loss_guard = None            # train.guards.NonFiniteLossGuard, set by train.run
        self.atomic_checkpoints = None    # train.resume.AtomicCheckpoints, set by train.run
        if (self.is_fsdp_enabled or self.is_deepspeed_enabled) and hasattr(objective, "same_modules_every_rank"):
            # sharded parameters are gathered module by module, in lockstep over the ranks: an objective
            # that skips modules for some rows (PROM's early stop) must then run the same ones everywhere
            objective.same_modules_every_rank = True

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        norms: dict[str, torch.Tensor] = {}
        for b in batch_samples:
            for k, v in self.objective.normalizers(b).items():
                norms[k] = norms.get(k, 0) + v.to(device)
        if self.args.world_size > 1:
            norms = {k: self.accelerator.reduce(v, reduction="sum") for k, v in norms.items()}
        self._step_norms = norms
        return batch_samples, num_items

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        norms = self._step_norms
        if norms is None or not self.model.training:
            # evaluation / prediction: normalise within this batch
            norms = {k: v.to(inputs["input_ids"].device) for k, v in self.objective.normalizers(inputs).items()}
        loss, logs = self.objective(model, inputs, norms)
        if self.loss_guard is not None and self.model.training:
            self.loss_guard.observe(loss, inputs)
        if self.model.training and self.args.world_size > 1:
            loss = loss * self.args.world_size  # DDP averages gradients over ranks; undo that average
        if logs and self.model.training:
            # kept as tensors: converting here would force a device sync every micro-batch
            self._pending_logs = {k: v.detach() if torch.is_tensor(v) else v for k, v in logs.items()}
        return (loss, None) if return_outputs else loss

    def _get_output_dir(self, trial):
        staging = self.atomic_checkpoints.staging if self.atomic_checkpoints is not None else None
        return staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        if self.atomic_checkpoints is None:
            return super()._save_checkpoint(model, trial)
        self.atomic_checkpoints.save(self, super()._save_checkpoint, model, trial)   # temp dir, then rename

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        inner = self.accelerator.unwrap_model(model if model is not None else self.model, keep_torch_compile=False)
        if not hasattr(inner, "restore_pivot_head") or self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)   # FSDP: its own full-model files
        super()._load_from_checkpoint(resume_from_checkpoint, inner.lm)   # the LM's files, as _save wrote them
        inner.restore_pivot_head(resume_from_checkpoint)

    def _save(self, output_dir=None, state_dict=None):
        inner = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if not hasattr(inner, "save_pivot_head"):
            return super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        lm_state, head_state = split_pivoted_state(state_dict)
        inner.save_pretrained(output_dir, state_dict=lm_state, safe_serialization=True)   # the LM (or adapter)
        inner.save_pivot_head(output_dir, state=head_state)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def log(self, logs, *args, **kwargs):
        if self._pending_logs and "loss" in logs:
            logs = {**logs, **{k: float(v) for k, v in self._pending_logs.items()}}
            self._pending_logs = None
        super().log(logs, *args, **kwargs)
