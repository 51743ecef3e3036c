"""`pivotune demo --extend-vocab`: every run config gets the vocab block for the study's target languages, and the
report gains tokens per word before and after."""

from __future__ import annotations

import json

import pytest

from pivotune.cli import main
from pivotune.config import load_config
from pivotune.toy.demo import DemoPlan, run_config
from pivotune.toy.vocab import TOKENS_PER_LANGUAGE, WARMUP_LR, WARMUP_SHARE, vocab_block


def test_vocab_block_asks_for_what_the_world_yields_and_validates(quick_paths, tmp_path):
    """The block asks TOKENS_PER_LANGUAGE per language, or as many as the world's data yield (the toy grammar is
    small), and a warm-up of WARMUP_SHARE of the methods' steps at WARMUP_LR; every method's run config with it validates and names the
    study's languages."""
    block = vocab_block(quick_paths.base, quick_paths.world, ["el", "th"], method_steps=60)
    assert 0 < block["n_new"] <= 2 * TOKENS_PER_LANGUAGE and block["languages"] == ["el", "th"]
    for method in ("xllama", "prom", "clo", "lingualift"):
        raw = run_config(quick_paths, method, ["el", "th"], 0, tmp_path / method, DemoPlan.for_world(quick=True),
                         block)
        cfg = load_config(base=raw)
        assert cfg.vocab.n_new == block["n_new"] and cfg.vocab.languages == ["el", "th"]
        assert cfg.vocab.warmup_steps == round(60 * WARMUP_SHARE) > 0 and cfg.vocab.warmup_lr == WARMUP_LR


@pytest.mark.slow
def test_quick_demo_with_extend_vocab_reports_tokens_per_word(quick_paths, tmp_path, monkeypatch, capsys):
    """One method, one language, --extend-vocab: the run trains and evaluates with the extended tokenizer, and
    results.json / results.md show Thai's tokens per word falling and English's unchanged."""
    from transformers import AutoTokenizer

    monkeypatch.setenv("PIVOTUNE_CACHE", str(quick_paths.root.parent.parent))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--methods", "xllama", "--languages", "th", "--extend-vocab", "--jobs", "1",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    fertility = summary["vocab"]["tokens_per_word"]
    assert fertility["th"]["after"] < 0.7 * fertility["th"]["before"]
    assert fertility["en"]["after"] == fertility["en"]["before"]
    run = out / "xllama-seed0"
    assert len(AutoTokenizer.from_pretrained(run / "model")) == (len(AutoTokenizer.from_pretrained(quick_paths.base))
                                                                 + summary["vocab"]["n_new"])
    assert json.loads((run / "model" / "vocab_extension.json").read_text())["scripts"] == ["Thai"]
    assert "| th | 2." in (out / "results.md").read_text() and "tokens per word" in capsys.readouterr().out
    report = (out / "report" / "report.md").read_text()
    assert "## Vocabulary extension" in report and "| th | 2." in report


def test_report_shows_tokens_per_word_of_a_demo_with_extend_vocab():
    """A study whose results.json records the extension gets a 'Vocabulary extension' section: tokens added and
    tokens per word before and after, by language; a study without it gets none."""
    from pivotune.report.collect import Study
    from pivotune.report.page import _vocab_blocks, to_markdown

    vocab = {"n_new": 581, "languages": ["el", "th"],
             "tokens_per_word": {"en": {"before": 1.0, "after": 1.0}, "th": {"before": 2.4, "after": 1.01}}}
    md = to_markdown(_vocab_blocks(Study(vocab=vocab)), "t")
    assert "## Vocabulary extension" in md and "added 581 tokens for el, th" in md
    assert "| en | 1.00 | 1.00 | +0% |" in md and "| th | 2.40 | 1.01 | -58% |" in md
    assert _vocab_blocks(Study()) == []
