"""A head's cross-entropy at a micro-batch's supervised positions: the one way SFT's head and both of PROM's heads
compute their loss.

Logits exist only where a target is supervised (position t predicts label t+1): the hidden states there are
gathered (:func:`gather_supervised`, M × H) and :class:`HeadLoss` computes ``Σ_i w_i · CE_α(head(h_i), y_i)``
and each ``CE_α`` (unweighted, for the rows' logged losses) through the kernel that
:func:`pivotune.models.fused_ce.choose_head_kernel` picks for the head on its first call, the choice logged
once: Liger's fused linear cross-entropy on CUDA where it covers the loss, else :func:`chunked_head_ce`,
``prom.chunk_size`` positions at a time, each chunk's logits recomputed in backward when
``prom.recompute_logits`` says so.

``prom.recompute_logits`` is ``auto`` by default: :class:`RecomputeLogits` resolves it once per run with the
rule :func:`pivotune.models.fused_ce.recompute_logits`, from the most supervised positions a micro-batch can
hold (:func:`micro_batch_positions` over the encoded data; else per_device_batch_size × max_seq_len; else the
first micro-batch's rows × width), the vocabulary and the trainable parameters' gradients.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..models.arch import ArchInfo
from ..models.fused_ce import (HeadKernel, LinearHead, announce, choose_head_kernel, fused_head_ce, kept_logit_bytes,
                               recompute_logits)
from ..settings import DEFAULT_CHUNK_SIZE, RECOMPUTE_AUTO as AUTO
from .base import supervised_targets

log = logging.getLogger(__name__)



def gather_supervised(hidden: torch.Tensor, labels: torch.Tensor, row_weights: torch.Tensor):
    """From ``hidden`` [B, T, H] and the rows' unshifted ``labels`` [B, T] and source weights [B]: the states at
    supervised positions [M, H], their targets [M] and weights [M], and the [B, T-1] mask of those positions."""
    sel = supervised_targets(labels)
    return hidden[:, :-1][sel], labels[:, 1:][sel], row_weights[:, None].expand_as(sel)[sel], sel


def per_position(each: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """The [M] losses at the positions ``sel`` [B, T-1] marks, put back in place (0 elsewhere; no device sync)."""
    return sel.new_zeros(sel.shape, dtype=each.dtype).masked_scatter(sel, each)


def _chunk_ce(head_fn, h, targets, w, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head_fn(h)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()   # the loss in at least float32
    ce = F.cross_entropy(logits, targets, reduction="none", label_smoothing=alpha)
    return (ce * w.to(ce.dtype)).sum(), ce.detach()


def chunked_head_ce(head_fn: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor, targets: torch.Tensor,
                    weights: torch.Tensor, *, alpha: float = 0.0, chunk_size: int = DEFAULT_CHUNK_SIZE,
                    recompute: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_i w_i · CE_α(head_fn(hidden[i]), targets[i]) over rows of ``hidden`` [M, H], ``chunk_size`` rows
    at a time, and each row's CE_α (unweighted, detached: [M]). With ``recompute`` (and grad enabled) a chunk's
    logits are not kept for backward."""
    total = hidden.new_zeros((), dtype=torch.promote_types(hidden.dtype, torch.float32))
    use_ckpt = recompute and torch.is_grad_enabled()
    each = []
    for s in range(0, hidden.shape[0], chunk_size):
        args = (hidden[s:s + chunk_size], targets[s:s + chunk_size], weights[s:s + chunk_size])
        if use_ckpt:
            part, ce = checkpoint(_chunk_ce, head_fn, *args, alpha, use_reentrant=False)
        else:
            part, ce = _chunk_ce(head_fn, *args, alpha)
        total = total + part
        each.append(ce)
    return total, (torch.cat(each) if each else total.new_zeros(0))


class HeadLoss:
    """One head's loss (``name`` in the log: "final head", "pivot head") with its label smoothing and chunk size;
    ``sharded``: the parameters are sharded (FSDP, ZeRO-3), which keeps the chunked path."""

    def __init__(self, name: str, *, label_smoothing: float = 0.0, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 sharded: bool = False):
        self.name, self.label_smoothing, self.chunk_size, self.sharded = name, label_smoothing, chunk_size, sharded
        self.kernel: HeadKernel | None = None   # chosen on the first call

    def __call__(self, head: LinearHead, hidden: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, *,
                 recompute: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Σ_i w_i · CE_α(head(hidden_i), targets_i), each CE_α)`` over ``hidden`` [M, H] (see the module
        docstring); ``recompute`` is the chunked path's."""
        if hidden.shape[0] == 0:   # a zero through the head and all below it: DDP expects every gradient
            zero = head.module_logits(hidden).sum(dtype=torch.promote_types(hidden.dtype, torch.float32)) * 0.0
            return zero, zero.new_zeros(0)
        if self.kernel is None:
            self.kernel = choose_head_kernel(hidden.device, head.needs(self.label_smoothing, self.sharded))
            announce(self.name, self.kernel)
        if self.kernel.fused:
            return fused_head_ce(head, hidden, targets, weights, label_smoothing=self.label_smoothing)
        return chunked_head_ce(head.module_logits, hidden, targets, weights, alpha=self.label_smoothing,
                               chunk_size=self.chunk_size, recompute=recompute)

    def describe(self) -> str | None:
        """The kernel chosen, in words (None before the first call)."""
        return self.kernel.reason if self.kernel is not None else None


# ----------------------------------------------------------------------------------- prom.recompute_logits

def micro_batch_positions(supervised_per_row: Iterable[int], rows: int) -> int:
    """The most supervised positions a micro-batch of ``rows`` rows can hold: its ``rows`` largest rows' counts."""
    return sum(heapq.nlargest(rows, supervised_per_row))


class RecomputeLogits:
    """``prom.recompute_logits`` for one objective: ``True``/``False`` as set, or ``auto``, resolved by the rule
    on first use and kept. ``positions``: the most supervised positions a micro-batch holds, when known."""

    def __init__(self, setting: bool | str = AUTO, positions: int | None = None):
        self.setting, self.positions = setting, positions
        self.value: bool | None = None if setting == AUTO else bool(setting)

    def resolve(self, model: nn.Module, info: ArchInfo, positions: int | None = None) -> bool:
        """The value for ``model`` (its trainable parameters; ``info`` its architecture); ``positions``: a bound
        to use when none was given at construction."""
        if self.value is None:
            bound = self.positions or positions
            if bound is None:
                raise ValueError("RecomputeLogits.resolve: no bound on a micro-batch's supervised positions")
            params = [p for p in model.parameters() if p.requires_grad]
            vocab, softcap = int(info.unembed.weight.shape[0]), info.logit_softcap is not None
            grad_bytes = params[0].element_size() if params else 4
            trainable = sum(p.numel() for p in params)
            self.value = recompute_logits(bound, vocab, trainable, grad_bytes=grad_bytes, softcap=softcap)
            log.info("prom.recompute_logits auto: %s (logits kept for backward up to %.0f MB, the trainable "
                     "parameters' gradients %.0f MB)", self.value, kept_logit_bytes(bound, vocab, softcap) / 1e6,
                     trainable * grad_bytes / 1e6)
        return self.value
