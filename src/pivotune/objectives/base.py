"""The contract between a method's loss and the one trainer, and the loss pieces every method shares.

An objective is built by its method's road (:mod:`pivotune.methods`) from its own settings object, never from the
whole run config, and the trainer (:class:`pivotune.train.trainer.PivotuneTrainer`) asks it only what
:class:`Objective` lists. Each term of a loss is a sum over its supervised tokens (or units), divided by the
count of the whole optimizer step (all micro-batches, all ranks), which the trainer gathers from
:meth:`Objective.normalizers`: that is what keeps gradient accumulation and data parallelism exact.

An objective that reads its loss off rows of a batch that carries roles and languages also returns, under
:data:`ROW_LOSSES` in its logs, each row's loss summed over its supervised tokens (:class:`RowLosses`): the
trainer turns them into the per-role and per-language losses it logs (:mod:`pivotune.train.losses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..data.records import IGNORE_INDEX


#: the entry of :meth:`Objective.loss`'s logs that holds the micro-batch's :class:`RowLosses` (not a metric)
ROW_LOSSES = "row_losses"


@dataclass(frozen=True)
class RowLosses:
    """Each row's loss summed over its supervised targets, unweighted by its source weight, and how many targets
    that is (``[B]`` each, detached, in the batch's row order); a row its objective did not run counts 0 tokens."""

    sums: torch.Tensor
    tokens: torch.Tensor

    @classmethod
    def of(cls, token_losses: torch.Tensor, supervised: torch.Tensor) -> RowLosses:
        """From ``[B, T]`` per-target losses (0 where not supervised) and the ``[B, T]`` mask of supervised ones."""
        return cls(token_losses.detach().sum(1), supervised.sum(1))


class Objective(Protocol):
    """What the trainer asks of a method's loss; subclass it to inherit the defaults."""

    #: DDP must look for trainable parameters a micro-batch leaves without a gradient (PROM: English-only
    #: micro-batches stop at the pivot block); off, DDP saves a graph pass per step.
    find_unused_parameters: bool = False

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Wrap the loaded (possibly LoRA-wrapped) model before the trainer sees it; by default it trains as it is."""
        return model

    def normalizers(self, batch: dict) -> dict[str, torch.Tensor]:
        """The counts each loss term divides by, for one micro-batch; the trainer sums them over the step."""
        ...

    def loss(self, model: nn.Module, batch: dict, norms: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """The micro-batch's loss, already divided by the step's ``norms``, and extra metrics to log (with, under
        :data:`ROW_LOSSES`, the rows' :class:`RowLosses` when the batch carries ``roles`` and ``langs``)."""
        ...

    def describe(self, model: nn.Module) -> dict:
        """What ``run.json`` records about the objective and the model it trained; by default nothing."""
        return {}

    def for_sharded_training(self) -> Objective:
        """The objective to use when parameters are sharded (FSDP, ZeRO-3), where every rank must run the same
        modules in the same order; by default this one."""
        return self


def supervised_targets(labels: torch.Tensor) -> torch.Tensor:
    """[B, T-1] mask of next-token targets that a loss reads (labels are unshifted: position t predicts t+1)."""
    return labels[:, 1:].ne(IGNORE_INDEX)


def count_supervised(labels: torch.Tensor) -> torch.Tensor:
    """Supervised next-token targets in a batch (labels are unshifted)."""
    return supervised_targets(labels).sum()


def token_ce(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0, *,
             shift: bool = True) -> torch.Tensor:
    """[B, T'] CE(logits[t], target[t]) of every target in float32, 0 where the target is -100.

    ``logits`` [B, T, V] and ``labels`` [B, T] as the model returns them, so position t predicts label t+1 and
    T' = T - 1 (``shift=False``: already aligned, position t predicts label t, T' = T, as the LinguaLIFT bridge
    returns them).
    """
    if shift:
        logits, labels = logits[:, :-1, :], labels[:, 1:]
    logits = logits.float()
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX,
                         reduction="none", label_smoothing=label_smoothing)
    return ce.view(labels.shape)


def weighted_sum(token_losses: torch.Tensor, row_weights: torch.Tensor, denom: torch.Tensor | float) -> torch.Tensor:
    """Σ_tokens w_row · loss[row, t] / denom over [B, T'] per-target losses; ``row_weights`` [B]."""
    w = row_weights.to(token_losses.dtype)[:, None].expand_as(token_losses).reshape(-1)
    return (token_losses.reshape(-1) * w).sum() / denom


def weighted_token_ce(logits: torch.Tensor, labels: torch.Tensor, row_weights: torch.Tensor,
                      denom: torch.Tensor | float, label_smoothing: float = 0.0, *, shift: bool = True) -> torch.Tensor:
    """Σ_tokens w_row · CE(logits[t], target[t]) / denom, in float32, over targets other than -100
    (:func:`token_ce`, :func:`weighted_sum`); ``row_weights`` [B], each row's source weight."""
    return weighted_sum(token_ce(logits, labels, label_smoothing, shift=shift), row_weights, denom)
