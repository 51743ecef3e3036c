"""LinguaLIFT's loss (both stages): cross-entropy on the response tokens the LM produces after the bridged
prompt, weighted per sample and divided by the optimizer step's supervised-token count.

The bridge returns logits already aligned with the response (``logits[:, t]`` predicts response token ``t``),
so there is no shift here; which parameters learn is decided by freezing, not by the loss.
"""

from __future__ import annotations

import torch

from ...data.records import IGNORE_INDEX
from ...objectives.base import ROW_LOSSES, Objective, RowLosses, token_ce, weighted_sum


class LinguaLiftObjective(Objective):
    """Response cross-entropy through the bridge; it has no settings."""

    def normalizers(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"tokens": batch["labels"].ne(IGNORE_INDEX).sum()}

    def loss(self, model, batch: dict, norms: dict[str, torch.Tensor]):
        out = model(enc_input_ids=batch["enc_input_ids"], enc_attention_mask=batch["enc_attention_mask"],
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        ce = token_ce(out.logits, batch["labels"], shift=False)
        loss = weighted_sum(ce, batch["weights"], norms["tokens"].clamp(min=1))
        return loss, {ROW_LOSSES: RowLosses.of(ce, batch["labels"].ne(IGNORE_INDEX))}
