"""Vocabulary extension in the toy world: tokens per word, training throughput, and the demo's scores.

1. Tokens per word before and after, for three kinds of base tokenizer. The toy world's data (no base model is
   trained) and three tokenizers trained on its English-heavy pretraining text (75% English, 16% Greek, 6% Thai,
   3% Arabic): the toy world's own byte-level BPE (GPT-2's pre-tokenizer), a Llama-2-style SentencePiece BPE
   with byte fallback and a Llama-3-style byte-level BPE (pivotune.vocab.testing). For each target language
   and tokenizer, --n-new tokens (or as many as the text yields, when fewer: the toy grammar has about 150
   words) are learned from the language's training data (its instructions and the target side of its
   parallel sentences, a run's tgt and mt data) and measured on held-out text (the evaluation questions and
   contexts). English unchanged: the held-out English and the English instructions keep their token ids
   exactly. Round trip: decoding the extended tokenizer's tokens gives back what the base tokenizer's give
   back, in every language. Target: at least 40% fewer tokens per word for the under-represented language (th).
2. Training throughput (--throughput): the toy base model trained on the target languages' instructions, the
   same batches of samples encoded by the base tokenizer and by the extended one (the demo's vocab block, the
   model resized), optimizer steps interleaved (bench/interleave.py, medians); target words per second side
   by side.
3. The demo's scores (--demo): `pivotune demo --methods xllama` without and with --extend-vocab (its new rows
   warmed up alone first: pivotune.toy.vocab), each case's difference with its 95 % paired bootstrap interval
   over the evaluation items (pivotune.report); the extension should lose on no language beyond the interval.

Usage: python bench/vocab.py [--quick] [--n-new 300] [--throughput] [--demo [--languages el th ar] [--keep DIR]]
       [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from pivotune.toy.model import train_tokenizer
from pivotune.toy.vocab import held_out_texts
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the quick toy world (the tests' world)")
    ap.add_argument("--n-new", type=int, default=300, help="tokens to add per language (default 300)")
    ap.add_argument("--throughput", action="store_true", help="also time training with and without the extension")
    ap.add_argument("--demo", action="store_true", help="also run the demo's xllama without and with --extend-vocab")
    ap.add_argument("--languages", nargs="+", help="the demo's target languages for --demo (default: the demo's)")
    ap.add_argument("--keep", help="--demo: keep both demos in DIR and reuse a finished run without the extension "
                    "there (the same languages), so candidates for the extended run compare against one baseline")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant for --throughput (default 5)")
    ap.add_argument("--batch", type=int, default=16, help="samples per step for --throughput (default 16)")
    args = ap.parse_args()
    cfg = WorldConfig.quick() if args.quick else WorldConfig()
    fertility(cfg, args.n_new, args.quick)
    if args.throughput:
        throughput(cfg, args.steps, args.batch)
    if args.demo:
        demo_scores(args.quick, args.languages, args.keep)


def fertility(cfg: WorldConfig, n_new_per_language: int, quick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(cfg, Path(tmp) / "world")
        pretrain = read_pretrain_docs(world)
        bases = {"toy (byte-level, GPT-2 split)": train_tokenizer(pretrain, cfg.vocab_size),
                 "Llama-2-style (SentencePiece BPE)": sentencepiece_style(pretrain, cfg.vocab_size),
                 "Llama-3-style (byte-level BPE)": byte_level(pretrain, cfg.vocab_size)}
        english = held_out_texts(world, "en") + training_texts(world, "en")
        every = {lang: held_out_texts(world, lang) for lang in cfg.all_languages}
        print(f"toy world: {'quick' if quick else 'default'} config, base vocabulary {cfg.vocab_size}, "
              f"{n_new_per_language} new tokens per language; held-out words: "
              + ", ".join(f"{lang} {sum(len(t.split()) for t in texts)}" for lang, texts in every.items()))
        print(f"{'tokenizer':36} {'lang':4} {'new':>4} {'before':>7} {'after':>7} {'fewer':>6} "
              f"{'English unchanged':>18} {'round trip':>11} {'seconds':>8}")
        for name, tok in bases.items():
            for lang in cfg.languages:
                start, n_new = time.perf_counter(), n_new_per_language
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



def throughput(cfg: WorldConfig, steps: int, batch: int) -> None:
    """Target words per second of training steps, base tokenizer and model against the extended ones."""
    import copy

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from interleave import time_callables

    from pivotune.data.collate import Collator, encode_all
    from pivotune.data.load import load_instructions
    from pivotune.models.loading import load_model, load_tokenizer
    from pivotune.toy.model import get_or_build
    from pivotune.toy.vocab import vocab_block
    from pivotune.vocab.corpus import read_parallel_targets, read_texts
    from pivotune.vocab.extend import extend_tokenizer
    from pivotune.vocab.init import resize_and_init
    from pivotune.vocab.measure import words_in
    from pivotune.vocab.run import scripts_of

    torch.manual_seed(0)
    paths = get_or_build(cfg)
    languages = list(cfg.languages)
    block = vocab_block(paths.base, paths.world, languages)
    base_tok, base = load_tokenizer(str(paths.base)), load_model(str(paths.base))
    texts = [t for f in block["corpus"] for t in read_texts(f)] + [
        t for f in block["parallel"] for t in read_parallel_targets(f)]
    ext = extend_tokenizer(base_tok, texts, block["n_new"], scripts=scripts_of(languages))
    extended = copy.deepcopy(base)
    resize_and_init(extended, base_tok, ext.tokenizer)
    samples = [s for lang in languages for s in load_instructions(
        str(paths.world / "instructions" / f"{lang}.jsonl"), role="tgt", lang=lang).records]
    samples = [samples[i] for i in torch.randperm(len(samples)).tolist()]
    batches = [samples[i:i + batch] for i in range(0, len(samples) - batch + 1, batch)]
    words = [words_in(t for s in b for t in (s.instruction, s.input, s.output)) for b in batches]
    variants, tokens = {}, {}
    for name, tok, model in (("base", base_tok, base), ("extended", ext.tokenizer, extended)):
        encoded = [encode_all(b, tok, max_seq_len=1024) for b in batches]
        collate = Collator(tok.pad_token_id)
        tokens[name] = [sum(len(e.input_ids) for e in enc) for enc in encoded]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()

        def step(encoded=encoded, collate=collate, model=model, opt=opt, state={"i": 0}):
            b = collate(encoded[state["i"] % len(encoded)])
            state["i"] += 1
            loss = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
        variants[name] = step
    timed = time_callables(variants, warmup=1, steps=steps)
    per_step = sum(words[1:steps + 1]) / steps   # the timed steps' batches (after the warm-up batch)
    print(f"\ntraining throughput: the toy base model, "
          f"{block['n_new']} new tokens for {'+'.join(languages)}, batches of {batch} target-language instructions "
          f"(about {per_step:.0f} words), {steps} timed steps each, interleaved")
    print(f"{'variant':10} {'tokens/step':>12} {'median s/step':>14} {'target words/s':>15}   steps (s)")
    for name in variants:
        med = timed.median(name)
        print(f"{name:10} {sum(tokens[name]) / len(tokens[name]):12.0f} {med:14.3f} {per_step / med:15.0f}   "
              f"{timed.spread(name)}")
    print(f"extended / base: {timed.speedup('extended', 'base'):.2f}x the target words per second")


def demo_scores(quick: bool, languages: list[str] | None = None, keep: str | None = None) -> None:
    """`pivotune demo --methods xllama` without and with --extend-vocab: every case's difference with its interval
    (``keep``: the demos' directory, a finished run without the extension there reused)."""
    from pivotune.report.collect import Study, cases, read_inputs
    from pivotune.report.differences import difference
    from pivotune.toy.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(keep) if keep else Path(tmp)
        studies = {}
        for label, extend in (("xllama", False), ("xllama+vocab", True)):
            out = root / f"{label}-{'-'.join(languages or ['default'])}{'-quick' if quick else ''}"
            if extend or not (out / "results.json").is_file():
                run_demo(quick=quick, languages=languages, methods=["xllama"], out_dir=out, extend_vocab=extend,
                         force=True)
            studies[label] = read_inputs([out])
        both = Study(scores={k: s.scores["xllama"] for k, s in studies.items()},
                     items={k: s.items["xllama"] for k, s in studies.items()},
                     languages=studies["xllama"].languages)
        print("\nthe demo's xllama without and with --extend-vocab (points; 95 % paired bootstrap over items)")
        print(f"{'language':9} {'metric':14} {'without':>8} {'with':>8} {'difference [95 % interval]':>30}")
        losses = []
        for lang, key in cases(both):
            iv = difference(both, "xllama+vocab", "xllama", [(lang, key)])
            a, b = (both.scores[k][0][lang][key] for k in ("xllama", "xllama+vocab"))
            verdict = {1: "win", -1: "LOSS", 0: ""}[iv.sign] if iv else "no interval"
            if iv and iv.sign < 0:
                losses.append(f"{lang} {key}")
            print(f"{lang:9} {key:14} {a:8.1f} {b:8.1f} {iv.fmt() if iv else '':>30} {verdict}")
        print("no loss beyond the interval on any language" if not losses else f"losses: {', '.join(losses)}")


if __name__ == "__main__":
    main()
