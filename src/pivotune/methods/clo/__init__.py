"""CLO, cross-lingual optimisation: English rows and their translations as preference pairs, a DPO-style term
against the starting model plus NLL on target responses, attention projections only."""

from __future__ import annotations

import math

from ..base import DemoEntry, Method, ToyRun
from .settings import CloSettings


def _road(cfg):
    from .road import CLORoad

    return CLORoad(cfg)


def _demo(raw: dict, toy: ToyRun) -> dict:
    """A CLO unit is four sequences (two pairs), so a quarter of the rows' units matches the others' compute; its
    translations are the world's exactly translated instruction files (row i translates English row i). The
    reference pass covers only the English rows the steps reach (each unit seen about once)."""
    units = max(1, toy.batch_size // 4)
    return {**raw, "train": {**raw["train"], "per_device_batch_size": units},
            "clo": {"max_items": math.ceil(toy.steps * units / len(toy.languages)), "reference_batch_size": 32}}


REGISTERED = (
    Method("clo", frozenset({"en", "tgt"}),
           "CLO: English rows and their translations (s_e, s_t) as cross-lingual preference pairs; a DPO-style term "
           "against the starting model plus NLL on target responses, attention projections only.", _road,
           settings=("clo", CloSettings),
           interference_refused="its batches are cross-lingual units of four sequences, not rows of one source",
           demo=DemoEntry(adjust=_demo)),
)
