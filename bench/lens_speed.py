"""Time the batched logit lens (pivotune.analysis.logit_lens.language_probabilities) against the naive loop.

Same prompts for both: 64 items of random token ids (lengths 60-100, like five-line translation
prompts), an 8-layer Llama with Llama-2's 32k vocabulary built from its config (random init).
Naive: one prompt at a time, unpadded, full forward with output_hidden_states, final norm (not at N) +
lm_head + softmax over the full vocabulary at every position of every layer, then the last position.
Floor: the same batched forward with no lens at all (the most any method can gain). The three are timed
interleaved (bench/interleave.py): one untimed round, then --steps rounds batched, naive, floor, batched,
...; each row is the median of its timed passes over all prompts.
Prints the times, the ratio (target >= 10x) and the largest difference between the two results.

Usage: python bench/lens_speed.py [--items 64] [--batch-size 16] [--threads 1] [--steps 5]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from interleave import MIN_TIMED, time_callables

from pivotune.analysis.logit_lens import language_probabilities


class IdTokenizer:
    """Stands in for a tokenizer: each prompt string maps to a fixed list of token ids."""

    def __init__(self, table: dict[str, list[int]], pad_id: int = 0):
        self.table, self.pad_token_id, self.eos_token_id = table, pad_id, pad_id

    def __call__(self, prompt: str):
        return {"input_ids": self.table[prompt]}


def build_model(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=688, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
                      tie_word_embeddings=False, pad_token_id=0)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


@torch.no_grad()
def naive(model, tok, prompts, en_sets, tgt_sets):
    norm, head = model.model.norm, model.lm_head
    n = model.config.num_hidden_layers
    p_en = np.zeros((len(prompts), n + 1))
    p_tgt = np.zeros_like(p_en)
    for i, p in enumerate(prompts):
        hs = model(input_ids=torch.tensor([tok(p)["input_ids"]]), output_hidden_states=True).hidden_states
        for k, h in enumerate(hs):
            probs = torch.softmax(head(h if k == n else norm(h)), dim=-1)[0, -1]
            p_en[i, k] = probs[en_sets[i]].sum().item()
            p_tgt[i, k] = probs[tgt_sets[i]].sum().item()
    return p_en, p_tgt


@torch.no_grad()
def floor(model, tok, prompts, batch_size):
    """The unavoidable part: the same left-padded batched forwards through all blocks, no lens at all."""
    order = sorted(prompts, key=lambda p: len(tok(p)["input_ids"]))
    for s in range(0, len(order), batch_size):
        seqs = [tok(p)["input_ids"] for p in order[s:s + batch_size]]
        w = max(map(len, seqs))
        ids = torch.tensor([[0] * (w - len(q)) + q for q in seqs])
        mask = torch.tensor([[0] * (w - len(q)) + [1] * len(q) for q in seqs])
        model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0),
              output_hidden_states=True, use_cache=False, logits_to_keep=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=32000, help="32000 is Llama-2's vocabulary")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    ap.add_argument("--steps", type=int, default=MIN_TIMED, help=f"timed rounds (at least {MIN_TIMED})")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = build_model(args.vocab)
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(1)
    table, en_sets, tgt_sets = {}, [], []
    for i in range(args.items):
        length = int(torch.randint(60, 101, (1,), generator=g))
        table[f"prompt {i}"] = torch.randint(3, args.vocab, (length,), generator=g).tolist()
        ids = torch.randperm(args.vocab, generator=g)[:12].tolist()
        en_sets.append(ids[:6])
        tgt_sets.append(ids[6:])
    prompts = list(table)
    tok = IdTokenizer(table)

    t = time_callables({
        "batched": lambda: language_probabilities(model, tok, prompts, en_sets, tgt_sets, batch_size=args.batch_size),
        "naive": lambda: naive(model, tok, prompts, en_sets, tgt_sets),
        "floor": lambda: floor(model, tok, prompts, args.batch_size)}, steps=args.steps)
    res, (ne, nt) = t.results["batched"][-1], t.results["naive"][-1]
    diff = max(np.abs(res.p_en - ne).max(), np.abs(res.p_tgt - nt).max())

    print(f"model: Llama, {params / 1e6:.1f}M parameters, {model.config.num_hidden_layers} layers, "
          f"vocab {args.vocab}; {args.items} prompts of 60-100 tokens; torch threads {args.threads}")
    print(f"median of {args.steps} interleaved timed passes over the {args.items} prompts (seconds of each pass after it)")
    for name, label in (("batched", f"batched lens (batch {args.batch_size}, last position only):"),
                        ("naive", "naive loop (one prompt, full vocab at all positions):"),
                        ("floor", "floor: the same batched forward, no lens at all:")):
        print(f"{label:54} {t.median(name):8.2f} s   {t.spread(name)}")
    print(f"speed-up: {t.speedup('batched', 'naive'):.1f}x (target >= 10x; naive / floor = "
          f"{t.speedup('floor', 'naive'):.1f}x is the most any method can gain here); max |difference| {diff:.2e}")


if __name__ == "__main__":
    main()
