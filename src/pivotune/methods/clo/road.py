"""CLO's road: cross-lingual units → the starting model's log-probabilities (once) → attention-only training.

What differs from the supervised road: the data are units of four sequences (:mod:`.units`); the starting
model's log-probabilities of every sequence are computed once before training and ride in the batch, so training
holds one model; and only the attention projections train (full weights or LoRA on them), found through
:mod:`pivotune.models.arch`. On resume the reference is the base model's again (a checkpoint's weights load only
inside training), so a resumed run's loss is the uninterrupted run's.
"""

from __future__ import annotations

import logging
import math
import time

import torch

from ...errors import PivotuneError
from ...models.arch import attention_projection_names
from ...models.loading import apply_lora
from ...train.precision import compute_autocast
from ...train.resume import data_fingerprint
from ..base import Road, Stage, Units
from .objective import CLOObjective, batch_logps
from .units import EncodedUnit, UnitCollator, clo_units, encode_units, unit_describer

log = logging.getLogger(__name__)


@torch.no_grad()
def precompute_reference(model, units: list[EncodedUnit], collator: UnitCollator, batch_size: int,
                         device: torch.device | str = "cpu") -> None:
    """Fill every unit's ``ref_logps`` with ``model``'s sequence log-probabilities (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(units), batch_size):
            chunk = units[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collator(chunk).items()}
            logps = batch_logps(model, batch).double().cpu().view(4, len(chunk))
            for j, u in enumerate(chunk):
                u.ref_logps = logps[:, j].tolist()
    finally:
        model.train(was_training)


def select_trainable(model, cfg):
    """Freeze everything but the attention projections (or LoRA on them); ``trainable: full`` keeps every
    weight (LoRA then goes on ``lora.target_modules``). Returns the model to train."""
    if cfg.clo.trainable == "full":
        return apply_lora(model, cfg.lora) if cfg.lora.enabled else model
    names = attention_projection_names(model)
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        # full module names, not apply_lora's suffixes: GPT-2's MLP also has a `c_proj`
        lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=names, task_type="CAUSAL_LM")
        return get_peft_model(model, lora)
    keep = set(names)
    for name, p in model.named_parameters():
        p.requires_grad_(name.rsplit(".", 1)[0] in keep)
    if cfg.train.gradient_checkpointing:
        model.enable_input_require_grads()   # frozen embeddings would cut the checkpointed graph
    return model


class CLORoad(Road):
    """Method clo."""

    def __init__(self, cfg):
        self.cfg = cfg

    def training_data(self, samples):
        return clo_units(self.cfg, samples)

    def units(self, stage: Stage, units, tokenizer) -> Units:
        cfg = self.cfg
        encoded = encode_units(units, tokenizer, template=cfg.template, max_seq_len=cfg.max_seq_len)
        if not encoded:
            raise PivotuneError("no CLO unit kept a response token in all four sequences after truncation: "
                                "raise max_seq_len.")
        langs: dict[str, int] = {}
        for u in encoded:
            langs[u.lang] = langs.get(u.lang, 0) + 1
        fingerprint = data_fingerprint([e for u in encoded for e in u.sequences])
        if cfg.train.packing:   # the same units in other rows: a resumed run must pack them as it did
            fingerprint = data_fingerprint([fingerprint, "packed", cfg.max_seq_len], fields=lambda x: x)
        collator = UnitCollator(tokenizer.pad_token_id, cfg.max_seq_len if cfg.train.packing else None)
        return Units(encoded, collator, fingerprint, unit_describer(encoded),
                     tokenizer=tokenizer, report={"units": langs, "encoded": len(encoded), "trainable": cfg.clo.trainable,
                                                  "truncated": sum(u.truncated for u in encoded)})

    def trainable(self, stage: Stage, model):
        # before the reference pass, so the disk check runs first; the reference is still the base model:
        # freezing changes no number, and LoRA's B matrices start at zero
        return select_trainable(model, self.cfg)

    def objective(self, stage: Stage) -> CLOObjective:
        return CLOObjective(self.cfg.clo)

    def before_training(self, stage: Stage, model, units: Units, device) -> dict:
        """The reference: the starting model's log-probabilities of every unit's four sequences, computed once."""
        cfg = self.cfg
        t0 = time.time()
        model.to(device)
        with compute_autocast(cfg.train, device):   # the precision the policy's log-probabilities will have
            precompute_reference(model, units.items, units.collator,
                                 cfg.clo.reference_batch_size or cfg.train.per_device_batch_size, device)
        seconds = time.time() - t0
        log.info("CLO: reference log-probs of %d units computed once in %.1fs (%s)", len(units.items), seconds,
                 "LoRA on attention" if cfg.lora.enabled and cfg.clo.trainable == "attention" else cfg.clo.trainable)
        if not math.isfinite(sum(sum(u.ref_logps) for u in units.items)):
            raise PivotuneError("the base model gives non-finite log-probabilities on the CLO data; check its dtype "
                                "(float16 overflows on many models) and weights.")
        return {"reference_seconds": round(seconds, 2)}
