"""The toy world's sets through lm-evaluation-harness give the toy scorer's generations and numbers."""

from __future__ import annotations

import pytest

from pivotune.eval.toy_scoring import evaluate_toy, headline
from pivotune.eval.toy_tasks import evaluate_toy_with_harness, toy_headline


def test_harness_path_matches_toy_scorer(quick_paths, one_thread, tmp_path):
    langs, limit = ["en", "th"], 6
    res = evaluate_toy_with_harness(str(quick_paths.base), quick_paths.world, langs, limit=limit,
                                    log_samples=True, out_dir=tmp_path)
    own = evaluate_toy(str(quick_paths.base), None, quick_paths.world, langs=langs, limit=limit,
                       return_predictions=True)
    for lang in langs:
        for task in ("mgsm", "xquad"):
            samples = sorted(res["samples"][f"pivotune_toy_{task}_{lang}"], key=lambda s: s["doc_id"])
            assert [s["filtered_resps"][0].strip() for s in samples] == own[lang][task]["predictions"]
    ours, theirs = toy_headline(res), headline(own)
    assert ours.keys() == theirs.keys()
    for lang in langs:
        assert ours[lang] == pytest.approx(theirs[lang])
    assert (tmp_path / "results.json").is_file()


def test_harness_evaluates_a_bridged_model_on_the_toy_tasks(quick_paths, one_thread, tmp_path):
    """A LinguaLIFT bridge (random encoder + the quick base model) goes through the same harness path as a
    plain model, and scores what the toy scorer scores for it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BertConfig, BertModel

    from pivotune.models.bridge import LinguaLiftModel

    tok = AutoTokenizer.from_pretrained(quick_paths.base)
    lm = AutoModelForCausalLM.from_pretrained(quick_paths.base)
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(tok), hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=512, pad_token_id=tok.pad_token_id))
    bridge = LinguaLiftModel.build(encoder, lm, bos_token_id=tok.bos_token_id, encoder_tokenizer=tok,
                                   lm_tokenizer=tok)
    bridge_dir = bridge.save_pretrained(tmp_path / "bridge")
    langs, limit = ["en", "el"], 3
    res = evaluate_toy_with_harness(str(bridge_dir), quick_paths.world, langs, limit=limit, log_samples=True)
    own = evaluate_toy(str(bridge_dir), None, quick_paths.world, langs=langs, limit=limit, return_predictions=True)
    for lang in langs:
        for task in ("mgsm", "xquad"):
            samples = sorted(res["samples"][f"pivotune_toy_{task}_{lang}"], key=lambda s: s["doc_id"])
            assert [s["filtered_resps"][0].strip() for s in samples] == own[lang][task]["predictions"]
    ours, theirs = toy_headline(res), headline(own)
    for lang in langs:
        assert ours[lang] == pytest.approx(theirs[lang])
