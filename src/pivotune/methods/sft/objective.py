"""Plain supervised fine-tuning: token cross-entropy at the final layer.

The loss is a sum over supervised tokens, each scaled by its sample's source weight, divided by the number of
supervised tokens in the whole optimizer step (all micro-batches, all ranks). Dividing by the step's count rather
than each micro-batch's is what makes gradient accumulation exact.

Logits exist only at supervised positions: the model's forward runs to its final states without projecting them
(:func:`pivotune.models.arch.final_hidden_states`), and the final head's cross-entropy is taken at those
positions by :class:`pivotune.objectives.head_loss.HeadLoss` (Liger's fused kernel on CUDA, else chunked, as
PROM's heads), with ``prom.chunk_size`` and ``prom.recompute_logits``.
"""

from __future__ import annotations

import torch

from ...data.packing import attention_inputs
from ...models.arch import arch_info, final_hidden_states
from ...models.fused_ce import LinearHead
from ...objectives.base import ROW_LOSSES, Objective, RowLosses, count_supervised
from ...objectives.head_loss import AUTO, DEFAULT_CHUNK_SIZE, HeadLoss, RecomputeLogits, gather_supervised, per_position


class SFTObjective(Objective):
    """Cross-entropy on every row of the batch at the final head. ``chunk_size`` and ``recompute_logits`` are the
    run's ``prom.chunk_size`` and ``prom.recompute_logits``; ``positions``: the most supervised positions a
    micro-batch holds, for ``auto`` (:class:`~pivotune.objectives.head_loss.RecomputeLogits`)."""

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE, recompute_logits: bool | str = AUTO, *,
                 positions: int | None = None, sharded: bool = False):
        self.chunk_size = chunk_size
        self.recompute = RecomputeLogits(recompute_logits, positions)
        self.head_loss = HeadLoss("final head", chunk_size=chunk_size, sharded=sharded)

    def for_sharded_training(self) -> SFTObjective:
        """The same loss; the head's kernel stays the chunked one (the fused kernel reads the head's weight
        outside the modules that gather it)."""
        sharded = SFTObjective(self.chunk_size, sharded=True)
        sharded.recompute = self.recompute
        return sharded

    def prepare_model(self, model):
        if self.recompute.positions:
            self.recompute.resolve(model, arch_info(model))
        return model

    def describe(self, model) -> dict:
        return {"sft": {"recompute_logits": self.recompute.value, "chunk_size": self.chunk_size,
                        "kernel": self.head_loss.describe()}}

    def normalizers(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"tokens": count_supervised(batch["labels"])}

    def loss(self, model, batch: dict, norms: dict[str, torch.Tensor]):
        info = arch_info(model)
        recompute = self.recompute.resolve(model, info, batch["labels"].numel())
        normed, out = final_hidden_states(model, batch["input_ids"], info=info, **attention_inputs(batch))
        h, targets, w, sel = gather_supervised(normed, batch["labels"], batch["weights"])
        total, each = self.head_loss(LinearHead.final(info), h, targets, w, recompute=recompute)
        # the forward's (empty) logits join at weight 0: FSDP1's root unit hooks its backward on them
        loss = total / norms["tokens"].clamp(min=1) + out.logits.sum() * 0.0
        return loss, {ROW_LOSSES: RowLosses.of(per_position(each, sel), sel)}
