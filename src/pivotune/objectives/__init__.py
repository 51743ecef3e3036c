"""Objectives: each method's loss behind one contract (:class:`pivotune.objectives.base.Objective`).

Each objective is built from its own settings object; :func:`build_objective` picks a run's.
"""

from __future__ import annotations

from .base import Objective
from .clo import CLOObjective
from .lingualift import LinguaLiftObjective
from .prom import PromObjective, english_lambda
from .sft import SFTObjective


def build_objective(cfg) -> Objective:
    """The objective of ``cfg.method``, configured from its settings section."""
    from ..methods import METHODS

    name = METHODS[cfg.method].objective
    if name == "prom":
        lam = (cfg.prom.lambda_en if cfg.method == "prom-noreg" else
               english_lambda(cfg.prom.lambda_en, cfg.languages, cfg.prom.lambda_per_language))
        return PromObjective(cfg.prom, lam, meta={"base_model": cfg.model, "method": cfg.method})
    if name == "clo":
        return CLOObjective(cfg.clo)
    return LinguaLiftObjective() if name == "lingualift" else SFTObjective()
