"""A CLO run: cross-lingual units → reference log-probs (once) → attention-only training.

The shared road (``pivotune.train.run``) dispatches here for methods whose data are cross-lingual
pairs. What differs from SFT: the data are units of four sequences (``pivotune.data.clo_pairs``); the
starting model's log-probabilities of every sequence are computed once before training and ride in the
batch, so training holds one model; and only the attention projections train (full weights or LoRA on
them), found through ``pivotune.models.arch``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.clo_pairs import (
    CrossLingualUnit,
    EncodedUnit,
    UnitCollator,
    encode_units,
    pair_translations,
)
from ..data.collate import EncodedDataset
from ..data.mixture import load_source
from ..data.records import Sample
from ..errors import PivotuneError
from ..models.arch import attention_projection_names
from ..models.loading import apply_lora, load_model, load_tokenizer
from ..objectives import build_objective
from ..objectives.clo import sequence_logps
from .guards import (
    IndexedCollator,
    IndexedDataset,
    check_disk_space,
    guarded_train,
    training_guards,
)
from .resume import (
    data_fingerprint,
    find_resume_checkpoint,
)

log = logging.getLogger(__name__)


def clo_units(cfg: RunConfig, samples: list[Sample] | None = None) -> list[CrossLingualUnit]:
    """Units of the run: the English rows (every role-``en`` source, in config order) paired row by row
    with each target language's translated rows (its role-``tgt`` sources, in config order).

    ``samples`` replaces loading ``cfg.data`` (grouped the same way, order kept)."""
    english: list[Sample] = []
    target: dict[str, list[Sample]] = {}
    files: dict[str, list[str]] = {"en": []}
    if samples is None:
        for src in cfg.data:
            if src.role not in ("en", "tgt"):
                log.info("method %s does not train on role %s: source %s left out", cfg.method, src.role, src.name)
                continue
            rows = load_source(src, skip_invalid=cfg.skip_invalid)
            key = "en" if src.role == "en" else src.lang
            (english if src.role == "en" else target.setdefault(src.lang, [])).extend(rows)
            files.setdefault(key, []).append(src.path)
    else:
        for s in samples:
            if s.role == "en":
                english.append(s)
            elif s.role == "tgt":
                target.setdefault(s.lang, []).append(s)
    if not english or not target:
        raise PivotuneError(
            f"method '{cfg.method}' builds cross-lingual pairs from English instructions (a data source with role "
            "'en') and their translations (one source with role 'tgt' per target language, row i translating "
            f"English row i); got {len(english)} English and "
            f"{sum(map(len, target.values()))} translated rows.")
    limit = cfg.clo.max_items
    units = []
    for lang, rows in target.items():
        got = pair_translations(english, rows, english_file=" + ".join(files["en"]) or "",
                                target_file=" + ".join(files.get(lang, [])) or "")
        units += got[:limit] if limit is not None else got
    return units


@torch.no_grad()
def precompute_reference(model, units: list[EncodedUnit], collator: UnitCollator, batch_size: int,
                         device: torch.device | str = "cpu") -> None:
    """Fill every unit's ``ref_logps`` with ``model``'s sequence log-probabilities (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(units), batch_size):
            chunk = units[start:start + batch_size]
            batch = collator(chunk)
            out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                        use_cache=False)
            logps = sequence_logps(out.logits, batch["labels"].to(device)).double().cpu().view(4, len(chunk))
            for j, u in enumerate(chunk):
                u.ref_logps = logps[:, j].tolist()
    finally:
        model.train(was_training)


def select_trainable(model, cfg: RunConfig):
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


def parameter_counts(model) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_parameters": trainable, "total_parameters": sum(p.numel() for p in model.parameters())}


def unit_describer(encoded: list[EncodedUnit]):
    """``describe(i)`` for the loss guard: CLO unit ``i`` → its language and the two rows it pairs."""
    def describe(i: int) -> str:
        u = encoded[i].unit if 0 <= i < len(encoded) else None
        if u is None:
            return f"CLO unit {i}"
        return (f"{u.target.lang} unit of English row {u.english.origin or '?'} (source '{u.english.source or '?'}') "
                f"and its translation {u.target.origin or '?'} (source '{u.target.source or '?'}')")
    return describe


def train_clo(cfg: RunConfig, run_dir: Path, samples: list[Sample] | None = None, *, save_checkpoints: bool = True,
              resume: bool | str = False):
    """Run a CLO config in the claimed ``run_dir``; returns the trainer (arguments as
    :func:`pivotune.train.run.train`, which prepares ``run_dir``).

    On resume the reference is the base model's again (the checkpoint's weights load only inside
    ``trainer.train``), so a resumed run's loss is the uninterrupted run's."""

    from .run import save_run, training_arguments
    from .trainer import PivotuneTrainer

    started = time.time()
    units = clo_units(cfg, samples)   # data first: a bad row stops the run before the model loads
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    encoded = encode_units(units, tokenizer, template=cfg.template, max_seq_len=cfg.max_seq_len)
    if not encoded:
        raise PivotuneError("no CLO unit kept a response token in all four sequences after truncation: "
                            "raise max_seq_len.")

    checkpoint = find_resume_checkpoint(run_dir, resume)
    args = training_arguments(cfg, run_dir)
    if not save_checkpoints:
        args.save_strategy = "no"
    model = load_model(cfg.model, dtype="float32" if cfg.train.dtype == "float32" else cfg.train.dtype)
    # The trainable set first, so the disk check runs before the reference pass. The reference is still
    # the base model: freezing changes no number, and LoRA's B matrices start at zero.
    model = select_trainable(model, cfg)
    check_disk_space(run_dir, model, checkpoints=save_checkpoints)
    collator = UnitCollator(tokenizer.pad_token_id)
    t0 = time.time()
    model.to(args.device)
    precompute_reference(model, encoded, collator, cfg.clo.reference_batch_size or cfg.train.per_device_batch_size,
                         args.device)
    ref_seconds = time.time() - t0
    counts = parameter_counts(model)
    log.info("CLO: reference log-probs of %d units computed once in %.1fs; training %d of %d parameters (%s)",
             len(encoded), ref_seconds, counts["trainable_parameters"], counts["total_parameters"],
             "LoRA on attention" if cfg.lora.enabled and cfg.clo.trainable == "attention" else cfg.clo.trainable)
    if not math.isfinite(sum(sum(u.ref_logps) for u in encoded)):
        raise PivotuneError("the base model gives non-finite log-probabilities on the CLO data; check its dtype "
                            "(float16 overflows on many models) and weights.")

    trainer = PivotuneTrainer(model=model, args=args, train_dataset=IndexedDataset(EncodedDataset(encoded)),
                              data_collator=IndexedCollator(collator), processing_class=tokenizer,
                              objective=build_objective(cfg), **training_guards(
                                  checkpoint, data_fingerprint([e for u in encoded for e in u.sequences]),
                                  unit_describer(encoded)))
    result = guarded_train(trainer, run_dir, checkpoint)
    langs: dict[str, int] = {}
    for u in encoded:
        langs[u.lang] = langs.get(u.lang, 0) + 1
    save_run(trainer, tokenizer, cfg, run_dir, extra={
        "units": langs, "encoded": len(encoded), "truncated": sum(u.truncated for u in encoded),
        "reference_seconds": round(ref_seconds, 2), **counts, "trainable": cfg.clo.trainable,
        "train_loss": result.training_loss, "steps": trainer.state.global_step,
        "seconds": round(time.time() - started, 2),
        "resumed_from": checkpoint.name if checkpoint is not None else None})
    return trainer
