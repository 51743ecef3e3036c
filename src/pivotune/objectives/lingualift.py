"""LinguaLIFT's loss (both stages): cross-entropy on the response tokens the LM produces after the bridged
prompt, weighted per sample and divided by the optimizer step's supervised-token count.

The bridge returns logits already aligned with the response (``logits[:, t]`` predicts response token ``t``),
so there is no shift here; which parameters learn is decided by freezing, not by the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def response_ce(logits: torch.Tensor, labels: torch.Tensor, row_weights: torch.Tensor,
                denom: torch.Tensor | float) -> torch.Tensor:
    """Σ_tokens w_row · CE(logits[b, t], labels[b, t]) / denom, over labels != -100."""
    ce = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                         ignore_index=IGNORE_INDEX, reduction="none")
    w = row_weights.to(ce.dtype)[:, None].expand_as(labels).reshape(-1)
    return (ce * w).sum() / denom


class LinguaLiftObjective:
    name = "lingualift"

    def __init__(self, cfg=None):
        self.cfg = cfg

    def normalizers(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"tokens": batch["labels"].ne(IGNORE_INDEX).sum()}

    def __call__(self, model, batch: dict, norms: dict[str, torch.Tensor]):
        out = model(enc_input_ids=batch["enc_input_ids"], enc_attention_mask=batch["enc_attention_mask"],
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss = response_ce(out.logits, batch["labels"], batch["weights"], norms["tokens"].clamp(min=1))
        return loss, {}
