"""The head kernel's selection (Liger's fused linear cross-entropy or the chunked path) and the recompute rule."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import logging
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import tiny_llama
from pivotune.models import fused_ce
from pivotune.models.arch import arch_info, unembed_logits
from pivotune.models.fused_ce import (Fallback, HeadLossNeeds, Liger, LinearHead, announce, choose_head_kernel,
                                      fused_head_ce, kept_logit_bytes, recompute_logits)
from pivotune.models.pivot_head import PivotHead
from pivotune.objectives.head_loss import chunked_head_ce

NEW = Liger("0.8.2")


def test_off_cuda_the_chunked_path_runs_without_looking_for_liger(monkeypatch):
    """On a CPU the chunked path is chosen before liger-kernel is even looked up."""
    monkeypatch.setattr(fused_ce, "installed_liger", lambda: pytest.fail("liger looked up off CUDA"))
    choice = choose_head_kernel(torch.device("cpu"), HeadLossNeeds())
    assert not choice.fused and choice.fallback is Fallback.NOT_CUDA and "the device is cpu" in choice.reason


@pytest.mark.parametrize("liger,needs,fallback,words", [
    (Liger(), HeadLossNeeds(), Fallback.NOT_INSTALLED, "pip install 'liger-kernel>=0.8.2'"),
    (Liger(import_error="ImportError: no triton"), HeadLossNeeds(), Fallback.BROKEN, "(ImportError: no triton)"),
    (Liger("0.8.1"), HeadLossNeeds(), Fallback.TOO_OLD, "liger-kernel 0.8.1 is older than 0.8.2"),
    (NEW, HeadLossNeeds(sharded=True), Fallback.SHARDED, "sharded (FSDP, ZeRO-3)"),
    (NEW, HeadLossNeeds(projection="Linear8bitLt"), Fallback.NOT_LINEAR, "is a Linear8bitLt, not a plain"),
])
def test_every_fallback_on_cuda_says_why(liger, needs, fallback, words):
    """Each reason to keep the chunked path on a CUDA device is named in the logged sentence."""
    choice = choose_head_kernel("cuda", needs, liger)
    assert not choice.fused and choice.fallback is fallback
    assert choice.reason.startswith("chunked cross-entropy: ") and words in choice.reason


def test_liger_is_chosen_when_it_covers_the_loss(monkeypatch):
    """Label smoothing, soft-cap and logit scale go to Liger (0.8.2 or later: per-token losses)."""
    monkeypatch.setattr(fused_ce, "installed_liger", lambda: NEW)
    choice = choose_head_kernel("cuda", HeadLossNeeds(0.1, 30.0, 0.5))
    assert choice.fused and choice.fallback is None
    assert choice.reason == ("Liger's fused linear cross-entropy (liger-kernel 0.8.2, label smoothing 0.1, "
                             "soft-cap 30, logit scale 0.5)")
    assert choose_head_kernel("cuda", HeadLossNeeds(0.1), Liger("0.9.0")).fused


def test_installed_liger_tells_missing_broken_and_working(monkeypatch):
    """Not installed, installed but not importable, and importable with its version are told apart."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert fused_ce.installed_liger() == Liger()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setitem(sys.modules, "liger_kernel", None)   # a None entry makes the import fail
    assert fused_ce.installed_liger().import_error.startswith(("ImportError", "ModuleNotFoundError"))
    functional = types.ModuleType("liger_kernel.transformers.functional")
    functional.liger_fused_linear_cross_entropy = lambda *a, **k: None
    for name, module in (("liger_kernel", types.ModuleType("liger_kernel")),
                         ("liger_kernel.transformers", types.ModuleType("liger_kernel.transformers")),
                         ("liger_kernel.transformers.functional", functional)):
        monkeypatch.setitem(sys.modules, name, module)
    sys.modules["liger_kernel"].transformers = sys.modules["liger_kernel.transformers"]
    sys.modules["liger_kernel.transformers"].functional = functional
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.8.2")
    assert fused_ce.installed_liger() == NEW


def test_announce_logs_cuda_choices_and_keeps_cpu_quiet(caplog):
    """The choice is logged at INFO on CUDA (fused or not, with the reason), at DEBUG off CUDA."""
    with caplog.at_level(logging.DEBUG, logger="pivotune.models.fused_ce"):
        announce("pivot head", choose_head_kernel("cuda", HeadLossNeeds(), Liger()))
        announce("final head", choose_head_kernel("cpu", HeadLossNeeds()))
    (cuda, cpu) = caplog.records
    assert cuda.levelno == logging.INFO and cuda.getMessage().startswith("pivot head: chunked cross-entropy: liger")
    assert cpu.levelno == logging.DEBUG


# ------------------------------------------------------------------------------------- the fused call's inputs

@pytest.fixture(scope="module")
def lm(tokenizer):
    torch.manual_seed(0)
    return tiny_llama(tokenizer)


def test_linear_head_reproduces_the_final_head_with_scale_bias_and_softcap(lm):
    """Folding the logit scale into the input and bias gives the model's logits (bias, scale, soft-cap on)."""
    info = arch_info(lm)
    h = torch.randn(5, lm.config.hidden_size)
    assert torch.allclose(LinearHead.final(info).logits(h), unembed_logits(info, h), atol=1e-6)
    biased = nn.Linear(lm.config.hidden_size, lm.config.vocab_size, bias=True)
    info2 = dataclasses.replace(info, unembed=biased, logit_scale=0.5, logit_softcap=2.0)
    head = LinearHead.final(info2)
    assert head.needs(0.1) == HeadLossNeeds(0.1, 2.0, 0.5, None)
    assert torch.allclose(head.logits(h), unembed_logits(info2, h), atol=1e-6)


@pytest.mark.parametrize("kind", ["copy", "copy_norm", "tied"])
def test_linear_head_reproduces_the_pivot_head(lm, kind):
    """Every pivot head kind, on raw block outputs, is norm then Linear as the fused kernel takes it."""
    info = arch_info(lm)
    head = PivotHead.from_model(lm, kind, info)
    raw = torch.randn(4, lm.config.hidden_size) * 3
    linear = LinearHead.pivot(head, info)
    assert linear.projection is None
    assert torch.allclose(linear.logits(raw), head(raw, info), atol=1e-6)


def test_a_lora_wrapped_head_is_not_a_plain_linear(lm):
    """A head whose projection is not a torch Linear (LoRA on lm_head) asks for the chunked path."""
    class Wrapped(nn.Linear):
        pass

    info = dataclasses.replace(arch_info(lm), unembed=Wrapped(8, 8))
    needs = LinearHead.final(info).needs()
    assert choose_head_kernel("cuda", needs, NEW).fallback is Fallback.NOT_LINEAR


def reference_kernel(x, weight, target, bias=None, *, reduction, label_smoothing, softcap):
    """Liger's liger_fused_linear_cross_entropy, as its documentation defines it, in plain torch."""
    z = F.linear(x, weight, bias).float()
    if softcap is not None:
        z = torch.tanh(z / softcap) * softcap
    return F.cross_entropy(z, target, reduction=reduction, label_smoothing=label_smoothing)


def test_fused_call_matches_the_chunked_path(lm):
    """With a reference kernel in Liger's place, loss, per-token losses and gradients equal the chunked path's
    (scale, softcap, label smoothing, unequal source weights)."""
    info = dataclasses.replace(arch_info(lm), logit_scale=0.5, logit_softcap=3.0)
    head = PivotHead.from_model(lm, "copy", info)
    g = torch.Generator().manual_seed(1)
    raw = torch.randn(7, lm.config.hidden_size, generator=g, requires_grad=True)
    targets = torch.randint(0, lm.config.vocab_size, (7,), generator=g)
    weights = torch.tensor([2.0, 2, 2, 0.5, 0.5, 1, 1])

    def run(fn):
        head.zero_grad()
        raw.grad = None
        loss, each = fn()
        loss.backward()
        return loss.detach(), each, raw.grad.clone(), head.proj.weight.grad.clone()

    chunked = run(lambda: chunked_head_ce(lambda x: head(x, info), raw, targets, weights, alpha=0.1, chunk_size=3))
    fused = run(lambda: fused_head_ce(LinearHead.pivot(head, info), raw, targets, weights, label_smoothing=0.1,
                                      _kernel=reference_kernel))
    for a, b in zip(chunked, fused):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fused_call_with_no_supervised_position_is_a_differentiable_zero(lm):
    """An empty micro-batch gives 0 that still backpropagates (like the chunked path)."""
    h = torch.zeros(0, lm.config.hidden_size, requires_grad=True)
    loss, each = fused_head_ce(LinearHead.final(arch_info(lm)), h, torch.zeros(0, dtype=torch.long), torch.zeros(0),
                               _kernel=lambda *a, **k: pytest.fail("kernel called on nothing"))
    loss.backward()
    assert loss.item() == 0.0 and loss.dtype == torch.float32 and each.shape == (0,)


@pytest.mark.skipif(not torch.cuda.is_available() or fused_ce.installed_liger().version is None,
                    reason="needs a CUDA device and liger-kernel")
def test_liger_matches_the_chunked_path_on_cuda():
    """On a GPU, Liger's kernel gives the chunked path's loss, per-token losses and gradients (label smoothing,
    soft-cap, unequal weights)."""
    torch.manual_seed(0)
    proj = nn.Linear(256, 32000, bias=False).cuda()
    head = LinearHead(proj.weight, None, None, None, 30.0)
    h = torch.randn(300, 256, device="cuda", requires_grad=True)
    targets = torch.randint(0, 32000, (300,), device="cuda")
    weights = torch.rand(300, device="cuda") + 0.5
    if not choose_head_kernel("cuda", head.needs(0.1)).fused:
        pytest.skip("the installed liger-kernel is older than " + fused_ce.LIGER_MIN)

    def run(fn):
        proj.zero_grad()
        h.grad = None
        loss, each = fn()
        loss.backward()
        return loss.detach(), each, h.grad.clone(), proj.weight.grad.clone()

    chunked = run(lambda: chunked_head_ce(head.logits, h, targets, weights, alpha=0.1, chunk_size=128))
    fused = run(lambda: fused_head_ce(head, h, targets, weights, label_smoothing=0.1))
    for a, b in zip(chunked, fused):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


# ------------------------------------------------------------------------------------------ recompute_logits

def test_kept_logit_bytes_counts_the_float32_log_softmax():
    """Without recompute the chunked path keeps 4 bytes per supervised position and vocabulary entry (8 with a
    soft-cap, whose tanh is kept too)."""
    assert kept_logit_bytes(1000, 32000) == 128_000_000
    assert kept_logit_bytes(1000, 32000, softcap=True) == 256_000_000


@pytest.mark.parametrize("positions,vocab,params,grad_bytes,recompute", [
    (1136, 32000, 74_500_000, 4, False),      # bench/prom_step.py: 145 MB of logits, 298 MB of gradients
    (8 * 2048, 32000, 6_900_000_000, 4, False),   # Llama-2-7B full fine-tuning, 8 × 2048 tokens
    (8 * 2048, 32000, 150_000_000, 4, True),      # the same under LoRA (adapters + the pivot head)
    (8 * 2048, 32000, 6_900_000_000, 2, False),   # pure bf16 gradients: still far larger
])
def test_recompute_when_kept_logits_outgrow_the_gradients(positions, vocab, params, grad_bytes, recompute):
    """Recompute exactly when the kept logits would exceed the trainable parameters' gradients."""
    assert recompute_logits(positions, vocab, params, grad_bytes=grad_bytes) is recompute
    limit = params * grad_bytes
    assert recompute_logits(limit // (4 * vocab), vocab, params, grad_bytes=grad_bytes) is False
    assert recompute_logits(limit // (4 * vocab) + 1, vocab, params, grad_bytes=grad_bytes) is True
