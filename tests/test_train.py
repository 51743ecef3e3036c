"""Training road on tiny random-init models: loss goes down, accumulation is exact, export loads."""

from __future__ import annotations

import torch

from pivotune.config import load_config
from pivotune.data.records import Sample
from pivotune.train.run import train

MEMO = [Sample(instruction=f"Name item {i}.", output=o, role="en", lang="en")
        for i, o in enumerate(["the red cat", "a blue bird", "two green trees", "the big river",
                               "one small dog", "good food", "hello world", "yes and no"])]


def _cfg(model_dir, out, **over):
    base = {"model": str(model_dir), "method": "english", "output_dir": str(out), "max_seq_len": 128,
            "train": {"lr": 3e-3, "max_steps": 40, "per_device_batch_size": 4, "grad_accum": 1,
                      "warmup_ratio": 0.0, "scheduler": "constant", "logging_steps": 1, "progress_bar": False}}
    return load_config(base=base, overrides=[f"{k}={v}" for k, v in over.items()])


def _losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_full_finetune_memorises(tiny_model_dir, tmp_path):
    losses = _losses(train(_cfg(tiny_model_dir, tmp_path / "run"), MEMO, save_checkpoints=False))
    assert len(losses) == 40
    assert losses[-1] <= 0.5 * losses[0], losses
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    assert (tmp_path / "run" / "run.json").exists() and (tmp_path / "run" / "config.yaml").exists()


def test_lora_memorises_and_trains_only_adapters(tiny_wide_init_model_dir, tmp_path):
    cfg = _cfg(tiny_wide_init_model_dir, tmp_path / "run", **{
        "lora.enabled": "true", "lora.r": 8, "train.lr": 1e-2, "train.max_steps": 60,
        "lora.target_modules": "[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]"})
    trainer = train(cfg, MEMO, save_checkpoints=False)
    losses = _losses(trainer)
    assert losses[-1] <= 0.5 * losses[0], losses
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert (tmp_path / "run" / "model" / "adapter_config.json").exists()


def test_gradient_accumulation_is_exact(tiny_model_dir, tmp_path):
    """Batch 4 × accumulation 1 and batch 1 × accumulation 4 follow the same trajectory."""
    # unequal lengths make per-micro-batch averaging differ from per-step averaging
    data = [Sample(instruction="Say.", output=" ".join(["the cat"] * (i + 1)), role="en") for i in range(8)]
    common = {"train.max_steps": 4, "train.lr": 1e-3}
    a = train(_cfg(tiny_model_dir, tmp_path / "a", **common), data, save_checkpoints=False)
    b = train(_cfg(tiny_model_dir, tmp_path / "b", **common, **{"train.per_device_batch_size": 1,
                                                                 "train.grad_accum": 4}),
              data, save_checkpoints=False)
    la, lb = _losses(a), _losses(b)
    assert len(la) == len(lb) == 4
    assert torch.allclose(torch.tensor(la), torch.tensor(lb), rtol=1e-4, atol=1e-5), (la, lb)
    for (n, pa), (_, pb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert torch.allclose(pa, pb, atol=1e-5), n


def test_tensorboard_logging_and_safetensors_checkpoints(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path / "run", **{"train.max_steps": 2, "train.save_steps": 2,
                                                     "train.report_to": "[tensorboard]"})
    train(cfg, MEMO)
    events = list((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file written"
    ckpt = tmp_path / "run" / "checkpoint-2"
    assert (ckpt / "model.safetensors").exists() and not (ckpt / "pytorch_model.bin").exists()
