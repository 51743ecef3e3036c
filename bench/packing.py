"""Sequence packing (``train.packing``) against padding: the share of padding tokens and the training throughput,
side by side, on the toy world's samples and on an Alpaca-length distribution.

Distributions:

  toy     the toy world's instructions (English, Greek and Thai, as the demo's xllama mixture holds them),
          encoded by the pipeline with the shipped base model's tokenizer, max_seq_len 320 (the demo's); the
          model is a Llama of the toy base's shape (8 blocks × 128, vocabulary 1,024).
  alpaca  lengths drawn to look like Alpaca under a Llama-2 tokenizer: a templated prompt of 30 + lognormal
          tokens, a response of lognormal length (median about 65 tokens, a long tail up to 1,000), BOS/EOS,
          truncated at max_seq_len 1024; random token ids; the model is a Llama of 2 blocks × 1024, MLP 2752,
          16 heads, vocabulary 8,000: wide enough that attention is not most of a packed row's step (sdpa
          computes a packed row's masked-out cross-sample blocks too; attention's share of a step is about
          max_seq_len / (6 · hidden), small for 7B-size models, large for narrow ones).

Padding share: every sample of ``--padding-samples`` in a seeded random order, in micro-batches of
``--batch`` rows padded to their longest (what the Trainer's sampler and pivotune's Collator do), against the
same samples packed best-fit-decreasing (:func:`pivotune.data.packing.pack`) into rows of max_seq_len, the
rows in a seeded random order, ``--batch`` rows per micro-batch.

Throughput: one optimizer step over the same ``--samples`` samples (a fixed random draw) three ways, each a pass
of its micro-batches (``--batch`` samples, or ``--batch`` packed rows) with the loss normalised over the whole
step (SFTObjective, forward + backward + AdamW), interleaved (bench/interleave.py: ``--warmup`` untimed rounds
then ``--steps`` timed ones, medians):

  padded          samples padded to their micro-batch's longest, sdpa with the padding mask;
  packed-masked   packed rows, sdpa with the block-diagonal mask transformers builds from the position ids;
  packed          packed rows, sdpa per sample (:mod:`pivotune.models.packed_attention`: what train.packing runs).

All train on the same supervised tokens, so the ratio of their medians is the ratio of supervised tokens per
second; ``loss0`` is each variant's loss at its first step (the same weights and data: equal up to float
rounding). Target: packed >= 1.5x padded supervised tokens per second on the Alpaca-like distribution.

Usage: nice -n 19 python bench/packing.py [--batch 4] [--samples 32] [--steps 5] [--threads 1] [--only alpaca]
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass
from pathlib import Path

from interleave import MIN_TIMED, check_steps, time_callables

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_BASE = ROOT / "src" / "pivotune" / "toy" / "shipped" / "base"
TARGET = 1.5   # packed over unpadded supervised tokens per second on the Alpaca-like distribution
#: (name, packed, per-sample attention)
VARIANTS = (("padded", False, False), ("packed-masked", True, False), ("packed", True, True))


@dataclass
class Distribution:
    name: str
    encoded: list          # pivotune.data.collate.Encoded, in a seeded random order
    max_seq_len: int
    model: dict            # LlamaConfig keywords
    pad_token_id: int = 0


def toy_distribution(n: int, seed: int) -> Distribution:
    from transformers import AutoTokenizer, LlamaConfig

    from pivotune.data.collate import encode_all, language_ids
    from pivotune.data.records import Sample
    from pivotune.toy.grammar import Grammar
    from pivotune.toy.world import WorldConfig, translate_record

    world = WorldConfig()
    g, rng = Grammar(world.seed, world.reserve_every), random.Random(seed)
    tok = AutoTokenizer.from_pretrained(SHIPPED_BASE, local_files_only=True)
    samples = []
    for i in range(n):
        rec, lang = g.instruction(rng), ("en", "el", "th")[i % 3]
        rec = rec if lang == "en" else translate_record(rec, lang, world.seed)
        samples.append(Sample(instruction=rec["instruction"], input=rec.get("input", ""), output=rec["output"],
                              role="en" if lang == "en" else "tgt", lang=lang))
    encoded = encode_all(samples, tok, max_seq_len=320, lang_ids=language_ids(["el", "th"]))
    base = LlamaConfig.from_pretrained(SHIPPED_BASE, local_files_only=True)
    spec = {k: getattr(base, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                          "num_attention_heads", "num_key_value_heads", "vocab_size")}
    return Distribution("toy", encoded, 320, spec, tok.pad_token_id)


def alpaca_distribution(n: int, seed: int, max_seq_len: int = 1024, vocab: int = 8000) -> Distribution:
    from pivotune.data.collate import Encoded

    rng = random.Random(seed)
    encoded = []
    for _ in range(n):
        prompt = 30 + min(400, int(math.exp(rng.gauss(3.0, 0.7))))
        response = max(2, min(1000, int(math.exp(rng.gauss(4.2, 0.9)))))
        body = [rng.randrange(3, vocab) for _ in range(prompt + response)]
        ids, labels = [1, *body, 2], [-100] * (1 + prompt) + body[prompt:] + [2]
        encoded.append(Encoded(ids[:max_seq_len], labels[:max_seq_len], 0, 0, 1.0, len(ids) > max_seq_len))
    spec = {"hidden_size": 1024, "intermediate_size": 2752, "num_hidden_layers": 2, "num_attention_heads": 16,
            "num_key_value_heads": 16, "vocab_size": vocab}
    return Distribution("alpaca", encoded, max_seq_len, spec)


def micro_batches(dist: Distribution, encoded: list, batch: int, packed: bool, seed: int) -> list:
    """The step's items in micro-batches: ``batch`` samples, or ``batch`` packed rows (both in a seeded order)."""
    from pivotune.data.packing import pack

    items = pack(encoded, dist.max_seq_len) if packed else list(encoded)
    random.Random(seed).shuffle(items)
    return [items[i:i + batch] for i in range(0, len(items), batch)]


def padding(dist: Distribution, batch: int, packed: bool, seed: int) -> tuple[float, int, int]:
    """(padding share, rows, micro-batches) over every sample of the distribution."""
    from pivotune.data.packing import padding_share

    groups = micro_batches(dist, dist.encoded, batch, packed, seed)
    lengths, widths = [], []
    for group in groups:
        sizes = [len(x) if packed else len(x.input_ids) for x in group]
        lengths += sizes
        widths += [max(sizes)] * len(sizes)
    return padding_share(lengths, widths), sum(map(len, groups)), len(groups)


def training_step(dist: Distribution, encoded: list, batch: int, packed: bool, seed: int, per_sample: bool = False):
    """One optimizer step over ``encoded`` (a callable returning its loss), and its supervised token count;
    ``per_sample``: packed rows attend per sample (else through transformers' block-diagonal mask)."""
    import contextlib

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pivotune.data.collate import Collator
    from pivotune.data.packing import PackedCollator
    from pivotune.methods.sft.objective import SFTObjective
    from pivotune.models.packed_attention import per_sample_attention

    collate = PackedCollator(dist.pad_token_id) if packed else Collator(dist.pad_token_id)
    batches = [collate(group) for group in micro_batches(dist, encoded, batch, packed, seed)]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**dist.model, max_position_embeddings=max(2048, dist.max_seq_len),
                                         tie_word_embeddings=False, pad_token_id=dist.pad_token_id))
    model.train()
    objective = SFTObjective()
    norms = {"tokens": sum(objective.normalizers(b)["tokens"] for b in batches)}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)

    def step() -> float:
        total = 0.0
        with per_sample_attention(model) if per_sample else contextlib.nullcontext():
            for b in batches:
                loss = objective.loss(model, b, norms)[0]
                loss.backward()
                total += float(loss.detach())
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total
    return step, int(norms["tokens"]), sum(int(b["input_ids"].numel()) for b in batches), len(batches)


def run(dist: Distribution, args) -> float:
    """Print the distribution's table; returns the measured throughput ratio (packed over padded)."""
    import statistics

    lengths = [len(e.input_ids) for e in dist.encoded]
    print(f"\n== {dist.name}: {len(lengths)} samples, tokens per sample median {statistics.median(lengths):.0f}, "
          f"mean {statistics.mean(lengths):.0f}, max {max(lengths)}; max_seq_len {dist.max_seq_len}; model "
          f"Llama {dist.model['num_hidden_layers']} × {dist.model['hidden_size']}, vocab {dist.model['vocab_size']}")
    print(f"{'':10}{'rows':>7}{'micro-batches':>15}{'padding':>9}")
    for packed in (False, True):
        share, rows, n = padding(dist, args.batch, packed, args.seed)
        print(f"{'packed' if packed else 'padded':10}{rows:7d}{n:15d}{share:9.1%}")
    draw = random.Random(args.seed).sample(dist.encoded, min(args.samples, len(dist.encoded)))
    steps = {name: training_step(dist, draw, args.batch, packed, args.seed, per_sample)
             for name, packed, per_sample in VARIANTS}
    t = time_callables({name: s[0] for name, s in steps.items()}, warmup=args.warmup, steps=args.steps)
    print(f"throughput over one optimizer step on {len(draw)} samples, batch {args.batch} "
          f"({args.warmup} warm-up + {args.steps} timed rounds, interleaved, medians):")
    print(f"{'':14}{'micro-batches':>14}{'slots':>8}{'step s':>9}{'sup. tok/s':>12}{'loss0':>10}  timed steps (s)")
    for name, (_, supervised, slots, n) in steps.items():
        med = t.median(name)
        print(f"{name:14}{n:14d}{slots:8d}{med:9.3f}{supervised / med:12.0f}{t.results[name][0]:10.5f}  "
              f"{t.spread(name)}")
    ratio = t.speedup("packed", "padded")
    print(f"supervised tokens per second, packed/padded: {ratio:.2f}x"
          + (f" (target >= {TARGET}x: {'met' if ratio >= TARGET else 'not met'})" if dist.name == "alpaca" else "")
          + f"; packed-masked/padded: {t.speedup('packed-masked', 'padded'):.2f}x")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4, help="rows per micro-batch (samples, or packed rows)")
    ap.add_argument("--samples", type=int, default=32, help="samples in the timed optimizer step")
    ap.add_argument("--padding-samples", type=int, default=2000, help="samples the padding share is taken over")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=MIN_TIMED, help=f"timed steps per variant (at least {MIN_TIMED})")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--only", choices=("toy", "alpaca"), help="one distribution only")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    check_steps(args.steps)

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); sdpa attention")
    builders = {"toy": toy_distribution, "alpaca": alpaca_distribution}
    for name in ([args.only] if args.only else builders):
        run(builders[name](args.padding_samples, args.seed), args)


if __name__ == "__main__":
    main()
