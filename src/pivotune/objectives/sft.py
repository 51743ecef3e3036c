"""Plain supervised fine-tuning: token cross-entropy at the final layer.

The loss is a sum over supervised tokens, each scaled by its sample's source
weight, divided by the number of supervised tokens in the whole optimizer step
(all micro-batches, all ranks). Dividing by the step's count rather than each
micro-batch's is what makes gradient accumulation exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def count_supervised(labels: torch.Tensor) -> torch.Tensor:
    """Supervised next-token targets in a batch (labels are unshifted)."""
    return labels[:, 1:].ne(IGNORE_INDEX).sum()


def weighted_token_ce(logits: torch.Tensor, labels: torch.Tensor, row_weights: torch.Tensor,
                      denom: torch.Tensor | float, label_smoothing: float = 0.0) -> torch.Tensor:
    """Σ_tokens w_row · CE(logits[t], labels[t+1]) / denom.

    ``logits`` [B, T, V] and ``labels`` [B, T] are aligned as the model returns
    them (position t predicts t+1); ``row_weights`` [B].
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    ce = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                         ignore_index=IGNORE_INDEX, reduction="none", label_smoothing=label_smoothing)
    w = row_weights.to(ce.dtype)[:, None].expand_as(shift_labels).reshape(-1)
    return (ce * w).sum() / denom


class SFTObjective:
    """Cross-entropy on every row of the batch at the final layer."""

    name = "sft"

    def __init__(self, cfg=None):
        self.cfg = cfg

    def normalizers(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"tokens": count_supervised(batch["labels"])}

    def __call__(self, model, batch: dict, norms: dict[str, torch.Tensor]):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        denom = norms["tokens"].clamp(min=1)
        loss = weighted_token_ce(out.logits, batch["labels"], batch["weights"], denom)
        return loss, {}
