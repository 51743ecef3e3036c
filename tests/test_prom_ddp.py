"""PROM under DDP (2 CPU processes, gloo): the gradients equal one process's on the concatenated batch.

Rank 0's micro-batch is all English (reaches only the pivot term: blocks 1..n and the pivot head), rank 1's
all target/translation rows (the final term), then the roles swap. The loss is scaled as
``PivotuneTrainer`` scales it: each term divided by its token count summed over the ranks (the norms
reduction in ``get_batch_samples``), times the world size (``compute_loss``: DDP averages gradients). The
model is wrapped as the Trainer wraps it: ``DistributedDataParallel`` around the ``PivotedModel`` with
``find_unused_parameters=True``. Run with λ > 0 and λ = 0 (English ranks then touch no real parameter).

The workers run under ``torchrun --standalone --nproc_per_node 2`` in a subprocess with a timeout, so a
collective that never completes fails the test instead of hanging it. This file is also the worker script.
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

HERE = Path(__file__).resolve()
N_LAYERS, PIVOT, VOCAB = 4, 2, 61
EN, TGT, MT = 0, 1, 2
TOL = 1e-6


# ------------------------------------------------------------------------------------------ the workers

def _objective(lam: float):
    from transformers import LlamaConfig, LlamaForCausalLM

    from pivotune.config import load_config
    from pivotune.methods.prom.objective import PromObjective, english_lambda

    cfg = load_config(base={"model": "tiny", "method": "prom", "languages": ["el"],
                            "prom": {"pivot_layer": PIVOT, "lambda_en": lam, "label_smoothing": 0.1,
                                     "chunk_size": 5}})
    obj = PromObjective(cfg.prom, english_lambda(lam, cfg.languages))
    lm_cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, initializer_range=0.2)
    torch.manual_seed(0)
    return obj, obj.prepare_model(LlamaForCausalLM(lm_cfg).double())


def _rows(roles: list[int], seed: int) -> dict:
    """Right-padded rows of unequal length (to their own longest, as the Collator pads), prompt masked,
    unequal source weights."""
    g = torch.Generator().manual_seed(seed)
    lengths = [int(x) for x in torch.randint(6, 15, (len(roles),), generator=g)]
    width = max(lengths)
    ids = torch.randint(3, VOCAB, (len(roles), width), generator=g)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, n in enumerate(lengths):
        ids[i, n:] = 0
        mask[i, :n] = 1
        labels[i, 2 + i % 3:n] = ids[i, 2 + i % 3:n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "roles": torch.tensor(roles),
            "langs": torch.tensor([0 if r == EN else 1 for r in roles]),
            "weights": 0.5 + torch.rand(len(roles), generator=g, dtype=torch.float32)}


def _concat(parts: list[dict]) -> dict:
    width = max(p["input_ids"].shape[1] for p in parts)
    pad = {"input_ids": 0, "attention_mask": 0, "labels": -100}
    out = {}
    for k in parts[0]:
        if k in pad:
            out[k] = torch.cat([torch.nn.functional.pad(p[k], (0, width - p[k].shape[1]), value=pad[k])
                                for p in parts])
        else:
            out[k] = torch.cat([p[k] for p in parts])
    return out


def _grads(model) -> dict[str, torch.Tensor]:
    return {k: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
            for k, p in model.named_parameters()}


def _grads_worker(out_path: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    assert world == 2
    results = {}
    for lam in (0.3, 0.0):
        obj, pm = _objective(lam)
        ref_obj, ref = _objective(lam)
        ddp = DistributedDataParallel(pm, find_unused_parameters=True)
        opt, ref_opt = torch.optim.SGD(pm.parameters(), lr=0.5), torch.optim.SGD(ref.parameters(), lr=0.5)
        steps = []
        for it, roles in enumerate([([EN, EN, EN], [TGT, MT, TGT]), ([TGT, MT], [EN, EN, EN, EN])]):
            parts = [_rows(r, seed=10 * it + i) for i, r in enumerate(roles)]
            local = parts[rank]
            # PivotuneTrainer.get_batch_samples: the step's counts, summed over the ranks
            norms = obj.normalizers(local)
            for v in norms.values():
                dist.all_reduce(v)
            loss, _ = obj.loss(ddp, local, norms)
            (loss * world).backward()          # compute_loss: undo DDP's gradient average
            total = loss.detach().double()     # the λ = 0 English-only zero loss is float32
            dist.all_reduce(total)
            full = _concat(parts)
            ref_loss, _ = ref_obj.loss(ref, full, ref_obj.normalizers(full))
            ref_loss.backward()
            got, want = _grads(pm), _grads(ref)
            diffs = {k: (got[k] - want[k]).abs().max().item() for k in want}
            worst = max(diffs, key=diffs.get)
            steps.append({"loss": total.item(), "ref_loss": ref_loss.item(), "max_grad_diff": diffs[worst],
                          "worst": worst,
                          "head_grad": sum(want[k].abs().sum().item() for k in want if k.startswith("pivot_head.")),
                          "top_block_grad": want[f"lm.model.layers.{N_LAYERS - 1}.mlp.up_proj.weight"].abs().sum().item(),
                          "grad_norm": sum(g.pow(2).sum().item() for g in want.values()) ** 0.5})
            opt.step()
            ref_opt.step()
            opt.zero_grad(set_to_none=True)
            ref_opt.zero_grad(set_to_none=True)
        params = max((p - q).abs().max().item() for p, q in zip(pm.parameters(), ref.parameters()))
        results[str(lam)] = {"steps": steps, "max_param_diff": params}
    gathered = [None] * world
    dist.all_gather_object(gathered, results)
    if rank == 0:
        Path(out_path).write_text(json.dumps(gathered))
    dist.barrier()   # neither rank tears gloo down while the other may still be in a collective
    dist.destroy_process_group()


def _train_worker(out_path: str, model_dir: str, run_dir: str) -> None:
    sys.path.insert(0, str(HERE.parent))
    from test_prom import MIXED, _cfg

    from pivotune.train.run import train

    torch.set_num_threads(1)
    trainer = train(_cfg(model_dir, run_dir, **{"train.per_device_batch_size": 1, "train.grad_accum": 4}), MIXED,
                    save_checkpoints=False)
    if trainer.args.process_index == 0:
        state = {k: p.detach().clone() for k, p in trainer.model.named_parameters()}
        torch.save({"params": state, "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
                    "world_size": trainer.args.world_size}, out_path)


# ------------------------------------------------------------------------------------------ the tests

#: what a gloo worker prints when a C++ thread outlives the interpreter at exit (seen on a loaded machine, after
#: the results were written); the run's own results decide the test then, not the exit code
TEARDOWN_ABORT = "terminate called without an active exception"


def _torchrun(args: list[str], timeout: float, extra_env: dict | None = None,
              result: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(extra_env or {}),
           "PYTHONPATH": os.pathsep.join([str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(HERE), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)    # torchrun and both workers: they share the new session
        out, _ = proc.communicate()
        pytest.fail(f"DDP run did not finish in {timeout} s (a collective hung?):\n{out[-3000:]}")
    aborted_after_results = (result is not None and result.is_file() and TEARDOWN_ABORT in out
                             and "Error" not in out.split(TEARDOWN_ABORT)[0])
    assert proc.returncode == 0 or aborted_after_results, out[-5000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, out)


def test_ddp_gradients_equal_one_process_on_the_concatenated_batch(tmp_path):
    out = tmp_path / "grads.json"
    _torchrun(["grads", str(out)], timeout=240, result=out)
    ranks = json.loads(out.read_text())
    assert len(ranks) == 2
    for res in ranks:
        for lam, r in res.items():
            for i, s in enumerate(r["steps"]):
                assert s["max_grad_diff"] <= TOL, (lam, i, s)
                assert abs(s["loss"] - s["ref_loss"]) <= TOL, (lam, i, s)
                assert s["grad_norm"] > 1e-3 and s["top_block_grad"] > 0, (lam, i, s)
                # λ > 0: the English rank's pivot term reaches the head; λ = 0: nothing does
                assert (s["head_grad"] > 0) == (float(lam) > 0), (lam, i, s)
            assert r["max_param_diff"] <= TOL, (lam, r)


@pytest.mark.slow
def test_train_under_torchrun_matches_one_process(tiny_model_dir, tmp_path):
    """train() with 2 ranks × 4 accumulated one-row micro-batches equals one process with 8 rows: every
    step holds all 8 samples of MIXED, so the samplers' orders do not matter. Covers DDP's no_sync on
    the accumulated micro-batches and English-only micro-batches (3 of the 8 rows are English)."""
    from test_prom import MIXED, _cfg

    from pivotune.train.run import train

    out = tmp_path / "ddp.pt"
    # Without a GPU, accelerate only sets up multi-process CPU training when told to use the CPU
    # (TrainingArguments(use_cpu=True) or ACCELERATE_USE_CPU); otherwise every torchrun rank silently
    # trains alone on the whole data set (world_size 1). training_arguments() does not set use_cpu.
    _torchrun(["train", str(out), str(tiny_model_dir), str(tmp_path / "ddp_run")], timeout=400,
              extra_env={"ACCELERATE_USE_CPU": "true"} if not torch.cuda.is_available() else None)
    got = torch.load(out)
    assert got["world_size"] == 2
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = train(_cfg(tiny_model_dir, tmp_path / "one", **{"train.per_device_batch_size": 8}), MIXED,
                    save_checkpoints=False)
    finally:
        torch.set_num_threads(before)
    ref_losses = [h["loss"] for h in ref.state.log_history if "loss" in h]
    assert len(got["losses"]) == len(ref_losses) == 2
    assert torch.allclose(torch.tensor(got["losses"]), torch.tensor(ref_losses), rtol=0, atol=1e-5)
    for k, p in ref.model.named_parameters():
        assert torch.allclose(got["params"][k], p.detach(), rtol=0, atol=1e-5), k


if __name__ == "__main__":   # worker entry point under torchrun
    mode, *rest = sys.argv[1:]
    {"grads": _grads_worker, "train": _train_worker}[mode](*rest)
