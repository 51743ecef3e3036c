"""Local stand-ins for real tokenizers, built from small corpora (no hub access): tests and bench share them.

* :func:`sentencepiece_style` — Llama-2's algorithm and settings as transformers 5 builds them
  (``LlamaTokenizer``): a BPE model with byte fallback (``<0x00>`` … ``<0xFF>`` after ``<unk>``, ``<s>``,
  ``</s>``), the Metaspace pre-tokenizer (``▁`` for spaces, a ``▁`` prepended to the first word, no split),
  and a decoder that maps ``▁`` back, fuses byte tokens and strips the prepended space. Like
  SentencePiece's ``character_coverage``, ``limit_alphabet`` keeps rare characters out of the alphabet,
  so they are byte-fallback tokens, as Thai or Amharic characters are for Llama-2.
* :func:`byte_level` — Llama-3's: byte-level BPE behind its split regex (letters, 1–3 digit numbers,
  punctuation runs, spaces), ``ignore_merges``, special tokens above the model's vocabulary and a
  ``<|begin_of_text|>`` prefix, wrapped as ``PreTrainedTokenizerFast`` as Llama-3's ``tokenizer.json`` is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

#: Llama-3's pre-tokenizer split pattern (from its tokenizer.json).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>")


def sentencepiece_style(texts: Iterable[str], vocab_size: int = 1000, limit_alphabet: int = 100):
    """A Llama-2-style tokenizer (``LlamaTokenizer``) trained on ``texts``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # SentencePiece learns pieces within whitespace-separated words (split_by_whitespace); the tokenizer
    # that is used afterwards does not split (Metaspace split=False), as Llama-2's does not.
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(byte_tokens), special_tokens=specials,
                                  limit_alphabet=limit_alphabet, show_progress=False)
    trainer_tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(trainer_tok.to_str())["model"]
    learned = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    vocab = {tok: i for i, tok in enumerate(specials + byte_tokens + [t for t, _ in learned if t not in specials])}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)   # Llama-2 starts with <s>


def byte_level(texts: Iterable[str], vocab_size: int = 1000):
    """A Llama-3-style byte-level BPE tokenizer (``PreTrainedTokenizerFast``) trained on ``texts``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens(list(LLAMA3_SPECIALS))   # ids above the model's vocabulary, as in Llama-3
    bos = LLAMA3_SPECIALS[0]
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                      special_tokens=[(bos, tok.token_to_id(bos))])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=LLAMA3_SPECIALS[1],
                                   clean_up_tokenization_spaces=False)
