"""A tiny random-init NLLB-style MT model, for tests and benchmarks of the translation pipeline.

The real classes NLLB-200 checkpoints load as (``M2M100ForConditionalGeneration``
and ``NllbTokenizer``, with its FLORES-200 language tokens), at a few hundred
thousand parameters, with a BPE vocabulary trained here on the toy grammar's
words, so it builds offline in about a second. Its translations are noise; what
it exercises is the code path a real NLLB checkpoint takes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from . import grammar


def _corpus(n: int = 600, seed: int = 0) -> list[str]:
    words = grammar.vocabulary()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 14))) + " ." for _ in range(n)]


def build_tiny_nllb(out_dir: str | Path, *, d_model: int = 32, layers: int = 1, vocab_size: int = 400,
                    seed: int = 0) -> Path:
    """Save a tiny NLLB-style model and tokenizer to ``out_dir`` (loadable by path like a hub model)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  show_progress=False)
    bpe.train_from_iterator(_corpus(seed=seed), trainer)
    spec = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["merges"]]
    tok = NllbTokenizer(vocab=spec["vocab"], merges=merges)
    cfg = M2M100Config(vocab_size=len(tok), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
                       decoder_ffn_dim=2 * d_model, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       decoder_start_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = M2M100ForConditionalGeneration(cfg)
    out = Path(out_dir)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
