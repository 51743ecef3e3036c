"""New embedding rows: the mean of the rows of the old tokens each new token replaces; tied stays tied."""

from __future__ import annotations

import pytest
import torch
from vocab_helpers import tiny_model

from pivotune.errors import PivotuneError
from pivotune.vocab.init import grown_linear, init_new_rows, plan_new_rows, resize_and_init


def _naive_means(old_tokenizer, tokens, weight):
    """Mean rows by hand: the old BPE model on each new token's string, then a plain loop over rows."""
    out = []
    for token in tokens:
        ids = [t.id for t in old_tokenizer.backend_tokenizer.model.tokenize(token)]
        total = [0.0] * weight.shape[1]
        for i in ids:
            for d in range(weight.shape[1]):
                total[d] += float(weight[i, d])
        out.append([x / len(ids) for x in total])
    return torch.tensor(out)


@pytest.mark.parametrize("kind", ["sentencepiece", "byte_level"])
def test_input_and_output_rows_start_as_the_mean_of_their_old_pieces(kind, base_tokenizers, extended):
    """Untied (Llama-2): each matrix's new rows equal the naive loop's means; old rows are untouched."""
    old, ext = base_tokenizers[kind], extended[kind]
    model = tiny_model(old)
    emb_before = model.get_input_embeddings().weight.detach().clone()
    out_before = model.get_output_embeddings().weight.detach().clone()
    rows = resize_and_init(model, old, ext.tokenizer)
    emb, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert rows.ids == ext.new_ids and emb.shape[0] == out.shape[0] == len(ext.tokenizer) == rows.num_rows
    ids = list(ext.new_ids)
    torch.testing.assert_close(emb[ids].detach(), _naive_means(old, ext.new_tokens, emb_before))
    torch.testing.assert_close(out[ids].detach(), _naive_means(old, ext.new_tokens, out_before))
    assert torch.equal(emb[:len(old)], emb_before) and torch.equal(out[:len(old)], out_before)
    assert model.config.vocab_size == rows.num_rows


def test_a_new_character_starts_from_its_byte_fallback_tokens(base_tokenizers, extended):
    """SentencePiece-style: a Thai character added as a token decomposes into its UTF-8 byte tokens."""
    old, ext = base_tokenizers["sentencepiece"], extended["sentencepiece"]
    rows = plan_new_rows(old, ext.tokenizer)
    char = ext.new_tokens[0]
    expected = old.convert_tokens_to_ids([f"<0x{b:02X}>" for b in char.encode()])
    assert rows.sources[0] == tuple(expected)


def test_tied_embeddings_stay_one_matrix(base_tokenizers, extended):
    """Tied (GPT-2, Gemma): after the resize the unembedding is still the input embedding, new rows the mean."""
    old, ext = base_tokenizers["byte_level"], extended["byte_level"]
    model = tiny_model(old, tied=True)
    before = model.get_input_embeddings().weight.detach().clone()
    resize_and_init(model, old, ext.tokenizer)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    torch.testing.assert_close(model.get_input_embeddings().weight[list(ext.new_ids)].detach(),
                               _naive_means(old, ext.new_tokens, before))


def test_new_ids_inside_padding_rows_need_no_resize(base_tokenizers, extended):
    """A model with more rows than tokens (Qwen pads its vocabulary): new ids land in the padding rows."""
    old, ext = base_tokenizers["toy"], extended["toy"]
    model = tiny_model(old, rows=len(ext.tokenizer) + 50)
    rows = resize_and_init(model, old, ext.tokenizer)
    assert rows.num_rows == len(ext.tokenizer) + 50 == model.get_input_embeddings().weight.shape[0]


def test_a_head_copied_from_the_unembedding_grows_the_same_way(base_tokenizers, extended):
    """PROM's pivot head, copied from W_U before the resize: grown_linear gives it the rows the model's W_U got;
    init_new_rows does the same in place on any matrix already resized."""
    old, ext = base_tokenizers["byte_level"], extended["byte_level"]
    model = tiny_model(old)
    head = torch.nn.Linear(32, len(old), bias=False)
    with torch.no_grad():
        head.weight.copy_(model.get_output_embeddings().weight)
    rows = resize_and_init(model, old, ext.tokenizer)
    grown = grown_linear(head, rows)
    assert torch.equal(grown.weight, model.get_output_embeddings().weight)
    again = torch.cat([head.weight.detach(), torch.zeros(len(ext.new_ids), 32)])
    init_new_rows(again, rows)
    assert torch.equal(again, grown.weight.detach())


def test_a_tokenizer_that_is_not_an_extension_is_refused(base_tokenizers):
    """Two unrelated tokenizers: the plan names a token whose id differs."""
    with pytest.raises(PivotuneError, match="not an extension of the old one"):
        plan_new_rows(base_tokenizers["byte_level"], base_tokenizers["toy"])
