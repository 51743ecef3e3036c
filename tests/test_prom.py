"""PROM: the loss and every gradient equal a naive full-forward computation; English rows never run the
blocks above the pivot layer; chunking, accumulation, LoRA, the run directory and export."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_llama

from pivotune.config import load_config
from pivotune.data.records import Sample
from pivotune.errors import ConfigError, PivotuneError
from pivotune.models.pivot_head import default_pivot_layer, load_pivot_head
from pivotune.methods import run_objective
from pivotune.objectives.base import ROW_LOSSES, supervised_targets, weighted_token_ce
from pivotune.methods.prom.objective import english_lambda
from pivotune.train.run import train

N_LAYERS, PIVOT = 4, 2


pytestmark = pytest.mark.usefixtures("one_thread")

EN, TGT, MT = 0, 1, 2


def _objective(tokenizer, *, method="prom", languages=("el",), seed=0, **prom):
    cfg = load_config(base={"model": "tiny", "method": method, "languages": list(languages),
                            "prom": {"pivot_layer": PIVOT, **prom}})
    obj = run_objective(cfg)
    lm = tiny_llama(tokenizer, layers=N_LAYERS, hidden=32, seed=seed, init_std=0.2).double()
    return obj, obj.prepare_model(lm)


def _batch(tokenizer, roles, seed=0):
    """Right-padded rows of unequal length, prompt masked, unequal source weights."""
    g = torch.Generator().manual_seed(seed)
    lengths = [14, 9, 11, 7, 12][: len(roles)]
    width = max(lengths)
    ids = torch.randint(3, len(tokenizer), (len(roles), width), generator=g)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, n in enumerate(lengths):
        ids[i, n:] = tokenizer.pad_token_id
        mask[i, :n] = 1
        labels[i, 3 + i % 2:n] = ids[i, 3 + i % 2:n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "roles": torch.tensor(roles),
            "langs": torch.tensor([0 if r == EN else 1 for r in roles]),
            "weights": torch.tensor([1.0, 0.5, 2.0, 1.5, 0.7][: len(roles)])}


BATCHES = {"mixed": [EN, TGT, MT, EN, TGT], "en": [EN, EN, EN], "tgt": [TGT, MT, TGT]}


def _naive(pm, batch, norms, lam, alpha, n=PIVOT):
    """Full forward of every row, explicit norm + head Linear on hidden_states[n], F.cross_entropy."""
    lm, head = pm.lm, pm.pivot_head
    out = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True,
             use_cache=False)
    h_n = out.hidden_states[n]
    assert n < N_LAYERS   # hidden_states[N] would already be normed
    normed = head.norm(h_n) if head.kind == "copy_norm" else lm.model.norm(h_n)
    pivot_logits = lm.lm_head(normed) if head.kind == "tied" else head.proj(normed)

    def ce(logits, rows, a):
        lg, lb = logits[rows][:, :-1], batch["labels"][rows][:, 1:]
        w = batch["weights"][rows].to(lg.dtype)[:, None].expand_as(lb)
        per = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=-100,
                              reduction="none", label_smoothing=a)
        return (per * w.reshape(-1)).sum()

    en = batch["roles"].eq(EN)
    return (lam * ce(pivot_logits, en, alpha) / norms["en"].clamp(min=1)
            + ce(out.logits, ~en, 0.0) / norms["final"].clamp(min=1))


def _loss_and_grads(fn, pm):
    pm.zero_grad(set_to_none=True)
    loss = fn()
    loss.backward()
    grads = {k: (p.grad.clone() if p.grad is not None else None) for k, p in pm.named_parameters()}
    pm.zero_grad(set_to_none=True)
    return loss.detach(), grads


def _assert_same(a, b, atol):
    (la, ga), (lb, gb) = a, b
    assert torch.allclose(la, lb, rtol=0, atol=atol), (la.item(), lb.item())
    assert ga.keys() == gb.keys()
    for k in ga:
        ref = ga[k] if ga[k] is not None else gb[k]
        if ref is None:
            continue
        x = ga[k] if ga[k] is not None else torch.zeros_like(ref)
        y = gb[k] if gb[k] is not None else torch.zeros_like(ref)
        assert torch.allclose(x, y, rtol=0, atol=atol), (k, (x - y).abs().max().item())


@pytest.mark.parametrize("kind,head,alpha", [
    ("mixed", "copy", 0.1), ("mixed", "copy_norm", 0.1), ("mixed", "tied", 0.1),
    ("en", "copy", 0.1), ("tgt", "copy", 0.1), ("mixed", "copy", 0.0), ("en", "copy_norm", 0.0)])
def test_loss_and_every_gradient_match_naive(tokenizer, kind, head, alpha):
    obj, pm = _objective(tokenizer, head=head, label_smoothing=alpha, lambda_en=0.3, chunk_size=7)
    batch = _batch(tokenizer, BATCHES[kind])
    norms = obj.normalizers(batch)
    if kind != "tgt":   # the step's counts, not this micro-batch's: bigger denominators
        norms = {k: v + 5 for k, v in norms.items()}
    ours = _loss_and_grads(lambda: obj.loss(pm, batch, norms)[0], pm)
    ref = _loss_and_grads(lambda: _naive(pm, batch, norms, 0.3, alpha), pm)
    _assert_same(ours, ref, atol=1e-10)
    head_grads = [g for k, g in ours[1].items() if k.startswith("pivot_head.")]
    if kind != "tgt" and head != "tied":
        assert head_grads and all(g is not None and g.abs().sum() > 0 for g in head_grads)
    if kind == "en":   # blocks above n get no gradient from English rows
        assert all(ours[1][f"lm.model.layers.{i}.self_attn.q_proj.weight"] is None for i in range(PIVOT, N_LAYERS))
        assert ours[1]["lm.lm_head.weight"] is None or head == "tied"


def test_lambda_zero_is_plain_target_cross_entropy(tokenizer):
    obj, pm = _objective(tokenizer, lambda_en=0.0)
    batch = _batch(tokenizer, BATCHES["mixed"])
    norms = obj.normalizers(batch)
    en = batch["roles"].eq(EN)

    def plain():
        out = pm.lm(input_ids=batch["input_ids"][~en], attention_mask=batch["attention_mask"][~en])
        # sft's loss (computed in float32): the reference for "plain target cross-entropy"
        return weighted_token_ce(out.logits, batch["labels"][~en], batch["weights"][~en], norms["final"]).double()

    ours, ref = _loss_and_grads(lambda: obj.loss(pm, batch, norms)[0], pm), _loss_and_grads(plain, pm)
    _assert_same(ours, ref, atol=1e-6)
    assert all(g is None for k, g in ours[1].items() if k.startswith("pivot_head."))
    # an English-only micro-batch still gives a loss that backpropagates (to nothing)
    en_only = _batch(tokenizer, BATCHES["en"])
    loss, grads = _loss_and_grads(lambda: obj.loss(pm, en_only, obj.normalizers(en_only))[0], pm)
    assert loss.item() == 0.0 and all(g is None or g.abs().sum() == 0 for g in grads.values())


def _count_block_calls(pm):
    calls = {i: [] for i in range(1, N_LAYERS + 1)}
    handles = [layer.register_forward_hook(lambda mod, args, out, i=i: calls[i].append(args[0].shape[0]))
               for i, layer in enumerate(pm.info.layers, start=1)]
    return calls, handles


@pytest.mark.parametrize("kind", ["en", "mixed"])
def test_english_rows_never_enter_blocks_above_the_pivot(tokenizer, kind):
    obj, pm = _objective(tokenizer)
    batch = _batch(tokenizer, BATCHES[kind])
    calls, handles = _count_block_calls(pm)
    try:
        obj.loss(pm, batch, obj.normalizers(batch))[0].backward()
    finally:
        for h in handles:
            h.remove()
    n_en = int(batch["roles"].eq(EN).sum())
    n_tgt = len(batch["roles"]) - n_en
    for i in range(1, PIVOT + 1):
        assert sorted(calls[i]) == sorted([n_en] + ([n_tgt] if n_tgt else [])), (i, calls[i])
    for i in range(PIVOT + 1, N_LAYERS + 1):   # blocks n+1..N see the target rows only, once
        assert calls[i] == ([n_tgt] if n_tgt else []), (i, calls[i])


def test_chunk_size_and_recompute_do_not_change_loss_or_grads(tokenizer):
    batch = _batch(tokenizer, BATCHES["mixed"])
    results = []
    for chunk, recompute in [(1, True), (7, True), (100_000, True), (7, False), (100_000, False)]:
        obj, pm = _objective(tokenizer, chunk_size=chunk, recompute_logits=recompute)
        results.append(_loss_and_grads(lambda o=obj, m=pm: o.loss(m, batch, o.normalizers(batch))[0], pm))
    for r in results[1:]:
        _assert_same(results[0], r, atol=1e-12)


def test_row_losses_agree_on_every_path_and_skip_english_rows_at_lambda_zero(tokenizer):
    """Each row's summed loss and token count are the same chunked or not and with every rank running the same
    modules; with λ_e = 0 English rows, never run, count no token."""
    batch = _batch(tokenizer, BATCHES["mixed"])
    rows = []
    for chunk, same_modules in [(1, False), (100_000, False), (7, True)]:
        obj, pm = _objective(tokenizer, chunk_size=chunk)
        obj = obj.for_sharded_training() if same_modules else obj
        rows.append(obj.loss(pm, batch, obj.normalizers(batch))[1][ROW_LOSSES])
    assert rows[0].tokens.tolist() == supervised_targets(batch["labels"]).sum(1).tolist()
    for r in rows[1:]:
        torch.testing.assert_close(r.sums, rows[0].sums)
        assert r.tokens.tolist() == rows[0].tokens.tolist()
    obj, pm = _objective(tokenizer, lambda_en=0.0)
    zero = obj.loss(pm, batch, obj.normalizers(batch))[1][ROW_LOSSES]
    en = batch["roles"].eq(EN)
    assert zero.tokens[en].eq(0).all() and zero.sums[en].eq(0).all()
    torch.testing.assert_close(zero.sums[~en], rows[0].sums[~en])


def test_activation_checkpointing_gives_the_same_gradients(tokenizer):
    batch = _batch(tokenizer, BATCHES["mixed"])
    obj, pm = _objective(tokenizer)
    pm.train()
    ref = _loss_and_grads(lambda: obj.loss(pm, batch, obj.normalizers(batch))[0], pm)
    pm.activation_checkpointing_enable()
    _assert_same(_loss_and_grads(lambda: obj.loss(pm, batch, obj.normalizers(batch))[0], pm), ref, atol=1e-10)


def test_english_lambda_rule_and_settings():
    assert english_lambda(0.1) == 0.1 and english_lambda(0.1, ["th"]) == 0.1
    assert english_lambda(0.1, ["th"], {"th": 0.0}) == 0.0
    assert english_lambda(0.1, ["th", "sw"], {"th": 0.3, "sw": 0.3}) == pytest.approx(0.3)
    assert english_lambda(0.2, ["ar", "ta", "th", "sw"], {"ar": 0.0, "ta": 0.0}) == pytest.approx(0.1)
    base = {"model": "m", "languages": ["ar", "th"], "prom": {"lambda_per_language": {"ar": 0.0}}}
    assert run_objective(load_config(base={**base, "method": "prom"})).lambda_e == pytest.approx(0.05)
    assert [default_pivot_layer(n) for n in (2, 4, 6, 32)] == [1, 3, 5, 24]   # always below the top block


@pytest.mark.parametrize("prom,method,words", [
    ({"pivot_layer": 0}, "prom", ">= 1"),
    ({"label_smoothing": 1.0}, "prom", "< 1"),
    ({"lambda_en": -0.1}, "prom", ">= 0"),
    ({"head": "shared"}, "prom", "copy"),
    ({"lambda_per_language": {"fr": 0.0}}, "prom", "not in languages"),
    ({"lambda_per_language": {"en": 0.0}}, "prom", "not a target language"),
    ({"lambda_per_language": {"el": 0.0}}, "prom-noreg", "for method 'prom'"),
    ({"chunk_sise": 8}, "prom", "Did you mean 'prom.chunk_size'"),
])
def test_invalid_prom_settings_are_explained(prom, method, words):
    with pytest.raises(ConfigError) as e:
        load_config(base={"model": "m", "method": method, "languages": ["el"], "prom": prom})
    assert words in str(e.value)


# ------------------------------------------------------------------------------------ through train()

MIXED = [Sample(instruction=f"Say {i}.", output=" ".join(["the cat", "a dog"][i % 2:] * (i + 1)), role=role,
                lang="en" if role == "en" else "el", weight=1.0 + 0.25 * (i % 3))
         for i, role in enumerate(["en", "tgt", "mt", "en", "en", "tgt", "mt", "tgt"])]


def _cfg(model_dir, out, **over):
    base = {"model": str(model_dir), "method": "prom", "languages": ["el"], "output_dir": str(out),
            "max_seq_len": 128, "prom": {"pivot_layer": 1, "lambda_en": 0.5, "chunk_size": 16,
                                         "lambda_per_language": {"el": 0.5}},
            "train": {"lr": 3e-3, "max_steps": 2, "per_device_batch_size": 4, "grad_accum": 1,
                      "warmup_ratio": 0.0, "scheduler": "constant", "logging_steps": 1, "progress_bar": False}}
    return load_config(base=base, overrides=[f"{k}={v}" for k, v in over.items()])


def _losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _tensor_names(path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def test_gradient_accumulation_is_exact(tiny_model_dir, tmp_path):
    """Batch 4 × 1 and batch 1 × 4 (single-row micro-batches, English-only ones included) agree."""
    a = train(_cfg(tiny_model_dir, tmp_path / "a"), MIXED, save_checkpoints=False)
    b = train(_cfg(tiny_model_dir, tmp_path / "b", **{"train.per_device_batch_size": 1, "train.grad_accum": 4}),
              MIXED, save_checkpoints=False)
    la, lb = _losses(a), _losses(b)
    assert len(la) == len(lb) == 2
    assert torch.allclose(torch.tensor(la), torch.tensor(lb), rtol=0, atol=1e-5), (la, lb)
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    assert any(k.startswith("pivot_head.") for k in pa)
    for k, p in pa.items():
        assert torch.allclose(p, pb[k], atol=1e-5), k
    logged = [h for h in a.state.log_history if "loss" in h]
    assert all({"pivot_ce", "final_ce"} <= h.keys() for h in logged)


def test_run_dir_holds_the_head_and_export_drops_it(tiny_model_dir, tmp_path):
    from transformers import LlamaForCausalLM

    from pivotune.export import export

    run = tmp_path / "run"
    trainer = train(_cfg(tiny_model_dir, run, **{"train.save_steps": 2}), MIXED)
    head_cfg = json.loads((run / "pivot_head.json").read_text())
    assert head_cfg["pivot_layer"] == 1 and head_cfg["head"] == "copy"
    assert (run / "pivot_head.safetensors").exists() and (run / "checkpoint-2" / "pivot_head.safetensors").exists()
    assert json.loads((run / "run.json").read_text())["prom"]["pivot_layer"] == 1

    model, info = LlamaForCausalLM.from_pretrained(run / "model", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    head, desc = load_pivot_head(run, model)
    assert desc["pivot_layer"] == 1
    assert torch.equal(head.proj.weight, trainer.model.pivot_head.proj.weight.detach())
    assert not torch.equal(head.proj.weight, model.lm_head.weight)   # trained apart from W_U
    for d in (run / "model", run / "checkpoint-2"):
        assert not any("pivot" in k for k in _tensor_names(d / "model.safetensors"))

    out = export(run, tmp_path / "exported")
    assert not list(out.glob("pivot_head*"))
    assert not any("pivot" in k for k in _tensor_names(out / "model.safetensors"))
    _, info = LlamaForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]


def test_lora_trains_adapters_and_the_whole_pivot_head(tiny_wide_init_model_dir, tmp_path):
    cfg = _cfg(tiny_wide_init_model_dir, tmp_path / "run", **{
        "lora.enabled": "true", "lora.r": 8, "train.lr": 1e-2, "train.max_steps": 30,
        "lora.target_modules": "[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]"})
    trainer = train(cfg, MIXED, save_checkpoints=False)
    losses = _losses(trainer)
    assert losses[-1] <= 0.7 * losses[0], losses
    trainable = [k for k, p in trainer.model.named_parameters() if p.requires_grad]
    assert "pivot_head.proj.weight" in trainable
    assert all("lora_" in k or k.startswith("pivot_head.") for k in trainable), trainable
    w_u = trainer.model.info.unembed.weight
    assert not torch.equal(trainer.model.pivot_head.proj.weight, w_u)   # the head trained; W_U is frozen
    run = tmp_path / "run"
    assert (run / "model" / "adapter_config.json").exists() and (run / "pivot_head.safetensors").exists()
    assert not any("pivot" in k for k in _tensor_names(run / "model" / "adapter_model.safetensors"))


def test_pivot_layer_out_of_range_names_the_range(tiny_model_dir, tmp_path):
    for n in (2, 3):                                   # the 2-block model's pivot layer is 1 only
        with pytest.raises(PivotuneError, match=r"1 <= n <= 1"):
            train(_cfg(tiny_model_dir, tmp_path / "run", **{"prom.pivot_layer": n}), MIXED, save_checkpoints=False)
