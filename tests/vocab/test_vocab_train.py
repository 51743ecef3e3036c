"""Training the new rows: they move with their own learning rate, the old rows stay where they are frozen."""

from __future__ import annotations

import pytest
import torch
from vocab_helpers import tiny_model

from pivotune.vocab.init import resize_and_init
from pivotune.vocab.train import freeze_old_rows, new_row_parameters, trainable_token_indices, with_new_row_group

LR, EMBEDDING_LR = 1e-3, 1e-2


@pytest.fixture()
def extended_model(base_tokenizers, extended, held_out, one_thread):
    """A tiny untied Llama resized for the byte-level extension, and a batch of Thai and English text."""
    old, ext = base_tokenizers["byte_level"], extended["byte_level"]
    model = tiny_model(old)
    rows = resize_and_init(model, old, ext.tokenizer)
    texts = held_out["th"][:4] + held_out["en"][:4]
    batch = ext.tokenizer(texts, padding=False)["input_ids"]
    width = min(len(ids) for ids in batch)
    input_ids = torch.tensor([ids[:width] for ids in batch])
    used = sorted(set(input_ids.flatten().tolist()) & set(rows.ids))
    assert used, "the Thai batch uses new tokens"
    return model, rows, input_ids, used


def _step(model, opt, input_ids):
    loss = model(input_ids=input_ids, labels=input_ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad()


def _matrices(model):
    return model.get_input_embeddings().weight, model.get_output_embeddings().weight


def test_full_fine_tuning_with_old_rows_frozen_moves_only_the_new_rows(extended_model):
    """AdamW over every parameter, the new rows in their own group: after one step the new rows moved by
    EMBEDDING_LR (Adam's first step is lr per element), the blocks by LR, the old rows not at all."""
    model, rows, input_ids, used = extended_model
    old_n = min(rows.ids)
    freeze_old_rows(model, rows)
    groups = with_new_row_group([{"params": list(model.parameters()), "weight_decay": 0.1}], model,
                                embedding_lr=EMBEDDING_LR)
    assert [len(g["params"]) for g in groups] == [len(list(model.parameters())) - 2, 2]
    opt = torch.optim.AdamW(groups, lr=LR)
    emb0, out0 = (w.detach().clone() for w in _matrices(model))
    block0 = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    _step(model, opt, input_ids)
    emb, out = (w.detach() for w in _matrices(model))
    assert torch.equal(emb[:old_n], emb0[:old_n]) and torch.equal(out[:old_n], out0[:old_n])
    assert torch.allclose((emb[used] - emb0[used]).abs().max(), torch.tensor(EMBEDDING_LR), rtol=1e-3)
    assert torch.allclose((out[list(rows.ids)] - out0[list(rows.ids)]).abs().max(), torch.tensor(EMBEDDING_LR),
                          rtol=1e-3)
    block_step = (model.model.layers[0].mlp.up_proj.weight.detach() - block0).abs().max()
    assert LR * 0.9 < block_step < LR * 1.5
    for _ in range(2):
        _step(model, opt, input_ids)
    assert torch.equal(_matrices(model)[0][:old_n], emb0[:old_n])


def test_lora_trains_the_new_rows_through_peft_trainable_tokens(extended_model):
    """LoRA with trainable_token_indices: peft trains a delta per new row of the input and (untied) output
    embedding at EMBEDDING_LR; merged, the new rows moved and every old row is as it was."""
    from peft import LoraConfig, get_peft_model

    model, rows, input_ids, used = extended_model
    old_n = min(rows.ids)
    emb0, out0 = (w.detach().clone() for w in _matrices(model))
    indices = trainable_token_indices(model, rows)
    assert indices == {"model.embed_tokens": list(rows.ids), "lm_head": list(rows.ids)}
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                  trainable_token_indices=indices))
    deltas = new_row_parameters(peft_model)
    assert len(deltas) == 2 and all(d.shape == (len(rows.ids), 32) for d in deltas)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(with_new_row_group([{"params": trainable}], peft_model, embedding_lr=EMBEDDING_LR),
                            lr=LR)
    start = [d.detach().clone() for d in deltas]
    _step(peft_model, opt, input_ids)
    assert max((d.detach() - s).abs().max() for d, s in zip(deltas, start)) == pytest.approx(EMBEDDING_LR, rel=1e-3)
    _step(peft_model, opt, input_ids)
    merged = peft_model.merge_and_unload()
    emb, out = (w.detach() for w in _matrices(merged))
    assert torch.equal(emb[:old_n], emb0[:old_n]) and torch.equal(out[:old_n], out0[:old_n])
    assert not torch.equal(emb[used], emb0[used]) and not torch.equal(out[old_n:], out0[old_n:])


def test_tied_embeddings_get_one_trainable_token_entry(base_tokenizers, extended):
    """A tied model names only its input embedding: peft ties the output to it."""
    old, ext = base_tokenizers["byte_level"], extended["byte_level"]
    model = tiny_model(old, tied=True)
    rows = resize_and_init(model, old, ext.tokenizer)
    assert trainable_token_indices(model, rows) == {"model.embed_tokens": list(rows.ids)}
