"""Shared fixtures: a tokenizer trained here and tiny random-init causal LMs (no hub access)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random  # noqa: E402

import pytest  # noqa: E402

WORDS = ("the cat dog bird sees eats likes runs to from a an big small red blue green house tree river "
         "water food one two three four five and is are was not yes no hello world good day").split()


def generated_text(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "." for _ in range(n)]


def train_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer trained on generated text, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = generated_text() + ["### Instruction: Response: Input: Below is an instruction that describes"]
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_llama(tokenizer, layers: int = 2, hidden: int = 64, seed: int = 0, init_std: float = 0.02):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                      initializer_range=init_std)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A saved tiny Llama + tokenizer directory, loadable by path like a hub model."""
    d = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(tokenizer).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_wide_init_model_dir(tmp_path_factory, tokenizer):
    """Like tiny_model_dir, with larger random weights: a frozen std-0.02 unembedding keeps logits
    near uniform, so adapter-only training (LoRA) needs a head that can express a sharp distribution,
    as a pretrained model's does."""
    d = tmp_path_factory.mktemp("tiny-llama-wide")
    tiny_llama(tokenizer, init_std=0.3).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-model tests: with two threads on a busy 2-core machine every
    tiny op waits at the thread barrier (10-40x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
