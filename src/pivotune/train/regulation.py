"""PROM's regulation: λ_t per target language from the logit lens, before training.

For method ``prom`` the pivot term is switched off (λ_t = 0) for a language
whose mean English probability at the pivot layer is below its target-language
probability (METHODS.md). The evidence is a probe of the *base* model: either
a ``probe.json`` from ``pivotune probe`` (decided here at the configured pivot
layer from its per-layer means) or word-pair (``probe_task: cloze``: cloze) files that are probed now.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..config import RunConfig
from ..errors import PivotuneError
from ..io import write_json_atomic

log = logging.getLogger(__name__)


def _decide(p_en: float, p_tgt: float) -> bool:
    """True when λ_t must be 0 (the same strict rule as analysis.logit_lens.regulation_decision)."""
    return p_en < p_tgt


def _from_probe_json(path: str, languages: list[str], layer: int) -> dict[str, dict]:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        per_lang = report["languages"]
    except (OSError, ValueError, KeyError) as e:
        raise PivotuneError(f"prom.probe: cannot read a probe report from {path} ({e}); write one with "
                            "`pivotune probe MODEL --pairs LANG=FILE --out DIR` and point to DIR/probe.json.") from None
    missing = [lang for lang in languages if lang not in per_lang]
    if missing:
        raise PivotuneError(f"prom.probe: {path} has no probe for {missing} (it has {sorted(per_lang)}).")
    if not 0 <= layer < len(per_lang[languages[0]]["p_en"]["mean"]):
        raise PivotuneError(f"prom.probe: {path} was made on a model with {report.get('num_layers')} layers; "
                            f"pivot layer {layer} is outside it. Probe the base model of this run.")
    out = {}
    for lang in languages:
        p_en = per_lang[lang]["p_en"]["mean"][layer]
        p_tgt = per_lang[lang]["p_tgt"]["mean"][layer]
        out[lang] = {"pivot_layer": layer, "p_en_mean": p_en, "p_tgt_mean": p_tgt, "lambda_zero": _decide(p_en, p_tgt)}
    return out


def regulate(cfg: RunConfig, model, tokenizer, run_dir: Path) -> RunConfig:
    """Return ``cfg`` with ``prom.lambda_per_language`` decided (method prom only); writes RUN/regulation.json."""
    s = cfg.prom
    if cfg.method != "prom" or s.lambda_per_language is not None:
        return cfg
    if not cfg.languages:
        raise PivotuneError("method 'prom' needs `languages` (the target languages to regulate).")
    from ..models.arch import arch_info
    from ..models.pivot_head import resolve_pivot_layer

    layer = resolve_pivot_layer(s.pivot_layer, arch_info(model).num_layers)
    if s.probe:
        decisions = _from_probe_json(s.probe, cfg.languages, layer)
        evidence = s.probe
    elif s.probe_pairs:
        missing = [lang for lang in cfg.languages if lang not in s.probe_pairs]
        if missing:
            raise PivotuneError(f"prom.probe_pairs has no word-pair file for {missing}; every language in "
                                f"`languages` needs one (or set prom.lambda_per_language for it).")
        from ..analysis.probe import run_probe

        report = run_probe(cfg.model, {lang: s.probe_pairs[lang] for lang in cfg.languages}, run_dir / "probe",
                           pivot_layer=layer, names=s.probe_names, seed=cfg.seed, model=model, tokenizer=tokenizer,
                           template=s.probe_template, task=s.probe_task, labels=s.probe_labels)
        decisions = {lang: report["languages"][lang]["decision"] for lang in cfg.languages}
        evidence = str(run_dir / "probe" / "probe.json")
    else:
        raise PivotuneError(
            "method 'prom' decides λ per language from the logit lens, and this config gives it no evidence: "
            "set prom.probe_pairs (a word-pair file per target language), or prom.probe (a probe.json from "
            "`pivotune probe`), or prom.lambda_per_language yourself. Method 'prom-noreg' uses prom.lambda_en "
            "for every language without a probe.")
    lambdas = {lang: 0.0 if d["lambda_zero"] else s.lambda_en for lang, d in decisions.items()}
    for lang, d in decisions.items():
        log.info("PROM regulation %s: P(en)=%.4f P(%s)=%.4f at layer %d -> lambda=%g", lang, d["p_en_mean"], lang,
                 d["p_tgt_mean"], layer, lambdas[lang])
    write_json_atomic(run_dir / "regulation.json", {"pivot_layer": layer, "lambda_en": s.lambda_en,
                                                    "evidence": evidence, "decisions": decisions,
                                                    "lambda_per_language": lambdas})
    return cfg.model_copy(update={"prom": s.model_copy(update={"lambda_per_language": lambdas})})
