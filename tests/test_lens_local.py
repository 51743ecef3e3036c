"""Lens-local: the split rule read from the logit lens, and a run that trains only the blocks above the split."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_llama

from pivotune.check import check_run
from pivotune.config import load_config
from pivotune.data.records import Sample
from pivotune.errors import ConfigError, PivotuneError
from pivotune.methods.lens_local.road import split_layer, switch_layer
from pivotune.train.run import train

pytestmark = pytest.mark.usefixtures("one_thread")
LAYERS = 4
DATA = [Sample(instruction=f"Say {i}.", output=o, role=role, lang="el")
        for i, o in enumerate(["the red cat", "a blue bird", "two green trees", "the big river"])
        for role in ("tgt", "mt")]


def test_switch_layer_is_where_the_target_leads_up_to_the_top():
    """The lowest layer from which the target leads at every layer above; the embeddings (index 0) do not count."""
    en = [0.0, 0.6, 0.5, 0.2, 0.1]
    assert switch_layer(en, [0.9, 0.1, 0.2, 0.3, 0.8]) == 3
    assert switch_layer(en, [0.0, 0.7, 0.1, 0.1, 0.9]) == 4        # leads at layer 1, loses it, leads at the top
    assert switch_layer(en, [0.0, 0.0, 0.0, 0.0, 0.05]) is None    # English up to the top: it never switches
    assert switch_layer(en, [0.0, 0.6, 0.5, 0.2, 0.1]) is None     # a tie is no lead (the strict lens rule)
    assert switch_layer(en, [1.0] * 5) == 1


def test_split_is_the_lowest_switch_and_keeps_a_block_to_train():
    assert split_layer({"el": 3, "th": 2}, LAYERS) == 2
    assert split_layer({"el": 4}, LAYERS) == 3 and split_layer({"el": None, "th": 4}, LAYERS) == 3
    assert split_layer({"el": 1, "th": None}, LAYERS) == 1


@pytest.fixture(scope="module")
def deep_model_dir(tmp_path_factory, tokenizer):
    d = tmp_path_factory.mktemp("tiny-llama-4")
    tiny_llama(tokenizer, layers=LAYERS).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def _probe(path, p_en, p_tgt) -> str:
    path.write_text(json.dumps({"num_layers": LAYERS, "languages": {"el": {"p_en": {"mean": p_en},
                                                                           "p_tgt": {"mean": p_tgt}}}}))
    return str(path)


def _cfg(model_dir, out, **lens_local):
    probe = _probe(out.parent / "probe.json", [0.0, 0.6, 0.5, 0.2, 0.1], [0.0, 0.1, 0.2, 0.3, 0.8])   # switch at 3
    return {"model": str(model_dir), "method": "lens-local", "languages": ["el"], "output_dir": str(out),
            "max_seq_len": 128, "prom": {"probe": probe}, "lens_local": lens_local,
            "train": {"lr": 1e-2, "max_steps": 2, "per_device_batch_size": 4, "grad_accum": 1, "warmup_ratio": 0.0,
                      "scheduler": "constant", "logging_steps": 1, "progress_bar": False}}


def _changed(model_dir, trainer) -> set[str]:
    from pivotune.models.loading import load_model

    before = dict(load_model(str(model_dir)).named_parameters())
    return {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach().cpu(), before[n])}


@pytest.mark.parametrize("head", [False, True])
def test_only_the_blocks_above_the_lens_split_train(deep_model_dir, tmp_path, head):
    """The lens switches to the target at layer 3 of 4: block 4 trains (and the head when asked), nothing else."""
    trainer = train(load_config(base=_cfg(deep_model_dir, tmp_path / "run", head=head)), DATA,
                    save_checkpoints=False)
    changed = _changed(deep_model_dir, trainer)
    head_params = {"model.norm.weight", "lm_head.weight"}
    assert {n for n in changed if n not in head_params} and all(n.startswith("model.layers.3.") or n in head_params
                                                               for n in changed)
    assert (head_params <= changed) == head and not changed & {"model.embed_tokens.weight"}
    decision = json.loads((tmp_path / "run" / "lens_local.json").read_text())
    assert decision["split_layer"] == 3 and decision["switch_layers"] == {"el": 3}
    assert decision["trained_blocks"] == [4] and decision["head"] == head
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["lens_local"] == decision and meta["trainable_parameters"] < meta["total_parameters"]


def test_lora_goes_on_the_blocks_above_the_split(deep_model_dir, tmp_path):
    raw = _cfg(deep_model_dir, tmp_path / "run", split_layer=2)
    trainer = train(load_config(base={**raw, "lora": {"enabled": True, "r": 4}}), DATA, save_checkpoints=False)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".layers.")[1].split(".")[0] for n in trainable} == {"2", "3"}   # blocks 3 and 4


def test_bad_settings_are_clear_errors(deep_model_dir, tmp_path):
    raw = _cfg(deep_model_dir, tmp_path / "run", head=True)
    with pytest.raises(ConfigError, match="lens_local.head.*LoRA adapter would not save"):
        load_config(base={**raw, "lora": {"enabled": True}})
    too_high = load_config(base=_cfg(deep_model_dir, tmp_path / "run", split_layer=4))
    assert any("lens_local.split_layer=4 is out of range" in p for p in check_run(too_high).problems)   # --check
    with pytest.raises(PivotuneError, match=r"lens_local.split_layer=4 is out of range.*0 <= k <= 3"):
        train(too_high, DATA)
    no_evidence = {**_cfg(deep_model_dir, tmp_path / "run"), "prom": {}}
    with pytest.raises(PivotuneError, match="lens-local.*no evidence.*prom.probe_pairs.*lens_local.split_layer"):
        train(load_config(base=no_evidence), DATA)
    assert not (tmp_path / "run").exists()   # nothing left by runs that failed before training
