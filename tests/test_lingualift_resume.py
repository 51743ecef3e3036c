"""LinguaLIFT's two stages resume exactly and stop clearly: a run interrupted in either stage and resumed with
resume="auto" ends with the weights of an uninterrupted run, bitwise, having seen the same samples in the same
order; a NaN loss names the step and the samples' sources; too little disk space stops it before training.

The data: 8 English samples (8 code-switched ones in stage 1), 2 per micro-batch, 2 micro-batches per step → 2
steps per epoch; 5 steps per stage with a checkpoint every 3, so a crash in step 5 resumes from checkpoint-3, in
the middle of epoch 2, and crosses into epoch 3.
"""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from lingualift_helpers import (
    english_samples,
    run_raw,
    save_tiny_encoder,
    write_tiny_lexicon,
)

from pivotune.config import load_config
from pivotune.errors import PivotuneError
from pivotune.train.guards import NonFiniteLossError
from pivotune.train.resume import complete_checkpoints
from pivotune.train.run import train
from pivotune.train.trainer import PivotuneTrainer

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 5
DATA = english_samples(8)


@pytest.fixture(scope="module")
def parts(tmp_path_factory, tokenizer, tiny_model_dir):
    d = tmp_path_factory.mktemp("lingualift-resume-parts")
    return {"lm": tiny_model_dir, "encoder": save_tiny_encoder(tokenizer, d / "encoder"),
            "lexicon": write_tiny_lexicon(d / "en-xx.txt")}


def _cfg(parts, out, lora: bool = False):
    raw = run_raw(parts["lm"], parts["encoder"], parts["lexicon"], out, steps=STEPS, stage1_scheduler="linear")
    raw["train"].update(per_device_batch_size=2, grad_accum=2, save_steps=3, warmup_ratio=0.2, scheduler="linear")
    raw["lora"] = {"enabled": lora, "r": 4, "dropout": 0.1}   # dropout: a lost RNG state would show
    return load_config(base=raw)


def _train(parts, out, *, lora=False, crash=None, nan=None, resume=False, samples=DATA):
    """Train, logging (stage, step, sample_index) per micro-batch; raise in the second micro-batch of step
    ``crash`` = (stage, step), or make step ``nan``'s losses NaN. Returns (trainer or the error, the log)."""
    seen: list[tuple[str, int, list[int]]] = []
    compute_loss = PivotuneTrainer.compute_loss

    def logged(self, model, inputs, *a, **k):
        at = (Path(self.args.output_dir).name, self.state.global_step + 1)
        seen.append((*at, inputs["sample_index"].tolist()))
        if at == crash and sum(s[:2] == at for s in seen) == 2:
            raise RuntimeError("simulated crash")
        if at == nan:
            inputs = {**inputs, "weights": inputs["weights"] * float("nan")}
        return compute_loss(self, model, inputs, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PivotuneTrainer, "compute_loss", logged)
        try:
            return train(_cfg(parts, out, lora), samples, resume=resume), seen
        except (RuntimeError, PivotuneError) as e:
            return e, seen


def _order(*logs) -> dict[tuple[str, int], list]:
    """(stage, step) → its micro-batches' sample indices, as last seen (a step redone after a resume replaces)."""
    per_step: dict[tuple[str, int], list] = {}
    for log in logs:
        for stage, step, idx in log:
            if len(per_step.get((stage, step), [])) == 2:
                per_step[(stage, step)] = []
            per_step.setdefault((stage, step), []).append(idx)
    return per_step


def _weights(run: Path) -> dict[str, torch.Tensor]:
    """Both stages' results: stage 1's alignment layer, and the final bridge's alignment layer and LM."""
    from safetensors.torch import load_file

    return {**{f"stage1.{k}": v for k, v in load_file(str(run / "stage1/model/alignment.safetensors")).items()},
            **{f"alignment.{k}": v for k, v in load_file(str(run / "model/alignment.safetensors")).items()},
            **{f"lm.{k}": v for k, v in load_file(str(run / "model/lm/model.safetensors")).items()}}


def _assert_same_weights(want: Path, got: Path) -> None:
    a, b = _weights(want), _weights(got)
    assert a.keys() == b.keys() and any(k.startswith("lm.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k   # bitwise


@pytest.fixture(scope="module")
def reference(parts, tmp_path_factory):
    """``reference(lora)``: an uninterrupted run (stage 2 fully fine-tuned or LoRA), built when first asked for:
    its run directory and micro-batch log."""
    out = {}

    def get(lora: bool = False):
        if lora not in out:
            d = tmp_path_factory.mktemp(f"lingualift-ref-{lora}")
            trainer, log = _train(parts, d, lora=lora)
            assert trainer.state.global_step == STEPS
            out[lora] = (d, log)
        return out[lora]
    return get


def test_uninterrupted_reference_sees_every_sample_once_per_epoch(reference):
    _, log = reference(False)
    order = _order(log)
    assert sorted(order) == [(s, k) for s in ("stage1", "stage2") for k in range(1, STEPS + 1)]
    for stage in ("stage1", "stage2"):
        for epoch in range(2):   # steps 1-2, 3-4: each a permutation of the 8 rows
            rows = [i for k in (2 * epoch + 1, 2 * epoch + 2) for mb in order[(stage, k)] for i in mb]
            assert sorted(rows) == list(range(8))
        assert order[(stage, 1)] != order[(stage, 3)]   # reshuffled per epoch


def test_stage1_interrupted_then_resumed_equals_uninterrupted(parts, reference, tmp_path):
    ref_dir, ref_log = reference(False)
    run = tmp_path / "run"
    err, crashed = _train(parts, run, crash=("stage1", 5))
    assert isinstance(err, RuntimeError) and "simulated crash" in str(err)
    assert [c.name for c in complete_checkpoints(run / "stage1")] == ["checkpoint-3"]
    assert not (run / "stage1" / "model").exists() and not (run / "model").exists()
    (run / "stage1" / ".partial-checkpoint-4").mkdir()   # what a kill during a save leaves
    trainer, resumed = _train(parts, run, resume="auto")
    assert not (run / "stage1" / ".partial-checkpoint-4").exists()
    assert [(s, k) for s, k, _ in resumed if s == "stage1"] == [("stage1", 4)] * 2 + [("stage1", 5)] * 2
    _assert_same_weights(ref_dir, run)
    assert _order(crashed, resumed) == _order(ref_log)
    meta = json.loads((run / "run.json").read_text())
    assert meta["stage1"]["resumed_from"] == "checkpoint-3" and meta["stage1"]["steps"] == STEPS
    assert meta["stage2"]["resumed_from"] is None and trainer.state.global_step == STEPS


@pytest.mark.parametrize("lora, crash_step", [
    pytest.param(False, 5, id="full-from-checkpoint-3"), pytest.param(True, 5, id="lora-from-checkpoint-3"),
    # stage 2 restarts: its LoRA initialisation must not depend on whether stage 1 ran in this process
    pytest.param(True, 2, id="lora-before-any-checkpoint", marks=pytest.mark.slow)])
def test_stage2_interrupted_then_resumed_skips_stage1_and_equals_uninterrupted(parts, reference, tmp_path, lora,
                                                                                crash_step):
    ref_dir, ref_log = reference(lora)
    run = tmp_path / "run"
    err, crashed = _train(parts, run, lora=lora, crash=("stage2", crash_step))
    assert isinstance(err, RuntimeError)
    stage1_model = (run / "stage1" / "model" / "alignment.safetensors").read_bytes()
    other, _ = _train(parts, run, lora=lora, resume="auto", samples=english_samples(8, seed=1))
    assert isinstance(other, PivotuneError) and "stage's training data differ" in str(other)   # no silent mix
    _, resumed = _train(parts, run, lora=lora, resume="auto")
    assert not any(s == "stage1" for s, _, _ in resumed)   # stage 1 not retrained
    assert (run / "stage1" / "model" / "alignment.safetensors").read_bytes() == stage1_model
    first = 4 if crash_step == 5 else 1
    assert [k for _, k, _ in resumed] == [k for k in range(first, STEPS + 1) for _ in range(2)]
    _assert_same_weights(ref_dir, run)
    assert _order(crashed, resumed) == _order(ref_log)
    meta = json.loads((run / "run.json").read_text())
    assert "not retrained" in meta["stage1"]["resumed"] and meta["stage1"]["steps"] == STEPS
    assert meta["stage2"]["resumed_from"] == ("checkpoint-3" if crash_step == 5 else None)


def test_killed_after_a_stages_last_checkpoint_finishes_from_it(parts, reference, tmp_path):
    """Stopped after the last checkpoint but before the stage's result was written: nothing is retrained."""
    ref_dir, _ = reference(False)
    run = tmp_path / "run"
    shutil.copytree(ref_dir, run)
    with pytest.raises(PivotuneError, match="Nothing to resume: checkpoint-5 is the last step of its run"):
        train(_cfg(parts, run), DATA, resume=True)
    shutil.rmtree(run / "model")
    _, log = _train(parts, run, resume=True)
    assert log == []
    _assert_same_weights(ref_dir, run)
    assert json.loads((run / "run.json").read_text())["stage2"]["resumed_from"] == "checkpoint-5"
    shutil.rmtree(run / "model")
    shutil.rmtree(run / "stage1" / "model")   # stage 1 finishes from its checkpoint-5; stage 2 then reruns
    _, log = _train(parts, run, resume=True)
    assert {s for s, _, _ in log} == {"stage2"}
    _assert_same_weights(ref_dir, run)


def test_killed_before_run_json_is_finished_by_resume(parts, reference, tmp_path):
    """Killed after the bridge was written but before config.yaml and run.json: --resume writes them (and the
    bridge again, from stage 2's last checkpoint) without training, and removes what the kill left half-written."""
    ref_dir, _ = reference(False)
    run = tmp_path / "run"
    shutil.copytree(ref_dir, run)
    for name in ("config.yaml", "run.json"):
        (run / name).unlink()
    (run / ".run.json.k8t0oixs.tmp").mkdir()   # what a kill inside an atomic write leaves
    trainer, log = _train(parts, run, resume=True)
    assert log == [] and not isinstance(trainer, Exception), trainer
    _assert_same_weights(ref_dir, run)
    meta = json.loads((run / "run.json").read_text())
    assert meta["stage2"]["resumed_from"] == "checkpoint-5" and (run / "config.yaml").is_file()
    assert meta["finished_from"] == json.loads((ref_dir / "run.json").read_text())["finished_from"]
    assert not list(run.glob(".run.json.*"))


def test_resume_refusals(parts, tmp_path):
    with pytest.raises(PivotuneError, match="holds nothing to resume"):
        train(_cfg(parts, tmp_path / "empty"), DATA, resume=True)
    with pytest.raises(PivotuneError, match="not a checkpoint of this run's configured stages"):
        elsewhere = tmp_path / "elsewhere" / "checkpoint-1"
        elsewhere.mkdir(parents=True)
        for f in ("trainer_state.json", "pivotune_resume.json"):
            (elsewhere / f).write_text("{}")
        train(_cfg(parts, tmp_path / "run"), DATA, resume=str(elsewhere))


def test_nan_loss_in_stage2_names_step_and_sources_and_keeps_the_checkpoint(parts, tmp_path):
    run = tmp_path / "run"
    err, log = _train(parts, run, nan=("stage2", 4))
    assert isinstance(err, NonFiniteLossError)
    msg = str(err)
    assert "optimizer step 4" in msg and "last complete checkpoint is kept" in msg
    rows = [i for s, k, idx in log if (s, k) == ("stage2", 4) for i in idx]
    assert len(rows) == 4
    for i in rows:   # the encoded row → its sample: source, file position, role
        assert f"source '{DATA[i].source}' ({DATA[i].origin}; role en" in msg
    assert [c.name for c in complete_checkpoints(run / "stage2")] == ["checkpoint-3"]
    assert not (run / "model").exists()


def test_too_little_disk_space_fails_before_training(parts, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("pivotune.train.guards.shutil.disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    started = []
    monkeypatch.setattr(PivotuneTrainer, "train", lambda self, *a, **k: started.append(1))
    with pytest.raises(PivotuneError, match=r"Not enough disk space for output_dir .*0.00 GiB free"):
        train(_cfg(parts, tmp_path / "run"), DATA)
    assert not started and not (tmp_path / "run" / "stage1").exists()
