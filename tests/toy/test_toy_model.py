"""The toy base model: tokenizer reload, cache completeness and atomicity, determinism, toy eval."""

from __future__ import annotations

import pytest

from pivotune.eval.toy_scoring import evaluate_toy, generate, headline, load_eval, prompt_of
from pivotune.toy import model as toy_model
from pivotune.toy.model import entry_dir, get_or_build, load_cached
from pivotune.toy.world import WorldConfig

# Small enough that a full build takes a couple of seconds.
TINY = dict(n_pretrain_docs=300, n_instructions=20, n_parallel=10, n_eval=4, vocab_size=600,
            hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, seq_len=64, warmup_steps=2)


def test_tokenizer_reloads_with_autotokenizer(quick_paths):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(quick_paths.base)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    row = load_eval(quick_paths.world, "xquad", "th")[0]
    ids = tok(row["context"])["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True).strip() == row["context"]
    assert tok.tokenize("rome")[0] == tok.tokenize("in rome")[-1]
    # English words are whole tokens; the scarce language is cut into pieces.
    en = load_eval(quick_paths.world, "xquad", "en")[0]["context"]
    th = row["context"]
    assert len(tok(th)["input_ids"]) > 1.3 * len(tok(en)["input_ids"])


def test_cached_entry_loads_and_is_reused(quick_paths, quick_cfg):
    from transformers import AutoModelForCausalLM

    cache = quick_paths.root.parent.parent
    again = get_or_build(quick_cfg, cache_dir=cache)
    assert again == quick_paths == load_cached(quick_cfg, cache)
    model = AutoModelForCausalLM.from_pretrained(quick_paths.base)
    assert model.config.num_hidden_layers == quick_cfg.num_layers
    assert not model.config.tie_word_embeddings


def test_interrupted_build_leaves_nothing_loadable(tmp_path, monkeypatch):
    cfg = WorldConfig.quick(**TINY)

    def killed(*a, **k):
        raise KeyboardInterrupt("simulated kill during pretraining")

    monkeypatch.setattr(toy_model, "pretrain", killed)
    with pytest.raises(KeyboardInterrupt):
        get_or_build(cfg, cache_dir=tmp_path)
    assert load_cached(cfg, tmp_path) is None
    assert not entry_dir(cfg, tmp_path).exists()
    assert not [p for p in entry_dir(cfg, tmp_path).parent.iterdir()]  # no temporary left either

    # A half-written entry (e.g. from a copy) without its READY marker is not accepted either.
    partial = entry_dir(cfg, tmp_path)
    (partial / "world").mkdir(parents=True)
    (partial / "world" / "world.json").write_text("{}")
    assert load_cached(cfg, tmp_path) is None

    monkeypatch.undo()
    paths = get_or_build(cfg, cache_dir=tmp_path)
    assert load_cached(cfg, tmp_path) == paths
    assert (paths.base / "model.safetensors").is_file()


def test_same_seed_same_weights(tmp_path):
    cfg = WorldConfig.quick(**TINY)
    a = get_or_build(cfg, cache_dir=tmp_path / "a")
    b = get_or_build(cfg, cache_dir=tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json"):
        assert (a.base / name).read_bytes() == (b.base / name).read_bytes(), name
    c = get_or_build(WorldConfig.quick(**TINY, seed=1), cache_dir=tmp_path / "a")
    assert (c.base / "model.safetensors").read_bytes() != (a.base / "model.safetensors").read_bytes()


def test_evaluate_toy_runs_per_language(quick_paths):
    from pivotune.eval.toy_scoring import load_model

    model, tok = load_model(quick_paths.base)
    res = evaluate_toy(model, tok, quick_paths.world, limit=3, batch_size=2, return_predictions=True)
    assert sorted(res) == ["ar", "el", "en", "th"]
    for lang, tasks in res.items():
        assert 0 <= tasks["mgsm"]["accuracy"] <= 1 and tasks["xquad"]["n"] == 3
        assert len(tasks["xquad"]["predictions"]) == 3
    assert set(headline(res)["en"]) == {"mgsm", "xquad_em", "xquad_f1"}
    # Batched left-padded generation equals one-by-one generation.
    rows = load_eval(quick_paths.world, "xquad", "en", limit=4)
    prompts = [prompt_of(r) for r in rows]
    assert generate(model, tok, prompts, 6, batch_size=4) == [generate(model, tok, [p], 6)[0] for p in prompts]
