"""One training run: config → mixture → encoded batches → Trainer → run directory.

Run directory layout::

    RUN/.pivotune-lock     held while a run uses RUN (:mod:`pivotune.train.rundir`)
    RUN/.pivotune-output.json  marks RUN as a pivotune run
    RUN/config.yaml        the validated config
    RUN/run.json           mixture counts, truncations, steps, final loss, versions; written last
    RUN/checkpoint-*/      Trainer checkpoints (safetensors, optimizer, RNG); the last step's finishes a run
                           killed while writing its final outputs (--resume), or exports directly
    RUN/model/             the trained model (full weights, or the LoRA adapter)
    RUN/pivot_head.*       PROM only: the pivot head (safetensors + JSON description),
                           for analysis; never part of RUN/model, not exported
    RUN/tokenizer files    beside model/ for export
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch

from ..config import RunConfig, dump_config
from ..data.collate import Collator, EncodedDataset, encode_all
from ..data.mixture import mixture_for_config, summarize
from ..data.records import Sample
from ..errors import PivotuneError
from ..io import atomic_path, write_json_atomic, write_text_atomic
from ..methods import METHODS
from ..models.loading import apply_lora, load_model, load_tokenizer
from ..objectives import build_objective
from .guards import (
    IndexedCollator,
    IndexedDataset,
    check_disk_space,
    guarded_train,
    sample_describer,
    training_guards,
    write_failures_reported,
)
from .regulation import regulate
from .resume import (
    RUN_INFO,
    data_fingerprint,
    find_resume_checkpoint,
    finished_record,
)
from .rundir import run_directory

log = logging.getLogger(__name__)


def training_arguments(cfg: RunConfig, run_dir: Path):
    """Map the run config onto transformers' TrainingArguments."""
    from transformers import TrainingArguments

    t = cfg.train
    kwargs = dict(
        output_dir=str(run_dir),
        learning_rate=t.lr,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio of total steps in transformers 5
        lr_scheduler_type=t.scheduler,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        save_strategy="steps" if t.save_steps else "epoch",
        save_steps=t.save_steps or 500,
        save_total_limit=t.save_total_limit,
        bf16=t.dtype == "bfloat16",
        fp16=t.dtype == "float16",
        activation_checkpointing=t.gradient_checkpointing,
        report_to=[r for r in t.report_to if r != "none"] or "none",
        disable_tqdm=not t.progress_bar,
        seed=cfg.seed,
        data_seed=cfg.seed,
        remove_unused_columns=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without a GPU, accelerate sets up multi-process (torchrun) training only when told to use the CPU;
        # otherwise every rank would train alone on all the data.
        use_cpu=int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available(),
        # every trainable weight gets a gradient in each step unless the objective says otherwise (PROM);
        # transformers' default (True without gradient checkpointing) costs DDP an extra graph pass per step
        ddp_find_unused_parameters=False,
    )
    return TrainingArguments(**kwargs)


def run_inputs(cfg: RunConfig) -> list[str]:
    """The paths a run reads (model, data, probes, encoder, lexicons, a stage-1 result): never removed from its run
    directory, wherever they lie. Hub names are listed too; they name no local path."""
    ll = cfg.lingualift
    paths = [cfg.model, cfg.tokenizer, cfg.prom.probe, *(cfg.prom.probe_pairs or {}).values(), ll.encoder,
             ll.encoder_tokenizer, *ll.lexicons.values(), *(p for src in cfg.data for p in (src.path, src.target_path))]
    if 1 not in ll.stages:   # LinguaLIFT stage 2 alone starts from a stage 1, by default RUN/stage1/model
        from .lingualift import stage1_source

        paths.append(str(stage1_source(cfg)))
    return [p for p in paths if p]


def train(cfg: RunConfig, samples: list[Sample] | None = None, *, save_checkpoints: bool = True,
          resume: bool | str = False, overwrite: bool = False):
    """Run ``cfg``; returns the trainer (its ``state.log_history`` holds the losses).

    ``samples`` replaces loading ``cfg.data`` (the toy world and tests pass
    generated samples straight in). ``resume``: continue from a checkpoint in the run directory
    (``True``/``"latest"``: the latest complete one; ``"auto"``: that one if any; or a checkpoint path;
    see :mod:`pivotune.train.resume`). ``overwrite``: an earlier run in the run directory is deleted first;
    without it (or ``resume``) a directory holding one is refused. Every road runs inside
    :func:`pivotune.train.rundir.run_directory`: locked for the run's life, and left as it was when the run fails
    before its first complete checkpoint.
    """
    from transformers import set_seed

    with run_directory(cfg.output_dir, resume=resume, overwrite=overwrite, inputs=run_inputs(cfg)) as run_dir:
        set_seed(cfg.seed)
        if METHODS[cfg.method].own_training == "clo":   # CLO: its own units, reference pass and trainable set
            from .clo import train_clo

            return train_clo(cfg, run_dir, samples, save_checkpoints=save_checkpoints, resume=resume)
        if METHODS[cfg.method].own_training == "lingualift":   # two stages around an encoder bridge
            from .lingualift import train_lingualift

            return train_lingualift(cfg, run_dir, samples, save_checkpoints=save_checkpoints, resume=resume)
        return train_sft(cfg, run_dir, samples, save_checkpoints=save_checkpoints, resume=resume)


def train_sft(cfg: RunConfig, run_dir: Path, samples: list[Sample] | None, *, save_checkpoints: bool,
              resume: bool | str):
    """The SFT road (english, bactrian, xllama, prom, prom-noreg) in the claimed ``run_dir``."""
    started = time.time()

    # Data first: a bad row should stop the run before a multi-GB model loads.
    if samples is None:
        samples = mixture_for_config(cfg)
    else:
        samples = [s for s in samples if s.role in METHODS[cfg.method].roles]
    if not samples:
        raise PivotuneError(f"method '{cfg.method}' has no training samples: check `data` roles and paths.")
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, trust_remote_code=cfg.trust_remote_code)
    langs = ["en", *[lang for lang in cfg.languages if lang != "en"]]
    lang_ids = {lang: i for i, lang in enumerate(langs)}
    encoded = encode_all(samples, tokenizer, template=cfg.template, max_seq_len=cfg.max_seq_len,
                         lang_ids=lang_ids)
    if not encoded:
        raise PivotuneError("no sample kept a response token after truncation: raise max_seq_len.")
    checkpoint = find_resume_checkpoint(run_dir, resume)

    model = load_model(cfg.model, dtype="float32" if cfg.train.dtype == "float32" else cfg.train.dtype,
                       trust_remote_code=cfg.trust_remote_code)
    cfg = regulate(cfg, model, tokenizer, run_dir)   # PROM: λ per language from the base model's lens
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora)
    objective = build_objective(cfg)
    model = objective.prepare_model(model)   # e.g. PROM: the LM plus its pivot head
    check_disk_space(run_dir, model, checkpoints=save_checkpoints)
    args = training_arguments(cfg, run_dir)
    if not save_checkpoints:
        args.save_strategy = "no"
    args.ddp_find_unused_parameters = objective.find_unused_parameters
    from .trainer import PivotuneTrainer

    trainer = PivotuneTrainer(
        model=model, args=args, train_dataset=IndexedDataset(EncodedDataset(encoded)),
        data_collator=IndexedCollator(Collator(tokenizer.pad_token_id)), processing_class=tokenizer,
        objective=objective, **training_guards(checkpoint, data_fingerprint(encoded), sample_describer(encoded, samples)),
    )
    from .interference_callback import (
        attach_interference,  # cfg.interference.every > 0 only
    )

    attach_interference(trainer, cfg, encoded, lang_ids, tokenizer.pad_token_id, run_dir)
    result = guarded_train(trainer, run_dir, checkpoint)
    save_run(trainer, tokenizer, cfg, run_dir, extra={
        "mixture": summarize(samples), "encoded": len(encoded),
        "truncated": sum(e.truncated for e in encoded), "train_loss": result.training_loss,
        "steps": trainer.state.global_step, "seconds": round(time.time() - started, 2),
        "resumed_from": checkpoint.name if checkpoint is not None else None,
        **objective.describe(trainer.model),
    })
    return trainer


def save_run(trainer, tokenizer, cfg: RunConfig, run_dir: Path, extra: dict) -> Path:
    """Write the final model (atomically), tokenizer, config and, last, the run metadata (whose record of the
    run and step tells a finished run from one killed while writing these; see :mod:`pivotune.train.resume`)."""
    import transformers

    from ..models.parts import ModelWithParts

    # sharded weights (FSDP, ZeRO-3) are gathered on every rank (a collective); one process writes
    state = (trainer.accelerator.get_state_dict(trainer.model)
             if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled else None)
    if not trainer.args.should_save:
        return run_dir
    model = trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    with_parts = isinstance(model, ModelWithParts)
    lm_state, parts_state = model.split_state(state) if with_parts else (state, None)
    with write_failures_reported(run_dir):
        with atomic_path(run_dir / "model") as tmp:
            model.save_pretrained(tmp, state_dict=lm_state, safe_serialization=True)   # PROM: its LM only
            tokenizer.save_pretrained(tmp)
        if with_parts and model.parts_beside_lm:
            model.save_parts(run_dir, state=parts_state)
        write_text_atomic(run_dir / "config.yaml", dump_config(cfg))
        meta = {"method": cfg.method, "base_model": cfg.model, "lora": cfg.lora.enabled,
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                "log_history": trainer.state.log_history, **extra, **finished_record(trainer)}
        write_json_atomic(run_dir / RUN_INFO, json.loads(json.dumps(meta, default=str)))
    return run_dir
