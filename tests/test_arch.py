"""pivotune.models.arch on tiny random-init models of every supported architecture (no hub access)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pivotune.errors import PivotuneError
from pivotune.models import arch as A

VOCAB, HIDDEN, LAYERS, SEQ = 128, 32, 3, 8
COMMON = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.2,
              pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _cfg(name):
    import transformers as T

    c = dict(COMMON)
    if name == "llama":
        return T.LlamaConfig(**c, tie_word_embeddings=False)
    if name == "mistral":  # sliding window shorter than the test sequence
        return T.MistralConfig(**c, sliding_window=3, tie_word_embeddings=True)
    if name == "qwen2":
        return T.Qwen2Config(**c, tie_word_embeddings=True)
    if name == "qwen3":
        return T.Qwen3Config(**c, head_dim=8, tie_word_embeddings=False)
    if name == "gemma":
        return T.GemmaConfig(**c, head_dim=8, tie_word_embeddings=True)
    if name == "gemma2":  # soft-cap small enough to matter with these logits; sliding window < SEQ
        return T.Gemma2Config(**c, head_dim=8, final_logit_softcapping=2.0, sliding_window=3,
                              tie_word_embeddings=True)
    if name == "gemma3_text":  # sliding / global layer pattern, untied, soft-capped
        return T.Gemma3TextConfig(**c, head_dim=8, sliding_window=3, final_logit_softcapping=2.0,
                                  layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                                  tie_word_embeddings=False)
    if name == "phi3":
        return T.Phi3Config(**c, tie_word_embeddings=True)
    if name == "cohere":  # logit_scale
        return T.CohereConfig(**c, logit_scale=0.5, tie_word_embeddings=True)
    if name == "olmo2":
        return T.Olmo2Config(**c, tie_word_embeddings=False)
    if name == "phi":
        return T.PhiConfig(**{k: v for k, v in c.items() if k != "num_key_value_heads"}, tie_word_embeddings=False)
    if name == "gpt_neox":
        return T.GPTNeoXConfig(**{k: v for k, v in c.items() if k != "num_key_value_heads"},
                               tie_word_embeddings=False)
    if name == "gpt2":
        return T.GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=4, n_positions=64,
                            initializer_range=0.2, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    raise KeyError(name)


ARCHS = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "cohere", "olmo2",
         "phi", "gpt_neox", "gpt2"]
_MODELS: dict[str, nn.Module] = {}


def build(name):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = _cfg(name)
    attn = "eager" if name in ("gemma2", "gemma3_text") else None
    m = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn) if attn else \
        AutoModelForCausalLM.from_config(cfg)
    return m.eval()


@pytest.fixture(params=ARCHS)
def model(request):
    if request.param not in _MODELS:
        _MODELS[request.param] = build(request.param)
    m = _MODELS[request.param]
    m.zero_grad(set_to_none=True)
    return m


def batch(side="right"):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, SEQ), generator=g)
    mask = torch.ones_like(ids)
    if side == "right":
        mask[1, 5:] = 0
    else:
        mask[1, :3] = 0
    ids[mask == 0] = 0
    return ids, mask


def close(a, b, mask=None, tol=1e-5):
    if mask is not None:  # compare real tokens only (pad rows may be arbitrary, even NaN in some kernels)
        a, b = a[mask.bool()], b[mask.bool()]
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def full(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)


def test_arch_info_finds_parts(model):
    info = A.arch_info(model)
    assert info.model_type == model.config.model_type and info.model_type in A.TESTED_MODEL_TYPES
    assert info.num_layers == LAYERS and len(info.layers) == LAYERS
    assert info.unembed is model.get_output_embeddings()
    assert info.tied == bool(model.config.tie_word_embeddings)
    assert info.logit_softcap == (2.0 if info.model_type in ("gemma2", "gemma3_text") else None)
    assert info.logit_scale == (0.5 if info.model_type == "cohere" else None)
    assert info.last_hidden_normed


@pytest.mark.parametrize("side", ["right", "left"])
def test_last_layer_lens_and_hf_convention(model, side):
    info = A.arch_info(model)
    ids, mask = batch(side)
    out = full(model, ids, mask)
    hs = out.hidden_states
    assert len(hs) == LAYERS + 1
    # hidden_states[N] is already final-normed in transformers 5: final_norm(raw output of block N) == hs[N]
    with torch.no_grad():
        normed, raw = A.truncated_forward(model, ids, mask, LAYERS, info=info, return_raw=True)
    close(info.final_norm(raw), hs[LAYERS], mask)
    close(normed, hs[LAYERS], mask)
    assert not torch.allclose(raw[mask.bool()], hs[LAYERS][mask.bool()], atol=1e-3)  # the raw one is not
    with torch.no_grad():
        close(A.lens_logits(info, hs, LAYERS), out.logits, mask)
        close(A.unembed_logits(info, normed), out.logits, mask)
        close(A.lens_logits(info, hs, 0), A.unembed_logits(info, info.final_norm(hs[0])))


@pytest.mark.parametrize("name", ["gemma2", "gemma3_text", "cohere"])
def test_logit_transforms_are_needed(name):
    """Soft-capping (Gemma 2/3) and logit_scale (Cohere) change the logits; W_U alone would be wrong."""
    model = _MODELS[name] if name in _MODELS else _MODELS.setdefault(name, build(name))
    info = A.arch_info(model)
    ids, mask = batch()
    out = full(model, ids, mask)
    with torch.no_grad():
        plain = info.unembed(out.hidden_states[LAYERS])
        close(A.unembed_logits(info, out.hidden_states[LAYERS]), out.logits, mask)
    assert (plain - out.logits)[mask.bool()].abs().max() > 1e-2
    if info.logit_softcap is not None:
        assert out.logits.abs().max() <= info.logit_softcap


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncated_forward_matches_every_layer(model, side):
    info = A.arch_info(model)
    ids, mask = batch(side)
    hs = full(model, ids, mask).hidden_states
    hooks_before = [len(blk._forward_hooks) for blk in info.layers]  # HF's own output-capturing hooks
    with torch.no_grad():
        for n in range(1, LAYERS + 1):
            want = hs[n] if n == LAYERS else info.final_norm(hs[n])
            normed, raw = A.truncated_forward(model, ids, mask, n, info=info, return_raw=True)
            close(normed, want, mask)
            if n < LAYERS:
                close(raw, hs[n], mask)
    assert [len(blk._forward_hooks) for blk in info.layers] == hooks_before  # ours removed


@pytest.mark.parametrize("side", ["right", "left"])
def test_final_hidden_states_are_what_the_unembedding_reads(model, side):
    """The states the forward hands its unembedding, without the vocabulary projection, give the model's logits
    through unembed_logits; the pre-hook is removed."""
    info = A.arch_info(model)
    ids, mask = batch(side)
    out = full(model, ids, mask)
    seen = []
    handle = info.unembed.register_forward_hook(lambda _m, _a, o: seen.append(o.shape[1]))
    try:
        with torch.no_grad():
            normed, output = A.final_hidden_states(model, ids, mask, info=info)
    finally:
        handle.remove()
    close(normed, out.hidden_states[LAYERS], mask)
    with torch.no_grad():
        close(A.unembed_logits(info, normed), out.logits, mask)
    assert seen == [0] and output.logits.shape[1] == 0 and not info.unembed._forward_pre_hooks


def test_blocks_above_n_never_run(model):
    info = A.arch_info(model)
    ids, mask = batch()
    calls = [0] * LAYERS
    handles = [blk.register_forward_hook(lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, blk in enumerate(info.layers)]
    try:
        for n in range(1, LAYERS + 1):
            calls[:] = [0] * LAYERS
            with torch.no_grad():
                A.truncated_forward(model, ids, mask, n, info=info)
            assert calls == [1] * n + [0] * (LAYERS - n), (n, calls)
    finally:
        for h in handles:
            h.remove()


def _grad_report(model, info, n):
    ids, mask = batch("left")
    h = A.truncated_forward(model, ids, mask, n, info=info)
    assert h.requires_grad
    (h[mask.bool()] ** 2).mean().backward()

    def has_grad(mod):
        return [p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters() if p.requires_grad]

    below = [has_grad(info.layers[i]) for i in range(n)]
    above = [has_grad(info.layers[i]) for i in range(n, LAYERS)]
    return below, above


def test_gradients_flow_below_n_only(model):
    info = A.arch_info(model)
    n = 2
    below, above = _grad_report(model, info, n)
    assert all(all(b) for b in below), below
    assert not any(any(a) for a in above), above
    emb = model.get_input_embeddings().weight
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing(reentrant):
    model = build("llama")
    info = A.arch_info(model)
    ids, mask = batch()
    hs = full(model, ids, mask).hidden_states
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": reentrant})
    model.train()  # checkpointing only runs in training mode; the tiny config has no dropout
    try:
        with torch.no_grad():
            close(A.truncated_forward(model, ids, mask, 2, info=info), info.final_norm(hs[2]), mask)
        below, above = _grad_report(model, info, 2)
        assert all(all(b) for b in below) and not any(any(a) for a in above)
    finally:
        model.activation_checkpointing_disable()
        model.eval()


@pytest.mark.parametrize("name", ["llama", "gemma2", "gpt2"])
def test_through_peft_lora(name):
    from peft import LoraConfig, get_peft_model

    base = build(name)
    torch.manual_seed(2)
    pm = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    pm.eval()
    info = A.arch_info(pm)
    assert info.layers is A.arch_info(base).layers and info.model_type == base.config.model_type
    ids, mask = batch()
    out = full(pm, ids, mask)
    with torch.no_grad():
        close(A.lens_logits(info, out.hidden_states, LAYERS), out.logits, mask)
        for n in range(1, LAYERS + 1):
            want = out.hidden_states[n] if n == LAYERS else info.final_norm(out.hidden_states[n])
            close(A.truncated_forward(pm, ids, mask, n, info=info), want, mask)
        close(A.final_hidden_states(pm, ids, mask, info=info)[0], out.hidden_states[LAYERS], mask)
    h = A.truncated_forward(pm, ids, mask, 1)
    h[mask.bool()].pow(2).mean().backward()
    lora = {k: p.grad is not None for k, p in pm.named_parameters() if "lora_" in k}
    assert lora and any(lora.values())
    first, rest = f".{info.layers_path.split('.')[-1]}.0.", [f".{info.layers_path.split('.')[-1]}.{i}."
                                                             for i in range(1, LAYERS)]
    assert all(g for k, g in lora.items() if first in k)
    assert not any(g for k, g in lora.items() if any(r in k for r in rest))


def test_verify_arch_accepts_supported(model):
    assert A.verify_arch(model).num_layers == LAYERS


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(4, 4)])


def test_unknown_architecture_errors():
    with pytest.raises(PivotuneError, match=r"_Custom.*decoder layers.*model\.layers.*transformer\.h"):
        A.arch_info(_Custom())
    m = build("llama")
    m.model.final_ln = m.model.norm
    del m.model.norm
    with pytest.raises(PivotuneError, match=r"LlamaForCausalLM.*final norm.*model\.norm.*model\.ln_f"):
        A.arch_info(m)
    m = build("llama")
    m.model.blocks = m.model.layers
    del m.model.layers
    with pytest.raises(PivotuneError, match=r"LlamaForCausalLM.*decoder layers.*model\.layers"):
        A.arch_info(m)
    m = build("llama")
    m.get_output_embeddings = lambda: None
    with pytest.raises(PivotuneError, match=r"LlamaForCausalLM.*unembedding.*get_output_embeddings"):
        A.arch_info(m)


def test_layer_out_of_range():
    m = build("qwen2")
    info = A.arch_info(m)
    ids, mask = batch()
    hooks_before = [len(blk._forward_hooks) for blk in info.layers]
    for bad in (0, LAYERS + 1, -1):
        with pytest.raises(PivotuneError, match=rf"1 <= n <= {LAYERS}"):
            A.truncated_forward(m, ids, mask, bad, info=info)
    assert [len(blk._forward_hooks) for blk in info.layers] == hooks_before
    hs = full(m, ids, mask).hidden_states
    with pytest.raises(PivotuneError, match=rf"0 \(embeddings\) to {LAYERS}"):
        A.lens_logits(info, hs, LAYERS + 1)
    with pytest.raises(PivotuneError, match="hidden states"):
        A.lens_logits(info, hs[1:], 1)


def test_hook_removed_when_forward_fails():
    m = build("llama")
    info = A.arch_info(m)
    ids, mask = batch()
    with pytest.raises(Exception):
        A.truncated_forward(m, ids[:, :, None], mask, 2, info=info)  # bad input shape: fails inside the forward
    assert not any(blk._forward_hooks for blk in info.layers)


ATTENTION_PROJECTIONS = {"phi3": {"qkv_proj", "o_proj"}, "phi": {"q_proj", "k_proj", "v_proj", "dense"},
                         "gpt_neox": {"query_key_value", "dense"}, "gpt2": {"c_attn", "c_proj"}}


def test_attention_projection_names(model):
    names = A.attention_projection_names(model)
    modules = dict(model.named_modules())
    assert all(n in modules for n in names)
    expected = ATTENTION_PROJECTIONS.get(model.config.model_type, {"q_proj", "k_proj", "v_proj", "o_proj"})
    for i in range(LAYERS):
        in_block = {n.rsplit(".", 1)[1] for n in names if f".{i}." in n}
        assert in_block == expected, (i, in_block)
    assert not any(".mlp." in n for n in names)   # GPT-2's MLP also has a c_proj
