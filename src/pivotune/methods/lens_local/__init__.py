"""Lens-local: layer-localised tuning chosen from the logit lens. The base model's lens says where it switches
from English to the target language; only the blocks above that layer train, on target data."""

from __future__ import annotations

from ...settings import KeyProblem
from ..base import DemoEntry, Method, ToyRun
from .settings import LensLocalSettings


def _road(cfg):
    from .road import LensLocalRoad

    return LensLocalRoad(cfg)


def check_config(cfg) -> None:
    """The head trains fully, which a LoRA adapter directory would not hold."""
    if cfg.lens_local.head and cfg.lora.enabled:
        raise KeyProblem(("lens_local", "head"), "lens_local.head trains the final norm and unembedding fully, "
                         "which a LoRA adapter would not save: set lens_local.head to false or lora.enabled to false")


def _demo(raw: dict, toy: ToyRun) -> dict:
    """The split from the world's probe (as PROM's regulation reads it), on the base model before training."""
    return {**raw, "prom": toy.probe}


REGISTERED = (
    Method("lens-local", frozenset({"tgt", "mt"}),
           "Lens-local: cross-entropy on s_t and s_mt, training only the blocks above the layer where the base "
           "model's logit lens switches from English to the target language.", _road,
           settings=("lens_local", LensLocalSettings), check_config=check_config,
           demo=DemoEntry(default=False, adjust=_demo)),
)
