"""Guards: a non-finite loss stops the run before it reaches the weights, naming the step and the batch's
sources; an unusable output directory (no space, not writable) stops it before training; a write failure
mid-run says which complete checkpoint survives."""

from __future__ import annotations

import errno
import json
import os
from collections import namedtuple

import pytest
import torch
from test_resume import DATA, _cfg

from pivotune.data.records import Sample
from pivotune.errors import PivotuneError
from pivotune.train.guards import NonFiniteLossError, checkpoint_bytes
from pivotune.train.resume import complete_checkpoints
from pivotune.train.run import train
from pivotune.train.trainer import PivotuneTrainer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_nan_loss_stops_before_the_update_and_names_step_and_sources(tiny_model_dir, tmp_path, monkeypatch):
    compute_loss = PivotuneTrainer.compute_loss
    seen: dict[str, list] = {}

    def nan_in_step_5(self, model, inputs, *a, **k):
        if self.state.global_step == 4:   # step 5: its rows' weights turn NaN
            seen.setdefault("idx", []).extend(inputs["sample_index"].tolist())
            inputs = {**inputs, "weights": inputs["weights"] * float("nan")}
        return compute_loss(self, model, inputs, *a, **k)

    monkeypatch.setattr(PivotuneTrainer, "compute_loss", nan_in_step_5)
    with pytest.raises(NonFiniteLossError) as err:
        train(_cfg(tiny_model_dir, tmp_path / "run", "xllama"), DATA)
    msg = str(err.value)
    assert "optimizer step 5" in msg and "last complete checkpoint is kept" in msg
    # every row of the step's micro-batches is named by its source and file line (xllama keeps all of DATA)
    assert len(seen["idx"]) == 4
    for i in seen["idx"]:
        assert f"source '{DATA[i].source}' ({DATA[i].origin}; role {DATA[i].role}" in msg
    assert [c.name for c in complete_checkpoints(tmp_path / "run")] == ["checkpoint-2", "checkpoint-4"]
    assert not (tmp_path / "run" / "model").exists()


def test_nan_weight_row_is_named(tiny_model_dir, tmp_path):
    bad = [*DATA[:3], Sample(instruction="Say x.", output="the cat", role="tgt", lang="el", source="th_alpaca",
                             origin="th.jsonl, line 42", weight=float("nan"))]
    with pytest.raises(NonFiniteLossError, match=r"step 1 .*source 'th_alpaca' \(th.jsonl, line 42; role tgt"):
        train(_cfg(tiny_model_dir, tmp_path / "run", "xllama", **{"train.per_device_batch_size": 4,
                                                                    "train.grad_accum": 1}), bad)


def test_too_little_disk_space_fails_before_training(tiny_model_dir, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("pivotune.train.guards.shutil.disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    started = []
    monkeypatch.setattr(PivotuneTrainer, "train", lambda self, *a, **k: started.append(1))
    with pytest.raises(PivotuneError, match=r"Not enough disk space for output_dir .*0.00 GiB free"):
        train(_cfg(tiny_model_dir, tmp_path / "run", "xllama"), DATA)
    assert not started


def test_checkpoint_size_estimate_counts_adam_moments():
    m = torch.nn.Linear(10, 10)                    # 110 float32 parameters
    assert checkpoint_bytes(m, with_optimizer=False) == 440
    assert checkpoint_bytes(m) == 440 * 3


def test_unwritable_output_dir_fails_before_training(tiny_model_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PivotuneError, match="Cannot write to output_dir"):
        train(_cfg(tiny_model_dir, blocker / "run", "xllama"), DATA)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_read_only_output_dir_fails_before_training(tiny_model_dir, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(PivotuneError, match="Cannot write to output_dir"):
        train(_cfg(tiny_model_dir, ro, "xllama"), DATA)


def test_disk_full_while_saving_keeps_the_last_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import Trainer

    save_rng = Trainer._save_rng_state

    def full_at_4(self, d):
        if self.state.global_step == 4:
            raise OSError(errno.ENOSPC, "No space left on device", d)
        return save_rng(self, d)

    monkeypatch.setattr(Trainer, "_save_rng_state", full_at_4)
    with pytest.raises(PivotuneError, match="No space left on device.*checkpoint-2, is intact"):
        train(_cfg(tiny_model_dir, tmp_path / "run", "xllama"), DATA)
    assert [c.name for c in complete_checkpoints(tmp_path / "run")] == ["checkpoint-2"]


# what torch.save raised here when the disk filled up part-way through a file (its C++ writer names no errno)
TORCH_DISK_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"


def _cli_config(tmp_path, model_dir, max_steps):
    from test_cli import _write_config

    return _write_config(tmp_path, model_dir, train={
        "lr": 1e-3, "max_steps": max_steps, "save_steps": 2, "per_device_batch_size": 2, "grad_accum": 1,
        "warmup_ratio": 0.0, "logging_steps": 1, "progress_bar": False})


def test_torch_save_failing_part_way_is_reported_and_leaves_no_partial_checkpoint(tiny_model_dir, tmp_path,
                                                                                  monkeypatch, capsys):
    """torch's writer failing mid-file (a full disk) stops the run with the guard's message, exit 2 and no
    traceback, and removes the half-written checkpoint; --resume then continues from the one before."""
    from pivotune.cli import main

    real_save = torch.save

    def full_at_checkpoint_4(obj, f, *a, **k):
        if "checkpoint-4" in str(f):
            with open(f, "wb") as out:
                out.write(b"PK\x03\x04 part of a file")
            raise RuntimeError(TORCH_DISK_FULL)
        return real_save(obj, f, *a, **k)

    cfg = _cli_config(tmp_path, tiny_model_dir, max_steps=6)
    monkeypatch.setattr(torch, "save", full_at_checkpoint_4)
    assert main(["train", cfg]) == 2
    err = capsys.readouterr().err
    assert "error: Training stopped: writing to output_dir" in err and "Traceback" not in err
    assert "disk is full" in err and "checkpoint-2, is intact" in err and "--resume" in err
    run = tmp_path / "run"
    assert not list(run.glob(".partial-*")) and [c.name for c in complete_checkpoints(run)] == ["checkpoint-2"]
    monkeypatch.setattr(torch, "save", real_save)
    assert main(["train", cfg, "--resume"]) == 0
    assert json.loads((run / "run.json").read_text())["resumed_from"] == "checkpoint-2"


def test_disk_full_while_writing_the_final_model_is_reported_and_resume_finishes(tiny_model_dir, tmp_path,
                                                                                monkeypatch, capsys):
    """safetensors failing with ENOSPC on the final model: the guard's message (the last checkpoint is intact),
    no half-written model left; --resume writes the final model from the last checkpoint."""
    import transformers.modeling_utils as modeling
    from safetensors import SafetensorError

    from pivotune.cli import main

    save_file = modeling.safe_save_file

    def full_on_the_final_model(tensors, filename, metadata=None):
        if f"{os.sep}.model." in str(filename):   # RUN/model's temporary, not a checkpoint
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return save_file(tensors, filename, metadata=metadata)

    cfg = _cli_config(tmp_path, tiny_model_dir, max_steps=3)
    monkeypatch.setattr(modeling, "safe_save_file", full_on_the_final_model)
    assert main(["train", cfg]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "checkpoint-3, is intact" in err and "Traceback" not in err
    run = tmp_path / "run"
    assert not (run / "model").exists() and not list(run.glob(".model*")) and not (run / "run.json").exists()
    monkeypatch.setattr(modeling, "safe_save_file", save_file)
    assert main(["train", cfg, "--resume"]) == 0
    assert (run / "model" / "model.safetensors").is_file()
    assert json.loads((run / "run.json").read_text())["resumed_from"] == "checkpoint-3"
