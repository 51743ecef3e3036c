"""bench/gpu_step.py: its FLOP count against a hand count, its peak table, its packed batch, a CPU run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_step  # noqa: E402

SPEC = {"hidden_size": 16, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 100}


def test_flops_match_a_hand_count_on_a_tiny_config():
    """Matmul weights, attention pairs and head positions counted by hand give the script's FLOPs for SFT and
    for PROM (English rows stop at the pivot layer)."""
    shape = gpu_step.Shape.of(gpu_step.build_lm(SPEC))
    # one block: q 16·16, k and v 16·(2 kv heads · 4), o 16·16, gate/up/down 3·16·40
    block = 16 * 16 + 2 * 16 * 8 + 16 * 16 + 3 * 16 * 40
    assert shape == gpu_step.Shape(block_params=block, attn_width=4 * 4, head_params=100 * 16, layers=2)
    # row 0: English, 5 tokens, 3 supervised targets; row 1: target language, 3 tokens (2 padding), 2 supervised
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
             "labels": torch.tensor([[-100, -100, 7, 8, 9], [-100, 5, 6, -100, -100]]),
             "roles": torch.tensor([0, 1])}

    def row(tokens, blocks, supervised):
        matmuls = 2 * block * blocks * tokens                 # forward: 2 FLOPs per weight per token
        attention = 2 * 2 * 16 * blocks * sum(range(1, tokens + 1))   # QKᵀ and AV over the causal pairs
        head = 2 * 100 * 16 * supervised
        return 3 * (matmuls + attention + head)               # backward: twice the forward

    assert gpu_step.step_flops(shape, batch, "sft", pivot_layer=1) == row(5, 2, 3) + row(3, 2, 2) == 314112
    assert gpu_step.step_flops(shape, batch, "prom", pivot_layer=1) == row(5, 1, 3) + row(3, 2, 2)
    n_params = 2 * block + 100 * 16   # every block and the head at every position: 6·N·tokens + attention
    assert gpu_step.row_flops(shape, 5, 2, 5) == 6 * n_params * 5 + 12 * 16 * 2 * 15


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0),
    ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0), ("NVIDIA GeForce RTX 4090", 165.0), ("Tesla T4", None),
])
def test_the_peak_is_named_from_the_device_name(name, peak):
    """Specific names win over general ones (L40S is not an L4, an H100 PCIe not an SXM); unknown gives None."""
    assert gpu_step.peak_bf16_tflops(name) == peak


def test_packed_batch_holds_the_same_samples_in_fewer_rows():
    """--packing trains on the bench batch's samples packed: the same tokens, targets and roles, fewer rows."""
    batch = gpu_step.bench_batch(type("Args", (), {"batch": 12, "seq": 512, "seed": 0}), gpu_step.TINY)
    packed = gpu_step.packed_batch(batch, 512)
    assert packed["input_ids"].shape[0] < batch["input_ids"].shape[0]
    assert int(packed["attention_mask"].sum()) == int(batch["attention_mask"].sum())
    assert int(packed["labels"][:, 1:].ne(-100).sum()) == int(batch["labels"][:, 1:].ne(-100).sum())
    assert set(packed["roles"].tolist()) <= set(batch["roles"].tolist())
    assert packed["position_ids"].max() < 512


@pytest.mark.slow
def test_tiny_run_on_a_cpu_prints_every_variant():
    """The whole script on a CPU with the tiny model: SFT and PROM rows, padded and packed, no MFU for an unknown
    peak."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_step.py"), "--tiny", "--threads", "1",
                          "--batch", "6", "--seq", "512", "--packing"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert "dense bf16 peak unknown" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("sft", "prom"))}
    assert set(rows) == {"sft", "prom", "sft+pack", "prom+pack"} and all(r[5] == "-" for r in rows.values())   # MFU
    assert any(line.startswith("PROM/SFT speed-up: measured") for line in lines)
    assert any(line.startswith("packing speed-up (packed over padded, same samples): sft ") for line in lines)
