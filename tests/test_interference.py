"""Gradient interference: the cosine equals two explicit backward passes (SFT, PROM, LoRA), the measurement
leaves gradients, RNG and modes as they were, and a run with the callback trains to identical weights."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_llama

from pivotune.analysis.interference import (
    block_parameters,
    draw_batches,
    measure_interference,
    resolve_blocks,
    source_items,
    summarize,
)
from pivotune.config import load_config
from pivotune.data.collate import encode_sample
from pivotune.data.records import Sample
from pivotune.errors import ConfigError, PivotuneError
from pivotune.models.loading import apply_lora
from pivotune.methods import run_objective
from pivotune.train.run import train

pytestmark = pytest.mark.usefixtures("one_thread")

N_LAYERS, PIVOT = 4, 2
LANG_IDS = {"en": 0, "el": 1}
WORDS = ["the", "cat", "dog", "bird", "sees", "eats", "likes", "runs", "to", "from", "big", "small", "red", "blue", "green", "house", "tree", "river"]


def _samples(n=8):
    out = []
    for i in range(n):
        text = " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(3 + i % 4))
        out += [Sample(instruction=f"Say {i}.", output=text, role="en", lang="en"),
                Sample(instruction=f"Pe {i}.", output=text[::-1], role="tgt", lang="el", weight=0.5),
                Sample(instruction="Translate.", input=text, output=text.upper(), role="mt", lang="el")]
    return out


def _batches(tokenizer, k=3, size=3):
    enc = [encode_sample(s, tokenizer, lang_ids=LANG_IDS) for s in _samples()]
    return {spec: draw_batches(source_items(enc, spec, LANG_IDS), k, size, seed=0,
                               pad_token_id=tokenizer.pad_token_id, tag=spec) for spec in ("en", "tgt:el", "mt")}


def _cfg(method, **prom):
    return load_config(base={"model": "tiny", "method": method, "languages": ["el"],
                             "prom": {"pivot_layer": PIVOT, **prom}})


def _model_and_objective(tokenizer, method="xllama", lora=False):
    cfg = _cfg(method)
    model = tiny_llama(tokenizer, layers=N_LAYERS, hidden=32, init_std=0.2).double()
    if lora:
        model = apply_lora(model, cfg.lora.model_copy(update={"r": 4, "dropout": 0.2}))
    objective = run_objective(cfg)
    model = objective.prepare_model(model)
    return model, objective


def _naive_cosines(model, objective, batches_a, batches_b, blocks):
    """Two explicit backward passes into .grad, flattened gradients of the blocks, torch's cosine."""
    params = [p for ps in block_parameters(model, blocks).values() for p in ps]
    model.eval()

    def flat(batch):
        model.zero_grad(set_to_none=True)
        loss, _ = objective.loss(model, batch, objective.normalizers(batch))
        loss.backward()
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])

    out = []
    for a, b in zip(batches_a, batches_b):
        ga, gb = flat(a), flat(b)
        out.append(float("nan") if ga.norm() == 0 or gb.norm() == 0 else float(F.cosine_similarity(ga, gb, dim=0)))
    model.zero_grad(set_to_none=True)
    return out


def _close(xs, ys, tol=1e-6):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= tol, (xs, ys)


@pytest.mark.parametrize("method,pair", [("xllama", ("en", "tgt:el")), ("xllama", ("tgt:el", "mt")),
                                         ("prom", ("en", "tgt:el"))])
def test_cosine_equals_two_backward_passes(tokenizer, method, pair):
    model, objective = _model_and_objective(tokenizer, method)
    batches = _batches(tokenizer)
    res = measure_interference(model, objective, batches[pair[0]], batches[pair[1]], list(range(1, N_LAYERS + 1)))
    for blocks in ([N_LAYERS], [PIVOT], [1, 2], list(range(1, N_LAYERS + 1))):
        _close(res.cosines(blocks), _naive_cosines(model, objective, batches[pair[0]], batches[pair[1]], blocks))
    cos = res.cosines([N_LAYERS])
    if method == "prom" and pair[0] == "en":
        # PROM's English rows stop at the pivot layer: no gradient above it, so no cosine there
        assert all(math.isnan(c) for c in cos)
        assert res.summary([N_LAYERS])["undefined"] == len(cos) and res.summary([N_LAYERS])["mean"] is None
        assert all(not math.isnan(c) for c in res.cosines([PIVOT]))
    else:
        assert all(-1 <= c <= 1 for c in cos) and len(set(cos)) > 1


def test_lora_adapters_and_nothing_left_behind(tokenizer):
    model, objective = _model_and_objective(tokenizer, "xllama", lora=True)
    params = block_parameters(model, [N_LAYERS])[N_LAYERS]
    assert params and all(p.requires_grad for p in params)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("lora_" in names[id(p)] for p in params)   # the adapters, not the frozen base weights
    batches = _batches(tokenizer)
    model.train()
    rng = torch.get_rng_state()
    res = measure_interference(model, objective, batches["en"], batches["tgt:el"], [N_LAYERS])
    assert torch.equal(rng, torch.get_rng_state())
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    _close(res.cosines(), _naive_cosines(model, objective, batches["en"], batches["tgt:el"], [N_LAYERS]))


def test_summary_and_layer_specs():
    s = summarize([0.5, float("nan"), 0.1])
    assert s["mean"] == pytest.approx(0.3) and s["sd"] == pytest.approx(float(torch.tensor([0.5, 0.1]).std()))
    assert s["undefined"] == 1 and s["cosines"] == [0.5, None, 0.1]
    assert resolve_blocks("last", 8) == [8] and resolve_blocks("all", 3) == [1, 2, 3]
    assert resolve_blocks("pivot", 8, 6) == [6] and resolve_blocks("2,4", 8) == [2, 4] and resolve_blocks(3, 8) == [3]
    with pytest.raises(PivotuneError, match="out of range 1..4"):
        resolve_blocks("5", 4)
    with pytest.raises(ConfigError, match="ROLE or ROLE:LANG"):
        load_config(base={"model": "m", "interference": {"every": 1, "pairs": [["en", "xx"]]}})
    with pytest.raises(ConfigError, match="interference.layers"):
        load_config(base={"model": "m", "interference": {"layers": "first"}})


def test_missing_source_is_a_clear_error(tokenizer):
    enc = [encode_sample(s, tokenizer, lang_ids=LANG_IDS) for s in _samples() if s.role != "en"]
    with pytest.raises(PivotuneError, match="'en' has no samples.*roles present: mt, tgt"):
        source_items(enc, "en", LANG_IDS)
    with pytest.raises(PivotuneError, match="language 'th' is not one of"):
        source_items(enc, "tgt:th", LANG_IDS)


def _run(model_dir, out, method, *, every, lora=False):
    base = {"model": str(model_dir), "method": method, "languages": ["el"], "output_dir": str(out),
            "max_seq_len": 256, "prom": {"pivot_layer": 1, "lambda_per_language": {"el": 0.5}},
            "train": {"lr": 3e-3, "max_steps": 3, "per_device_batch_size": 4, "grad_accum": 2, "warmup_ratio": 0.0,
                      "scheduler": "constant", "logging_steps": 1, "progress_bar": False},
            "lora": {"enabled": lora, "r": 4, "dropout": 0.3},
            "interference": {"every": every, "batches": 2, "batch_size": 3, "layers": "1", "profile": True,
                             "pairs": [["en", "tgt:el"], ["tgt", "mt"]]}}
    return train(load_config(base=base), _samples(), save_checkpoints=False)


@pytest.mark.parametrize("method,lora", [("xllama", True), ("prom", False)])
def test_training_with_the_callback_gives_identical_weights(tiny_model_dir, tmp_path, method, lora):
    off = _run(tiny_model_dir, tmp_path / "off", method, every=0, lora=lora)
    on = _run(tiny_model_dir, tmp_path / "on", method, every=1, lora=lora)
    for (name, a), (_, b) in zip(off.model.named_parameters(), on.model.named_parameters()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "off" / "interference.json").exists()
    logged = json.loads((tmp_path / "on" / "interference.json").read_text())
    assert logged["method"] == method and logged["blocks"] == [1]
    assert [(r["step"], r["pair"]) for r in logged["records"]] == [
        (s, p) for s in range(4) for p in ("en~tgt:el", "tgt~mt")]
    assert all(r["undefined"] == 0 and -1 <= r["mean"] <= 1 and set(r["profile"]) == {"1", "2"}
               for r in logged["records"])
    history = json.loads((tmp_path / "on" / "run.json").read_text())["log_history"]
    steps = [h["step"] for h in history if "interference/en~tgt:el" in h]
    assert steps == [0, 1, 2, 3]
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3]   # a measurement keeps the step's loss log
