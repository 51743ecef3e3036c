"""CLO: cross-lingual pairs, the loss against an explicit computation, attention-only training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import tiny_llama

from pivotune.config import CloSettings, load_config
from pivotune.data.clo_pairs import (
    UnitCollator,
    encode_units,
    pair_translations,
    translated_samples,
    unit_sequences,
)
from pivotune.data.collate import Collator
from pivotune.data.records import Sample
from pivotune.errors import DataError, PivotuneError
from pivotune.models.arch import attention_projection_names
from pivotune.objectives.clo import CLOObjective
from pivotune.objectives.sft import SFTObjective
from pivotune.train import clo as clo_train
from pivotune.train.run import train

OUTPUTS = ["the red cat", "a blue bird sees the dog", "two green trees", "the big river is water",
           "one small dog eats food", "good food and water", "hello world", "yes and no"]


def _reverse(text: str) -> str:   # a stand-in "translation": exact, invertible, different from the English
    return " ".join(reversed(text.split()))


ENGLISH = [Sample(instruction=f"Name item {i}.", input="the house" if i % 2 else "", output=o, role="en", lang="en",
                  source="en.jsonl", origin=f"en.jsonl, line {i + 1}") for i, o in enumerate(OUTPUTS)]
TARGET = translated_samples(ENGLISH, "xx", _reverse, source="xx.jsonl")


def test_units_pair_rows_in_block_order():
    units = pair_translations(ENGLISH, TARGET)
    assert len(units) == len(ENGLISH)
    seqs = unit_sequences(units[1])
    en, xx = ENGLISH[1], TARGET[1]
    assert [(s.instruction, s.input, s.output) for s in seqs] == [
        (en.instruction, en.input, en.output), (en.instruction, en.input, xx.output),
        (xx.instruction, xx.input, xx.output), (xx.instruction, xx.input, en.output)]
    assert xx.lang == "xx" and xx.role == "tgt" and xx.output == _reverse(en.output)


def test_pairing_errors_name_files_and_rows(caplog):
    with pytest.raises(DataError, match=r"en\.jsonl.*xx\.jsonl.*8 and 7 valid rows"):
        pair_translations(ENGLISH, TARGET[:7])
    chat = Sample(messages=({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                            {"role": "user", "content": "more"}, {"role": "assistant", "content": "world"}),
                  role="tgt", lang="xx", source="xx.jsonl", origin="xx.jsonl, line 3")
    with pytest.raises(DataError, match=r"xx\.jsonl, line 3: CLO needs single-turn rows"):
        pair_translations(ENGLISH[:1], [chat])
    single = Sample(messages=chat.messages[:2], role="tgt", lang="xx", origin="xx.jsonl, line 1")
    with pytest.raises(DataError, match=r"xx\.jsonl, line 1: this translation is in a different form"):
        pair_translations(ENGLISH[:1], [single])
    same = [TARGET[0], Sample(instruction="x", output=ENGLISH[1].output, role="tgt", lang="xx")]
    assert len(pair_translations(ENGLISH[:2], same)) == 1
    assert "identical English and translated responses" in caplog.text


def _batch(tokenizer, reference_model, n=4):
    units = encode_units(pair_translations(ENGLISH[:n], TARGET[:n]), tokenizer, template="alpaca", max_seq_len=256)
    collator = UnitCollator(tokenizer.pad_token_id)
    clo_train.precompute_reference(reference_model, units, collator, batch_size=3)
    return units, collator(units)


def _explicit_logp(model, ids: list[int], labels: list[int]) -> float:
    """Σ log p(label_t | ids_<t) over response tokens, one unpadded sequence, an explicit loop."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    total = 0.0
    for t in range(1, len(ids)):
        if labels[t] != -100:
            row = logits[t - 1]
            total += float(row[labels[t]] - torch.logsumexp(row, dim=0))
    return total


def test_loss_equals_explicit_computation(tokenizer, one_thread):
    policy, reference = tiny_llama(tokenizer, seed=0).double(), tiny_llama(tokenizer, seed=1).double()
    units, batch = _batch(tokenizer, reference)
    beta, lam = 0.3, 0.25
    objective = CLOObjective(CloSettings(beta=beta, nll_weight=lam))
    loss, parts = objective.loss(policy, batch, objective.normalizers(batch))

    log_sigmoid = lambda x: -math.log1p(math.exp(-x))
    cl = nll = tokens = 0.0
    for u in units:
        lp = [_explicit_logp(policy, e.input_ids, e.labels) for e in u.sequences]
        ref = [_explicit_logp(reference, e.input_ids, e.labels) for e in u.sequences]
        assert ref == pytest.approx(u.ref_logps, abs=1e-9)   # the precomputed reference, padded and batched
        cl -= log_sigmoid(beta * ((lp[0] - ref[0]) - (lp[1] - ref[1])))
        cl -= log_sigmoid(beta * ((lp[2] - ref[2]) - (lp[3] - ref[3])))
        nll -= lp[2]
        tokens += sum(x != -100 for x in u.sequences[2].labels[1:])
    expected = lam * nll / tokens + (1 - lam) * cl / len(units)
    assert abs(loss.item() - expected) < 1e-6, (loss.item(), expected)
    assert abs(float(parts["clo_cl"]) - cl / len(units)) < 1e-6


def test_nll_weight_one_is_sft_on_target_responses(tokenizer, one_thread):
    model = tiny_llama(tokenizer, seed=0).double()
    units, batch = _batch(tokenizer, model)
    objective = CLOObjective(CloSettings(beta=0.1, nll_weight=1.0))
    loss, _ = objective.loss(model, batch, objective.normalizers(batch))
    sft_batch = Collator(tokenizer.pad_token_id)([u.sequences[2] for u in units])
    sft = SFTObjective()
    sft_loss, _ = sft.loss(model, sft_batch, sft.normalizers(sft_batch))
    assert abs(loss.item() - sft_loss.item()) < 1e-6   # the SFT loss is computed in float32
    # at the start (policy = reference) every margin is 0: the preference term is 2·log 2 per unit
    _, parts = CLOObjective(CloSettings(beta=0.1, nll_weight=0.0)).loss(model, batch, objective.normalizers(batch))
    assert abs(float(parts["clo_cl"]) - 2 * math.log(2)) < 1e-9


def _cfg(model_dir, out, **over):
    base = {"model": str(model_dir), "method": "clo", "extra_languages": ["xx"], "languages": ["xx"],
            "output_dir": str(out),
            "max_seq_len": 256,
            "train": {"lr": 1e-2, "max_steps": 3, "per_device_batch_size": 2, "grad_accum": 1, "warmup_ratio": 0.0,
                      "scheduler": "constant", "logging_steps": 1, "progress_bar": False},
            "clo": {"reference_batch_size": 3}}
    return load_config(base=base, overrides=[f"{k}={v}" for k, v in over.items()])


def test_only_attention_trains_and_reference_is_computed_once(tiny_model_dir, tmp_path, monkeypatch, one_thread):
    calls, forwards = [], []
    precompute, load = clo_train.precompute_reference, clo_train.load_model

    def counting_precompute(*args, **kwargs):
        calls.append(1)
        return precompute(*args, **kwargs)

    def counting_load(*args, **kwargs):
        model = load(*args, **kwargs)
        model.register_forward_pre_hook(lambda *_: forwards.append(1))
        return model

    monkeypatch.setattr(clo_train, "precompute_reference", counting_precompute)
    monkeypatch.setattr(clo_train, "load_model", counting_load)
    before = {n: p.detach().clone() for n, p in load(str(tiny_model_dir)).named_parameters()}
    trainer = train(_cfg(tiny_model_dir, tmp_path / "run"), ENGLISH + TARGET, save_checkpoints=False)

    steps = 3
    assert trainer.state.global_step == steps
    assert calls == [1]
    assert len(forwards) == math.ceil(len(ENGLISH) / 3) + steps   # one reference pass, then policy forwards only
    attention = set(attention_projection_names(trainer.model))
    changed = {n.rsplit(".", 1)[0] for n, p in trainer.model.named_parameters()
               if not torch.equal(p.detach().cpu(), before[n])}
    assert changed == attention
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    attention_params = sum(p.numel() for n, p in trainer.model.named_parameters() if n.rsplit(".", 1)[0] in attention)
    assert meta["trainable_parameters"] == attention_params < meta["total_parameters"]
    assert meta["units"] == {"xx": len(ENGLISH)} and meta["steps"] == steps
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == steps and all({"clo_cl", "clo_nll", "clo_accuracy"} <= set(h) for h in logged)


def test_lora_goes_on_attention_projections_only(tiny_model_dir, tmp_path, one_thread):
    trainer = train(_cfg(tiny_model_dir, tmp_path / "run", **{"lora.enabled": "true", "train.max_steps": 1}),
                    ENGLISH + TARGET, save_checkpoints=False)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".self_attn." in n for n in trainable)
    assert {n.split(".self_attn.")[1].split(".")[0] for n in trainable} == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_clo_needs_translations_and_valid_settings(tiny_model_dir, tmp_path):
    with pytest.raises(PivotuneError, match=r"role 'en'.*role 'tgt'.*got 8 English and 0 translated"):
        train(_cfg(tiny_model_dir, tmp_path / "run"), ENGLISH, save_checkpoints=False)
    with pytest.raises(PivotuneError, match=r"clo\.nll_weight.*<= 1"):
        _cfg(tiny_model_dir, tmp_path / "run", **{"clo.nll_weight": 1.5})
    cfg = _cfg(tiny_model_dir, tmp_path / "run", **{"clo.max_items": 3})
    assert len(clo_train.clo_units(cfg, ENGLISH + TARGET)) == 3
