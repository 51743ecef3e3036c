"""Why half-precision training keeps float32 master weights: AdamW's small updates vanish in bf16 weights."""

from __future__ import annotations

import torch
from torch import nn

LR = 2e-5   # the PROM paper's learning rate


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
