"""Supervised fine-tuning baselines: cross-entropy at the final layer on a mixture of roles."""

from __future__ import annotations

from ..base import DemoEntry, Method


def _road(cfg):
    from .road import SupervisedRoad

    return SupervisedRoad(cfg)


REGISTERED = (
    Method("english", frozenset({"en"}), "English-only reference: cross-entropy on English instructions s_e.", _road),
    Method("bactrian", frozenset({"tgt", "mt"}),
           "Bactrian+(t): cross-entropy on target instructions s_t and the translation task s_mt.", _road),
    Method("xllama", frozenset({"en", "tgt", "mt"}), "xLLaMA2(t+e): cross-entropy on s_e, s_t and s_mt.", _road,
           demo=DemoEntry(interference=True)),
)
