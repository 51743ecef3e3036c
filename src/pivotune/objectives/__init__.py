"""Objectives: one module per method, each a callable ``(model, batch, norms) -> (loss, logs)``.

``normalizers(batch)`` returns the token counts the loss divides by; the
trainer sums them over an optimizer step's micro-batches and ranks first.

An objective may also define ``prepare_model(model) -> nn.Module`` (wrap the loaded, possibly
LoRA-wrapped, model before the Trainer sees it — PROM adds its pivot head this way) and
``describe(model) -> dict`` (recorded in run.json).
"""

from __future__ import annotations

from .clo import CLOObjective
from .prom import PromObjective
from .lingualift import LinguaLiftObjective
from .sft import SFTObjective

OBJECTIVES = {"sft": SFTObjective, "prom": PromObjective, "lingualift": LinguaLiftObjective,
              "clo": CLOObjective}


def build_objective(name: str, cfg=None):
    """The objective registered as ``name``, configured from the run config."""
    return OBJECTIVES[name](cfg)
