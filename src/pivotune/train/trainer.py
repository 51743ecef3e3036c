"""The Hugging Face Trainer with a pluggable objective.

The one thing the stock Trainer lacks is a loss whose normaliser spans the
whole optimizer step for every term of a multi-term objective (PROM divides
each term by its own token count). So this subclass gathers the objective's
token counts over the step's micro-batches and all ranks, and the objective
divides by them; the loss is then already scaled for accumulation.

A model with parts of its own (:class:`pivotune.models.parts.ModelWithParts`: PROM's pivot head,
LinguaLIFT's bridge) is checkpointed through its ``save_parts`` / ``load_parts`` pair, laid out like the run
directory: PROM's LM files with the head beside them, the bridge's parts in its own format.

The guards (:mod:`pivotune.train.guards`: atomic checkpoints, the non-finite loss guard) come in through the
constructor; the objective is asked for its sharded form, never changed. Each log of the mixed ``loss`` carries
the loss per role and per language since the last one (:mod:`pivotune.train.losses`), from the rows' losses the
objective returns.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback

from ..errors import PivotuneError
from ..models.parts import ModelWithParts
from ..objectives.base import ROW_LOSSES
from .losses import LossBreakdown

BATCH_KEYS = ("input_ids", "attention_mask", "labels", "roles", "langs", "weights")


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

    def __init__(self, *args, objective, checkpoints=None, loss_guard=None, languages: dict[str, int] | None = None,
                 new_rows=None, **kwargs):
        """``objective``: a :class:`pivotune.objectives.base.Objective`; ``checkpoints``: the run's
        :class:`~pivotune.train.resume.AtomicCheckpoints`; ``loss_guard``: its
        :class:`~pivotune.train.guards.NonFiniteLossGuard` (both from :func:`pivotune.train.guards.training_guards`);
        ``languages``: the language ids the batches carry, for the per-language losses (none: English alone);
        ``new_rows``: a vocabulary extension's :class:`~pivotune.vocab.run.NewRowGroup`, its own optimizer group."""
        self.new_rows = new_rows
        super().__init__(*args, **kwargs)
        for reporter in _REPORTERS.get():
            self.remove_callback(PrinterCallback)
            self.remove_callback(ProgressCallback)
            self.add_callback(reporter)
        # sharded parameters are gathered module by module, in lockstep over the ranks: an objective that skips
        # modules for some rows (PROM's early stop) must then run the same ones everywhere
        self.objective = (objective.for_sharded_training() if self.is_fsdp_enabled or self.is_deepspeed_enabled
                          else objective)
        self._step_norms: dict[str, torch.Tensor] | None = None
        self._pending_logs: dict | None = None   # the objective's extra metrics, merged into the next log
        self.loss_breakdown = LossBreakdown(languages or {"en": 0})
        self.atomic_checkpoints = checkpoints
        self.loss_guard = loss_guard
        if loss_guard is not None:
            loss_guard.trainer = self   # it reduces its flag over the ranks through this trainer's accelerator
            self.add_callback(loss_guard)

    def create_optimizer(self, model=None):
        """The stock optimizer, with the new vocabulary rows' parameters (if any) in a group of their own."""
        if self.optimizer is not None or self.new_rows is None:
            return super().create_optimizer(model)
        from ..vocab.train import with_own_group

        optimizer = super().create_optimizer(model)
        *kept, own = with_own_group(optimizer.param_groups, self.new_rows.params, lr=self.new_rows.lr,
                                    weight_decay=self.new_rows.weight_decay)
        optimizer.param_groups[:] = kept   # before any step: no optimizer state to move
        optimizer.add_param_group(own)
        return optimizer

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
        loss, logs = self.objective.loss(model, inputs, norms)
        rows = logs.get(ROW_LOSSES)
        logs = {k: v for k, v in logs.items() if k != ROW_LOSSES}
        if rows is not None and self.model.training:
            self.loss_breakdown.add(rows, inputs["roles"], inputs["langs"])
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
        if not isinstance(inner, ModelWithParts):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            if inner.parts_beside_lm:   # their own full-model files
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            raise PivotuneError(f"A {type(inner).__name__} resumes only without FSDP or DeepSpeed (its checkpoints "
                                "hold whole parts, not shards): resume with plain data parallelism.")
        if inner.parts_beside_lm:
            super()._load_from_checkpoint(resume_from_checkpoint, inner.lm)   # the LM's files, as _save wrote them
        inner.load_parts(resume_from_checkpoint)

    def _save(self, output_dir=None, state_dict=None):
        inner = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if not isinstance(inner, ModelWithParts):
            return super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        lm_state, parts_state = inner.split_state(state_dict)
        if inner.parts_beside_lm:
            inner.save_pretrained(output_dir, state_dict=lm_state, safe_serialization=True)   # the LM (or adapter)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
        inner.save_parts(output_dir, state=parts_state)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def log(self, logs, *args, **kwargs):
        if "loss" in logs:   # a training logging step: every rank logs it
            reduce = ((lambda t: self.accelerator.reduce(t, reduction="sum")) if self.args.world_size > 1 else None)
            logs = {**logs, **self.loss_breakdown.take(self.args.device, reduce)}
        if self._pending_logs and "loss" in logs:
            logs = {**logs, **{k: float(v) for k, v in self._pending_logs.items()}}
            self._pending_logs = None
        super().log(logs, *args, **kwargs)
