"""Tiny LinguaLIFT parts for tests: a random-init BERT-style encoder (narrower than the LM, so the alignment
layer really projects), a word lexicon, English samples, and a run config."""

from __future__ import annotations

import random

from conftest import WORDS

from pivotune.methods.lingualift.codeswitch import write_lexicon
from pivotune.data.records import Sample

ENCODER_WIDTH = 48


def tiny_encoder(tokenizer, seed: int = 0):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=ENCODER_WIDTH, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=256,
                                pad_token_id=tokenizer.pad_token_id))


def save_tiny_encoder(tokenizer, d):
    tiny_encoder(tokenizer).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def lexicon_pairs() -> list[tuple[str, str]]:
    return [(w, w[::-1] + "q") for w in WORDS]


def write_tiny_lexicon(path):
    write_lexicon(path, lexicon_pairs())
    return path


def english_samples(n: int = 24, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    words = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))
    return [Sample(instruction=f"repeat {words(4)}", input=words(3) if i % 2 else "", output=words(3),
                   role="en", lang="en", source="gen", origin=f"gen, row {i}") for i in range(n)]


def run_raw(lm_dir, encoder_dir, lexicon, out_dir, *, stages=(1, 2), steps: int = 2, **lingualift) -> dict:
    return {"model": str(lm_dir), "method": "lingualift", "extra_languages": ["xx"], "languages": ["xx"],
            "output_dir": str(out_dir),
            "max_seq_len": 64,
            "lingualift": {"encoder": str(encoder_dir), "lexicons": {"xx": str(lexicon)}, "stages": list(stages),
                           "stage1_max_steps": steps, "stage1_lr": 1e-2, "max_encoder_len": 64, **lingualift},
            "train": {"max_steps": steps, "per_device_batch_size": 4, "grad_accum": 1, "lr": 1e-2,
                      "progress_bar": False, "warmup_ratio": 0.0, "logging_steps": 1}}
