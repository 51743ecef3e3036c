"""The one training road: every method's run, config → data → model → stages → run directory.

:func:`train` does the shared work once, in this order, and asks the method's road
(:class:`pivotune.methods.base.Road`) only what differs:

1. the run directory (:mod:`pivotune.train.rundir`: lock, ownership, cleanup of a failed start) and the seed;
2. the method's data, every row validated, before any model loads (``road.training_data``);
3. where each stage resumes from (``road.resume_plan``);
4. the tokenizer and the base model (``trust_remote_code`` from the config; its dtype by
   :mod:`pivotune.train.precision`: float32 master weights for half-precision compute), then
   :func:`adapt_vocabulary`, the one place both may change before any method sees them (``vocab``: the
   tokenizer extended for the target script, the model resized), and ``vocab.warmup_steps`` of training the new
   rows alone (:mod:`pivotune.vocab.warmup`);
5. each stage's units, encoded (``road.units``), and the base model read or wrapped (``road.prepare_base``);
6. per stage: a result already there (``road.finished_stage``), or the trainable parameters (``road.trainable``,
   then the new vocabulary rows: :func:`pivotune.vocab.run.train_new_rows`),
   the objective and its model (``road.objective``, ``Objective.prepare_model``), the disk check, work before
   the first step (``road.before_training``), the trainer with its guards, interference when configured,
   training or finishing from a last-step checkpoint (:func:`~pivotune.train.guards.guarded_train`), and
   ``road.after_stage``;
7. the model, config and run metadata (:func:`save_run`), ``run.json`` last.

Run directory layout::

    RUN/.pivotune-lock     held while a run uses RUN (:mod:`pivotune.train.rundir`)
    RUN/.pivotune-output.json  marks RUN as a pivotune run
    RUN/config.yaml        the validated config (as the run used it: PROM's regulated λ included)
    RUN/run.json           data counts, truncations, steps, final loss, the loss per role and language over the
                           logging steps (``losses``: :func:`pivotune.train.losses.loss_series`), versions; written
                           last
    RUN/checkpoint-*/      Trainer checkpoints (safetensors, optimizer, RNG); the last step's finishes a run
                           killed while writing its final outputs (--resume), or exports directly
    RUN/<stage>/           a method with several stages: each stage's checkpoints (LinguaLIFT: stage1/, stage2/)
    RUN/vocab-warmup/model ``vocab.warmup_steps``: the warmed-up new rows, which a resumed run loads
    RUN/model/             the trained model (full weights, in train.dtype; or the LoRA adapter; LinguaLIFT: its
                           bridge) and tokenizer (``vocab``: the extended one, and vocab_extension.json)
    RUN/pivot_head.*       PROM only: the pivot head (safetensors + JSON description),
                           for analysis; never part of RUN/model, not exported
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import torch

from ..config import RunConfig, TrainConfig, dump_config
from ..data.collate import EncodedDataset
from ..data.packing import refuse_unpackable
from ..data.records import Sample
from ..io import atomic_path, write_json_atomic, write_text_atomic
from ..methods import METHODS
from ..methods.base import Road, Stage
from ..models.arch import unwrap
from ..models.loading import load_model, load_tokenizer
from ..models.packed_attention import per_sample_attention
from ..models.parts import ModelWithParts
from .guards import (
    IndexedCollator,
    IndexedDataset,
    check_disk_space,
    guarded_train,
    training_guards,
    write_failures_reported,
)
from .losses import joined_series, loss_series
from .precision import autocast_flags, check_precision, keep_master_weights, save_lm, weights_dtype
from .resume import RUN_INFO, finished_record, remove_partials
from .rundir import is_main_process, run_directory

log = logging.getLogger(__name__)


def training_arguments(cfg: RunConfig, run_dir: Path, train: TrainConfig | None = None):
    """Map the run config (``train``: a stage's own optimisation settings) onto transformers' TrainingArguments."""
    from transformers import TrainingArguments

    t = train or cfg.train
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
        **autocast_flags(t),   # bf16= / fp16=: half-precision compute under autocast (use_cpu where it needs it)
        activation_checkpointing=t.gradient_checkpointing,
        report_to=[r for r in t.report_to if r != "none"] or "none",
        disable_tqdm=not t.progress_bar,
        seed=cfg.seed,
        data_seed=cfg.seed,
        remove_unused_columns=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        # every trainable weight gets a gradient in each step unless the objective says otherwise (PROM);
        # transformers' default (True without gradient checkpointing) costs DDP an extra graph pass per step
        ddp_find_unused_parameters=False,
    )
    return TrainingArguments(**kwargs)


def run_inputs(cfg: RunConfig, road: Road) -> list[str]:
    """The paths a run reads (model, data, and the method's own: probes, encoder, lexicons, a stage-1 result): never
    removed from its run directory, wherever they lie. Hub names are listed too; they name no local path."""
    paths = [cfg.model, cfg.tokenizer, *(p for src in cfg.data for p in (src.path, src.target_path)), *road.inputs()]
    return [p for p in paths if p]


def adapt_vocabulary(cfg: RunConfig, tokenizer, model, samples: list[Sample] | None = None):
    """The one place the tokenizer and the base model may be changed before the data are encoded and any method
    sees the model: ``(tokenizer, model, vocabulary)``. With ``vocab.n_new`` set, the tokenizer is extended for the
    target script from the run's target data (``samples`` when given) and the model resized
    (:func:`pivotune.vocab.run.extend_for_run`); otherwise both pass unchanged and ``vocabulary`` is None."""
    if not cfg.vocab.enabled:
        return tokenizer, model, None
    from ..vocab.run import extend_for_run

    tokenizer, model, vocabulary = extend_for_run(cfg, tokenizer, model, samples)
    log.info("vocabulary: %d %s-script tokens added; tokens per word on their corpus %.2f -> %.2f",
             vocabulary.record["new_tokens"], "+".join(vocabulary.record["scripts"]),
             *vocabulary.record["tokens_per_word_on_corpus"].values())
    return tokenizer, model, vocabulary


def train(cfg: RunConfig, samples: list[Sample] | None = None, *, save_checkpoints: bool = True,
          resume: bool | str = False, overwrite: bool = False):
    """Run ``cfg`` on its method's road; returns the last stage's trainer (its ``state.log_history`` holds the
    losses).

    ``samples`` replaces loading ``cfg.data`` (the toy world and tests pass generated samples straight in).
    ``resume``: continue from a checkpoint in the run directory (``True``/``"latest"``: the latest complete one;
    ``"auto"``: that one if any; or a checkpoint path; see :mod:`pivotune.train.resume`). ``overwrite``: an earlier
    run in the run directory is deleted first; without it (or ``resume``) a directory holding one is refused. The
    run is locked for its life, and its directory is left as it was when it fails before its first complete
    checkpoint (:func:`pivotune.train.rundir.run_directory`).
    """
    from transformers import set_seed

    road = METHODS[cfg.method].road(cfg)
    with run_directory(cfg.output_dir, resume=resume, overwrite=overwrite, inputs=run_inputs(cfg, road)) as run_dir:
        set_seed(cfg.seed)
        return _run(road, run_dir, samples, save_checkpoints=save_checkpoints, resume=resume)


def _run(road: Road, run_dir: Path, samples: list[Sample] | None, *, save_checkpoints: bool, resume: bool | str):
    """The road's stages in the claimed ``run_dir`` (see the module docstring)."""
    from transformers import set_seed

    cfg = road.cfg
    started = time.time()
    data = road.training_data(samples)   # data first: a bad row stops the run before a multi-GB model loads
    stages = road.stages()
    if is_main_process():   # a stage directory's half-written checkpoints (RUN's own: run_directory)
        for stage in stages:
            if stage.directory:
                remove_partials(run_dir / stage.directory)
    checkpoints = road.resume_plan(run_dir, resume)
    check_precision(cfg.train)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, trust_remote_code=cfg.trust_remote_code)
    model = load_model(cfg.model, dtype=weights_dtype(cfg), trust_remote_code=cfg.trust_remote_code)
    tokenizer, model, vocabulary = adapt_vocabulary(cfg, tokenizer, model, samples)
    if cfg.train.packing:   # before any encoding: packed samples must not attend to each other
        refuse_unpackable(model)
    warmup = None
    if vocabulary is not None and cfg.vocab.warmup_steps:   # before any method sees the model (PROM's pivot head)
        from ..vocab.warmup import WARMUP_DIR, warm_up, warmup_train

        if is_main_process():
            remove_partials(run_dir / WARMUP_DIR)
        args = training_arguments(cfg, run_dir / WARMUP_DIR, warmup_train(cfg))
        warmup = warm_up(cfg, tokenizer, model, vocabulary, args, resume=bool(resume), save=save_checkpoints)
        set_seed(cfg.seed)   # what follows starts from the same RNG state, the warm-up trained here or loaded
    units = {stage.name: road.units(stage, data, tokenizer) for stage in stages}
    model = road.prepare_base(model, tokenizer, run_dir, save_checkpoints)
    cfg = road.cfg   # as the base model decided it (PROM's regulated λ)
    reports: dict[str, dict] = {}
    trainer = None
    for stage in stages:
        stage_dir = run_dir / stage.directory if stage.directory else run_dir
        args = training_arguments(cfg, stage_dir, stage.train)
        if not save_checkpoints:
            args.save_strategy = "no"
        done = road.finished_stage(stage, model, units[stage.name], args)
        if done is not None:
            reports[stage.name] = done
            continue
        set_seed(cfg.seed)   # every stage starts from the same RNG state, whatever ran before it in this process
        trainer, reports[stage.name] = _train_stage(road, stage, model, units[stage.name], args, run_dir,
                                                    checkpoints.get(stage.name), save_checkpoints, vocabulary)
        model = trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
        if isinstance(model, ModelWithParts) and model.parts_beside_lm:
            model = model.lm   # the next stage (if any) starts from the LM, its objective wraps it again
    last = stages[-1]
    extra = {**road.report(), **(reports[last.name] if last.report_key is None else reports)}
    if last.report_key is not None:   # several stages: their losses on one step axis too
        extra["losses"] = joined_series([(name, r.get("losses"), r.get("steps") or 0) for name, r in reports.items()])
    if vocabulary is not None:
        extra["vocab"] = vocabulary.record
    if warmup is not None:
        extra["vocab_warmup"] = warmup
    save_run(trainer, cfg, run_dir, {**extra, "seconds": round(time.time() - started, 2)}, write_model=last.final,
             vocabulary=vocabulary)
    return trainer


def _train_stage(road: Road, stage: Stage, model, units, args, run_dir: Path, checkpoint: Path | None,
                 save_checkpoints: bool, vocabulary=None):
    """Train one stage in ``args.output_dir`` (continuing from ``checkpoint`` when given; ``vocabulary``: the run's
    extension, whose new rows train wherever the stage trains the LM); returns (trainer, the stage's report)."""
    from .interference_callback import attach_interference
    from .trainer import PivotuneTrainer

    cfg = road.cfg
    stage_dir = Path(args.output_dir)
    model = road.trainable(stage, model)
    attention = unwrap(model)   # the transformers model whose attention implementation packing may switch
    new_rows = None
    if vocabulary is not None:
        from ..vocab.run import train_new_rows

        new_rows = train_new_rows(model, vocabulary, cfg, args.learning_rate, args.weight_decay)
    objective = road.objective(stage)
    model = objective.prepare_model(model)   # e.g. PROM: the LM plus its pivot head
    keep_master_weights(model, cfg.train)
    check_disk_space(run_dir, model, checkpoints=save_checkpoints)
    args.ddp_find_unused_parameters = objective.find_unused_parameters
    counts = {"trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "total_parameters": sum(p.numel() for p in model.parameters())}
    log.info("%s: training %d of %d parameters", stage.name, counts["trainable_parameters"], counts["total_parameters"])
    # packed rows attend per sample while the stage trains (the saved configs name no attention implementation)
    with per_sample_attention(attention) if cfg.train.packing else contextlib.nullcontext(False) as per_sample:
        packed_attention = None   # packed runs: per-sample sdpa, or the implementation whose mask transformers builds
        if cfg.train.packing:
            packed_attention = "per-sample sdpa" if per_sample else attention.config._attn_implementation
            log.info("%s: packed rows attend through %s", stage.name, packed_attention)
        report = road.before_training(stage, model, units, args.device)
        trainer = PivotuneTrainer(model=model, args=args, train_dataset=IndexedDataset(EncodedDataset(units.items)),
                                  data_collator=IndexedCollator(units.collator), processing_class=units.tokenizer,
                                  objective=objective, languages=units.lang_ids, new_rows=new_rows,
                                  **training_guards(checkpoint, units.fingerprint, units.describe))
        if cfg.interference.every:   # accepted only for methods whose objective it can measure (config refuses)
            attach_interference(trainer, cfg, units.interference, units.lang_ids, units.tokenizer.pad_token_id,
                                stage_dir)
        result = guarded_train(trainer, stage_dir, checkpoint)
    report = {**units.report, **report, **counts, "train_loss": result.training_loss,
              "losses": loss_series(trainer.state.log_history),
              "steps": trainer.state.global_step, "resumed_from": checkpoint.name if checkpoint is not None else None,
              **objective.describe(trainer.model)}
    if packed_attention is not None:
        report["packed_attention"] = packed_attention
    if stage.report_key is not None:
        report["log_history"] = trainer.state.log_history
    road.after_stage(stage, trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False), units, args,
                     report)
    return trainer, report


def save_run(trainer, cfg: RunConfig, run_dir: Path, extra: dict, *, write_model: bool = True,
             vocabulary=None) -> Path:
    """Write the final model (atomically), its tokenizer and parts, the config and, last, the run metadata (whose
    record of the run and step tells a finished run from one killed while writing these; see
    :mod:`pivotune.train.resume`). ``trainer``: the last stage's (None when every stage's result was already
    there); ``write_model``: False when the run ends with a stage that does not write RUN/model; ``vocabulary``:
    the run's extension, recorded in RUN/model/vocab_extension.json."""
    import transformers

    model = state = None
    if trainer is not None:
        # sharded weights (FSDP, ZeRO-3) are gathered on every rank (a collective); one process writes
        state = (trainer.accelerator.get_state_dict(trainer.model)
                 if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled else None)
        if not trainer.args.should_save:
            return run_dir
        model = trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    elif not is_main_process():
        return run_dir
    with write_failures_reported(run_dir):
        if model is not None and write_model:
            with_parts = isinstance(model, ModelWithParts)
            lm_state, parts_state = model.split_state(state) if with_parts else (state, None)
            with atomic_path(run_dir / "model") as tmp:
                save_lm(model, tmp, lm_state, cfg.train)   # PROM: its LM only; in train.dtype
                if trainer.processing_class is not None:
                    trainer.processing_class.save_pretrained(tmp)
                if vocabulary is not None:
                    from ..vocab.save import write_record

                    write_record(tmp, vocabulary.record)
            if with_parts and model.parts_beside_lm:
                model.save_parts(run_dir, state=parts_state)
        write_text_atomic(run_dir / "config.yaml", dump_config(cfg))
        meta = {"method": cfg.method, "base_model": cfg.model, "lora": cfg.lora.enabled,
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                **({"log_history": trainer.state.log_history, **finished_record(trainer)} if trainer else {}),
                **extra}
        write_json_atomic(run_dir / RUN_INFO, json.loads(json.dumps(meta, default=str)))
    return run_dir
