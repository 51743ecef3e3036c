"""PROM's regulation: λ_t per target language from the logit lens, before training.

For method ``prom`` the pivot term is switched off (λ_t = 0) for a language
whose mean English probability at the pivot layer is below its target-language
probability (METHODS.md). The evidence is a probe of the *base* model: either
a ``probe.json`` from ``pivotune probe`` (decided here at the configured pivot
layer from its per-layer means) or word-pair files that are probed now.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ...analysis.logit_lens import target_leads
from ...analysis.probe import base_model_lens
from ...analysis.probe import evidence_problems as probe_evidence_problems
from ...errors import PivotuneError, bullet_list
from ...io import write_json_atomic

if TYPE_CHECKING:
    from ...config import RunConfig

log = logging.getLogger(__name__)


def _decision_at(entry: dict, layer: int) -> dict:
    """The rule at ``layer`` from a probe report's per-layer means (a report probed at another pivot layer)."""
    p_en, p_tgt = entry["p_en"]["mean"][layer], entry["p_tgt"]["mean"][layer]
    return {"pivot_layer": layer, "p_en_mean": p_en, "p_tgt_mean": p_tgt, "lambda_zero": target_leads(p_en, p_tgt)}


def evidence_problems(cfg: RunConfig) -> list[str]:
    """What stops the regulation before any model loads (method ``prom`` without ``prom.lambda_per_language``;
    see :func:`pivotune.analysis.probe.evidence_problems`)."""
    if cfg.method != "prom" or cfg.prom.lambda_per_language is not None:
        return []
    return probe_evidence_problems(cfg.prom, cfg.languages, method="prom", reads="decides λ per language",
                                   languages_for="the target languages to regulate", hint="prom.lambda_per_language",
                                   tail=" Method 'prom-noreg' uses prom.lambda_en for every language without a probe.")


def regulate(cfg: RunConfig, model, tokenizer, run_dir: Path) -> RunConfig:
    """Return ``cfg`` with ``prom.lambda_per_language`` decided (method prom only); writes RUN/regulation.json."""
    s = cfg.prom
    if cfg.method != "prom" or s.lambda_per_language is not None:
        return cfg
    problems = evidence_problems(cfg)
    if problems:
        raise PivotuneError(problems[0] if len(problems) == 1 else
                            bullet_list("PROM's regulation cannot start:", problems))
    from ...models.arch import arch_info
    from ...models.pivot_head import resolve_pivot_layer

    layer = resolve_pivot_layer(s.pivot_layer, arch_info(model).num_layers)
    lens, evidence = base_model_lens(s, cfg.languages, model_name=cfg.model, model=model, tokenizer=tokenizer,
                                     run_dir=run_dir, pivot_layer=layer, seed=cfg.seed)
    # a report probed now decided at this layer; one from `pivotune probe` is decided here from its means
    decisions = {lang: _decision_at(entry, layer) if s.probe else entry["decision"] for lang, entry in lens.items()}
    lambdas = {lang: 0.0 if d["lambda_zero"] else s.lambda_en for lang, d in decisions.items()}
    for lang, d in decisions.items():
        log.info("PROM regulation %s: P(en)=%.4f P(%s)=%.4f at layer %d -> lambda=%g", lang, d["p_en_mean"], lang,
                 d["p_tgt_mean"], layer, lambdas[lang])
    write_json_atomic(run_dir / "regulation.json", {"pivot_layer": layer, "lambda_en": s.lambda_en,
                                                    "evidence": evidence, "decisions": decisions,
                                                    "lambda_per_language": lambdas})
    return cfg.model_copy(update={"prom": s.model_copy(update={"lambda_per_language": lambdas})})
