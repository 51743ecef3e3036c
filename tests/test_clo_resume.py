"""CLO on the training road's bar: the guards (a non-finite loss names the step and the units' rows; too
little disk space stops the run before training), exact resume past the first epoch (bitwise the
uninterrupted run's weights, the same units in the same order, the reference recomputed from the base
model), and 2 processes over gloo equal to one process with the same global batch.

The resume data: 6 units, 1 per micro-batch, 2 micro-batches per step → 3 optimizer steps per epoch, 3
epochs, a checkpoint every 2 steps, a linear schedule with warm-up. This file is also the worker script
of the DDP test (under ``torchrun``).
"""

from __future__ import annotations

import json
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from test_clo import ENGLISH, TARGET
from test_clo import _cfg as _clo_cfg
from test_resume import _params

from pivotune.errors import PivotuneError
from pivotune.methods.clo import road as clo_train
from pivotune.train.guards import NonFiniteLossError
from pivotune.train.resume import complete_checkpoints
from pivotune.train.run import train
from pivotune.train.trainer import PivotuneTrainer

HERE = Path(__file__).resolve()
UNITS = 6
DATA = ENGLISH[:UNITS] + TARGET[:UNITS]   # unit i pairs ENGLISH[i] with TARGET[i]
STEPS_PER_EPOCH, EPOCHS = 3, 3


def _cfg(model_dir, out, **over):
    return _clo_cfg(model_dir, out, **{
        "seed": 7, "train.lr": 3e-3, "train.max_steps": -1, "train.epochs": EPOCHS, "train.per_device_batch_size": 1,
        "train.grad_accum": 2, "train.save_steps": 2, "train.save_total_limit": 3, "train.warmup_ratio": 0.2,
        "train.scheduler": "linear", **over})


class _Spy:
    """Wraps ``PivotuneTrainer.compute_loss``: logs (step, units) per micro-batch and can fail at a step."""

    def __init__(self, monkeypatch):
        self.compute_loss = PivotuneTrainer.compute_loss
        self.order: list[tuple[int, list[int]]] = []
        self.crash_at = self.nan_at = None
        spy = self

        def compute_loss(trainer, model, inputs, *a, **k):
            step = trainer.state.global_step + 1
            if step == spy.crash_at:
                raise RuntimeError("simulated crash")
            spy.order.append((step, inputs["sample_index"].tolist()))
            if step == spy.nan_at:
                inputs = {**inputs, "unit_weights": inputs["unit_weights"] * float("nan")}
            return spy.compute_loss(trainer, model, inputs, *a, **k)

        monkeypatch.setattr(PivotuneTrainer, "compute_loss", compute_loss)

    def take(self) -> dict[int, list[list[int]]]:
        per_step: dict[int, list[list[int]]] = {}
        for step, idx in self.order:
            per_step.setdefault(step, []).append(idx)
        self.order = []
        return per_step


pytestmark = pytest.mark.usefixtures("one_thread")


def test_nan_loss_stops_before_the_update_and_names_the_units_rows(tiny_model_dir, tmp_path, monkeypatch):
    spy = _Spy(monkeypatch)
    spy.nan_at = 5
    with pytest.raises(NonFiniteLossError) as err:
        train(_cfg(tiny_model_dir, tmp_path / "run"), DATA)
    msg = str(err.value)
    assert "optimizer step 5" in msg and "last complete checkpoint is kept" in msg
    units = [i for idx in spy.take()[5] for i in idx]
    assert len(units) == 2   # the step's two one-unit micro-batches, each named by both of its rows
    for i in units:
        assert (f"xx unit of English row {ENGLISH[i].origin} (source 'en.jsonl') and its translation "
                f"{TARGET[i].origin} (source 'xx.jsonl')") in msg
    assert [c.name for c in complete_checkpoints(tmp_path / "run")] == ["checkpoint-2", "checkpoint-4"]
    assert not (tmp_path / "run" / "model").exists()


def test_too_little_disk_space_fails_before_training(tiny_model_dir, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("pivotune.train.guards.shutil.disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    started = []
    monkeypatch.setattr(clo_train, "precompute_reference", lambda *a, **k: started.append("reference"))
    monkeypatch.setattr(PivotuneTrainer, "train", lambda self, *a, **k: started.append("train"))
    with pytest.raises(PivotuneError, match=r"Not enough disk space for output_dir .*0.00 GiB free"):
        train(_cfg(tiny_model_dir, tmp_path / "run"), DATA)
    assert not started   # not even the reference pass


def test_lora_reference_is_the_base_models(tiny_model_dir, tmp_path, tokenizer):
    """train_clo wraps the model in LoRA before the reference pass (so the disk check comes first): the
    reference log-probs are still bitwise the base model's."""
    from pivotune.methods.clo.units import UnitCollator, encode_units, pair_translations
    from pivotune.models.loading import load_model

    units = pair_translations(ENGLISH, TARGET)
    collator = UnitCollator(tokenizer.pad_token_id)
    refs = []
    for lora in ("false", "true"):
        encoded = encode_units(units, tokenizer, template="alpaca", max_seq_len=256)
        cfg = _cfg(tiny_model_dir, tmp_path / "run", **{"lora.enabled": lora})
        model = clo_train.select_trainable(load_model(str(tiny_model_dir)), cfg)
        assert hasattr(model, "peft_config") == (lora == "true")
        clo_train.precompute_reference(model, encoded, collator, batch_size=3)
        refs.append([u.ref_logps for u in encoded])
    assert refs[0] == refs[1]


def test_fresh_start_over_old_checkpoints_needs_overwrite(tiny_model_dir, tmp_path):
    """CLO's road claims its run directory like every road: an earlier run's checkpoint stops a fresh start
    (naming --resume and --overwrite); overwrite=True removes it first."""
    old = tmp_path / "run" / "checkpoint-3"
    old.mkdir(parents=True)
    for name in ("trainer_state.json", "pivotune_resume.json"):
        (old / name).write_text("{}")
    cfg = _cfg(tiny_model_dir, tmp_path / "run", **{"train.max_steps": 1})
    with pytest.raises(PivotuneError, match=r"checkpoint-3/.*--resume.*--overwrite"):
        train(cfg, DATA, save_checkpoints=False)
    assert old.is_dir()
    train(cfg, DATA, save_checkpoints=False, overwrite=True)
    assert not old.exists() and (tmp_path / "run" / "model").is_dir()


def test_crash_in_epoch_2_then_resume_equals_uninterrupted_run(tiny_model_dir, tmp_path, monkeypatch):
    """A crash in step 5 resumes from checkpoint-4, one step into epoch 2; the resumed run recomputes the
    reference from the base model (from checkpoint-4's weights the loss, hence the weights, would differ)."""
    spy = _Spy(monkeypatch)
    references = []
    precompute = clo_train.precompute_reference

    def recording_precompute(model, units, *a, **k):
        precompute(model, units, *a, **k)
        references.append([u.ref_logps for u in units])

    monkeypatch.setattr(clo_train, "precompute_reference", recording_precompute)
    ref_trainer = train(_cfg(tiny_model_dir, tmp_path / "ref"), DATA)
    ref, ref_order = _params(ref_trainer), spy.take()
    assert sorted(ref_order) == list(range(1, STEPS_PER_EPOCH * EPOCHS + 1))
    assert sorted(i for step in (1, 2, 3) for idx in ref_order[step] for i in idx) == list(range(UNITS))

    spy.crash_at = 5
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_cfg(tiny_model_dir, tmp_path / "run"), DATA)
    assert [c.name for c in complete_checkpoints(tmp_path / "run")] == ["checkpoint-2", "checkpoint-4"]
    assert not (tmp_path / "run" / "model").exists()
    before_crash = spy.take()
    spy.crash_at = None
    resumed = train(_cfg(tiny_model_dir, tmp_path / "run"), DATA, resume="auto")
    after = spy.take()

    got = _params(resumed)
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)   # bitwise
    assert resumed.state.global_step == STEPS_PER_EPOCH * EPOCHS
    assert sorted(before_crash) == [1, 2, 3, 4] and sorted(after) == list(range(5, 10))
    assert {**before_crash, **after} == ref_order   # the same units, in the same order, in every step
    assert len(references) == 3 and references[0] == references[1] == references[2]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["resumed_from"] == "checkpoint-4"


# ------------------------------------------------------------------------------------------ 2 processes

def _ddp_cfg(model_dir, out, per_device: int, grad_accum: int):
    # every step holds all 8 units (2 ranks x 4 one-unit micro-batches, or 8 in one), so the samplers'
    # orders do not matter. A small lr: Adam turns the roundoff of a near-zero gradient element (the
    # attention projections' gradients are tiny at init) into an update of up to about lr.
    return _clo_cfg(model_dir, out, **{"train.per_device_batch_size": per_device, "train.grad_accum": grad_accum,
                                       "train.save_steps": 2, "train.lr": 1e-3})


def _ddp_worker(out_path: str, model_dir: str, run_dir: str) -> None:
    torch.set_num_threads(1)
    trainer = train(_ddp_cfg(model_dir, run_dir, 1, 4), ENGLISH + TARGET)
    if trainer.args.process_index == 0:
        torch.save({"params": _params(trainer), "world_size": trainer.args.world_size,
                    "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h]}, out_path)


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tiny_model_dir, tmp_path):
    out = tmp_path / "ddp.pt"
    _torchrun_here(["ddp", str(out), str(tiny_model_dir), str(tmp_path / "ddp")], timeout=400)
    got = torch.load(out)
    assert got["world_size"] == 2
    assert [c.name for c in complete_checkpoints(tmp_path / "ddp")] == ["checkpoint-2", "checkpoint-3"]
    assert {p.name for p in (tmp_path / "ddp" / "checkpoint-2").glob("rng_state_*.pth")} == {
        "rng_state_0.pth", "rng_state_1.pth"}
    one = train(_ddp_cfg(tiny_model_dir, tmp_path / "one", len(ENGLISH), 1), ENGLISH + TARGET,
                save_checkpoints=False)
    losses = [h["loss"] for h in one.state.log_history if "loss" in h]
    assert len(got["losses"]) == len(losses) == 3
    assert torch.allclose(torch.tensor(got["losses"]), torch.tensor(losses), rtol=0, atol=1e-5)
    assert len(set(losses)) == 3   # the weights moved between the steps
    for k, p in _params(one).items():
        assert torch.allclose(got["params"][k], p, rtol=0, atol=1e-5), k


def _torchrun_here(args, timeout):
    import test_prom_ddp

    real = test_prom_ddp.HERE
    test_prom_ddp.HERE = HERE   # run this file as the worker script
    try:
        return test_prom_ddp._torchrun(args, timeout)
    finally:
        test_prom_ddp.HERE = real


if __name__ == "__main__":   # worker entry point under torchrun
    mode, *rest = sys.argv[1:]
    {"ddp": _ddp_worker}[mode](*rest)
