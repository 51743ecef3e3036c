"""The registry of training methods: one package per method.

Each package holds the method's settings (its section of the run config), data units, objective and road
(:class:`pivotune.methods.base.Road`), and registers itself in its ``__init__`` with a
:class:`~pivotune.methods.base.Method` entry that names everything the rest of pivotune needs (roles, road,
settings section, config rules, what the toy demo changes). Adding a method is a new package and one line in
:data:`PACKAGES`; nothing else changes.
"""

from __future__ import annotations

from . import clo, lens_local, lingualift, prom, sft
from .base import DemoEntry, Method, Road, Stage, ToyRun, Units

#: the method packages, in the order methods are listed (CLI help, the demo, tables)
PACKAGES = (sft, prom, clo, lingualift, lens_local)

METHODS: dict[str, Method] = {m.name: m for package in PACKAGES for m in package.REGISTERED}


def run_objective(cfg):
    """The objective a run of ``cfg`` trains with (its last stage's), built from its method's own settings."""
    road = METHODS[cfg.method].road(cfg)
    return road.objective(road.stages()[-1])


__all__ = ["METHODS", "DemoEntry", "Method", "Road", "Stage", "ToyRun", "Units", "run_objective"]
