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

import torch
from transformers import Trainer

from ..errors import PivotuneError

BATCH_KEYS = ("input_ids", "attention_mask", "labels", "roles", "langs", "weights")


class PivotuneTrainer(Trainer):
    loss_is_scaled_for_ga = True

    def __init__(self, *args, objective, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self._step_norms: dict[str, torch.Tensor] | None = None
        self._pending_logs: dict | None = None   # the objective's extra metrics, merged into the next log
        if hasattr(self.model, "save_pivot_head") and (self.is_fsdp_enabled or self.is_deepspeed_enabled):
            raise PivotuneError(f"method objective '{objective.name}' keeps a pivot head beside the model and "
                                "runs under DDP only; FSDP and DeepSpeed are not supported for it yet.")

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
        if self.model.training and self.args.world_size > 1:
            loss = loss * self.args.world_size  # DDP averages gradients over ranks; undo that average
        if logs and self.model.training:
            # kept as tensors: converting here would force a device sync every micro-batch
            self._pending_logs = {k: v.detach() if torch.is_tensor(v) else v for k, v in logs.items()}
        return (loss, None) if return_outputs else loss

    def _save(self, output_dir=None, state_dict=None):
        inner = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if not hasattr(inner, "save_pivot_head"):
            return super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        inner.save_pretrained(output_dir, safe_serialization=True)   # the LM (or its adapter) only
        inner.save_pivot_head(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def log(self, logs, *args, **kwargs):
        if self._pending_logs and "loss" in logs:
            logs = {**logs, **{k: float(v) for k, v in self._pending_logs.items()}}
            self._pending_logs = None
        super().log(logs, *args, **kwargs)
