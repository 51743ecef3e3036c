"""LinguaLIFT's toy-world parts: MUSE lexicon files, the balanced encoder mix, and (slow) the whole road."""

from __future__ import annotations

import re

import pytest

from pivotune.methods.lingualift.codeswitch import read_lexicon
from pivotune.methods.lingualift.demo import write_toy_lexicons
from pivotune.toy.demo import DemoPlan, run_config, train_and_evaluate
from pivotune.toy.encoder import EncoderConfig, balanced_docs, get_or_build_encoder
from pivotune.toy.language import lexicon

SCRIPTS = {"el": re.compile("[\u0370-\u03ff]"), "th": re.compile("[\u0e00-\u0e7f]"), "ar": re.compile("[\u0600-\u06ff]")}


def test_toy_lexicons_are_readable_muse_files_of_the_exact_lexicon(quick_paths, tmp_path):
    files = write_toy_lexicons(quick_paths, ["el", "th"], tmp_path)
    for lang, f in files.items():
        lex = read_lexicon(f, lang)
        assert lex.entries == {e: (t,) for e, t in lexicon(lang, quick_paths.config.seed).items()}


def test_encoder_mix_is_balanced_across_languages(quick_paths):
    docs = balanced_docs(quick_paths)
    assert len(docs) == quick_paths.config.n_pretrain_docs
    counts = {lang: sum(bool(p.search(d)) for d in docs) for lang, p in SCRIPTS.items()}
    counts["en"] = sum(not any(p.search(d) for p in SCRIPTS.values()) for d in docs)
    share = 1 / 4
    for lang, n in counts.items():   # the base model's mix is 83% English; here every language ~25%
        assert abs(n / len(docs) - share) < 0.04, (lang, n)


@pytest.mark.slow
def test_lingualift_on_the_demo_road_end_to_end(quick_paths, tmp_path, monkeypatch):
    """The demo's LinguaLIFT config (a briefly trained encoder) trains both stages and scores the bridge."""
    small = EncoderConfig(epochs=0.05, warmup_steps=1)
    monkeypatch.setattr("pivotune.toy.encoder.get_or_build_encoder", lambda paths, ecfg=None: get_or_build_encoder(
        paths, small))
    plan = DemoPlan(steps=4, batch_size=4, eval_limit=2)
    raw = run_config(quick_paths, "lingualift", ["el"], 0, tmp_path / "ll", plan)
    assert raw["lingualift"]["stage1_max_steps"] + raw["train"]["max_steps"] == plan.steps
    headline, _ = train_and_evaluate(raw, quick_paths.world, ["en", "el"], plan)
    assert set(headline) == {"en", "el"}
    assert all(0.0 <= v <= 100.0 for row in headline.values() for v in row.values())
    assert (tmp_path / "ll" / "model" / "bridge.json").exists() and (tmp_path / "ll" / "eval.json").exists()
