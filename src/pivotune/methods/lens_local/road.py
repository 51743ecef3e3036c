"""Lens-local's road: the supervised road on target data, with the model split where the base model's logit lens
switches to the target language; only the blocks above the split (and, with ``lens_local.head``, the final norm
and unembedding) train.

The rule (:func:`switch_layer`, :func:`split_layer`) reads the per-layer means of PROM's regulation probe
(:func:`pivotune.analysis.probe.base_model_lens`) with the one lens decision rule
(:func:`pivotune.analysis.logit_lens.target_leads`). The decision is written to ``RUN/lens_local.json`` and
recorded in ``run.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ...analysis.logit_lens import target_leads
from ...errors import PivotuneError
from ...io import write_json_atomic
from ...models.arch import arch_info
from ..base import Stage
from ..sft.road import SupervisedRoad

log = logging.getLogger(__name__)
DECISION = "lens_local.json"


def switch_layer(p_en: list[float], p_tgt: list[float]) -> int | None:
    """The lowest layer k (1..N; index k of the per-layer means, 0 being the embeddings) from which the target
    language leads at every layer up to the top; None when it does not lead at the top (the model never
    switches)."""
    found = None
    for k in range(len(p_en) - 1, 0, -1):
        if not target_leads(p_en[k], p_tgt[k]):
            break
        found = k
    return found


def split_layer(switches: dict[str, int | None], num_layers: int) -> int:
    """The layer that splits an N-block model for the run's languages: the lowest switch layer (a language that
    never switches counts as N), at most N-1 so that at least the top block trains."""
    return min(min((num_layers if s is None else s) for s in switches.values()), num_layers - 1)


def check_split(k: int, num_layers: int) -> int:
    """``k`` when it splits an N-block model (0 <= k <= N-1), else a clear error."""
    if not 0 <= k <= num_layers - 1:
        raise PivotuneError(f"lens_local.split_layer={k} is out of range for this {num_layers}-block model: blocks "
                            f"k+1..N train, so 0 <= k <= {num_layers - 1} (k = {num_layers} would train nothing).")
    return k


class LensLocalRoad(SupervisedRoad):
    """Method lens-local."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.decision: dict = {}

    def inputs(self) -> list[str]:
        from ...analysis.probe import probe_inputs

        return probe_inputs(self.cfg.prom) if self.cfg.lens_local.split_layer is None else []

    def checks(self, num_layers: int | None) -> list[str]:
        cfg, k = self.cfg, self.cfg.lens_local.split_layer
        if k is None:
            from ...analysis.probe import evidence_problems

            return evidence_problems(cfg.prom, cfg.languages, method="lens-local",
                                     reads="finds the layer to split the model at",
                                     languages_for="the target languages whose lens it reads",
                                     hint="lens_local.split_layer")
        try:
            if num_layers is not None:
                check_split(k, num_layers)
        except PivotuneError as e:
            return [str(e)]
        return []

    def prepare_base(self, model, tokenizer, run_dir: Path, save_checkpoints: bool):
        """The split layer: configured, or read from the base model's lens; written to RUN/lens_local.json."""
        cfg, n = self.cfg, arch_info(model).num_layers
        if cfg.lens_local.split_layer is not None:
            k = check_split(cfg.lens_local.split_layer, n)
            self.decision = {"split_layer": k, "rule": "configured (lens_local.split_layer)"}
        else:
            problems = self.checks(n)
            if problems:
                raise PivotuneError(problems[0])
            from ...analysis.probe import base_model_lens
            from ...models.pivot_head import resolve_pivot_layer

            lens, evidence = base_model_lens(cfg.prom, cfg.languages, model_name=cfg.model, model=model,
                                             tokenizer=tokenizer, run_dir=run_dir, seed=cfg.seed,
                                             pivot_layer=resolve_pivot_layer(cfg.prom.pivot_layer, n))
            switches = {lang: switch_layer(e["p_en"]["mean"], e["p_tgt"]["mean"]) for lang, e in lens.items()}
            k = split_layer(switches, n)
            self.decision = {"split_layer": k, "switch_layers": switches, "evidence": evidence,
                             "rule": "lowest layer from which the target language leads up to the top, lowest over "
                                     "the languages, at most N-1"}
        self.decision.update(num_layers=n, trained_blocks=list(range(k + 1, n + 1)), head=cfg.lens_local.head)
        log.info("lens-local: split at layer %d of %d; training blocks %s%s", k, n,
                 self.decision["trained_blocks"], " and the head" if cfg.lens_local.head else "")
        write_json_atomic(run_dir / DECISION, self.decision)
        return model

    def trainable(self, stage: Stage, model):
        """Blocks above the split layer (LoRA on ``lora.target_modules`` inside them), the head when configured."""
        cfg, k = self.cfg, self.decision["split_layer"]
        info = arch_info(model)
        above = info.layers[k:]
        if cfg.lora.enabled:
            from peft import LoraConfig, get_peft_model

            inside = {id(m) for block in above for m in block.modules()}
            names = [name for name, module in model.named_modules()
                     if id(module) in inside and name.rsplit(".", 1)[-1] in cfg.lora.target_modules]
            if not names:
                raise PivotuneError(f"lora.target_modules {cfg.lora.target_modules} name no module in the decoder "
                                    f"blocks above lens-local's split layer {k}.")
            return get_peft_model(model, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
                                                    lora_dropout=cfg.lora.dropout, target_modules=names,
                                                    task_type="CAUSAL_LM"))
        model.requires_grad_(False)
        for module in (*above, *((info.final_norm, info.unembed) if cfg.lens_local.head else ())):
            module.requires_grad_(True)
        if cfg.train.gradient_checkpointing:
            model.enable_input_require_grads()   # frozen embeddings would cut the checkpointed graph
        return model

    def report(self) -> dict:
        return {"lens_local": self.decision}
