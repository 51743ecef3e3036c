"""How a head's cross-entropy is computed: Liger's fused linear cross-entropy on CUDA, else the chunked path.

Both compute ``Σ_i w_i · CE_α(head(h_i), y_i)`` and each ``CE_α(head(h_i), y_i)`` (the rows' losses for the
log) over a micro-batch's supervised positions i (their hidden states gathered, M × H): SFT's final head,
PROM's final head and its pivot head (:class:`pivotune.objectives.head_loss.HeadLoss` runs the one
chosen). The chunked path (pure torch, every device) takes ``prom.chunk_size`` positions at a time through
the head and a float32 cross-entropy, each chunk's logits recomputed in backward when
``prom.recompute_logits`` is on. Liger's kernel (the ``liger-kernel`` package: Triton, CUDA devices)
projects and takes the cross-entropy tile by tile and computes the gradients in the same pass, so no more
than one tile of logits ever exists and there is nothing to recompute; ``chunk_size`` and
``recompute_logits`` concern the chunked path only.

:func:`choose_head_kernel` decides once per head, from the device, the installed liger-kernel and what the
loss needs (:class:`HeadLossNeeds`); :func:`announce` logs the choice and, on CUDA, why the fused kernel
is not used. :class:`LinearHead` is a head in the form the fused kernel takes (the final norm, a Linear,
then the logit scale and soft-cap of :func:`pivotune.models.arch.apply_logit_transforms`), with the
modules' own path beside it for the chunked one, and :func:`fused_head_ce` runs the kernel on it.

:func:`recompute_logits` is the rule for ``prom.recompute_logits`` from the size of the logits it would keep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import nn

from .arch import ArchInfo, unembed_logits

log = logging.getLogger(__name__)

# The fused path always takes per-token losses (reduction="none"): the sources' weights can differ between
# tokens, and each row's loss is logged. 0.8.2 is the first release whose reduction="none" gives correct
# gradients for weighted per-token losses (linkedin/Liger-Kernel#1298); label smoothing and the soft-cap came before.
LIGER_MIN = "0.8.2"


class Fallback(Enum):
    """Why the chunked path runs instead of Liger's kernel (the message is completed with ``detail``)."""

    NOT_CUDA = "the device is {detail}; Liger's fused kernels are Triton kernels for CUDA devices"
    NOT_INSTALLED = f"liger-kernel is not installed (pip install 'liger-kernel>={LIGER_MIN}' for the fused kernel)"
    BROKEN = "liger-kernel is installed but its fused linear cross-entropy does not import ({detail})"
    TOO_OLD = (f"liger-kernel {{detail}} is older than {LIGER_MIN}, the first release whose per-token losses "
               "(reduction='none': the sources' weights and each row's logged loss) get correct gradients "
               "(linkedin/Liger-Kernel#1298)")
    SHARDED = ("the parameters are sharded (FSDP, ZeRO-3), and the fused kernel reads the head's weight outside "
               "the modules that gather it")
    NOT_LINEAR = ("the head's projection is a {detail}, not a plain torch Linear (a LoRA layer on the head, for "
                  "one), and the fused kernel reads its weight directly")


@dataclass(frozen=True)
class HeadLossNeeds:
    """What a head's loss asks of the kernel.

    ``projection``: the class name of the head's projection when it is not a plain ``nn.Linear``;
    ``sharded``: the parameters are sharded (FSDP, ZeRO-3). Label smoothing, the logit scale and the
    soft-cap the fused kernel takes as they are (the scale is folded into its input)."""

    label_smoothing: float = 0.0
    softcap: float | None = None
    logit_scale: float | None = None
    projection: str | None = None
    sharded: bool = False


@dataclass(frozen=True)
class Liger:
    """The installed liger-kernel: its version, or why it cannot be used (both None: not installed)."""

    version: str | None = None
    import_error: str | None = None

    def at_least(self, release: str) -> bool:
        from packaging.version import InvalidVersion, Version

        try:
            return Version(self.version or "0") >= Version(release)
        except InvalidVersion:
            return False


def installed_liger() -> Liger:
    """Whether liger-kernel's fused linear cross-entropy imports here, and its version."""
    from importlib import metadata, util

    if util.find_spec("liger_kernel") is None:
        return Liger()
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy  # noqa: F401
    except Exception as err:   # Triton missing or mismatched raises more than ImportError
        return Liger(import_error=f"{type(err).__name__}: {err}"[:300])
    try:
        return Liger(version=metadata.version("liger-kernel"))
    except metadata.PackageNotFoundError:   # importable without metadata (a source checkout)
        return Liger(version="0")


@dataclass(frozen=True)
class HeadKernel:
    """The choice for one head: ``fused`` (Liger) or not, and the sentence that says why."""

    fused: bool
    reason: str
    fallback: Fallback | None = None


def _fall_back(why: Fallback, detail: str = "") -> HeadKernel:
    return HeadKernel(False, "chunked cross-entropy: " + why.value.format(detail=detail), why)


def choose_head_kernel(device: torch.device | str, needs: HeadLossNeeds, liger: Liger | None = None) -> HeadKernel:
    """Liger's fused linear cross-entropy when the device is CUDA, liger-kernel imports and is recent
    enough, the parameters are not sharded and the head is a plain Linear; else the chunked path, with the
    first reason in that order. ``liger`` defaults to :func:`installed_liger` (only looked up on CUDA)."""
    device = torch.device(device)
    if device.type != "cuda":
        return _fall_back(Fallback.NOT_CUDA, device.type)
    liger = installed_liger() if liger is None else liger
    if liger.import_error:
        return _fall_back(Fallback.BROKEN, liger.import_error)
    if liger.version is None:
        return _fall_back(Fallback.NOT_INSTALLED)
    if not liger.at_least(LIGER_MIN):
        return _fall_back(Fallback.TOO_OLD, liger.version)
    if needs.sharded:
        return _fall_back(Fallback.SHARDED)
    if needs.projection is not None:
        return _fall_back(Fallback.NOT_LINEAR, needs.projection)
    extras = [f"label smoothing {needs.label_smoothing:g}"] if needs.label_smoothing else []
    extras += [f"soft-cap {needs.softcap:g}"] if needs.softcap is not None else []
    extras += [f"logit scale {needs.logit_scale:g}"] if needs.logit_scale is not None else []
    return HeadKernel(True, f"Liger's fused linear cross-entropy (liger-kernel {liger.version}"
                      + "".join(f", {e}" for e in extras) + ")")


def announce(head: str, kernel: HeadKernel) -> None:
    """Log the choice for ``head`` once: the fused kernel or a fallback on CUDA at INFO, off CUDA at DEBUG."""
    level = logging.DEBUG if kernel.fallback is Fallback.NOT_CUDA else logging.INFO
    log.log(level, "%s: %s", head, kernel.reason)


# --------------------------------------------------------------------------------------------- the kernel

def _projection_name(module: nn.Module) -> str | None:
    return None if type(module) is nn.Linear else type(module).__name__


@dataclass(frozen=True)
class LinearHead:
    """``head(h) = softcap(scale · (weight · norm(h) + bias))``: the form of every head pivotune trains.

    ``norm`` is None when ``h`` is already final-normed (the final head on the decoder's output). ``run`` is
    the head as its modules compute it (their hooks and adapters included): what the chunked path calls."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    norm: nn.Module | None
    logit_scale: float | None
    softcap: float | None
    projection: str | None = None
    run: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False)

    @classmethod
    def final(cls, info: ArchInfo) -> LinearHead:
        """The model's own head on final-normed states (``pivotune.models.arch.unembed_logits``)."""
        return cls(info.unembed.weight, getattr(info.unembed, "bias", None), None, info.logit_scale,
                   info.logit_softcap, _projection_name(info.unembed), lambda h: unembed_logits(info, h))

    @classmethod
    def pivot(cls, head: nn.Module, info: ArchInfo) -> LinearHead:
        """PROM's pivot head (``pivotune.models.pivot_head.PivotHead``) on raw block outputs."""
        proj = head.proj if head.proj is not None else info.unembed
        norm = head.norm if head.norm is not None else info.final_norm
        return cls(proj.weight, getattr(proj, "bias", None), norm, info.logit_scale, info.logit_softcap,
                   _projection_name(proj), lambda h: head(h, info))

    def needs(self, label_smoothing: float = 0.0, sharded: bool = False) -> HeadLossNeeds:
        return HeadLossNeeds(label_smoothing, self.softcap, self.logit_scale, self.projection, sharded)

    def kernel_inputs(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(input, bias) for a kernel that computes ``softcap(input · weightᵀ + bias)``: the norm applied and
        the logit scale folded in (``s·(W x + b) = W (s x) + s b``)."""
        x = self.norm(hidden) if self.norm is not None else hidden
        bias = self.bias
        if self.logit_scale is not None:
            x = x * self.logit_scale
            bias = bias * self.logit_scale if bias is not None else None
        return x, bias

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The logits themselves, through :meth:`kernel_inputs` (what the kernel computes, tile by tile)."""
        x, bias = self.kernel_inputs(hidden)
        z = nn.functional.linear(x, self.weight, bias)
        return torch.tanh(z / self.softcap) * self.softcap if self.softcap is not None else z

    def module_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The logits as the head's modules compute them (:attr:`run`; :meth:`logits` without one)."""
        return self.run(hidden) if self.run is not None else self.logits(hidden)


def fused_head_ce(head: LinearHead, hidden: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, *,
                  label_smoothing: float = 0.0, _kernel=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``Σ_i w_i · CE_α(head(hidden_i), targets_i)`` (float32 scalar) through Liger's fused kernel, and each
    ``CE_α`` (float32, detached: [M]).

    ``hidden`` [M, H] are the states at supervised positions, ``targets`` [M] and ``weights`` [M] theirs. The
    kernel returns per-token losses (``reduction="none"``), weighted here. Only call it where
    :func:`choose_head_kernel` chose the fused kernel.
    """
    if _kernel is None:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy as _kernel
    x, bias = head.kernel_inputs(hidden)
    if x.shape[0] == 0:   # still part of the graph, like the chunked path's zero
        return x.sum(dtype=torch.float32) * 0.0, x.new_zeros(0, dtype=torch.float32)
    per_token = _kernel(x, head.weight, targets, bias=bias, reduction="none", label_smoothing=label_smoothing,
                        softcap=head.softcap).float()
    return (per_token * weights.float()).sum(), per_token.detach()


# ----------------------------------------------------------------------------------- prom.recompute_logits

def kept_logit_bytes(positions: int, vocab_size: int, softcap: bool = False) -> int:
    """What the chunked path keeps for backward without recompute: the float32 log-softmax of every
    supervised position (and the soft-cap's tanh output where there is one)."""
    return positions * vocab_size * 4 * (2 if softcap else 1)


def recompute_logits(positions: int, vocab_size: int, trainable_params: int, *, grad_bytes: int = 4,
                     softcap: bool = False) -> bool:
    """Whether the chunked path should recompute each chunk's logits in backward.

    The rule: recompute when the logits kept for backward (:func:`kept_logit_bytes` of the micro-batch's
    supervised positions, both heads together) would outgrow the trainable parameters' gradients
    (``trainable_params × grad_bytes``). Why: kept logits are freed during the backward pass, before the
    gradients are complete and the optimizer steps, and the step's peak memory is the larger of those two
    moments; while the logits are the smaller, keeping them leaves the peak where the gradients put it, and
    recomputing them costs one more head matmul per chunk. Measured on bench/prom_step.py's model (74.5M
    trainable weights, 298 MB of gradients): 10 rows (145 MB of logits) recompute costs 14 % of the step and
    saves no memory; 40 rows (612 MB) it costs 17 % and lowers the peak by 4 %, so the rule errs towards
    recomputing. Full fine-tuning of a 7B model keeps its logits; LoRA, whose gradients are small,
    recomputes them. ``positions``: a micro-batch's supervised positions at most
    (``per_device_batch_size × max_seq_len`` when nothing better is known).
    """
    return kept_logit_bytes(positions, vocab_size, softcap) > trainable_params * grad_bytes
