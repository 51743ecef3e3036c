"""The registry of training methods: which roles each trains on, which objective.

A method is data (a mixture of roles) plus an objective; the trainer asks this
table and nothing else, so adding a method is one entry here and one module
under ``objectives/``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    roles: frozenset[str]   # sample roles the mixture keeps
    objective: str          # key of pivotune.objectives.OBJECTIVES
    description: str
    # None: trained by train.run's single Trainer stage. Otherwise the module under pivotune.train that trains
    # this method end to end instead (lingualift: two stages around an encoder bridge; clo: cross-lingual
    # pairs, a reference pass before training, attention-only).
    own_training: str | None = None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("english", frozenset({"en"}), "sft",
               "English-only reference: cross-entropy on English instructions s_e."),
        Method("bactrian", frozenset({"tgt", "mt"}), "sft",
               "Bactrian+(t): cross-entropy on target instructions s_t and the translation task s_mt."),
        Method("xllama", frozenset({"en", "tgt", "mt"}), "sft",
               "xLLaMA2(t+e): cross-entropy on s_e, s_t and s_mt."),
        Method("prom", frozenset({"en", "tgt", "mt"}), "prom",
               "PROM: label-smoothed cross-entropy on s_e at a pivot head on layer n (weight λ, set to 0 "
               "per language by the logit-lens regulation), final-layer cross-entropy on s_t and s_mt."),
        Method("prom-noreg", frozenset({"en", "tgt", "mt"}), "prom",
               "PROM without regulation: the pivot term keeps λ for every target language."),
        Method("clo", frozenset({"en", "tgt"}), "clo",
               "CLO: English rows and their translations (s_e, s_t) as cross-lingual preference pairs; a DPO-style "
               "term against the starting model plus NLL on target responses, attention projections only.",
               own_training="clo"),
        Method("lingualift", frozenset({"en", "cs"}), "lingualift",
               "LinguaLIFT: a multilingual encoder bridged into the LM by an alignment layer; stage 1 trains the "
               "alignment layer on code-switched prompts, stage 2 the LM on English instructions.",
               own_training="lingualift"),
    )
}
