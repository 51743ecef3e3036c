"""Packed and unpacked training agree: the same loss, gradients and per-role losses over an optimizer step, for
the supervised methods and PROM, through each road's own units and objective."""

from __future__ import annotations

import contextlib
import random

import pytest
import torch
from conftest import WORDS, tiny_llama

from pivotune.config import load_config
from pivotune.data.packing import PackedRow
from pivotune.data.records import Sample
from pivotune.methods import METHODS
from pivotune.methods.base import Stage
from pivotune.models.packed_attention import per_sample_attention
from pivotune.objectives.base import ROW_LOSSES

pytestmark = pytest.mark.usefixtures("one_thread")


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def mixed_samples(n: int = 30, seed: int = 0) -> list[Sample]:
    """English, target and translation rows of very unequal lengths, from sources of two weights."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        role = ("en", "tgt", "mt")[i % 3]
        weight = 0.5 if i % 4 == 0 else 1.0
        out.append(Sample(instruction=_words(rng, 1, 6), output=_words(rng, 1, 30), role=role,
                          lang="en" if role == "en" else "el", weight=weight, source=f"{role}-{weight}",
                          origin=f"row {i}"))
    return out


def _config(method: str, packing: bool):
    return load_config(base={"model": "tiny", "method": method, "languages": ["el"], "max_seq_len": 320,
                             "prom": {"pivot_layer": 2, "lambda_en": 0.5, "label_smoothing": 0.1, "chunk_size": 16},
                             "train": {"packing": packing}})


def _step(method: str, packing: bool, samples, tokenizer, rows_per_batch: int = 3, per_sample: bool = False):
    """One optimizer step over every unit of the road: (loss, gradients, loss per (role, lang), units);
    ``per_sample``: packed rows attend per sample (as train.packing runs them), else through the masked sdpa."""
    cfg = _config(method, packing)
    road = METHODS[method].road(cfg)
    stage = road.stages()[-1]
    units = road.units(stage, road.training_data(samples), tokenizer)
    objective = road.objective(stage)
    lm = tiny_llama(tokenizer, layers=3, hidden=32, init_std=0.2)
    model = objective.prepare_model(lm)
    batches = [units.collator(units.items[i:i + rows_per_batch]) for i in range(0, len(units.items), rows_per_batch)]
    norms: dict[str, torch.Tensor] = {}
    for b in batches:
        for k, v in objective.normalizers(b).items():
            norms[k] = norms.get(k, 0) + v
    total = torch.zeros(())
    by_group: dict[tuple[int, int], float] = {}
    with per_sample_attention(lm) if per_sample else contextlib.nullcontext(True) as switched:
        assert switched
        for b in batches:
            loss, logs = objective.loss(model, b, norms)
            loss.backward()
            total = total + loss.detach()
            rows = logs[ROW_LOSSES]
            for s, role, lang in zip(rows.sums.tolist(), b["roles"].tolist(), b["langs"].tolist()):
                by_group[role, lang] = by_group.get((role, lang), 0.0) + s
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    return total, grads, by_group, units


@pytest.mark.parametrize("per_sample", [False, True], ids=["masked", "per-sample"])
@pytest.mark.parametrize("method", ["xllama", "bactrian", "prom"])
def test_packed_and_unpacked_steps_give_the_same_loss_and_gradients(method, per_sample, tokenizer):
    """Loss, every gradient and the loss per role and language agree to 1e-5, with fewer rows packed, whether
    packed rows attend through the block-diagonal mask or per sample."""
    samples = mixed_samples()
    loss_a, grads_a, groups_a, plain = _step(method, False, samples, tokenizer)
    loss_b, grads_b, groups_b, packed = _step(method, True, samples, tokenizer, per_sample=per_sample)
    assert all(isinstance(row, PackedRow) for row in packed.items)
    assert len(packed.items) < len(plain.items) / 2
    assert sorted(e.sample_index for row in packed.items for e in row.samples) == sorted(
        e.sample_index for e in plain.items)
    assert packed.report["packed_rows"] == len(packed.items)
    torch.testing.assert_close(loss_b, loss_a, atol=1e-5, rtol=1e-5)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for k in grads_a:
        torch.testing.assert_close(grads_b[k], grads_a[k], atol=1e-5, rtol=1e-5, msg=k)
    assert groups_a.keys() == groups_b.keys()
    for k in groups_a:
        assert groups_b[k] == pytest.approx(groups_a[k], abs=1e-4), k


def test_packed_rows_are_named_by_their_samples(tokenizer):
    """The loss guard names every sample of a packed row by its source and line."""
    _, _, _, packed = _step("xllama", True, mixed_samples(), tokenizer)
    text = packed.describe(0)
    assert text.startswith("packed row 0: source '") and text.count("source '") == len(packed.items[0].samples)
    assert "row " in text and "language" in text


def test_packing_changes_the_data_fingerprint(tokenizer):
    """A packed run never resumes from an unpacked run's checkpoint (nor the other way round)."""
    samples = mixed_samples()
    cfgs = [_config("xllama", p) for p in (False, True)]
    prints = [METHODS["xllama"].road(c).units(Stage(), samples, tokenizer).fingerprint for c in cfgs]
    assert prints[0] != prints[1]


@pytest.mark.parametrize("method", ["xllama", "prom"])
def test_recompute_bound_counts_a_packed_rows_samples_together(method, tokenizer):
    """With packing, prom.recompute_logits: auto weighs a micro-batch of packed rows: each row's supervised
    targets are the sum of its samples', and the bound is the per_device_batch_size fullest rows."""
    road = METHODS[method].road(_config(method, True))
    units = road.units(Stage(), mixed_samples(), tokenizer)
    per_row = sorted((sum(int((torch.tensor(e.labels[1:]) != -100).sum()) for e in row.samples)
                      for row in units.items), reverse=True)
    rows = road.cfg.train.per_device_batch_size
    assert any(len(row.samples) > 1 for row in units.items)
    assert road.objective(Stage()).recompute.positions == sum(per_row[:rows])


def clo_samples(n: int = 10, seed: int = 1) -> list[Sample]:
    """English rows of very unequal lengths and their stand-in translations (the words reversed)."""
    rng = random.Random(seed)
    english = [Sample(instruction=_words(rng, 1, 6), output=_words(rng, 1, 30), role="en", lang="en",
                      origin=f"row {i}") for i in range(n)]
    return english + [Sample(instruction=e.instruction[::-1], output=e.output[::-1], role="tgt", lang="el",
                             origin=e.origin) for e in english]


def _clo_step(packing: bool, samples, tokenizer, units_per_batch: int = 3, per_sample: bool = False):
    """One CLO optimizer step: (loss, gradients, summed NLL term, reference log-probabilities); ``per_sample``:
    the reference pass and the step attend per sample."""
    cfg = _config("clo", packing)
    road = METHODS["clo"].road(cfg)
    stage = road.stages()[-1]
    units = road.units(stage, road.training_data(samples), tokenizer)
    model = tiny_llama(tokenizer, layers=3, hidden=32, init_std=0.2)
    objective = road.objective(stage)
    total, nll = torch.zeros(()), torch.zeros(())
    with per_sample_attention(model) if per_sample else contextlib.nullcontext(True) as switched:
        assert switched
        road.before_training(stage, model, units, "cpu")
        batches = [units.collator(units.items[i:i + units_per_batch])
                   for i in range(0, len(units.items), units_per_batch)]
        norms: dict[str, torch.Tensor] = {}
        for b in batches:
            for k, v in objective.normalizers(b).items():
                norms[k] = norms.get(k, 0) + v
        for b in batches:
            loss, parts = objective.loss(model, b, norms)
            loss.backward()
            total, nll = total + loss.detach(), nll + parts["clo_nll"]
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    return total, grads, nll, torch.tensor([u.ref_logps for u in units.items]), batches


@pytest.mark.parametrize("per_sample", [False, True], ids=["masked", "per-sample"])
def test_clo_packed_and_unpacked_give_the_same_loss_nll_term_and_gradients(per_sample, tokenizer):
    """CLO's loss, its NLL term, every gradient and the reference log-probabilities agree to 1e-5 packed, with
    either attention for the packed rows."""
    samples = clo_samples()
    loss_a, grads_a, nll_a, ref_a, plain = _clo_step(False, samples, tokenizer)
    loss_b, grads_b, nll_b, ref_b, packed = _clo_step(True, samples, tokenizer, per_sample=per_sample)
    assert sum(b["input_ids"].shape[0] for b in packed) < sum(b["input_ids"].shape[0] for b in plain) / 2
    torch.testing.assert_close(ref_b, ref_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nll_b, nll_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss_b, loss_a, atol=1e-5, rtol=1e-5)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for k in grads_a:
        torch.testing.assert_close(grads_b[k], grads_a[k], atol=1e-5, rtol=1e-5, msg=k)
