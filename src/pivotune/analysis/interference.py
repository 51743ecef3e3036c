"""Gradient interference (METHODS.md, "Gradient interference"; Wang et al., 2020).

For two data sources A and B (a role, optionally with a language: ``en``, ``tgt:el``, ``mt``) and K pairs
of batches (a_i, b_i)::

    cos_i = ⟨∇_θS L(a_i), ∇_θS L(b_i)⟩ / (‖∇_θS L(a_i)‖ · ‖∇_θS L(b_i)‖)

over a set S of decoder blocks (default: the last one; LoRA: the adapters in them), each gradient taken
through the method's own objective — for PROM an English batch's gradient is the pivoted one, which
never reaches blocks above the pivot layer n. Mean and spread over the K pairs. A gradient that is
exactly zero on S (PROM's English rows above n, or λ_e = 0) makes the cosine undefined: it is reported
as NaN and counted, never folded into the mean as 0.

The measurement leaves nothing behind: gradients come from ``torch.autograd.grad`` (``.grad`` and the
optimizer state are untouched), the model runs in eval mode (no dropout; each module's mode restored),
the torch RNG is forked and restored, and the objective's own attributes are restored. A training run
with the measurement on therefore produces the same weights as one without it.
"""

from __future__ import annotations

import contextlib
import math
import random
import statistics
from dataclasses import dataclass

import torch

from ..data.collate import Collator, Encoded
from ..data.records import ROLE_IDS, ROLES, parse_source
from ..errors import PivotuneError
from ..models.arch import arch_info

LAYER_WORDS = ("last", "pivot", "all")


# ---------------------------------------------------------------- sources and batches

def source_items(encoded: list[Encoded], spec: str, lang_ids: dict[str, int]) -> list[Encoded]:
    """The encoded samples of one source; a clear error when it has none."""
    role, lang = parse_source(spec)
    if lang is not None and lang not in lang_ids:
        raise PivotuneError(f"interference source {spec!r}: language '{lang}' is not one of the run's languages "
                            f"({', '.join(lang_ids)}).")
    items = [e for e in encoded if e.role == ROLE_IDS[role] and (lang is None or e.lang == lang_ids[lang])]
    if not items:
        have = sorted({ROLES[e.role] for e in encoded})
        raise PivotuneError(f"interference source {spec!r} has no samples in this method's data (roles present: "
                            f"{', '.join(have) or 'none'}).")
    return items


def draw_batches(items: list[Encoded], k: int, batch_size: int, *, seed: int, pad_token_id: int,
                 tag: str = "") -> list[dict]:
    """K collated batches of ``batch_size`` distinct rows (fewer if the source is smaller), drawn with a
    private seeded RNG (the global RNGs are not touched); the same seed gives the same batches, so a
    curve over training measures the model, not the draw."""
    rng = random.Random(f"{seed}:{tag}")
    collate = Collator(pad_token_id)
    size = min(batch_size, len(items))
    return [collate([items[j] for j in rng.sample(range(len(items)), size)]) for _ in range(k)]


# ---------------------------------------------------------------- parameter sets

def language_model(model: torch.nn.Module) -> torch.nn.Module:
    """The causal LM inside ``model`` (a :class:`~pivotune.models.parts.ModelWithParts`, e.g. PROM's
    ``PivotedModel``, holds it as ``lm``)."""
    from ..models.parts import ModelWithParts

    while isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return model.lm if isinstance(model, ModelWithParts) else model


def resolve_blocks(layers: int | str, num_layers: int, pivot_layer: int | None = None) -> list[int]:
    """``last`` → [N]; ``pivot`` → [n]; ``all`` → 1..N; ``3`` or ``"2,4"`` → those blocks (1-based)."""
    spec = str(layers).strip()
    if spec == "last":
        return [num_layers]
    if spec == "all":
        return list(range(1, num_layers + 1))
    if spec == "pivot":
        if pivot_layer is None:
            raise PivotuneError("interference layers 'pivot' needs a pivot layer (PROM's prom.pivot_layer).")
        return [pivot_layer]
    try:
        blocks = sorted({int(x) for x in spec.split(",")})
    except ValueError:
        raise PivotuneError(f"interference layers {layers!r}: expected one of {', '.join(LAYER_WORDS)} or block "
                            f"numbers such as '3' or '2,4'.") from None
    bad = [b for b in blocks if not 1 <= b <= num_layers]
    if bad:
        raise PivotuneError(f"interference layers {layers!r}: block(s) {bad} out of range 1..{num_layers} "
                            f"(block k is the k-th decoder layer).")
    return blocks


def block_parameters(model: torch.nn.Module, blocks: list[int]) -> dict[int, list[torch.nn.Parameter]]:
    """The trainable parameters of each decoder block (under LoRA: its adapters)."""
    info = arch_info(language_model(model))
    out = {}
    for b in blocks:
        params = [p for p in info.layers[b - 1].parameters() if p.requires_grad]
        if not params:
            raise PivotuneError(f"decoder block {b} has no trainable parameters (is it frozen, or outside LoRA's "
                                f"target modules?); choose other interference layers.")
        out[b] = params
    return out


# ---------------------------------------------------------------- measurement

@contextlib.contextmanager
def leaves_no_trace(model: torch.nn.Module, objective):
    """Eval mode, forked torch RNG, and the objective's attributes restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    saved = dict(vars(objective))   # e.g. PROM keeps per-step logs; a measurement must not touch them
    devices = [p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"][:1]
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            model.eval()
            yield
    finally:
        for m, training in modes:
            m.training = training
        vars(objective).clear()
        vars(objective).update(saved)


def batch_gradient(model, objective, batch: dict, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    """∇ of the objective's loss on one batch (normalised within the batch) w.r.t. ``params``; zeros for
    parameters the loss does not reach."""
    device = params[0].device
    batch = {k: v.to(device) for k, v in batch.items()}
    norms = {k: v.to(device) for k, v in objective.normalizers(batch).items()}
    loss, _ = objective.loss(model, batch, norms)
    return list(torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True))


@dataclass
class Interference:
    """Per pair i and block j: ⟨g_a, g_b⟩, ‖g_a‖², ‖g_b‖² (float64), from which the cosine over any union of
    the measured blocks follows exactly."""

    blocks: list[int]
    dots: torch.Tensor    # [K, len(blocks)]
    sq_a: torch.Tensor
    sq_b: torch.Tensor

    def cosines(self, blocks: list[int] | None = None) -> list[float]:
        """Cosine per pair over the union of ``blocks`` (default: all measured); NaN where a gradient is 0."""
        cols = [self.blocks.index(b) for b in (blocks or self.blocks)]
        dot, a, b = (t[:, cols].sum(1) for t in (self.dots, self.sq_a, self.sq_b))
        den = (a * b).sqrt()
        return torch.where(den > 0, dot / den.clamp(min=1e-300), torch.nan).tolist()

    def summary(self, blocks: list[int] | None = None) -> dict:
        return summarize(self.cosines(blocks))

    def profile(self) -> dict[str, dict]:
        """Per-block summary, keyed by the block number as a string (JSON keys)."""
        return {str(b): self.summary([b]) for b in self.blocks}


def summarize(cos: list[float]) -> dict:
    """Mean, sample sd, min and max over the defined cosines; ``undefined`` counts the NaNs."""
    ok = [c for c in cos if not math.isnan(c)]
    nan_none = [None if math.isnan(c) else c for c in cos]   # JSON has no NaN
    if not ok:
        return {"mean": None, "sd": None, "min": None, "max": None, "pairs": len(cos),
                "undefined": len(cos), "cosines": nan_none}
    return {"mean": statistics.fmean(ok), "sd": statistics.stdev(ok) if len(ok) > 1 else 0.0, "min": min(ok),
            "max": max(ok), "pairs": len(cos), "undefined": len(cos) - len(ok), "cosines": nan_none}


def measure_interference(model, objective, batches_a: list[dict], batches_b: list[dict],
                         blocks: list[int]) -> Interference:
    """Gradient cosines between paired batches on ``blocks`` (see the module docstring)."""
    if len(batches_a) != len(batches_b) or not batches_a:
        raise PivotuneError(f"interference needs the same positive number of batches from both sources "
                            f"(got {len(batches_a)} and {len(batches_b)}).")
    per_block = block_parameters(model, blocks)
    params = [p for b in blocks for p in per_block[b]]
    bounds, start = [], 0
    for b in blocks:
        bounds.append((start, start + len(per_block[b])))
        start += len(per_block[b])
    rows = []
    with leaves_no_trace(model, objective):
        for ba, bb in zip(batches_a, batches_b):
            ga = batch_gradient(model, objective, ba, params)
            gb = batch_gradient(model, objective, bb, params)
            row = []
            for s, e in bounds:
                row.append([sum(float((x.double() * y.double()).sum()) for x, y in zip(u[s:e], v[s:e]))
                            for u, v in ((ga, gb), (ga, ga), (gb, gb))])
            rows.append(row)
            del ga, gb
    t = torch.tensor(rows, dtype=torch.float64)   # [K, blocks, 3]
    return Interference(list(blocks), t[..., 0], t[..., 1], t[..., 2])


__all__ = ["Interference", "block_parameters", "draw_batches", "leaves_no_trace", "measure_interference",
           "parse_source", "resolve_blocks", "source_items", "summarize"]
