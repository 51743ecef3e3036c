"""Plain supervised fine-tuning: token cross-entropy at the final layer.

The loss is a sum over supervised tokens, each scaled by its sample's source weight, divided by the number of
supervised tokens in the whole optimizer step (all micro-batches, all ranks). Dividing by the step's count rather
than each micro-batch's is what makes gradient accumulation exact.
"""

from __future__ import annotations

import torch

from ...data.packing import attention_inputs
from ...objectives.base import (
    ROW_LOSSES,
    Objective,
    RowLosses,
    count_supervised,
    supervised_targets,
    token_ce,
    weighted_sum,
)


class SFTObjective(Objective):
    """Cross-entropy on every row of the batch at the final layer; it has no settings."""

    def normalizers(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"tokens": count_supervised(batch["labels"])}

    def loss(self, model, batch: dict, norms: dict[str, torch.Tensor]):
        out = model(input_ids=batch["input_ids"], **attention_inputs(batch), use_cache=False)
        ce = token_ce(out.logits, batch["labels"])
        loss = weighted_sum(ce, batch["weights"], norms["tokens"].clamp(min=1))
        return loss, {ROW_LOSSES: RowLosses.of(ce, supervised_targets(batch["labels"]))}
