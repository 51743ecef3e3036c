"""The LinguaLIFT bridge and its two stages, on a tiny random-init BERT encoder and a tiny Llama."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_llama
from lingualift_helpers import (ENCODER_WIDTH, english_samples, run_raw, save_tiny_encoder, tiny_encoder,
                                write_tiny_lexicon)

from pivotune.config import load_config
from pivotune.errors import ConfigError, PivotuneError
from pivotune.models.bridge import NOT_A_CAUSAL_LM, LinguaLiftModel
from pivotune.models.loading import load_model
from pivotune.objectives.base import weighted_token_ce
from pivotune.train.lingualift import build_bridge
from pivotune.train.run import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def parts(tmp_path_factory, tokenizer, tiny_model_dir):
    d = tmp_path_factory.mktemp("lingualift-parts")
    return {"lm": tiny_model_dir, "encoder": save_tiny_encoder(tokenizer, d / "encoder"),
            "lexicon": write_tiny_lexicon(d / "en-xx.txt")}


@pytest.fixture(scope="module")
def run(parts, tmp_path_factory):
    """Stage 1 alone, then stage 2 alone from the saved stage 1: the bridge after each."""
    out = tmp_path_factory.mktemp("lingualift-run")
    raw1 = run_raw(parts["lm"], parts["encoder"], parts["lexicon"], out, stages=[1])
    cfg1 = load_config(base=raw1)
    initial = {k: v.clone() for k, v in build_bridge(cfg1).state_dict().items()}
    after1 = {k: v.clone() for k, v in train(cfg1, english_samples()).model.state_dict().items()}
    cfg2 = load_config(base=run_raw(parts["lm"], parts["encoder"], parts["lexicon"], out, stages=[2]))
    bridge2 = train(cfg2, english_samples()).model
    return {"dir": out, "initial": initial, "after1": after1, "bridge": bridge2,
            "after2": {k: v.clone() for k, v in bridge2.state_dict().items()}}


def _changed(a: dict, b: dict, prefix: str) -> dict[str, bool]:
    return {k: not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix)}


def test_stage1_changes_only_the_alignment_layer(run):
    init, after = run["initial"], run["after1"]
    assert set(init) == set(after)
    assert all(_changed(init, after, "alignment.").values())      # every alignment tensor moved
    assert not any(_changed(init, after, "encoder.").values())
    assert not any(_changed(init, after, "lm.").values())


def test_stage2_starts_from_saved_stage1_and_changes_only_the_lm(run):
    after1, after2 = run["after1"], run["after2"]
    assert not any(_changed(after1, after2, "alignment.").values())
    assert not any(_changed(after1, after2, "encoder.").values())
    assert any(_changed(after1, after2, "lm.").values())
    meta = json.loads((run["dir"] / "run.json").read_text())
    assert meta["stages"] == [2] and meta["stage2"]["steps"] == 2
    assert (run["dir"] / "stage1" / "model" / "alignment.safetensors").exists()
    assert (run["dir"] / "stage2" / "checkpoint-2" / "lm" / "model.safetensors").exists()


def test_save_load_round_trip_generates_identical_tokens(run, tokenizer):
    loaded = LinguaLiftModel.from_pretrained(run["dir"] / "model")
    enc = tokenizer(["repeat the cat sees a dog", "repeat red"], return_tensors="pt", padding=True)
    kw = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    a = run["bridge"].eval().generate_new(enc["input_ids"], enc["attention_mask"], **kw)
    b = loaded.eval().generate_new(enc["input_ids"], enc["attention_mask"], **kw)
    assert a.shape == (2, 6) and torch.equal(a, b)
    # batching (padding on either side) does not change what a row generates
    for i in range(2):
        one = tokenizer([["repeat the cat sees a dog", "repeat red"][i]], return_tensors="pt")
        assert torch.equal(loaded.generate_new(one["input_ids"], one["attention_mask"], **kw)[0], a[i])
    tokenizer.padding_side = "left"
    try:
        left = tokenizer(["repeat the cat sees a dog", "repeat red"], return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = "right"
    assert torch.equal(loaded.generate_new(left["input_ids"], left["attention_mask"], **kw), a)


def test_bridge_directory_says_it_is_not_a_plain_causal_lm(run):
    model_dir = run["dir"] / "model"
    meta = json.loads((model_dir / "bridge.json").read_text())
    assert meta["note"] == NOT_A_CAUSAL_LM and "not a plain causal-LM directory" in meta["note"]
    assert "not a plain causal-LM directory" in (model_dir / "README.md").read_text()
    with pytest.raises(PivotuneError, match="LinguaLIFT bridge directory"):
        load_model(str(model_dir))


def _bridge(tokenizer, projector="ffn"):
    return LinguaLiftModel.build(tiny_encoder(tokenizer), tiny_llama(tokenizer), projector=projector,
                                 bos_token_id=tokenizer.bos_token_id)


@pytest.mark.parametrize("projector, extra", [("ffn", 2), ("linear", 1)])
def test_response_logits_match_each_row_run_alone_without_padding(tokenizer, projector, extra):
    bridge = _bridge(tokenizer, projector).eval()
    enc = tokenizer(["repeat the big red house", "dog"], return_tensors="pt", padding=True)
    resp = [tokenizer.encode(t, add_special_tokens=False) for t in ("the cat runs to the river", "yes")]
    ids = torch.full((2, max(map(len, resp))), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(resp):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    with torch.no_grad():
        logits = bridge(enc["input_ids"], enc["attention_mask"], ids, mask).logits
        emb = bridge.lm.get_input_embeddings()
        for i, r in enumerate(resp):   # independent: [BOS, start?, W·h, end, response] for this row alone
            n = int(enc["attention_mask"][i].sum())
            h = bridge.encoder(input_ids=enc["input_ids"][i:i + 1, :n]).last_hidden_state[0]
            al = bridge.alignment
            soft = [al.start[None]] if projector == "ffn" else []
            seq = torch.cat([emb(torch.tensor([tokenizer.bos_token_id])), *soft, al.proj(h), al.end[None],
                             emb(torch.tensor(r))])
            assert seq.shape[0] == 1 + n + extra + len(r)
            ref = bridge.lm(inputs_embeds=seq[None]).logits[0, -len(r) - 1:-1]
            torch.testing.assert_close(logits[i, :len(r)], ref, atol=1e-5, rtol=1e-5)


def test_unshifted_response_ce_matches_a_naive_loop():
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 4, 7), torch.randint(0, 7, (3, 4))
    labels[0, 3] = labels[2, 0] = -100
    w = torch.tensor([1.0, 0.5, 2.0])
    naive = sum(-w[b] * torch.log_softmax(logits[b, t], -1)[labels[b, t]]
                for b in range(3) for t in range(4) if labels[b, t] != -100) / 10
    torch.testing.assert_close(weighted_token_ce(logits, labels, w, 10, shift=False), naive)


def test_stage2_without_a_stage1_checkpoint_is_a_clear_error(parts, tmp_path):
    cfg = load_config(base=run_raw(parts["lm"], parts["encoder"], parts["lexicon"], tmp_path / "r", stages=[2]))
    with pytest.raises(PivotuneError) as e:
        train(cfg, english_samples())
    msg = str(e.value)
    assert "stage 2 starts from a trained stage-1 alignment layer" in msg and "stage1_from" in msg
    assert str(tmp_path / "r" / "stage1" / "model") in msg


def test_encoder_width_errors(tokenizer):
    with pytest.raises(PivotuneError, match=f"hidden size {ENCODER_WIDTH}.*d_enc=32"):
        LinguaLiftModel.build(tiny_encoder(tokenizer), tiny_llama(tokenizer), encoder_hidden_size=32)

    class Bare(torch.nn.Module):   # an encoder whose config states no width
        def __init__(self):
            super().__init__()
            self.inner = tiny_encoder(tokenizer)

        def forward(self, **kw):
            return self.inner(**kw)

    with pytest.raises(PivotuneError, match="lingualift.encoder_hidden_size"):
        LinguaLiftModel.build(Bare(), tiny_llama(tokenizer))
    bridge = LinguaLiftModel.build(Bare(), tiny_llama(tokenizer), encoder_hidden_size=ENCODER_WIDTH)
    assert bridge.alignment.d_enc == ENCODER_WIDTH


def test_config_requires_an_encoder_and_known_lexicon_languages(parts, tmp_path):
    raw = run_raw(parts["lm"], parts["encoder"], parts["lexicon"], tmp_path)
    raw["lingualift"].pop("encoder")
    with pytest.raises(ConfigError, match="needs lingualift.encoder"):
        load_config(base=raw)
    raw = run_raw(parts["lm"], parts["encoder"], parts["lexicon"], tmp_path)
    raw["lingualift"]["lexicons"] = {"fr": str(parts["lexicon"])}
    with pytest.raises(ConfigError, match=r"lexicons names \['fr'\]"):
        load_config(base=raw)
