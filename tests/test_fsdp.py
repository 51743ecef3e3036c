"""Sharded training (FSDP): PROM's same-modules-on-every-rank path, and FSDP runs on 2 CPU processes (gloo).

On a CPU, accelerate's and the Trainer's FSDP settings fall back to plain DDP, so these tests shard with
torch's own FSDP2 (``fully_shard``): every decoder block is its own unit and the root (the PROM
``PivotedModel``, or the plain LM for xllama) holds the embeddings, final norm and heads. The loss is
scaled exactly as ``PivotuneTrainer`` scales it (the step's token counts summed over the ranks; times the
world size, since FSDP averages gradients). A rank whose micro-batch is all English would hang the run
if it skipped blocks n+1..N; the workers run under a timeout so that a hang fails the test. This file is
also the worker script (under ``torchrun``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_prom_ddp import EN, MT, TGT, _concat, _objective, _rows, _torchrun
from pivotune.objectives.base import ROW_LOSSES

HERE = Path(__file__).resolve()
TOL = 1e-9
# per step: the rows of rank 0 and of rank 1; rank 0 is all English in step 0, rank 1 in step 1
ROLES = [([EN, EN, EN], [TGT, MT, TGT]), ([TGT, MT], [EN, EN, EN, EN]), ([EN, TGT, MT], [MT, EN])]


def _sft_model():
    from test_prom_ddp import N_LAYERS, VOCAB
    from transformers import LlamaConfig, LlamaForCausalLM

    from pivotune.methods.sft.objective import SFTObjective

    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0,
                      bos_token_id=1, eos_token_id=2, initializer_range=0.2, tie_word_embeddings=False)
    torch.manual_seed(0)
    return SFTObjective(), LlamaForCausalLM(cfg).double()


def _build(method: str):
    if method == "prom":
        obj, model = _objective(0.3)
        obj = obj.for_sharded_training()
        return obj, model, model.lm.model.layers
    obj, model = _sft_model()
    return obj, model, model.model.layers


# ------------------------------------------------------------------------------------------ the worker

def _fsdp_worker(out_path: str) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    results = {}
    for method in ("prom", "xllama"):
        obj, model, layers = _build(method)
        ref_obj, ref, _ = _build(method)
        full_numel = sum(p.numel() for p in model.parameters())
        for layer in layers:
            fully_shard(layer)
        fully_shard(model)
        params = list(model.parameters())
        local_numel = sum(p.to_local().numel() for p in params)
        sharded = all(isinstance(p, DTensor) and p.placements[0].is_shard() for p in params)
        opt, ref_opt = torch.optim.SGD(model.parameters(), lr=0.5), torch.optim.SGD(ref.parameters(), lr=0.5)
        steps = []
        for it, roles in enumerate(ROLES):
            parts = [_rows(r, seed=10 * it + i) for i, r in enumerate(roles)]
            local = parts[rank]
            norms = obj.normalizers(local)
            for v in norms.values():
                dist.all_reduce(v)
            loss, _ = obj.loss(model, local, norms)
            (loss * world).backward()
            total = loss.detach().double()
            dist.all_reduce(total)
            full = _concat(parts)
            ref_loss, _ = ref_obj.loss(ref, full, ref_obj.normalizers(full))
            ref_loss.backward()
            opt.step()
            ref_opt.step()
            opt.zero_grad(set_to_none=True)
            ref_opt.zero_grad(set_to_none=True)
            got = {k: p.full_tensor() for k, p in model.named_parameters()}
            diff = max((got[k] - p).abs().max().item() for k, p in ref.named_parameters())
            steps.append({"loss": total.item(), "ref_loss": ref_loss.item(), "max_param_diff": diff})
        results[method] = {"steps": steps, "full_numel": full_numel, "local_numel": local_numel,
                           "all_sharded": sharded}
    gathered = [None] * world
    dist.all_gather_object(gathered, results)
    if rank == 0:
        Path(out_path).write_text(json.dumps(gathered))
    dist.destroy_process_group()


# ------------------------------------------------------------------------------------------ the tests

@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("roles", [[EN, TGT, MT, EN, TGT], [EN, EN, EN], [TGT, MT, TGT]])
def test_same_modules_path_equals_the_early_stop_path(roles):
    """Loss, both terms and every gradient of compute_same_modules equal compute's, for mixed, English-only
    and target-only batches; and every parameter takes part in the backward (no None gradient)."""
    obj, pm = _objective(0.3)
    batch = _rows(roles, seed=3)
    norms = obj.normalizers(batch)
    results = []
    for objective in (obj, obj.for_sharded_training()):
        pm.zero_grad(set_to_none=True)
        out = pm(batch, norms, objective.compute)
        out["loss"].backward()
        results.append((out, {k: p.grad for k, p in pm.named_parameters()}))
    (early, g_early), (same, g_same) = results
    assert torch.allclose(early["loss"], same["loss"], rtol=0, atol=1e-12)
    assert early.keys() == same.keys()
    for k in early:
        pairs = ([(early[k].sums, same[k].sums), (early[k].tokens, same[k].tokens)] if k == ROW_LOSSES
                 else [(early[k], same[k])])
        for a, b in pairs:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=k)
    assert all(g is not None for g in g_same.values())   # every block and head is in every backward
    for k, g in g_same.items():
        want = g_early[k] if g_early[k] is not None else torch.zeros_like(g)
        assert torch.allclose(g, want, rtol=0, atol=1e-12), k


def test_fsdp_two_ranks_shard_and_match_one_process(tmp_path):
    out = tmp_path / "fsdp.json"
    _torchrun_here(["fsdp", str(out)], timeout=240)
    ranks = json.loads(out.read_text())
    assert len(ranks) == 2
    for method in ("prom", "xllama"):
        # the two ranks' shards partition every parameter: each holds about half (the 61-row vocabulary
        # matrices split 31 + 30)
        full = ranks[0][method]["full_numel"]
        assert sum(res[method]["local_numel"] for res in ranks) == full, method
        assert all(res[method]["local_numel"] <= 0.51 * full for res in ranks), method
    for res in ranks:
        for method, r in res.items():
            assert r["all_sharded"], method
            for i, s in enumerate(r["steps"]):
                # the SFT loss is reduced in float32 (the model runs in float64 here)
                assert abs(s["loss"] - s["ref_loss"]) <= (TOL if method == "prom" else 2e-6), (method, i, s)
                assert s["max_param_diff"] <= TOL, (method, i, s)


def _ddp_train_worker(out_path: str, model_dir: str, run_dir: str, method: str) -> None:
    from test_prom import MIXED, _cfg

    from pivotune.train.run import train

    torch.set_num_threads(1)
    trainer = train(_cfg(model_dir, run_dir, method=method, **{"train.per_device_batch_size": 1,
                                                               "train.grad_accum": 4, "train.save_steps": 2}), MIXED)
    if trainer.args.process_index == 0:
        torch.save({"params": {k: p.detach().clone() for k, p in trainer.model.named_parameters()},
                    "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
                    "world_size": trainer.args.world_size}, out_path)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["xllama", "prom"])
def test_trainer_ddp_with_checkpoints_matches_one_process(tiny_model_dir, tmp_path, method):
    """train() under torchrun (2 ranks × 4 one-row micro-batches, atomic checkpoints on) equals one process
    with all 8 rows per step; 3 of MIXED's 8 rows are English, so some micro-batches are English-only."""
    from test_prom import MIXED, _cfg

    from pivotune.train.resume import complete_checkpoints
    from pivotune.train.run import train

    out = tmp_path / "ddp.pt"
    _torchrun_here(["ddp-train", str(out), str(tiny_model_dir), str(tmp_path / "ddp"), method], timeout=400)
    got = torch.load(out)
    assert got["world_size"] == 2
    assert [c.name for c in complete_checkpoints(tmp_path / "ddp")] == ["checkpoint-2"]
    assert {p.name for p in (tmp_path / "ddp" / "checkpoint-2").glob("rng_state_*.pth")} == {
        "rng_state_0.pth", "rng_state_1.pth"}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = train(_cfg(tiny_model_dir, tmp_path / "one", method=method, **{"train.per_device_batch_size": 8}),
                    MIXED, save_checkpoints=False)
    finally:
        torch.set_num_threads(before)
    ref_losses = [h["loss"] for h in ref.state.log_history if "loss" in h]
    assert torch.allclose(torch.tensor(got["losses"]), torch.tensor(ref_losses), rtol=0, atol=1e-5)
    for k, p in ref.model.named_parameters():
        assert torch.allclose(got["params"][k], p.detach(), rtol=0, atol=1e-5), k


def _torchrun_here(args, timeout):
    import test_prom_ddp

    real = test_prom_ddp.HERE
    test_prom_ddp.HERE = HERE   # run this file as the worker script
    try:
        return _torchrun(args, timeout)
    finally:
        test_prom_ddp.HERE = real


if __name__ == "__main__":   # worker entry point under torchrun
    mode, *rest = sys.argv[1:]
    {"fsdp": _fsdp_worker, "ddp-train": _ddp_train_worker}[mode](*rest)
