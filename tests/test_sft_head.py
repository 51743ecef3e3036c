"""SFT at supervised positions only: loss, gradients and row losses equal the full-logits computation; the head's
kernel is the chosen one for SFT and both PROM heads; prom.recompute_logits resolves once by the logits' size."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_llama

from pivotune.config import load_config
from pivotune.errors import ConfigError
from pivotune.methods import METHODS, run_objective
from pivotune.methods.base import Stage
from pivotune.methods.sft.objective import SFTObjective
from pivotune.models import fused_ce
from pivotune.models.arch import arch_info
from pivotune.models.fused_ce import Fallback, HeadKernel, kept_logit_bytes
from pivotune.objectives import head_loss
from pivotune.objectives.base import ROW_LOSSES
from pivotune.objectives.head_loss import RecomputeLogits, micro_batch_positions

pytestmark = pytest.mark.usefixtures("one_thread")

EN, TGT, MT = 0, 1, 2


@pytest.fixture(scope="module")
def lm(tokenizer):
    return tiny_llama(tokenizer, layers=2, hidden=32, seed=0, init_std=0.2).double()


def _batch(tokenizer, rows: int = 5, seed: int = 0):
    """Right-padded rows of unequal length, prompts masked, unequal source weights, one row without a target."""
    g = torch.Generator().manual_seed(seed)
    lengths = [14, 9, 11, 7, 12][:rows]
    ids = torch.randint(3, len(tokenizer), (rows, max(lengths)), generator=g)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for i, n in enumerate(lengths):
        ids[i, n:] = tokenizer.pad_token_id
        mask[i, :n] = 1
        if i != 3:   # row 3 keeps no response token
            labels[i, 3 + i % 2:n] = ids[i, 3 + i % 2:n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "weights": torch.tensor(
        [1.0, 0.5, 2.0, 1.5, 0.7][:rows]), "roles": torch.tensor([EN, TGT, MT, TGT, EN][:rows]),
        "langs": torch.tensor([0, 1, 1, 1, 0][:rows])}


def _rows(batch, rows):
    return {k: v[rows] for k, v in batch.items()}


def full_logits_loss(model, batch, tokens):
    """The old SFT loss, in float64: logits at every position, weighted CE of the shifted targets."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()
    labels = batch["labels"][:, 1:]
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none",
                         ignore_index=-100).view(labels.shape)
    return (ce * batch["weights"].double()[:, None]).sum() / tokens, ce.detach()


def _grads(model, fn):
    model.zero_grad(set_to_none=True)
    loss = fn()
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.mark.parametrize("chunk_size,recompute", [(1, True), (5, False), (7, True), (100_000, False)])
def test_sft_loss_grads_and_row_losses_equal_full_logits(lm, tokenizer, chunk_size, recompute):
    """Loss, every gradient and each row's summed loss equal the full-logits SFT loss (padding, weights, a row
    without targets), whatever the chunk size and recompute."""
    batch = _batch(tokenizer)
    obj = SFTObjective(chunk_size, recompute)
    norms = obj.normalizers(batch)
    ours = _grads(lm, lambda: obj.loss(lm, batch, norms)[0])
    ref = _grads(lm, lambda: full_logits_loss(lm, batch, norms["tokens"])[0])
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-12, atol=0)
    for k in ref[1]:
        torch.testing.assert_close(ours[1][k], ref[1][k], rtol=1e-9, atol=1e-12)
    rows = obj.loss(lm, batch, norms)[1][ROW_LOSSES]
    _, ce = full_logits_loss(lm, batch, 1)
    torch.testing.assert_close(rows.sums, ce.sum(1))
    assert rows.tokens.tolist() == batch["labels"][:, 1:].ne(-100).sum(1).tolist() and rows.tokens[3] == 0


def test_a_micro_batch_without_targets_gives_a_zero_that_backpropagates(lm, tokenizer):
    """Rows that supervise nothing (all prompt) give loss 0 whose backward runs (every gradient 0), as before."""
    batch = _rows(_batch(tokenizer), [3])
    obj = SFTObjective()
    loss, grads = _grads(lm, lambda: obj.loss(lm, batch, obj.normalizers(batch))[0])
    assert loss.item() == 0.0 and all(g.abs().sum() == 0 for g in grads.values())


def test_sft_gradient_accumulation_equals_one_full_batch(lm, tokenizer):
    """Two micro-batches divided by the step's count give the gradients of the whole batch at once."""
    batch = _batch(tokenizer)
    obj = SFTObjective(chunk_size=4)
    first, second = _rows(batch, slice(0, 2)), _rows(batch, slice(2, 5))
    norms = {k: obj.normalizers(first)[k] + obj.normalizers(second)[k] for k in ("tokens",)}
    ours = _grads(lm, lambda: obj.loss(lm, first, norms)[0] + obj.loss(lm, second, norms)[0])
    ref = _grads(lm, lambda: full_logits_loss(lm, batch, norms["tokens"])[0])
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-12, atol=0)
    for k in ref[1]:
        torch.testing.assert_close(ours[1][k], ref[1][k], rtol=1e-9, atol=1e-12)


def test_sft_never_projects_unsupervised_positions(lm, tokenizer):
    """The head reads as many positions as the batch supervises; the model's own logits are empty."""
    batch = _batch(tokenizer)
    seen = []
    handle = arch_info(lm).unembed.register_forward_hook(lambda _m, args, out: seen.append(args[0].shape[:-1]))
    try:
        SFTObjective(chunk_size=100_000, recompute_logits=False).loss(lm, batch, {"tokens": torch.tensor(1)})
    finally:
        handle.remove()
    assert [s.numel() for s in seen] == [0, int(batch["labels"][:, 1:].ne(-100).sum())]


def test_the_backward_passes_through_the_forwards_outputs(lm, tokenizer):
    """The loss's backward reaches the model forward's output (where FSDP1's root unit hooks its backward)."""
    batch = _batch(tokenizer)
    fired = []

    def watch(_module, _args, out):
        out.logits.register_hook(lambda g: fired.append(g.shape))

    handle = lm.register_forward_hook(watch)
    try:
        SFTObjective().loss(lm, batch, {"tokens": torch.tensor(1)})[0].backward()
    finally:
        handle.remove()
        lm.zero_grad(set_to_none=True)
    assert fired == [torch.Size([5, 0, lm.config.vocab_size])]


# ------------------------------------------------------------------------------------------- kernel choice

def _reference_fused(calls):
    from test_fused_ce import reference_kernel

    real = fused_ce.fused_head_ce

    def fused(head, hidden, targets, weights, *, label_smoothing=0.0):
        calls.append((hidden.shape[0], label_smoothing))
        return real(head, hidden, targets, weights, label_smoothing=label_smoothing, _kernel=reference_kernel)
    return fused


def _fused_chosen(monkeypatch, needs_seen):
    def choose(device, needs, liger=None):
        needs_seen.append(needs)
        return HeadKernel(True, "Liger's fused linear cross-entropy (a stand-in)")
    monkeypatch.setattr(head_loss, "choose_head_kernel", choose)


def test_sft_calls_the_chosen_kernel_and_logs_it_once(lm, tokenizer, monkeypatch, caplog):
    """Where the fused kernel is chosen SFT's head calls it (same loss as chunked), chosen and logged once."""
    batch = _batch(tokenizer)
    norms = SFTObjective().normalizers(batch)
    chunked = SFTObjective().loss(lm, batch, norms)
    calls, needs = [], []
    _fused_chosen(monkeypatch, needs)
    monkeypatch.setattr(head_loss, "fused_head_ce", _reference_fused(calls))
    obj = SFTObjective()
    with caplog.at_level(logging.INFO, logger="pivotune.models.fused_ce"):
        fused = [obj.loss(lm, batch, norms) for _ in range(2)]
    assert calls == [(int(norms["tokens"]), 0.0)] * 2 and len(needs) == 1
    assert [r.getMessage() for r in caplog.records] == ["final head: Liger's fused linear cross-entropy (a stand-in)"]
    # the fused path computes in float32
    torch.testing.assert_close(fused[0][0].double(), chunked[0], rtol=1e-6, atol=0)
    torch.testing.assert_close(fused[0][1][ROW_LOSSES].sums.double(), chunked[1][ROW_LOSSES].sums, rtol=1e-6, atol=0)
    assert obj.describe(lm)["sft"]["kernel"] == "Liger's fused linear cross-entropy (a stand-in)"


@pytest.mark.parametrize("sharded", [False, True])
def test_both_prom_heads_call_the_chosen_kernel(tokenizer, monkeypatch, sharded):
    """PROM's pivot head (with its label smoothing) and final head each call the chosen kernel, on both paths."""
    cfg = load_config(base={"model": "tiny", "method": "prom", "languages": ["el"],
                            "prom": {"pivot_layer": 1, "label_smoothing": 0.2}})
    obj = run_objective(cfg)
    obj = obj.for_sharded_training() if sharded else obj
    pm = obj.prepare_model(tiny_llama(tokenizer, layers=2, hidden=32).double())
    batch = _batch(tokenizer)
    calls, needs = [], []
    _fused_chosen(monkeypatch, needs)
    monkeypatch.setattr(head_loss, "fused_head_ce", _reference_fused(calls))
    obj.loss(pm, batch, obj.normalizers(batch))[0].backward()
    sup = batch["labels"][:, 1:].ne(-100).sum(1)
    en = batch["roles"].eq(EN)
    assert calls == [(int(sup[en].sum()), 0.2), (int(sup[~en].sum()), 0.0)]
    assert [(n.label_smoothing, n.sharded) for n in needs] == [(0.2, sharded), (0.0, sharded)]


def test_sharded_training_keeps_the_chunked_path_and_says_why(monkeypatch):
    """Sharded SFT and PROM ask for a kernel that reads no gathered weight: the chunked path, named."""
    monkeypatch.setattr(fused_ce, "installed_liger", lambda: fused_ce.Liger("0.8.2"))
    sft = SFTObjective().for_sharded_training()
    prom = run_objective(load_config(base={"model": "m", "method": "prom", "languages": ["el"]}))
    prom = prom.for_sharded_training()
    for loss in (sft.head_loss, prom.pivot_loss, prom.final_loss):
        assert loss.sharded
        choice = fused_ce.choose_head_kernel("cuda", fused_ce.HeadLossNeeds(sharded=loss.sharded))
        assert choice.fallback is Fallback.SHARDED


# ------------------------------------------------------------------------------------ prom.recompute_logits

def test_auto_recompute_is_the_rule_on_the_trainable_gradients(lm):
    """auto weighs the logits kept at the bound's positions against the trainable parameters' gradients (float64
    weights: 8 bytes each), resolves once and keeps its value; true and false stay as set."""
    info = arch_info(lm)
    vocab = int(info.unembed.weight.shape[0])
    grads = sum(p.numel() for p in lm.parameters()) * 8
    at_limit = grads // kept_logit_bytes(1, vocab)
    assert RecomputeLogits("auto", at_limit).resolve(lm, info) is False
    auto = RecomputeLogits("auto", at_limit + 1)
    assert auto.resolve(lm, info) is True
    assert auto.resolve(lm, info, positions=1) is True and auto.value is True
    assert RecomputeLogits("auto").resolve(lm, info, positions=at_limit) is False   # the first batch's bound
    for setting in (True, False):
        assert RecomputeLogits(setting, 10**9).resolve(lm, info) is setting


def test_frozen_parameters_do_not_count(lm):
    """Only trainable parameters' gradients are weighed (LoRA, lens-local): freezing tips the rule to recompute."""
    info = arch_info(lm)
    bound = sum(p.numel() for p in lm.parameters()) * 8 // kept_logit_bytes(1, int(info.unembed.weight.shape[0]))
    lm.model.layers.requires_grad_(False)
    try:
        assert RecomputeLogits("auto", bound).resolve(lm, info) is True
    finally:
        lm.model.layers.requires_grad_(True)


def test_the_road_bounds_a_micro_batch_by_its_data():
    """The bound is the per_device_batch_size largest rows' supervised targets once encoded, else
    per_device_batch_size × max_seq_len; both objectives get it, and the setting."""
    assert micro_batch_positions([5, 9, 1, 7], 2) == 16 and micro_batch_positions([5], 4) == 5
    base = {"model": "m", "languages": ["el"], "max_seq_len": 64, "train": {"per_device_batch_size": 3}}
    for method in ("xllama", "prom"):
        road = METHODS[method].road(load_config(base={**base, "method": method}))
        assert road.objective(Stage()).recompute.positions == 3 * 64
        road.supervised[Stage().name] = [4, 30, 12, 8]
        assert road.objective(Stage()).recompute.positions == 50
    obj = run_objective(load_config(base={**base, "method": "english", "prom": {"recompute_logits": False,
                                                                                "chunk_size": 9}}))
    assert obj.recompute.value is False and obj.head_loss.chunk_size == 9


@pytest.mark.parametrize("value,expected", [("auto", "auto"), ("true", True), ("false", False)])
def test_recompute_logits_takes_auto_true_or_false(value, expected):
    """prom.recompute_logits is auto by default and accepts auto, true and false; anything else is refused."""
    assert load_config(base={"model": "m"}).prom.recompute_logits == "auto"
    cfg = load_config(base={"model": "m"}, overrides=[f"prom.recompute_logits={value}"])
    assert cfg.prom.recompute_logits == expected
    with pytest.raises(ConfigError, match="recompute_logits"):
        load_config(base={"model": "m"}, overrides=["prom.recompute_logits=sometimes"])
