"""Checkpoints and exact resume for LinguaLIFT's two stages (see :mod:`pivotune.train.lingualift`).

A stage's checkpoint (``RUN/stage1/checkpoint-N``, ``RUN/stage2/checkpoint-N``) is written atomically like every
run's (:mod:`pivotune.train.resume`) and holds the bridge parts the stage changes: stage 1 the alignment layer,
stage 2 the alignment layer and the LM (full weights, or its LoRA adapter); the other parts are references to
their sources. :meth:`pivotune.models.bridge.LinguaLiftModel.load_parts` restores exactly those parts, the Trainer the
optimizer, scheduler, RNG states and data position.

``RUN/stage1/model`` is stage 1's result and is written atomically with ``pivotune_stage1.json`` (the stage's
data fingerprint, batch geometry and report); a resumed run skips stage 1 when it is there and matches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PivotuneError
from ..io import atomic_path, write_json_atomic
from ..models.bridge import LinguaLiftModel
from .resume import RUN_INFO, check_same_run, check_unfinished, data_fingerprint, find_resume_checkpoint

STAGE1_INFO = "pivotune_stage1.json"


@dataclass
class ResumePlan:
    """Where each stage starts: ``stage1_done`` (its result, so stage 1 is skipped) and per-stage checkpoints."""

    stage1_done: Path | None = None
    checkpoints: dict[int, Path] = field(default_factory=dict)


def stage1_complete(d: Path) -> bool:
    return all((d / f).is_file() for f in ("bridge.json", "alignment.safetensors", STAGE1_INFO))


def resume_plan(run_dir: Path, stages, resume: bool | str | None) -> ResumePlan:
    """What ``resume`` (False, True/"latest", "auto", or a checkpoint path) means for a two-stage run."""
    if not resume:
        return ResumePlan()
    s1, s2 = run_dir / "stage1", run_dir / "stage2"
    done = s1 / "model" if 1 in stages and stage1_complete(s1 / "model") else None
    if resume is not True and resume not in ("latest", "auto"):
        path = find_resume_checkpoint(Path(resume).parent, resume)
        stage = {s1.resolve(): 1, s2.resolve(): 2}.get(path.parent.resolve())
        if stage not in stages:
            raise PivotuneError(f"--resume {path}: not a checkpoint of this run's configured stages {list(stages)} "
                                f"(those are {s1}/checkpoint-N and {s2}/checkpoint-N).")
        if stage == 2 and 1 in stages and done is None:
            raise PivotuneError(f"--resume {path} continues stage 2, but stage 1's result {s1 / 'model'} is missing "
                                f"or incomplete: resume stage 1 first (--resume with a checkpoint in {s1}).")
        if stage == 2:
            check_unfinished(path, run_dir)   # the run's final outputs come from stage 2's last step
        return ResumePlan(done if stage == 2 else None, {stage: path})
    plan = ResumePlan(done)
    if 1 in stages and done is None:
        stage, latest = 1, find_resume_checkpoint(s1, "auto")
    else:
        stage, latest = 2, find_resume_checkpoint(s2, "auto")
    if latest is not None:
        plan.checkpoints[stage] = latest
        if stage == 2:
            check_unfinished(latest, run_dir)
    if done is not None and 2 not in stages and (run_dir / RUN_INFO).is_file():
        raise PivotuneError(f"Nothing to resume: stage 1 finished ({done}), lingualift.stages has no stage 2 and "
                            f"the run's {RUN_INFO} is written.")
    if resume != "auto" and done is None and not plan.checkpoints:
        raise PivotuneError(f"--resume: {run_dir} holds nothing to resume (no complete stage-1 result in "
                            f"{s1 / 'model'}, no complete checkpoint in {s1} or {s2}); train without --resume to "
                            "start the run.")
    return plan


def bridge_fingerprint(encoded) -> str:
    """sha256 over a stage's encoded rows in training order (prompt ids, response ids, role, language, weight)."""
    return data_fingerprint(encoded, lambda e: [e.enc_ids, e.response_ids, e.role, e.lang, e.weight])


#: what may have changed when a stage's data fingerprint differs
STAGE_DATA_CHANGED = ("the stage's training data differ from the data it trained on (data files, their order, "
                      "lexicons, switch_ratio, max lengths, tokenizers or seed changed)")


def save_stage1(bridge: LinguaLiftModel, d: Path, fingerprint: str, geo: dict, report: dict) -> None:
    """Stage 1's result (alignment layer + references) and what a resumed run checks it against, in one rename."""
    with atomic_path(d) as tmp:
        bridge.save_pretrained(tmp, parts=("alignment",), atomic=False)
        write_json_atomic(tmp / STAGE1_INFO, json.loads(json.dumps(
            {"data_fingerprint": fingerprint, "geometry": geo, "report": report}, default=str)))


def read_stage1(d: Path, fingerprint: str, geo: dict) -> dict:
    """The report of a finished stage 1 in ``d``, after checking it trained on this run's data and geometry."""
    info = json.loads((d / STAGE1_INFO).read_text(encoding="utf-8"))
    check_same_run(info, fingerprint, geo, d, STAGE_DATA_CHANGED)
    return {**info.get("report", {}), "resumed": f"stage 1 not retrained: {d} is complete"}
