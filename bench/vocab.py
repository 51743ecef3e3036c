"""Tokens per word before and after vocabulary extension, in the toy world, for three kinds of base tokenizer.

The toy world's data (no base model is trained) and three tokenizers trained on its English-heavy
pretraining text (83% English, 12% Greek, 3% Thai, 2% Arabic): the toy world's own byte-level BPE
(GPT-2's pre-tokenizer), a Llama-2-style SentencePiece BPE with byte fallback and a Llama-3-style
byte-level BPE (pivotune.vocab.testing). For each target language and tokenizer, --n-new tokens (or as
many as the text yields, when fewer: the toy grammar has about 150 words) are learned from the
language's training data (its instructions and the target side of its parallel sentences, a run's tgt
and mt data) and measured on held-out text (the evaluation questions and contexts). English unchanged: the held-out English and the English instructions keep their token
ids exactly. Round trip: decoding the extended tokenizer's tokens gives back what the base tokenizer's
give back, in every language. Target: at least 40% fewer tokens per word for the under-represented
language (th).

Usage: python bench/vocab.py [--quick] [--n-new 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from pivotune.toy.model import train_tokenizer
from pivotune.toy.world import WorldConfig, build_world, read_pretrain_docs
from pivotune.vocab.extend import CorpusTooSmall, extend_tokenizer
from pivotune.vocab.measure import round_trip_failures, tokenization_changes, tokens_per_word
from pivotune.vocab.testing import byte_level, sentencepiece_style

TARGET = 0.40


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def training_texts(world: Path, lang: str) -> list[str]:
    rows = _jsonl(world / "instructions" / f"{lang}.jsonl")
    texts = [t for r in rows for t in (r["instruction"], r["input"], r["output"]) if t]
    if lang != "en":
        texts += [r["target"] for r in _jsonl(world / "parallel" / f"en-{lang}.jsonl")]
    return texts


def held_out_texts(world: Path, lang: str) -> list[str]:
    out = [r["question"] for r in _jsonl(world / "eval" / f"mgsm_{lang}.jsonl")]
    return out + list(dict.fromkeys(r["context"] for r in _jsonl(world / "eval" / f"xquad_{lang}.jsonl")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the quick toy world (the tests' world)")
    ap.add_argument("--n-new", type=int, default=300, help="tokens to add per language (default 300)")
    args = ap.parse_args()
    cfg = WorldConfig.quick() if args.quick else WorldConfig()
    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(cfg, Path(tmp) / "world")
        pretrain = read_pretrain_docs(world)
        bases = {"toy (byte-level, GPT-2 split)": train_tokenizer(pretrain, cfg.vocab_size),
                 "Llama-2-style (SentencePiece BPE)": sentencepiece_style(pretrain, cfg.vocab_size),
                 "Llama-3-style (byte-level BPE)": byte_level(pretrain, cfg.vocab_size)}
        english = held_out_texts(world, "en") + training_texts(world, "en")
        every = {lang: held_out_texts(world, lang) for lang in cfg.all_languages}
        print(f"toy world: {'quick' if args.quick else 'default'} config, base vocabulary {cfg.vocab_size}, "
              f"{args.n_new} new tokens per language; held-out words: "
              + ", ".join(f"{lang} {sum(len(t.split()) for t in texts)}" for lang, texts in every.items()))
        print(f"{'tokenizer':36} {'lang':4} {'new':>4} {'before':>7} {'after':>7} {'fewer':>6} "
              f"{'English unchanged':>18} {'round trip':>11} {'seconds':>8}")
        for name, tok in bases.items():
            for lang in cfg.languages:
                start, n_new = time.perf_counter(), args.n_new
                try:
                    ext = extend_tokenizer(tok, training_texts(world, lang), n_new)
                except CorpusTooSmall as err:   # the toy grammar has ~150 words: take what its text yields
                    n_new = err.learnable
                    ext = extend_tokenizer(tok, training_texts(world, lang), n_new)
                seconds = time.perf_counter() - start
                before = tokens_per_word(tok, every[lang])
                after = tokens_per_word(ext.tokenizer, every[lang])
                same = not tokenization_changes(tok, ext.tokenizer, english)
                trip = not round_trip_failures(tok, ext.tokenizer, [t for texts in every.values() for t in texts])
                mark = "  <- target >= 40% fewer: " + ("met" if 1 - after / before >= TARGET else "MISSED") \
                    if lang == cfg.under_represented else ""
                print(f"{name:36} {lang:4} {n_new:4} {before:7.2f} {after:7.2f} {1 - after / before:6.0%} "
                      f"{'yes' if same else 'NO':>18} {'yes' if trip else 'NO':>11} {seconds:8.1f}{mark}")


if __name__ == "__main__":
    main()
