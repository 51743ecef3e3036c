"""Texts per second: pivotune's batched, length-sorted translation against a naive one-at-a-time loop.

Same model and inputs for both: the tiny random-init NLLB-style model of
pivotune.toy.mt_model (the classes a real NLLB-200 checkpoint loads as), and
sentences of 3-40 words from the toy grammar's vocabulary.
Ours: pivotune.translate.pipeline.translate_records (sentence split, length
sort, batches of --batch-size, no cache). Naive: what transformers' translation
pipeline did (it is gone from transformers 5): for each text, set src_lang,
tokenize, generate with the target token forced first, decode.
Both decode greedily to the same --max-new-tokens. The two are timed interleaved (bench/interleave.py):
one untimed round, then --steps rounds ours, naive, ours, ...; each rate is the median of its timed passes
over all texts. Prints both rates and the ratio (aim >= 3x).

Usage: python bench/translate.py [--texts 256] [--batch-size 32] [--threads 1] [--device cpu] [--steps 5]
"""

from __future__ import annotations

import argparse
import random
import tempfile

import torch
from interleave import MIN_TIMED, time_callables

from pivotune.toy import grammar
from pivotune.toy.mt_model import build_tiny_nllb
from pivotune.translate.pipeline import Record, TranslateResult, translate_records
from pivotune.translate.seq2seq import HFSeq2SeqTranslator


def texts(n: int, seed: int = 0) -> list[str]:
    words = grammar.vocabulary()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 40))).capitalize() + "." for _ in range(n)]


def naive(translator: HFSeq2SeqTranslator, inputs: list[str], tgt_code: str, max_new_tokens: int) -> list[str]:
    tok, model = translator.tokenizer, translator.model
    tok.src_lang = "eng_Latn"
    forced = tok.convert_tokens_to_ids(tgt_code)
    out = []
    with torch.inference_mode():
        for text in inputs:
            enc = tok(text, return_tensors="pt").to(translator.device)
            ids = model.generate(**enc, forced_bos_token_id=forced, max_new_tokens=max_new_tokens, do_sample=False)
            out.append(tok.decode(ids[0], skip_special_tokens=True))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=MIN_TIMED, help=f"timed rounds (at least {MIN_TIMED})")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    inputs = texts(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_nllb(tmp, d_model=64, layers=2)
        tr = HFSeq2SeqTranslator(tmp, device=args.device, batch_size=args.batch_size,
                                 max_new_tokens=args.max_new_tokens)
        records = [Record(str(i), {"instruction": t, "input": "", "output": "x"}) for i, t in enumerate(inputs)]

        def ours():
            result, calls = TranslateResult(), tr.calls
            translate_records(records, tr, src="en", tgt="th", result=result)
            return result.translated, tr.calls - calls

        # both end in decoded strings, so every step has waited for its device
        t = time_callables({"ours": ours, "naive": lambda: naive(tr, inputs, "tha_Thai", args.max_new_tokens)},
                           steps=args.steps)
    (sentences, calls), ours_s, slow_s = t.results["ours"][-1], t.median("ours"), t.median("naive")
    n = len(inputs)
    print(f"{n} texts, tiny NLLB-style model (d_model 64, 2+2 layers), device {args.device}, "
          f"{args.threads} thread(s), max_new_tokens {args.max_new_tokens}")
    print(f"median of {args.steps} interleaved timed passes over the texts (seconds of each pass after it)")
    print(f"pivotune batched, length-sorted (batch {args.batch_size}): {ours_s:7.2f} s  {n / ours_s:8.1f} texts/s "
          f"({sentences} sentences, {calls} model calls)   {t.spread('ours')}")
    print(f"naive one-at-a-time generate loop:            {slow_s:7.2f} s  {n / slow_s:8.1f} texts/s   "
          f"{t.spread('naive')}")
    print(f"ratio: {t.speedup('ours', 'naive'):.1f}x")


if __name__ == "__main__":
    main()
