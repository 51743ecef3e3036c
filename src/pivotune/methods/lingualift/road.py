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
(:mod:`pivotune.train.guards`); see :mod:`.stages` for the checkpoint format.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from ...data.collate import language_ids
from ...data.mixture import mixture_for_config, summarize
from ...data.records import Sample
from ...errors import PivotuneError
from ...models.bridge import LinguaLiftModel, load_alignment, read_bridge_meta
from ...models.loading import apply_lora, load_encoder, load_tokenizer
from ...train.guards import check_disk_space, sample_describer, write_failures_reported
from ...train.resume import geometry
from ...train.rundir import is_main_process
from ..base import Road, Stage, Units
from .batches import BridgeCollator, encode_bridge_all
from .codeswitch import codeswitch_samples, read_lexicon
from .objective import LinguaLiftObjective
from .stages import bridge_fingerprint, read_stage1, resume_plan, save_stage1

STAGE_PARTS = {"stage1": "alignment", "stage2": "lm"}   # the part each stage trains


@dataclass
class StageData:
    stage1: list[Sample]    # code-switched prompts, English responses
    english: list[Sample]   # stage 2's English instructions


def stage1_source(cfg) -> Path:
    """The stage-1 directory a run of stage 2 alone starts from: ``lingualift.stage1_from``, or RUN/stage1/model."""
    return Path(cfg.lingualift.stage1_from or Path(cfg.output_dir) / "stage1" / "model")


def stage1_start(cfg) -> Path:
    """The stage-1 directory stage 2 starts from, checked before any model loads."""
    d = stage1_source(cfg)
    if not (d / "alignment.safetensors").is_file():
        raise PivotuneError(
            f"lingualift stage 2 starts from a trained stage-1 alignment layer, but {d} holds none "
            f"({d / 'alignment.safetensors'} does not exist). Run stage 1 first (lingualift.stages: [1, 2] or [1]), "
            "or set lingualift.stage1_from to the model/ directory of a finished stage 1.")
    read_bridge_meta(d)
    return d


def stage_data(cfg, samples: list[Sample] | None) -> StageData:
    """Stage 1's code-switched samples and stage 2's English ones."""
    from .. import METHODS

    roles = METHODS[cfg.method].roles
    samples = mixture_for_config(cfg, roles) if samples is None else [s for s in samples if s.role in roles]
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
    return StageData(stage1, english)


def build_bridge(cfg, lm=None, lm_tokenizer=None, encoder_tokenizer=None) -> LinguaLiftModel:
    """The bridge of ``cfg``: its encoder, a fresh alignment layer (seeded) and the LM (``lm``/``lm_tokenizer``:
    already loaded ones; otherwise loaded here, as the run loads them)."""
    from ...models.loading import load_model
    from ...train.precision import weights_dtype

    ll = cfg.lingualift
    trust = cfg.trust_remote_code
    encoder_tokenizer = encoder_tokenizer or load_tokenizer(ll.encoder_tokenizer or ll.encoder, trust_remote_code=trust)
    lm_tokenizer = lm_tokenizer or load_tokenizer(cfg.tokenizer or cfg.model, trust_remote_code=trust)
    lm = lm if lm is not None else load_model(cfg.model, weights_dtype(cfg), trust_remote_code=trust)
    sources = {"encoder": ll.encoder, "lm": cfg.model, "encoder_tokenizer": ll.encoder_tokenizer or ll.encoder,
               "lm_tokenizer": cfg.tokenizer or cfg.model}
    # the encoder never trains: its weights stay in the run's dtype
    return LinguaLiftModel.build(load_encoder(ll.encoder, cfg.train.dtype, trust_remote_code=trust), lm,
                                 projector=ll.projector, encoder_hidden_size=ll.encoder_hidden_size,
                                 bos_token_id=lm_tokenizer.bos_token_id, seed=cfg.seed,
                                 encoder_tokenizer=encoder_tokenizer, lm_tokenizer=lm_tokenizer, sources=sources)


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


class LinguaLiftRoad(Road):
    """Method lingualift: the bridge, stage 1 (the alignment layer) and stage 2 (the LM)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._encoder_tokenizer = None
        self._stage1_done: Path | None = None   # a complete stage-1 result found by the resume plan

    def inputs(self) -> list[str]:
        ll = self.cfg.lingualift
        paths = [ll.encoder, ll.encoder_tokenizer, *ll.lexicons.values()]
        if 1 not in ll.stages:   # stage 2 alone starts from a stage 1, by default RUN/stage1/model
            paths.append(str(stage1_source(self.cfg)))
        return [p for p in paths if p]

    def models(self) -> list[tuple[str, str, bool]]:
        ll = self.cfg.lingualift
        return [("lingualift.encoder", ll.encoder, False),
                ("lingualift.encoder_tokenizer", ll.encoder_tokenizer or ll.encoder, True)] if ll.encoder else []

    def checks(self, num_layers: int | None) -> list[str]:
        """The lexicons read, and stage 2 alone has a stage 1 to start from."""
        ll, problems = self.cfg.lingualift, []
        for lang, path in ll.lexicons.items():
            try:
                read_lexicon(path, lang)
            except PivotuneError as e:
                problems.append(f"lingualift.lexicons.{lang}: {e}")
        if 1 not in ll.stages:
            try:
                stage1_start(self.cfg)
            except PivotuneError as e:
                problems.append(str(e))
        return problems

    def training_data(self, samples: list[Sample] | None) -> StageData:
        if 1 not in self.cfg.lingualift.stages:
            stage1_start(self.cfg)   # fail before data or models load
        return stage_data(self.cfg, samples)

    def stages(self) -> list[Stage]:
        ll, train = self.cfg.lingualift, self.cfg.train
        stage1 = train.model_copy(update={
            "lr": ll.stage1_lr, "scheduler": ll.stage1_scheduler, "epochs": ll.stage1_epochs,
            "max_steps": ll.stage1_max_steps,
            "warmup_ratio": 0.0 if ll.stage1_scheduler == "constant" else train.warmup_ratio})
        return [s for k, s in ((1, Stage("stage1", "stage1", stage1, final=False)), (2, Stage("stage2", "stage2")))
                if k in ll.stages]

    def resume_plan(self, run_dir: Path, resume: bool | str) -> dict[str, Path]:
        plan = resume_plan(run_dir, self.cfg.lingualift.stages, resume)
        self._stage1_done = plan.stage1_done
        return {f"stage{k}": path for k, path in plan.checkpoints.items()}

    def units(self, stage: Stage, data: StageData, tokenizer) -> Units:
        cfg, ll = self.cfg, self.cfg.lingualift
        if self._encoder_tokenizer is None:
            self._encoder_tokenizer = load_tokenizer(ll.encoder_tokenizer or ll.encoder,
                                                     trust_remote_code=cfg.trust_remote_code)
        rows = data.stage1 if stage.name == "stage1" else data.english
        lang_ids = language_ids(cfg.languages)
        encoded = encode_bridge_all(rows, self._encoder_tokenizer, tokenizer, max_encoder_len=ll.max_encoder_len,
                                    max_response_len=cfg.max_seq_len, lang_ids=lang_ids)
        report = {"mixture": summarize(rows)}
        if stage.name == "stage1":
            switched = [s.meta for s in rows if "content_words" in s.meta]
            report.update(switch_ratio=ll.switch_ratio, switched_share=(
                sum(m["switched"] for m in switched) / max(1, sum(m["content_words"] for m in switched))),
                content_words_per_sample=statistics.fmean(m["content_words"] for m in switched) if switched else 0.0)
        return Units(encoded, BridgeCollator(self._encoder_tokenizer.pad_token_id, tokenizer.pad_token_id),
                     bridge_fingerprint(encoded), sample_describer(encoded, rows), report=report, lang_ids=lang_ids)

    def prepare_base(self, lm, tokenizer, run_dir: Path, save_checkpoints: bool) -> LinguaLiftModel:
        """The bridge around the loaded LM (stage 2 alone: with the saved stage 1's alignment layer); before any
        stage trains, room for the larger checkpoint (stage 2's full LM with Adam's moments, unless LoRA) and the
        final bridge."""
        cfg, ll = self.cfg, self.cfg.lingualift
        bridge = build_bridge(cfg, lm, tokenizer, self._encoder_tokenizer)
        if 1 not in ll.stages:
            load_stage1(bridge, stage1_start(cfg), ll.projector)
        bridge.set_trainable("lm" if 2 in ll.stages and not cfg.lora.enabled else "alignment")
        check_disk_space(run_dir, bridge, checkpoints=save_checkpoints)
        return bridge

    def finished_stage(self, stage: Stage, bridge: LinguaLiftModel, units: Units, args) -> dict | None:
        """Stage 1 whose result RUN/stage1/model holds: not retrained, its alignment layer loaded from there."""
        if stage.name != "stage1" or self._stage1_done is None:
            return None
        report = read_stage1(self._stage1_done, units.fingerprint, geometry(args))
        load_stage1(bridge, self._stage1_done, self.cfg.lingualift.projector)
        return report

    def trainable(self, stage: Stage, bridge: LinguaLiftModel) -> LinguaLiftModel:
        bridge.set_trainable(STAGE_PARTS[stage.name])
        if stage.name == "stage2" and self.cfg.lora.enabled:
            bridge.lm = apply_lora(bridge.lm, self.cfg.lora)
        return bridge

    def report(self) -> dict:
        return {"encoder": self.cfg.lingualift.encoder, "stages": list(self.cfg.lingualift.stages)}

    def objective(self, stage: Stage) -> LinguaLiftObjective:
        return LinguaLiftObjective()

    def after_stage(self, stage: Stage, bridge: LinguaLiftModel, units: Units, args, report: dict) -> None:
        """Stage 1: its result, RUN/stage1/model (the start of stage 2); stage 2: LoRA merged into the LM."""
        if stage.name == "stage1" and is_main_process():
            out = Path(args.output_dir)
            with write_failures_reported(out):
                save_stage1(bridge, out / "model", units.fingerprint, geometry(args), report)
        if stage.name == "stage2" and self.cfg.lora.enabled:
            bridge.lm = bridge.lm.merge_and_unload()
