"""Exact resume and atomic checkpoints: a run interrupted anywhere and resumed ends with the weights of an
uninterrupted run, bitwise, and sees the same samples in the same order, also past the first epoch.

The data: 12 samples, 2 per micro-batch, 2 micro-batches per step → 3 optimizer steps per epoch, 3 epochs,
a checkpoint every 2 steps, a linear schedule with warm-up (so a lost scheduler state would show).

The kill test runs training in subprocesses (this file is the worker script) that SIGKILL themselves at
chosen points: in the middle of an optimizer step, while a checkpoint's files are being written, after
they are written but before the checkpoint is published, and halfway through writing the final model's
weights (after the last checkpoint). Each is resumed with ``resume="auto"``; the last is finished from the
last checkpoint without training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pivotune.config import load_config
from pivotune.data.records import Sample
from pivotune.errors import PivotuneError

HERE = Path(__file__).resolve()
ROLES = ["en", "tgt", "mt", "en", "tgt", "en", "mt", "tgt", "en", "tgt", "mt", "en"]
DATA = [Sample(instruction=f"Say {i}.", output=" ".join(["the cat", "a dog", "one bird"][i % 3:] * (i % 4 + 1)),
               role=r, lang="en" if r == "en" else "el", weight=1.0 + 0.25 * (i % 3), source=f"src_{r}",
               origin=f"{r}.jsonl, line {i + 1}") for i, r in enumerate(ROLES)]
STEPS_PER_EPOCH, EPOCHS = 3, 3


def _cfg(model_dir, out, method="prom", **over):
    base = {"model": str(model_dir), "method": method, "languages": ["el"], "output_dir": str(out),
            "max_seq_len": 128, "seed": 7,
            "prom": {"pivot_layer": 1, "lambda_en": 0.5, "chunk_size": 16, "lambda_per_language": {"el": 0.5}},
            "train": {"lr": 3e-3, "epochs": EPOCHS, "per_device_batch_size": 2, "grad_accum": 2, "save_steps": 2,
                      "save_total_limit": 3, "warmup_ratio": 0.2, "scheduler": "linear", "logging_steps": 1,
                      "progress_bar": False}}
    return load_config(base=base, overrides=[f"{k}={v}" for k, v in over.items()])


# ------------------------------------------------------------------------------------------ the worker

def _worker(model_dir: str, run_dir: str, method: str, kill: str, order_log: str) -> None:
    """Train with resume="auto"; log each micro-batch's samples; SIGKILL itself at ``kill``."""
    import pivotune.train.resume as resume_mod
    from pivotune.train.run import train
    from pivotune.train.trainer import PivotuneTrainer

    torch.set_num_threads(1)
    where, _, at = kill.partition(":")
    at = int(at or 0)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    compute_loss = PivotuneTrainer.compute_loss
    micro = {"n": 0}

    def logged_compute_loss(self, model, inputs, *a, **k):
        step = self.state.global_step + 1
        with open(order_log, "a") as f:
            f.write(json.dumps([step, inputs["sample_index"].tolist()]) + "\n")
        micro["n"] += 1
        if where == "step" and step == at and micro["n"] % 2 == 0:   # the step's second micro-batch
            die()
        return compute_loss(self, model, inputs, *a, **k)

    PivotuneTrainer.compute_loss = logged_compute_loss
    if where == "save-write":   # after the model and optimizer files, before the RNG and trainer state
        from transformers import Trainer

        save_rng = Trainer._save_rng_state
        Trainer._save_rng_state = lambda self, d: die() if self.state.global_step == at else save_rng(self, d)
    if where == "save-publish":   # every file written, not yet renamed into place
        publish = resume_mod.publish
        resume_mod.publish = lambda staged, final: die() if final.name == f"checkpoint-{at}" else publish(staged,
                                                                                                        final)
    if where == "final-write":   # half of RUN/model's weights file on disk (the atomic write's temporary), then killed
        import transformers.modeling_utils as modeling
        from safetensors.torch import save as serialize

        save_file = modeling.safe_save_file

        def half_then_die(tensors, filename, metadata=None):
            if f"{os.sep}.model." not in str(filename):   # a checkpoint's weights: written whole
                return save_file(tensors, filename, metadata=metadata)
            data = serialize(tensors, metadata=metadata)
            with open(filename, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
            die()

        modeling.safe_save_file = half_then_die
    train(_cfg(model_dir, run_dir, method), DATA, resume="auto")


def _run_worker(tmp_path, model_dir, run_dir, kill: str, method="prom", timeout=300) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parents[1] / "src"), str(HERE.parent),
                                          os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / f"order-{run_dir.name}.jsonl"
    proc = subprocess.run([sys.executable, str(HERE), str(model_dir), str(run_dir), method, kill, str(log)],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if kill == "none":
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.returncode


def _order(log: Path) -> dict[int, list]:
    """step → its micro-batches' sample indices, as last seen (a killed step is redone on resume)."""
    per_step: dict[int, list] = {}
    for line in log.read_text().splitlines():
        step, idx = json.loads(line)
        per_step.setdefault(step, [])
        if len(per_step[step]) == 2:   # a repeat of this step after a resume
            per_step[step] = []
        per_step[step].append(idx)
    return per_step


def _assert_checkpoints_load(run_dir: Path) -> list[str]:
    from safetensors.torch import load_file
    from transformers.trainer_pt_utils import safe_globals

    from pivotune.train.resume import complete_checkpoints

    names = []
    for ckpt in complete_checkpoints(run_dir):
        load_file(str(ckpt / "model.safetensors"))
        load_file(str(ckpt / "pivot_head.safetensors"))
        for f in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
            with safe_globals():   # the RNG state holds numpy's, allowed as the Trainer allows it
                torch.load(ckpt / f, weights_only=True)
        json.loads((ckpt / "trainer_state.json").read_text())
        names.append(ckpt.name)
    return names


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {**load_file(str(run_dir / "model" / "model.safetensors")),
            **{f"head.{k}": v for k, v in load_file(str(run_dir / "pivot_head.safetensors")).items()}}


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_equals_uninterrupted_run(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    ref, run = tmp_path / "ref", tmp_path / "run"
    _run_worker(tmp_path, tiny_model_dir, ref, "none")
    # killed in step 5 (epoch 2) → resumes from checkpoint-4, inside epoch 2
    assert _run_worker(tmp_path, tiny_model_dir, run, "step:5") == -signal.SIGKILL
    assert _assert_checkpoints_load(run) == ["checkpoint-2", "checkpoint-4"]
    # killed while checkpoint-6's files are written: only a .partial directory, never a checkpoint-6
    assert _run_worker(tmp_path, tiny_model_dir, run, "save-write:6") == -signal.SIGKILL
    assert (run / ".partial-checkpoint-6").is_dir() and not (run / "checkpoint-6").exists()
    assert _assert_checkpoints_load(run) == ["checkpoint-2", "checkpoint-4"]
    # killed after checkpoint-8 is written, before it is published → resumes from checkpoint-6 (epoch end)
    assert _run_worker(tmp_path, tiny_model_dir, run, "save-publish:8") == -signal.SIGKILL
    assert _assert_checkpoints_load(run) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    # killed halfway through the final model's weights, after checkpoint-9 (the last step) was published
    assert _run_worker(tmp_path, tiny_model_dir, run, "final-write") == -signal.SIGKILL
    assert not (run / "model").exists() and not (run / "run.json").exists() and list(run.glob(".model.*.tmp"))
    assert _assert_checkpoints_load(run) == ["checkpoint-6", "checkpoint-8", "checkpoint-9"]
    # the last checkpoint exports as the final model (its LM; the pivot head stays out)
    from pivotune.cli import main

    assert main(["export", str(run / "checkpoint-9"), str(tmp_path / "exported")]) == 0
    exported = load_file(str(tmp_path / "exported" / "model.safetensors"))
    assert all(torch.equal(v, _weights(ref)[k]) for k, v in exported.items()) and not list(
        (tmp_path / "exported").glob("pivot_head*"))
    # resuming finishes the run from checkpoint-9: nothing is trained, the half-written model is removed
    _run_worker(tmp_path, tiny_model_dir, run, "none")
    assert not list(run.glob(".partial-*")) and not list(run.glob(".model.*"))
    assert _assert_checkpoints_load(run) == ["checkpoint-6", "checkpoint-8", "checkpoint-9"]

    want, got = _weights(ref), _weights(run)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k   # bitwise
    # the same samples in the same order at every step, across the epoch boundaries
    ref_order, run_order = _order(tmp_path / "order-ref.jsonl"), _order(tmp_path / "order-run.jsonl")
    assert sorted(ref_order) == list(range(1, STEPS_PER_EPOCH * EPOCHS + 1)) == sorted(run_order)
    assert ref_order == run_order
    assert json.loads((run / "run.json").read_text())["resumed_from"] == "checkpoint-9"


if __name__ == "__main__":   # worker entry point
    _worker(*sys.argv[1:])


# ------------------------------------------------------------------------------------------ in-process

def _train(model_dir, out, method="xllama", resume=False, **over):
    from pivotune.train.run import train

    return train(_cfg(model_dir, out, method, **over), DATA, resume=resume)


def _params(trainer) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in trainer.model.named_parameters()}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_crash_in_epoch_2_then_resume_equals_uninterrupted_run(dtype, tiny_model_dir, tmp_path, monkeypatch):
    """xllama (plain model) in one process: a crash in step 5, resumed from checkpoint-4, past epoch 1; in bf16 the
    checkpoints hold the float32 master weights, so the resumed run is bitwise the uninterrupted one too."""
    from pivotune.train.trainer import PivotuneTrainer

    precision = {"train.dtype": dtype}
    ref = _params(_train(tiny_model_dir, tmp_path / "ref", **precision))
    assert {p.dtype for p in ref.values()} == {torch.float32}
    compute_loss = PivotuneTrainer.compute_loss

    def crash_in_step_5(self, *a, **k):
        if self.state.global_step == 4:
            raise RuntimeError("simulated crash")
        return compute_loss(self, *a, **k)

    monkeypatch.setattr(PivotuneTrainer, "compute_loss", crash_in_step_5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(tiny_model_dir, tmp_path / "run", **precision)
    monkeypatch.setattr(PivotuneTrainer, "compute_loss", compute_loss)
    assert not (tmp_path / "run" / "model").exists()
    resumed = _train(tiny_model_dir, tmp_path / "run", resume=True, **precision)
    got = _params(resumed)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert resumed.state.global_step == STEPS_PER_EPOCH * EPOCHS
    assert json.loads((tmp_path / "run" / "run.json").read_text())["resumed_from"] == "checkpoint-4"


def test_resume_refuses_what_would_not_be_exact(tiny_model_dir, tmp_path, one_thread):
    from pivotune.train.resume import find_resume_checkpoint

    with pytest.raises(PivotuneError, match="holds no complete checkpoint"):
        find_resume_checkpoint(tmp_path, True)
    assert find_resume_checkpoint(tmp_path, "auto") is None
    with pytest.raises(PivotuneError, match="not a complete pivotune checkpoint"):
        find_resume_checkpoint(tmp_path, str(tmp_path))
    _train(tiny_model_dir, tmp_path / "run", **{"train.epochs": 1})
    (tmp_path / "run" / ".partial-checkpoint-9").mkdir()   # what a kill during a save leaves
    with pytest.raises(PivotuneError, match="batch geometry changed.*grad_accum: checkpoint 2, now 1"):
        _train(tiny_model_dir, tmp_path / "run", resume=str(tmp_path / "run" / "checkpoint-2"),
               **{"train.epochs": 1, "train.grad_accum": 1})
    assert not (tmp_path / "run" / ".partial-checkpoint-9").exists()   # removed when the next run started
    with pytest.raises(PivotuneError, match="training data differ"):
        _train(tiny_model_dir, tmp_path / "run", resume=str(tmp_path / "run" / "checkpoint-2"),
               **{"train.epochs": 1, "max_seq_len": 100})
    with pytest.raises(PivotuneError, match="Nothing to resume: checkpoint-3 is the last step"):
        _train(tiny_model_dir, tmp_path / "run", resume=True, **{"train.epochs": 1})


def test_cli_resume(tiny_model_dir, tmp_path, capsys, one_thread):
    """`pivotune train CONFIG --resume` continues a run; with nothing to resume it exits 2 with one line."""
    from test_cli import _write_config

    from pivotune.cli import main

    cfg = _write_config(tmp_path, tiny_model_dir, train={
        "lr": 1e-3, "max_steps": 4, "save_steps": 2, "per_device_batch_size": 2, "grad_accum": 1,
        "warmup_ratio": 0.0, "logging_steps": 1, "progress_bar": False})
    assert main(["train", cfg, "--resume"]) == 2
    assert "holds no complete checkpoint" in capsys.readouterr().err
    assert main(["train", cfg, "--resume", "auto"]) == 0   # nothing to resume: a fresh start
    assert json.loads((tmp_path / "run" / "run.json").read_text())["steps"] == 4
    # checkpoint-4 is the last step: resuming says so (the Trainer would otherwise train a fifth step)
    assert main(["train", cfg, "--resume"]) == 2
    assert "Nothing to resume: checkpoint-4 is the last step of its run (4 of 4)" in capsys.readouterr().err
    assert main(["train", cfg, "--resume", str(tmp_path / "run" / "checkpoint-2"), "--set",
                 "train.max_steps=4"]) == 0
    out = json.loads((tmp_path / "run" / "run.json").read_text())
    assert out["resumed_from"] == "checkpoint-2" and out["steps"] == 4
