"""PROM, pivoted and regulated optimisation: a pivot head on layer n for English rows, the final head for the
rest, and λ per language from the base model's logit lens (prom-noreg: λ for every language)."""

from __future__ import annotations

from ...settings import KeyProblem
from ..base import DemoEntry, Method, ToyRun
from .settings import PromSettings

ROLES = frozenset({"en", "tgt", "mt"})


def _road(cfg):
    from .road import PromRoad

    return PromRoad(cfg)


def check_config(cfg) -> None:
    """prom.lambda_per_language names only languages of the run, and only method prom (the regulation) sets it."""
    lpl = cfg.prom.lambda_per_language
    if not lpl:
        return
    if cfg.method == "prom-noreg":
        raise KeyProblem(("prom", "lambda_per_language"), "method 'prom-noreg' applies prom.lambda_en to every "
                         "language; prom.lambda_per_language (the regulation) is for method 'prom'")
    unknown = sorted(set(lpl) - set(cfg.languages))
    if unknown:
        raise KeyProblem(("prom", "lambda_per_language"), f"prom.lambda_per_language names {unknown}, which are not "
                         f"in languages {cfg.languages}")


def _demo(raw: dict, toy: ToyRun) -> dict:
    """Regulation evidence in the toy world: its cloze probe (no English in the prompts), run on the base model
    before training."""
    return {**raw, "prom": toy.probe}


REGISTERED = (
    Method("prom", ROLES,
           "PROM: label-smoothed cross-entropy on s_e at a pivot head on layer n (weight λ, set to 0 per language by "
           "the logit-lens regulation), final-layer cross-entropy on s_t and s_mt.", _road,
           settings=("prom", PromSettings), check_config=check_config,
           demo=DemoEntry(interference=True, adjust=_demo)),
    Method("prom-noreg", ROLES, "PROM without regulation: the pivot term keeps λ for every target language.", _road,
           settings=("prom", PromSettings), check_config=check_config,
           # the regulation's ablation: in the demo on request (--methods), which keeps its default in budget
           demo=DemoEntry(default=False)),
)
