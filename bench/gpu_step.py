"""Throughput and model FLOPs utilisation of an SFT and a PROM training step, on whatever accelerator is here.

Model: a ~1B-parameter Llama built from its config (random init, no download): TinyLlama-1.1B's shape
(22 blocks, hidden 2048, MLP 5632, 32 heads with 4 key/value heads, Llama-2's 32000-token vocabulary,
untied embeddings; 1.10B parameters; PROM's pivot head adds a 65.5M copy of W_U). ``--tiny``: a 4-block,
hidden-64 model with a 512-token vocabulary, for a CPU (the slow test runs it).

Variants, each in its own subprocess (its peak memory is its own), steps interleaved (bench/interleave.py):
``sft`` is pivotune's SFT objective (every baseline's loss), ``prom`` pivotune's PROM objective with the
pivot at round(0.75·N) (layer 17 of 22), both through their public API, forward + backward + AdamW. With
``--packing`` each also runs on the same samples packed (``train.packing``: best-fit-decreasing into rows of
``--seq`` tokens, :class:`pivotune.data.packing.PackedCollator`, attending per sample as a packed run does:
:mod:`pivotune.models.packed_attention`), as ``sft+pack`` and ``prom+pack``.

Precision: on CUDA, bf16 autocast over float32 master weights (``--precision bf16`` for pure bf16 weights,
``fp32`` for none); elsewhere float32. Batch: bench/prom_step.py's Alpaca-like mixture (40 % English, 40 %
target-language, 20 % translation rows), ``--batch`` rows padded to the longest (``--seq`` truncates); packed,
the same samples in fewer rows of at most ``--seq`` tokens.

Printed per variant: tokens/s (non-padding tokens of the batch per second of the median step), achieved
TFLOP/s and MFU, and peak memory (``max_memory_allocated`` on an accelerator, RSS on a CPU). Model FLOPs of
a step (:func:`step_flops`) count what each variant needs, never padding: for each row with T tokens that
runs k decoder blocks and reads a head at m supervised positions,

    6 · P_block · k · T  +  12 · A · k · T(T+1)/2  +  6 · V · H · m

(P_block: the matmul weights of one block; A: heads × head_dim; T(T+1)/2 the causal query-key pairs, two
matmuls of 2·A FLOPs each, times 3 for forward + backward; V · H the head). SFT runs every row through all N
blocks; PROM runs English rows through blocks 1..n and reads them with the pivot head. Packed variants do the
same model FLOPs (per sample, never across samples), so their tokens/s and MFU compare directly. With every row at N
blocks and the head at every position this is 6·N_params·tokens plus attention. MFU is against the
device's dense bf16 peak, named from a table (:data:`PEAK_BF16_TFLOPS`); on a device the table lacks it
says so and prints achieved TFLOP/s only. The FLOP-bound speed-up of PROM over SFT (the ratio of their
FLOPs) is printed beside the measured one.

Usage: python bench/gpu_step.py [--tiny] [--batch 16] [--seq 1024] [--steps 5] [--precision auto] [--packing]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass

from interleave import MIN_TIMED, Worker, check_steps, serve_training_steps, time_workers
from prom_step import make_batch, prom_objective, sft_objective

LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
            "num_key_value_heads": 4, "vocab_size": 32000}          # TinyLlama-1.1B's shape
TINY = {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 512}
VARIANTS = ("sft", "prom")
PACKED = "+pack"   # a variant's name suffix when it runs on packed rows

#: Dense bf16 tensor-core peaks (TFLOP/s, float32 accumulation, no sparsity), from the vendors' data sheets;
#: the first pattern found in the device's name wins, so the specific names come before the general ones.
PEAK_BF16_TFLOPS = (
    (r"H100.*PCIe", 756.0), (r"H100.*NVL", 835.0), (r"H100", 989.0),
    (r"H200.*NVL", 835.0), (r"H200", 989.0),
    (r"A100", 312.0),
    (r"L40S", 362.0), (r"\bL4\b", 121.0), (r"\bA10\b", 125.0),
    (r"RTX 4090", 165.0), (r"RTX 3090", 71.0),
    (r"MI300X", 1307.0),
)


def peak_bf16_tflops(device_name: str) -> float | None:
    return next((peak for pattern, peak in PEAK_BF16_TFLOPS if re.search(pattern, device_name)), None)


# ------------------------------------------------------------------------------------------------- FLOPs

@dataclass(frozen=True)
class Shape:
    """What the FLOP count needs of a decoder-only LM."""

    block_params: int   # weights of the matmuls in one decoder block (attention projections and MLP)
    attn_width: int     # heads × head_dim: the width of the query-key and attention-value products
    head_params: int    # V × H, the unembedding (and PROM's pivot head, its copy)
    layers: int

    @classmethod
    def of(cls, lm) -> Shape:
        from torch import nn

        from pivotune.models.arch import arch_info

        info = arch_info(lm)
        block = info.layers[0]
        cfg = lm.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return cls(sum(m.weight.numel() for m in block.modules() if isinstance(m, nn.Linear)),
                   cfg.num_attention_heads * head_dim, info.unembed.weight.numel(), info.num_layers)


def row_flops(shape: Shape, tokens: int, blocks: int, head_positions: int) -> int:
    """Training FLOPs (forward + backward) of one unpadded row (the formula in the module docstring)."""
    return (6 * shape.block_params * blocks * tokens + 12 * shape.attn_width * blocks * (tokens * (tokens + 1) // 2)
            + 6 * shape.head_params * head_positions)


def step_flops(shape: Shape, batch: dict, variant: str, pivot_layer: int) -> int:
    """Model FLOPs of one step of ``variant`` on ``batch``: SFT runs every row through all blocks; PROM runs
    English rows through blocks 1..pivot_layer only (its pivot head reads them)."""
    from pivotune.data.records import ROLE_IDS

    tokens = batch["attention_mask"].sum(1).tolist()
    supervised = batch["labels"][:, 1:].ne(-100).sum(1).tolist()
    english = batch["roles"].eq(ROLE_IDS["en"]).tolist()
    return sum(row_flops(shape, t, pivot_layer if (variant == "prom" and en) else shape.layers, s)
               for t, s, en in zip(tokens, supervised, english))


# ------------------------------------------------------------------------------------------------ model

def pick_device():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return accelerator or torch.device("cpu")


def device_name(device) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"CPU ({platform.processor() or platform.machine()})"
    return device.type


def build_lm(spec: dict, device=None):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**spec, max_position_embeddings=4096, tie_word_embeddings=False, pad_token_id=0,
                      bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    with torch.device(device or "meta"):
        return LlamaForCausalLM(cfg)


def pivot_layer(spec: dict) -> int:
    from pivotune.models.pivot_head import default_pivot_layer

    return default_pivot_layer(spec["num_hidden_layers"])


def bench_batch(args, spec: dict) -> dict:
    """The Alpaca-like batch, without rows left with no supervised token (the pipeline drops them too)."""
    batch = make_batch(args.batch, args.seq, args.seed, vocab=spec["vocab_size"])
    keep = batch["labels"][:, 1:].ne(-100).any(1)
    return {k: v[keep] for k, v in batch.items()}


def packed_batch(batch: dict, seq: int) -> dict:
    """The samples of a padded bench batch packed best-fit-decreasing into rows of at most ``seq`` tokens."""
    from pivotune.data.collate import Encoded
    from pivotune.data.packing import PackedCollator, pack

    items = []
    for ids, labels, mask, role, lang, weight in zip(batch["input_ids"], batch["labels"], batch["attention_mask"],
                                                     batch["roles"], batch["langs"], batch["weights"]):
        n = int(mask.sum())
        items.append(Encoded(ids[:n].tolist(), labels[:n].tolist(), int(role), int(lang), float(weight), False))
    return PackedCollator(pad_token_id=0)(pack(items, seq))


def precision(args, device) -> str:
    if args.precision != "auto":
        return args.precision
    return "bf16-autocast" if device.type == "cuda" else "fp32"


# ----------------------------------------------------------------------------------------------- worker

def worker(args) -> None:
    import contextlib

    import torch

    from pivotune.models.packed_attention import per_sample_attention

    torch.set_num_threads(args.threads)
    device = pick_device()
    spec = TINY if args.tiny else LLAMA_1B
    base, packed = args.variant.removesuffix(PACKED), args.variant.endswith(PACKED)
    batch = bench_batch(args, spec)
    batch = {k: v.to(device) for k, v in (packed_batch(batch, args.seq) if packed else batch).items()}
    lm = build_lm(spec, device)
    mode = precision(args, device)
    if mode == "bf16":
        lm = lm.to(torch.bfloat16)
    if base == "prom":
        obj = prom_objective(batch, pivot_layer=pivot_layer(spec))
    else:
        obj = sft_objective(batch)
    model = obj.prepare_model(lm).to(device)
    model.train()
    norms = {k: v.to(device) for k, v in obj.normalizers(batch).items()}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-5, **({"fused": True} if device.type == "cuda" else {"foreach": True}))

    def step():
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if mode == "bf16-autocast"
                    else contextlib.nullcontext())
        with autocast:
            loss = obj.loss(model, batch, norms)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    with per_sample_attention(lm) if packed else contextlib.nullcontext():   # as train.packing trains
        serve_training_steps(step, device, {"params": sum(p.numel() for p in params)})


# ----------------------------------------------------------------------------------------------- parent

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="a 4-block hidden-64 Llama (for a CPU)")
    ap.add_argument("--batch", type=int, default=16, help="rows per step")
    ap.add_argument("--seq", type=int, default=1024, help="max_seq_len (rows are truncated to it)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=MIN_TIMED, help=f"timed steps per variant (at least {MIN_TIMED})")
    ap.add_argument("--precision", choices=("auto", "bf16-autocast", "bf16", "fp32"), default="auto",
                    help="auto: bf16 autocast over float32 master weights on CUDA, float32 elsewhere")
    ap.add_argument("--packing", action="store_true", help="also measure each variant on packed rows")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads on a CPU")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", choices=[*VARIANTS, *(v + PACKED for v in VARIANTS)],
                    help=argparse.SUPPRESS)   # worker mode
    args = ap.parse_args()
    if args.variant:
        worker(args)
        return
    check_steps(args.steps)

    import torch

    spec = TINY if args.tiny else LLAMA_1B
    device, n = pick_device(), pivot_layer(spec)
    name, mode = device_name(device), precision(args, device)
    peak = peak_bf16_tflops(name)
    batch = bench_batch(args, spec)
    shape = Shape.of(build_lm(spec))
    flops = {v: step_flops(shape, batch, v, n) for v in VARIANTS}
    variants = [*VARIANTS, *((v + PACKED for v in VARIANTS) if args.packing else ())]
    flops.update({v + PACKED: flops[v] for v in VARIANTS})   # the same samples: the same model FLOPs
    tokens, supervised = int(batch["attention_mask"].sum()), int(batch["labels"][:, 1:].ne(-100).sum())
    rows, width = batch["input_ids"].shape
    params = shape.layers * shape.block_params + shape.head_params

    print(f"device: {name} ({device.type}); " + (f"dense bf16 peak {peak:g} TFLOP/s" if peak else
          "dense bf16 peak unknown (not in PEAK_BF16_TFLOPS): MFU not computed, achieved TFLOP/s printed"))
    print(f"precision: {mode}; torch {torch.__version__}")
    print(f"model: Llama {spec['num_hidden_layers']} blocks, hidden {spec['hidden_size']}, MLP "
          f"{spec['intermediate_size']}, {spec['num_attention_heads']} heads ({spec['num_key_value_heads']} kv), "
          f"vocab {spec['vocab_size']}, untied; {params / 1e6:.1f}M matmul weights (N); PROM pivot layer {n}")
    print(f"batch: {rows} rows padded to {width}: {tokens} tokens, {supervised} supervised, "
          f"{rows * width - tokens} padding positions ({1 - tokens / (rows * width):.0%})")
    if args.packing:
        packed = packed_batch(batch, args.seq)
        p_rows, p_width = packed["input_ids"].shape
        print(f"packed: the same samples in {p_rows} rows padded to {p_width}: "
              f"{p_rows * p_width - tokens} padding positions ({1 - tokens / (p_rows * p_width):.0%})")
    print("model FLOPs per step (6·N·tokens + causal attention, no padding): "
          + ", ".join(f"{v} {flops[v] / 1e12:.4g} TFLOP" for v in VARIANTS))
    print(f"steps: {args.warmup} warm-up + {args.steps} timed rounds, {', '.join(variants)} interleaved, "
          f"median per variant, one subprocess each; packing: {'on and off' if args.packing else 'off'}")

    cmd = [sys.executable, os.path.abspath(__file__), f"--batch={args.batch}", f"--seq={args.seq}",
           f"--precision={args.precision}", f"--threads={args.threads}", f"--seed={args.seed}"] + (
        ["--tiny"] if args.tiny else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    t = time_workers({v: Worker(v, cmd + [f"--variant={v}"], env) for v in variants},
                     warmup=args.warmup, steps=args.steps)

    gib = 1 / 2**30
    print(f"\n{'variant':10}{'params':>9}{'step s':>9}{'tokens/s':>10}{'TFLOP/s':>9}{'MFU':>7}{'peak GiB':>10}"
          "  timed steps (s)")
    for v in variants:
        r, med = t.reports[v], t.median(v)
        achieved = flops[v] / med / 1e12
        mfu = f"{achieved / peak:.1%}" if peak else "-"
        print(f"{v:10}{r['params'] / 1e6:8.1f}M{med:9.3f}{tokens / med:10.0f}{achieved:9.3g}{mfu:>7}"
              f"{r['peak_bytes'] * gib:10.2f}  {t.spread(v)}")
    bound, measured = flops["sft"] / flops["prom"], t.speedup("prom", "sft")
    print(f"PROM/SFT speed-up: measured {measured:.2f}x, FLOP-bound {bound:.2f}x: {measured / bound:.2f} of the bound "
          "(goal: within 10 %)")
    if args.packing:
        print("packing speed-up (packed over padded, same samples): "
              + ", ".join(f"{v} {t.speedup(v + PACKED, v):.2f}x" for v in VARIANTS))


if __name__ == "__main__":
    main()
