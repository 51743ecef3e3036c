"""LinguaLIFT: a multilingual encoder bridged into the LM by a language alignment layer, trained in two stages
(stage 1 the alignment layer on code-switched prompts, stage 2 the LM on English instructions)."""

from __future__ import annotations

from ...settings import KeyProblem
from ..base import DemoEntry, Method, ToyRun
from .settings import LinguaLiftSettings


def _road(cfg):
    from .road import LinguaLiftRoad

    return LinguaLiftRoad(cfg)


def check_config(cfg) -> None:
    """An encoder to bridge, lexicons of the run's languages, and code-switched data for stage 1."""
    ll = cfg.lingualift
    if cfg.train.packing:
        raise KeyProblem(("train", "packing"), "method 'lingualift' cannot pack samples: each row of its batches "
                         "is one sample behind its own encoder prefix (the bridge's soft prompt); set "
                         "train.packing: false")
    if not ll.encoder:
        raise KeyProblem(("lingualift", "encoder"),
                         "method 'lingualift' needs lingualift.encoder: the multilingual encoder to bridge in")
    unknown = sorted(set(ll.lexicons) - set(cfg.languages))
    if unknown and cfg.languages:
        raise KeyProblem(("lingualift", "lexicons"), f"lingualift.lexicons names {unknown}, which are not in "
                         f"languages {cfg.languages}")
    if 1 in ll.stages and cfg.data and not ll.lexicons and not any(d.role == "cs" for d in cfg.data):
        raise KeyProblem(("lingualift", "lexicons"), "lingualift stage 1 trains on code-switched data: give "
                         "lingualift.lexicons (to switch the English data) or a data source with role 'cs'")


def _demo(raw: dict, toy: ToyRun) -> dict:
    from .demo import demo_config

    return demo_config(raw, toy)


REGISTERED = (
    Method("lingualift", frozenset({"en", "cs"}),
           "LinguaLIFT: a multilingual encoder bridged into the LM by an alignment layer; stage 1 trains the "
           "alignment layer on code-switched prompts, stage 2 the LM on English instructions.", _road,
           settings=("lingualift", LinguaLiftSettings), check_config=check_config, causal_lm=False,
           interference_refused="its batches go through the encoder bridge, which the measurement does not read",
           # the default world's toy encoder ships with the base model (toy.shipped); other worlds train one
           demo=DemoEntry(adjust=_demo)),
)
