"""Why half-precision training keeps float32 master weights (AdamW's small updates vanish in bf16 weights), and that
pivotune's training road does: bf16 compute over float32 weights by default, pure bf16 only when asked."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from torch import nn

from pivotune.config import load_config
from pivotune.errors import ConfigError, PivotuneError

LR = 2e-5   # the PROM paper's learning rate

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(weight_dtype: torch.dtype, autocast: bool, steps: int = 10) -> tuple[torch.Tensor, torch.dtype]:
    """A Linear whose weights start at 1.0, trained by AdamW at LR: its weights after ``steps`` and the dtype
    its forward computed in."""
    layer = nn.Linear(4, 4, bias=False).to(weight_dtype)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    opt = torch.optim.AdamW(layer.parameters(), lr=LR, weight_decay=0.0)
    x = torch.ones(2, 4, dtype=weight_dtype)
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = layer(x)
        loss = out.float().pow(2).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return layer.weight.detach(), out.dtype


def test_an_update_below_bf16_resolution_vanishes_in_bf16_weights_and_survives_fp32_master_weights():
    """At lr 2e-5 AdamW moves a weight of 1.0 by ~2e-5 a step, far below bf16's spacing there (2^-7): in bf16
    weights every update rounds away; fp32 master weights under bf16 autocast keep all of them."""
    assert torch.finfo(torch.bfloat16).eps == 2 ** -7 and LR < 2 ** -8   # below half a step: rounds to nothing
    pure, computed = _train(torch.bfloat16, autocast=False)
    assert computed == torch.bfloat16 and torch.equal(pure, torch.ones_like(pure))   # ten steps, no change
    master, computed = _train(torch.float32, autocast=True)
    assert computed == torch.bfloat16 and master.dtype == torch.float32   # bf16 compute, fp32 weights
    assert torch.allclose(master, torch.full_like(master, 1.0 - 10 * LR), rtol=0, atol=2e-6)


# ------------------------------------------------------------------------------------------ through the training road

def _road_run(model_dir, out, **train_settings):
    """Three AdamW steps of SFT at the paper's learning rate on the tiny model; returns the last trainer."""
    from test_train import MEMO, _cfg

    from pivotune.train.run import train

    over = {"train.lr": LR, "train.max_steps": 3, **{f"train.{k}": v for k, v in train_settings.items()}}
    return train(_cfg(model_dir, out, **over), MEMO, save_checkpoints=False)


def _changed(trainer, model_dir) -> tuple[float, torch.Tensor]:
    """The share of the model's weights that training changed (against the base's, in the dtype they trained
    in), and the final norm's weights (1.0 in the base)."""
    from safetensors.torch import load_file

    base = load_file(str(model_dir / "model.safetensors"))
    params = dict(trainer.model.named_parameters())
    changed = sum(int((p.detach() != base[n].to(p.dtype)).sum()) for n, p in params.items())
    return changed / sum(p.numel() for p in params.values()), params["model.norm.weight"].detach()


def test_bfloat16_training_keeps_the_updates_pure_bfloat16_loses(tiny_model_dir, tmp_path, caplog):
    """Through pivotune's training road at lr 2e-5: with train.dtype bfloat16 the weights train in float32 (every
    norm weight of 1.0 moves), while train.pure_half trains bf16 weights where those updates round away (the
    norms stay exactly 1.0, far fewer weights change) and says so in a warning."""
    with caplog.at_level(logging.WARNING, logger="pivotune"):
        master = _road_run(tiny_model_dir, tmp_path / "master", dtype="bfloat16")
    assert not any("pure_half" in r.message for r in caplog.records)
    share, norm = _changed(master, tiny_model_dir)
    assert master.model.dtype == torch.float32 and share > 0.5 and bool((norm != 1.0).all()), share
    with caplog.at_level(logging.WARNING, logger="pivotune"):
        pure = _road_run(tiny_model_dir, tmp_path / "pure", dtype="bfloat16", pure_half="true")
    pure_share, pure_norm = _changed(pure, tiny_model_dir)
    assert pure.model.dtype == torch.bfloat16 and torch.equal(pure_norm, torch.ones_like(pure_norm))
    assert pure_share < share / 2, (pure_share, share)
    warning = next(r.getMessage() for r in caplog.records if "pure_half" in r.message)
    assert "update below half precision's spacing is lost" in warning and r"2^-7" in warning


def test_a_bfloat16_run_writes_and_exports_a_bfloat16_model(tiny_model_dir, tmp_path):
    """RUN/model of a bf16 run is in bf16 (its config.json says so), the float32 master weights rounded once, and
    `pivotune export` keeps that dtype."""
    from safetensors.torch import load_file

    from pivotune.export import export

    trainer = _road_run(tiny_model_dir, tmp_path / "run", dtype="bfloat16")
    saved = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    trained = dict(trainer.model.named_parameters())
    assert saved.keys() == trained.keys()
    assert all(torch.equal(v, trained[k].detach().to(torch.bfloat16)) for k, v in saved.items())
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    exported = load_file(str(export(tmp_path / "run", tmp_path / "out") / "model.safetensors"))
    assert all(torch.equal(v, saved[k]) for k, v in exported.items())


def test_clo_reference_is_computed_in_the_policys_precision(tiny_model_dir, tmp_path, monkeypatch):
    """CLO's reference log-probabilities are computed under the steps' bf16 autocast: at the first step the policy's
    equal them exactly (in float32 outside autocast they differed by ~2e-3)."""
    from test_clo import ENGLISH, TARGET
    from test_clo import _cfg as clo_cfg

    import pivotune.methods.clo.objective as clo_objective
    from pivotune.train.run import train

    gaps: list[float] = []
    real = clo_objective.clo_loss

    def recording(policy, reference, *args, **kwargs):
        gaps.append(float((policy - reference).detach().abs().max()))
        return real(policy, reference, *args, **kwargs)

    monkeypatch.setattr(clo_objective, "clo_loss", recording)
    cfg = clo_cfg(tiny_model_dir, tmp_path / "run", **{"train.dtype": "bfloat16", "train.max_steps": 1,
                                                       "train.per_device_batch_size": 3})   # = reference batch
    train(cfg, ENGLISH + TARGET, save_checkpoints=False)
    assert gaps == [0.0]


# ------------------------------------------------------------------------------------------ refusals

@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_pure_half_needs_bfloat16(dtype):
    """train.pure_half with float32 (nothing to halve) or float16 (the loss scaler refuses float16 gradients) is a
    config error naming both fields."""
    with pytest.raises(ConfigError, match=rf"field train\.pure_half: true needs train\.dtype bfloat16, not {dtype}"):
        load_config(base={"model": "m", "train": {"dtype": dtype, "pure_half": True}})
    assert load_config(base={"model": "m", "train": {"dtype": "bfloat16", "pure_half": True}}).train.pure_half


def test_float16_without_a_gpu_is_refused_before_the_model_loads(tiny_model_dir, tmp_path, monkeypatch):
    """On a CPU the Trainer would silently train float16 in float32 (accelerate has no CPU fp16 autocast): the run
    stops with a clear error before any model loads."""
    import pivotune.train.run as run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(run, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(PivotuneError, match="train.dtype float16 .* needs a GPU"):
        _road_run(tiny_model_dir, tmp_path / "run", dtype="float16")
