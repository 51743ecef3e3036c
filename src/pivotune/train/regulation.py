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

from ..analysis.logit_lens import target_leads
from ..config import RunConfig
from ..errors import PivotuneError, bullet_list
from ..io import child_path, parse_json, write_json_atomic

log = logging.getLogger(__name__)


def read_probe_report(path: str, languages: list[str]) -> dict:
    """The probe report ``prom.probe`` names, checked to hold per-layer means for every language."""
    try:
        report = parse_json(Path(path).read_text(encoding="utf-8"))
        per_lang = report["languages"]
        if not all(isinstance(v[side]["mean"], list) for v in per_lang.values() for side in ("p_en", "p_tgt")):
            raise ValueError("its p_en/p_tgt means are not lists")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PivotuneError(f"prom.probe: cannot read a probe report from {path} ({type(e).__name__}: {e}); write "
                            "one with `pivotune probe MODEL --pairs LANG=FILE --out DIR` and point to "
                            "DIR/probe.json.") from None
    missing = [lang for lang in languages if lang not in per_lang]
    if missing:
        raise PivotuneError(f"prom.probe: {path} has no probe for {missing} (it has {sorted(per_lang)}).")
    return report


def _from_probe_json(path: str, languages: list[str], layer: int, num_layers: int) -> dict[str, dict]:
    report = read_probe_report(path, languages)
    per_lang = report["languages"]
    if report.get("num_layers") != num_layers or len(per_lang[languages[0]]["p_en"]["mean"]) != num_layers + 1:
        raise PivotuneError(f"prom.probe: {path} was made on a model with {report.get('num_layers')} blocks; this "
                            f"run's model has {num_layers}. Probe the base model of this run.")
    out = {}
    for lang in languages:
        p_en = per_lang[lang]["p_en"]["mean"][layer]
        p_tgt = per_lang[lang]["p_tgt"]["mean"][layer]
        out[lang] = {"pivot_layer": layer, "p_en_mean": p_en, "p_tgt_mean": p_tgt,
                     "lambda_zero": target_leads(p_en, p_tgt)}
    return out


def evidence_problems(cfg: RunConfig) -> list[str]:
    """What stops the regulation before any model loads (method ``prom`` without
    ``prom.lambda_per_language``): no target languages, no evidence, a probe report or word-pair file that
    is missing or does not parse, a language without a word-pair file or a name for the probe prompts."""
    from ..analysis.probe_items import language_display_name, read_word_pairs

    s = cfg.prom
    if cfg.method != "prom" or s.lambda_per_language is not None:
        return []
    if not cfg.languages:
        return ["method 'prom' needs `languages` (the target languages to regulate)."]
    problems = []
    if s.probe:
        try:
            read_probe_report(s.probe, cfg.languages)
        except PivotuneError as e:
            problems.append(str(e))
    elif s.probe_pairs:
        missing = [lang for lang in cfg.languages if lang not in s.probe_pairs]
        if missing:
            problems.append(f"prom.probe_pairs has no word-pair file for {missing}; every language in "
                            "`languages` needs one (or set prom.lambda_per_language for it).")
        for lang in ["en", *(x for x in cfg.languages if x in s.probe_pairs)]:
            try:
                if lang != "en":
                    read_word_pairs(s.probe_pairs[lang])
                language_display_name(lang, s.probe_names)
            except PivotuneError as e:
                problems.append(f"prom.probe_pairs.{lang}: {e}" if lang != "en" else str(e))
    else:
        problems.append(
            "method 'prom' decides λ per language from the logit lens, and this config gives it no evidence: "
            "set prom.probe_pairs (a word-pair file per target language), or prom.probe (a probe.json from "
            "`pivotune probe`), or prom.lambda_per_language yourself. Method 'prom-noreg' uses prom.lambda_en "
            "for every language without a probe.")
    return problems


def regulate(cfg: RunConfig, model, tokenizer, run_dir: Path) -> RunConfig:
    """Return ``cfg`` with ``prom.lambda_per_language`` decided (method prom only); writes RUN/regulation.json."""
    s = cfg.prom
    if cfg.method != "prom" or s.lambda_per_language is not None:
        return cfg
    problems = evidence_problems(cfg)
    if problems:
        raise PivotuneError(problems[0] if len(problems) == 1 else
                            bullet_list("PROM's regulation cannot start:", problems))
    from ..models.arch import arch_info
    from ..models.pivot_head import resolve_pivot_layer

    num_layers = arch_info(model).num_layers
    layer = resolve_pivot_layer(s.pivot_layer, num_layers)
    if s.probe:
        decisions = _from_probe_json(s.probe, cfg.languages, layer, num_layers)
        evidence = s.probe
    else:
        from ..analysis.probe import run_probe

        probe_dir = child_path(run_dir, "probe")
        report = run_probe(cfg.model, {lang: s.probe_pairs[lang] for lang in cfg.languages}, probe_dir,
                           pivot_layer=layer, names=s.probe_names, seed=cfg.seed, model=model, tokenizer=tokenizer,
                           template=s.probe_template, force=True)   # RUN/probe: the run owns its directory
        decisions = {lang: report["languages"][lang]["decision"] for lang in cfg.languages}
        evidence = str(probe_dir / "probe.json")
    lambdas = {lang: 0.0 if d["lambda_zero"] else s.lambda_en for lang, d in decisions.items()}
    for lang, d in decisions.items():
        log.info("PROM regulation %s: P(en)=%.4f P(%s)=%.4f at layer %d -> lambda=%g", lang, d["p_en_mean"], lang,
                 d["p_tgt_mean"], layer, lambdas[lang])
    write_json_atomic(run_dir / "regulation.json", {"pivot_layer": layer, "lambda_en": s.lambda_en,
                                                    "evidence": evidence, "decisions": decisions,
                                                    "lambda_per_language": lambdas})
    return cfg.model_copy(update={"prom": s.model_copy(update={"lambda_per_language": lambdas})})
