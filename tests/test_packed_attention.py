"""pivotune.models.packed_attention: sdpa run per packed sample equals transformers' block-diagonal masked sdpa,
and each sample run on its own, on every supported architecture; it falls back wherever it would not."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from test_arch import ARCHS, VOCAB, _cfg

from pivotune.data.collate import Encoded
from pivotune.data.packing import attention_inputs, packed_tensors
from pivotune.models import packed_attention as P

pytestmark = pytest.mark.usefixtures("one_thread")
ROWS = ([5, 7, 3], [9, 2, 4])   # sample lengths of two packed rows (the second's padding: its own segment)
EAGER_ONLY = ("gemma2", "gemma3_text")   # soft-capped attention: transformers refuses sdpa for them


def _rows(lengths=ROWS, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [[Encoded(torch.randint(3, VOCAB, (n,), generator=g).tolist(), [1] * n, 0, 0, 1.0, False) for n in ns]
            for ns in lengths]


def _model(name, **overrides):
    from transformers import AutoModelForCausalLM

    cfg = _cfg(name)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    attn = "eager" if name in EAGER_ONLY else "sdpa"
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
    return model.double().eval()   # float64: only the attention's path can differ; eval: dropout off


def _logits_and_grads(model, batch, per_sample: bool):
    """Logits at the samples' tokens and every gradient of a fixed random projection of them (dropout off)."""
    model.zero_grad(set_to_none=True)
    # backward inside the block too: activation checkpointing re-runs the attention there
    with P.per_sample_attention(model) if per_sample else contextlib.nullcontext():
        logits = model(input_ids=batch["input_ids"], **attention_inputs(batch), use_cache=False).logits
        real = logits[batch["attention_mask"].bool()]
        weights = torch.randn(real.shape, generator=torch.Generator().manual_seed(3), dtype=real.dtype)
        (real * weights).sum().backward()
    return real.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.fixture
def bounds_spy(monkeypatch):
    """Counts the forwards whose layers took the per-sample path (sample bounds found)."""
    found = []
    original = P.sample_bounds

    def spy(position_ids):
        bounds = original(position_ids)
        found.append(bounds is not None)
        return bounds

    monkeypatch.setattr(P, "sample_bounds", spy)
    return found


@pytest.mark.parametrize("name", ARCHS)
def test_per_sample_attention_equals_the_masked_one_on_every_architecture(name, bounds_spy):
    """Logits and gradients of a packed batch agree to 1e-10 (float64) with transformers' block-diagonal masked
    sdpa."""
    model = _model(name)
    batch = packed_tensors(_rows(), 0)
    masked, masked_grads = _logits_and_grads(model, batch, per_sample=False)
    per_sample, grads = _logits_and_grads(model, batch, per_sample=True)
    torch.testing.assert_close(per_sample, masked, atol=1e-10, rtol=1e-10)
    assert grads.keys() == masked_grads.keys() and grads
    for k in grads:
        torch.testing.assert_close(grads[k], masked_grads[k], atol=1e-10, rtol=1e-10, msg=k)
    if name in EAGER_ONLY:
        assert not bounds_spy   # eager stays eager: per-sample attention stands in for sdpa only
    else:
        assert bounds_spy and all(bounds_spy)   # every layer took the per-sample path (Mistral: window 3 checked)


@pytest.mark.parametrize("name", ["llama", "qwen2", "gpt_neox"])
def test_per_sample_attention_equals_each_sample_run_alone(name):
    """Each packed sample's logits equal that sample's own unpacked forward (the independent reference), to 1e-10
    in float64."""
    model = _model(name)
    rows = _rows()
    batch = packed_tensors(rows, 0)
    with torch.no_grad(), P.per_sample_attention(model) as switched:
        logits = model(input_ids=batch["input_ids"], **attention_inputs(batch), use_cache=False).logits
    assert switched
    for r, row in enumerate(rows):
        at = 0
        for e in row:
            with torch.no_grad():
                alone = model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0]
            torch.testing.assert_close(logits[r, at:at + len(e.input_ids)], alone, atol=1e-10, rtol=1e-10)
            at += len(e.input_ids)


def test_sample_bounds_read_packed_position_ids_only():
    """Spans where ids restart at 0 and count up; None for one sequence per row, left-padded generation ids,
    right-padded cumulative ids and 1-D ids."""
    packed = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]])
    assert P.sample_bounds(packed) == [[(0, 3), (3, 5), (5, 6)], [(0, 4), (4, 6)]]
    assert P.sample_bounds(torch.arange(6).expand(2, 6).clone()) is None
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    generation = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)   # what generate() passes: [1, 1, 0, 1, 2, 3]
    assert P.sample_bounds(generation) is None
    assert P.sample_bounds(torch.tensor([[0, 1, 2, 3, 3, 3]])) is None
    assert P.sample_bounds(torch.tensor([0, 1, 0, 1])) is None


@pytest.mark.parametrize("window, per_sample", [(3, False), (9, True)])
def test_a_sliding_window_shorter_than_a_sample_keeps_the_masked_path(window, per_sample, monkeypatch):
    """Mistral with a window below a sample's length attends through the masked path (the window bounds it);
    with every sample inside the window it attends per sample; both equal the masked attention."""
    import transformers.integrations.sdpa_attention as S

    batch = packed_tensors(_rows(), 0)
    took, sdpa = [], S.sdpa_attention_forward

    def spy(module, query, *args, **kwargs):   # a call on less than a whole row: one sample's
        took.append(query.shape[2] < batch["input_ids"].shape[1])
        return sdpa(module, query, *args, **kwargs)

    monkeypatch.setattr(S, "sdpa_attention_forward", spy)
    model = _model("mistral", sliding_window=window)
    with torch.no_grad():
        masked = model(input_ids=batch["input_ids"], **attention_inputs(batch), use_cache=False).logits
        took.clear()
        with P.per_sample_attention(model):
            got = model(input_ids=batch["input_ids"], **attention_inputs(batch), use_cache=False).logits
    assert took and all(took) == per_sample and any(took) == per_sample
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(got[keep], masked[keep], atol=1e-10, rtol=1e-10)


def test_the_switch_is_restored_on_error_and_never_saved(tmp_path):
    """Inside the block the model runs the per-sample implementation; after it (an error included) sdpa again,
    and a model saved inside the block names no implementation in its config.json; eager is left alone."""
    model = _model("llama")
    with pytest.raises(RuntimeError, match="boom"):
        with P.per_sample_attention(model) as switched:
            assert switched and model.config._attn_implementation == P.PACKED_SDPA
            model.save_pretrained(tmp_path)
            raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert P.PACKED_SDPA not in json.dumps(saved) and "attn_implementation" not in json.dumps(saved)
    eager = _model("gemma2")
    with P.per_sample_attention(eager) as switched:
        assert not switched and eager.config._attn_implementation == "eager"


def test_position_ids_of_another_shape_keep_the_masked_path():
    """Position ids that do not describe the call's rows (one row of ids for two rows of queries) leave the
    call to sdpa with the mask it was given."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 6, 8, generator=g, dtype=torch.float64) for _ in range(3))
    module = torch.nn.Module()
    module.is_causal = True
    ids = torch.tensor([[0, 1, 2, 0, 1, 2]])
    got, _ = P.packed_sdpa_attention(module, q, k, v, None, position_ids=ids)
    want, _ = sdpa_attention_forward(module, q, k, v, None)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    per_sample, _ = P.packed_sdpa_attention(module, q, k, v, None, position_ids=ids.expand(2, 6).clone())
    assert not torch.allclose(per_sample, want)   # with ids for both rows, the samples are kept apart


def test_gradient_checkpointing_recomputes_the_same_per_sample_attention():
    """With activation checkpointing (each block re-run in backward), per-sample gradients equal the masked
    attention's without it, to 1e-12 in float64."""
    model = _model("llama")
    batch = packed_tensors(_rows(), 0)
    _, want = _logits_and_grads(model, batch, per_sample=False)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        _, got = _logits_and_grads(model.train(), batch, per_sample=True)
    finally:
        model.gradient_checkpointing_disable()
    assert got.keys() == want.keys() and got
    for k in got:
        torch.testing.assert_close(got[k], want[k], atol=1e-12, rtol=1e-12, msg=k)
