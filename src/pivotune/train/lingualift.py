"""LinguaLIFT's two training stages around the encoder bridge (see :mod:`pivotune.models.bridge`).

Run directory layout::

    RUN/stage1/checkpoint-*/   stage-1 Trainer checkpoints (the alignment layer; encoder and LM by reference)
    RUN/stage1/model/          the stage-1 result, the start of stage 2 (alignment layer + references)
    RUN/stage2/checkpoint-*/   stage-2 Trainer checkpoints (alignment layer + LM, or its LoRA adapter)
    RUN/model/                 the trained bridge, self-contained (encoder, alignment layer, LM with LoRA
                               merged); not a plain causal-LM directory
    RUN/config.yaml, RUN/run.json

Stage 1: encoder and LM frozen, the alignment layer trains on code-switched prompts with English responses
(``lingualift.stage1_*`` settings). Stage 2: encoder and alignment layer frozen, the LM trains (full, or LoRA)
on English instructions with ``train``'s settings.

Resume (``resume`` as for :func:`pivotune.train.run.train`: True/"latest", "auto" or a checkpoint path): when
stage 1 is configured and ``RUN/stage1/model`` is complete (written atomically with the stage's data fingerprint,
batch geometry and report in ``pivotune_stage1.json``), stage 1 is not retrained: its alignment layer is loaded
from there, as a run with ``stages: [2]`` does. Otherwise stage 1 continues from its latest complete checkpoint
in ``RUN/stage1``, and stage 2 (from its own in ``RUN/stage2``) once stage 1 is done. Each stage's checkpoints are
written under a temporary name and renamed when complete (:mod:`pivotune.train.resume`), hold the bridge parts
the stage changes plus optimizer, scheduler, RNG states and data position, and are checked against the stage's
data and batch geometry before continuing; half-written ones are removed when a run starts, and a stage stopped
after its last checkpoint but before writing its result takes the result from that checkpoint. Stage 2 starts from
the same RNG state whether stage 1 ran in the same process or not (a LoRA adapter's initialisation is drawn from
it), so an interrupted and resumed run ends with the weights of an uninterrupted one. Batches carry
``sample_index``, so a non-finite loss names the step and the samples' sources
(:mod:`pivotune.train.guards`); see :mod:`pivotune.train.lingualift_resume` for the checkpoint format.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path

import torch

from ..config import RunConfig, dump_config
from ..data.bridge_batches import BridgeCollator, encode_bridge_all
from ..data.codeswitch import codeswitch_samples, read_lexicon
from ..data.collate import EncodedDataset
from ..data.mixture import mixture_for_config, summarize
from ..data.records import Sample
from ..errors import PivotuneError
from ..io import write_json_atomic, write_text_atomic
from ..methods import METHODS
from ..models.bridge import LinguaLiftModel, load_alignment, read_bridge_meta
from ..models.loading import apply_lora, load_encoder, load_model, load_tokenizer
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
from .lingualift_resume import (
    bridge_fingerprint,
    read_stage1,
    resume_plan,
    save_stage1,
)
from .resume import (
    RUN_INFO,
    finished_record,
    geometry,
    remove_partials,
)
from .run import training_arguments
from .rundir import is_main_process

log = logging.getLogger(__name__)


def set_stage(bridge: LinguaLiftModel, stage: int) -> None:
    """Freeze for a stage: 1 → only the alignment layer trains; 2 → only the LM trains."""
    bridge.set_trainable("alignment" if stage == 1 else "lm")


def stage1_source(cfg: RunConfig) -> Path:
    """The stage-1 directory a run of stage 2 alone starts from: ``lingualift.stage1_from``, or RUN/stage1/model."""
    return Path(cfg.lingualift.stage1_from or Path(cfg.output_dir) / "stage1" / "model")


def stage1_start(cfg: RunConfig) -> Path:
    """The stage-1 directory stage 2 starts from, checked before any model loads."""
    d = stage1_source(cfg)
    if not (d / "alignment.safetensors").is_file():
        raise PivotuneError(
            f"lingualift stage 2 starts from a trained stage-1 alignment layer, but {d} holds none "
            f"({d / 'alignment.safetensors'} does not exist). Run stage 1 first (lingualift.stages: [1, 2] or [1]), "
            "or set lingualift.stage1_from to the model/ directory of a finished stage 1.")
    read_bridge_meta(d)
    return d


def stage_data(cfg: RunConfig, samples: list[Sample] | None) -> tuple[list[Sample], list[Sample]]:
    """(stage-1 samples: code-switched; stage-2 samples: English)."""
    if samples is None:
        samples = mixture_for_config(cfg)
    else:
        samples = [s for s in samples if s.role in METHODS[cfg.method].roles]
    english = [s for s in samples if s.role == "en"]
    ll = cfg.lingualift
    lexicons = [read_lexicon(path, lang) for lang, path in ll.lexicons.items()]
    stage1 = [s for s in samples if s.role == "cs"]
    if lexicons:
        stage1 += codeswitch_samples(english, lexicons, ll.switch_ratio, cfg.seed)
    if 1 in ll.stages and not stage1:
        raise PivotuneError("lingualift stage 1 has no code-switched samples: give lingualift.lexicons and English "
                            "data (role en), or data with role cs.")
    if 2 in ll.stages and not english:
        raise PivotuneError("lingualift stage 2 trains on English instructions, but no data source has role en.")
    return stage1, english


def _stage_config(cfg: RunConfig, stage: int) -> RunConfig:
    if stage == 2:
        return cfg
    ll = cfg.lingualift
    train = cfg.train.model_copy(update={
        "lr": ll.stage1_lr, "scheduler": ll.stage1_scheduler, "epochs": ll.stage1_epochs,
        "max_steps": ll.stage1_max_steps, "warmup_ratio": 0.0 if ll.stage1_scheduler == "constant" else
        cfg.train.warmup_ratio})
    return cfg.model_copy(update={"train": train})


def _stage_args(cfg: RunConfig, stage: int, out: Path, save_checkpoints: bool):
    args = training_arguments(_stage_config(cfg, stage), out)
    if not save_checkpoints:
        args.save_strategy = "no"
    return args


def _run_stage(cfg: RunConfig, bridge: LinguaLiftModel, stage: int, samples: list[Sample], encoded, out: Path,
               save_checkpoints: bool, checkpoint: Path | None):
    """Train one stage (continuing from ``checkpoint`` when given); returns (trainer, report)."""
    args = _stage_args(cfg, stage, out, save_checkpoints)
    from .trainer import PivotuneTrainer

    trainer = PivotuneTrainer(
        model=bridge, args=args, train_dataset=IndexedDataset(EncodedDataset(encoded)),
        data_collator=IndexedCollator(BridgeCollator(bridge.encoder_tokenizer.pad_token_id,
                                                     bridge.lm_tokenizer.pad_token_id)),
        objective=build_objective(cfg),
        **training_guards(checkpoint, bridge_fingerprint(encoded), sample_describer(encoded, samples)))
    # a checkpoint at the stage's last step (stopped before its result was written) is finished from, not trained
    loss = guarded_train(trainer, out, checkpoint).training_loss
    return trainer, {"steps": trainer.state.global_step, "train_loss": loss,
                     "resumed_from": checkpoint.name if checkpoint is not None else None,
                     "trainable_parameters": sum(p.numel() for p in bridge.parameters() if p.requires_grad),
                     "log_history": trainer.state.log_history}


def build_bridge(cfg: RunConfig) -> LinguaLiftModel:
    ll = cfg.lingualift
    dtype = "float32" if cfg.train.dtype == "float32" else cfg.train.dtype
    encoder_tok = load_tokenizer(ll.encoder_tokenizer or ll.encoder)
    lm_tok = load_tokenizer(cfg.tokenizer or cfg.model)
    sources = {"encoder": ll.encoder, "lm": cfg.model, "encoder_tokenizer": ll.encoder_tokenizer or ll.encoder,
               "lm_tokenizer": cfg.tokenizer or cfg.model}
    return LinguaLiftModel.build(load_encoder(ll.encoder, dtype), load_model(cfg.model, dtype),
                                 projector=ll.projector, encoder_hidden_size=ll.encoder_hidden_size,
                                 bos_token_id=lm_tok.bos_token_id, seed=cfg.seed, encoder_tokenizer=encoder_tok,
                                 lm_tokenizer=lm_tok, sources=sources)


def load_stage1(bridge: LinguaLiftModel, d: Path, projector: str) -> None:
    """Put a finished stage 1's alignment layer (from its ``model/`` directory) into ``bridge``."""
    meta = read_bridge_meta(d)
    al = bridge.alignment
    if (meta["projector"], meta["d_enc"], meta["d_llm"]) != (projector, al.d_enc, al.d_llm):
        raise PivotuneError(
            f"{d} holds a {meta['projector']} alignment layer {meta['d_enc']}→{meta['d_llm']}, but this run "
            f"bridges a {projector} {al.d_enc}→{al.d_llm}: use the encoder, LM and "
            "projector stage 1 was trained with.")
    load_alignment(bridge.alignment, d / "alignment.safetensors")


def train_lingualift(cfg: RunConfig, run_dir: Path, samples: list[Sample] | None = None, *,
                     save_checkpoints: bool = True, resume: bool | str = False):
    """Run the configured stages in the claimed ``run_dir`` (see :func:`pivotune.train.run.train`); returns the last
    stage's trainer (its ``model`` is the bridge). ``resume``: see the module docstring."""
    from transformers import set_seed

    dirs = {1: run_dir / "stage1", 2: run_dir / "stage2"}
    main = is_main_process()   # one process writes the stages' results
    if main:
        for d in dirs.values():
            remove_partials(d)
    started = time.time()
    ll = cfg.lingualift
    start_from = stage1_start(cfg) if 1 not in ll.stages else None   # fail before data or models load
    stage1, english = stage_data(cfg, samples)
    plan = resume_plan(run_dir, ll.stages, resume)
    bridge = build_bridge(cfg)
    if start_from is not None:
        load_stage1(bridge, start_from, ll.projector)
    langs = ["en", *[lang for lang in cfg.languages if lang != "en"]]
    encode = lambda rows: encode_bridge_all(
        rows, bridge.encoder_tokenizer, bridge.lm_tokenizer, max_encoder_len=ll.max_encoder_len,
        max_response_len=cfg.max_seq_len, lang_ids={lang: i for i, lang in enumerate(langs)})
    # before any stage trains: room for the larger checkpoint (stage 2's full LM with Adam's moments, unless
    # LoRA) and the final bridge
    set_stage(bridge, 2 if 2 in ll.stages and not cfg.lora.enabled else 1)
    check_disk_space(run_dir, bridge, checkpoints=save_checkpoints)
    report: dict = {"method": cfg.method, "base_model": cfg.model, "encoder": ll.encoder, "stages": list(ll.stages),
                    "lora": cfg.lora.enabled}
    trainer = None
    if 1 in ll.stages:
        encoded = encode(stage1)
        geo = geometry(_stage_args(cfg, 1, dirs[1], save_checkpoints))
        if plan.stage1_done is not None:
            report["stage1"] = read_stage1(plan.stage1_done, bridge_fingerprint(encoded), geo)
            load_stage1(bridge, plan.stage1_done, ll.projector)
        else:
            set_stage(bridge, 1)
            trainer, report["stage1"] = _run_stage(cfg, bridge, 1, stage1, encoded, dirs[1], save_checkpoints,
                                                   plan.checkpoints.get(1))
            switched = [s.meta for s in stage1 if "content_words" in s.meta]
            report["stage1"].update(mixture=summarize(stage1), switch_ratio=ll.switch_ratio, switched_share=(
                sum(m["switched"] for m in switched) / max(1, sum(m["content_words"] for m in switched))),
                content_words_per_sample=statistics.fmean(m["content_words"] for m in switched) if switched else 0.0)
            if main:
                with write_failures_reported(dirs[1]):
                    save_stage1(bridge, dirs[1] / "model", bridge_fingerprint(encoded), geo, report["stage1"])
    if 2 in ll.stages:
        set_seed(cfg.seed)   # the same start whether stage 1 ran in this process or was resumed past
        set_stage(bridge, 2)
        if cfg.lora.enabled:
            bridge.lm = apply_lora(bridge.lm, cfg.lora)
        trainer, report["stage2"] = _run_stage(cfg, bridge, 2, english, encode(english), dirs[2], save_checkpoints,
                                               plan.checkpoints.get(2))
        if cfg.lora.enabled:
            bridge.lm = bridge.lm.merge_and_unload()
        if main:
            with write_failures_reported(dirs[2]):
                bridge.save_pretrained(run_dir / "model")
        report["stage2"]["mixture"] = summarize(english)
    import transformers

    report.update(seconds=round(time.time() - started, 2),
                  versions={"torch": torch.__version__, "transformers": transformers.__version__},
                  **(finished_record(trainer) if trainer is not None else {}))
    with write_failures_reported(dirs[max(ll.stages)]):
        write_text_atomic(run_dir / "config.yaml", dump_config(cfg))
        write_json_atomic(run_dir / RUN_INFO, json.loads(json.dumps(report, default=str)))   # last: see resume
    return trainer
