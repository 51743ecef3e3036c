"""Packed runs end to end: trained through the one road, resumed bitwise, and refused where packing cannot hold."""

from __future__ import annotations

import json

import pytest
import torch
from test_clo import ENGLISH, TARGET
from test_clo import _cfg as clo_cfg
from test_resume import DATA, _cfg

from pivotune.errors import PivotuneError
from pivotune.train.run import train

pytestmark = pytest.mark.usefixtures("one_thread")
PACKED = {"train.packing": "true", "max_seq_len": 256, "train.epochs": 2, "train.save_steps": 1}


def _params(trainer) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in trainer.model.named_parameters()}


def test_packed_prom_run_crashed_and_resumed_equals_the_uninterrupted_run(tiny_model_dir, tmp_path, monkeypatch):
    """PROM on packed rows, killed in its third step and resumed, ends with the uninterrupted run's weights; the
    rows attend per sample while training, and the exported config is the plain sdpa model's."""
    from pivotune.train.trainer import PivotuneTrainer

    ref_trainer = train(_cfg(tiny_model_dir, tmp_path / "ref", **PACKED), DATA)
    ref = _params(ref_trainer)
    report = json.loads((tmp_path / "ref" / "run.json").read_text())
    assert report["packed_rows"] < report["encoded"] and ref_trainer.state.global_step >= 4
    assert report["packed_attention"] == "per-sample sdpa"   # switched for training, then back for export:
    assert ref_trainer.model.lm.config._attn_implementation == "sdpa"
    assert "pivotune" not in (tmp_path / "ref" / "model" / "config.json").read_text()
    compute_loss = PivotuneTrainer.compute_loss

    def crash_in_step_3(self, *a, **k):
        if self.state.global_step == 2:
            raise RuntimeError("simulated crash")
        return compute_loss(self, *a, **k)

    monkeypatch.setattr(PivotuneTrainer, "compute_loss", crash_in_step_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_cfg(tiny_model_dir, tmp_path / "run", **PACKED), DATA)
    monkeypatch.setattr(PivotuneTrainer, "compute_loss", compute_loss)
    resumed = train(_cfg(tiny_model_dir, tmp_path / "run", **PACKED), DATA, resume=True)
    got = _params(resumed)
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["resumed_from"] == "checkpoint-2"
    unpacked = {k: v for k, v in PACKED.items() if k != "train.packing"}
    with pytest.raises(PivotuneError, match="training data differ"):
        train(_cfg(tiny_model_dir, tmp_path / "run", **unpacked), DATA, resume=str(tmp_path / "run" / "checkpoint-4"))


@pytest.mark.parametrize("method", ["xllama", "prom"])
def test_packed_run_with_activation_checkpointing_trains_like_one_without(method, tiny_model_dir, tmp_path):
    """train.gradient_checkpointing re-runs each block's per-sample attention in backward: every logged loss of a
    packed run equals the run without checkpointing."""
    losses = []
    for checkpointing in ("false", "true"):
        cfg = _cfg(tiny_model_dir, tmp_path / checkpointing, method=method, **PACKED,
                   **{"train.gradient_checkpointing": checkpointing})
        trainer = train(cfg, DATA, save_checkpoints=False)
        losses.append([h["loss"] for h in trainer.state.log_history if "loss" in h])
        report = json.loads((tmp_path / checkpointing / "run.json").read_text())
        assert report["packed_attention"] == "per-sample sdpa"
    assert len(losses[0]) >= 4
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


def test_packed_lora_run_attends_per_sample_and_exports_a_plain_adapter(tiny_model_dir, tmp_path):
    """Under LoRA the switch reaches the base model inside the adapter wrapper, and is undone before the export:
    the run records per-sample attention, and the adapter's base loads as the plain sdpa model."""
    cfg = _cfg(tiny_model_dir, tmp_path / "lora", method="xllama", **PACKED,
               **{"lora.enabled": "true", "lora.r": 4})
    trainer = train(cfg, DATA, save_checkpoints=False)
    assert json.loads((tmp_path / "lora" / "run.json").read_text())["packed_attention"] == "per-sample sdpa"
    assert trainer.model.get_base_model().config._attn_implementation == "sdpa"
    assert "pivotune" not in (tmp_path / "lora" / "model" / "adapter_config.json").read_text()


def test_lingualift_refuses_packing():
    """LinguaLIFT's rows sit behind their own encoder prefix: train.packing is a config error naming the key."""
    from pivotune.config import load_config
    from pivotune.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train\.packing.*lingualift.*cannot pack"):
        load_config(base={"model": "m", "method": "lingualift", "lingualift": {"encoder": "e"},
                          "train": {"packing": True}})


def test_packed_clo_run_trains_like_the_unpacked_one(tiny_model_dir, tmp_path):
    """CLO through the one road with packed micro-batches: the reference pass and every step's loss as unpacked."""
    losses = []
    for packing in (False, True):
        trainer = train(clo_cfg(tiny_model_dir, tmp_path / str(packing), **{"train.packing": str(packing).lower()}),
                        ENGLISH + TARGET, save_checkpoints=False)
        losses.append([h["loss"] for h in trainer.state.log_history if "loss" in h])
    assert len(losses[0]) == 3
    assert losses[1] == pytest.approx(losses[0], abs=1e-4)


def test_a_run_refuses_packing_with_flash_attention_before_training(tiny_model_dir, tmp_path, monkeypatch):
    """A model whose attention would cross samples stops the packed run before its first step, leaving nothing."""
    import pivotune.train.run as run

    def flash_model(*args, **kwargs):
        model = load_model(*args, **kwargs)
        model.config._attn_implementation = "flash_attention_2"
        return model

    load_model = run.load_model
    monkeypatch.setattr(run, "load_model", flash_model)
    with pytest.raises(PivotuneError, match="train.packing: LlamaForCausalLM runs flash_attention_2"):
        train(_cfg(tiny_model_dir, tmp_path / "run", **PACKED), DATA)
    assert not (tmp_path / "run").exists()
