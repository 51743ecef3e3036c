"""Objectives: one module per method, each a callable ``(model, batch, norms) -> (loss, logs)``.

``normalizers(batch)`` returns the token counts the loss divides by; the
trainer sums them over an optimizer step's micro-batches and ranks first.
"""

from __future__ import annotations

from .sft import SFTObjective

OBJECTIVES = {"sft": SFTObjective}


def build_objective(name: str, cfg=None):
    """The objective registered as ``name``, configured from the run config."""
    return OBJECTIVES[name](cfg)
