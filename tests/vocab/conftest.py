"""Shared fixtures: the quick toy world's data, and base tokenizers built from its English-heavy pretraining
text (Llama-2-style SentencePiece BPE, Llama-3-style byte-level BPE, and the toy world's own)."""

from __future__ import annotations

import json

import pytest

from pivotune.toy.world import WorldConfig, build_world
from pivotune.vocab.testing import byte_level, sentencepiece_style
from vocab_helpers import KINDS, NEW_TOKENS



@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The quick world's data products (no base model: the tokenizers below are trained here)."""
    return build_world(WorldConfig.quick(), tmp_path_factory.mktemp("vocab") / "world")


def instruction_texts(world, lang: str) -> list[str]:
    rows = [json.loads(line) for line in (world / "instructions" / f"{lang}.jsonl").read_text("utf-8").splitlines()]
    return [t for r in rows for t in (r["instruction"], r["input"], r["output"]) if t]


def held_out_texts(world, lang: str) -> list[str]:
    """Eval questions and contexts: text no corpus below contains."""
    out = []
    for task, field in (("mgsm", "question"), ("xquad", "context")):
        rows = (world / "eval" / f"{task}_{lang}.jsonl").read_text("utf-8").splitlines()
        out += list(dict.fromkeys(json.loads(r)[field] for r in rows))
    return out


@pytest.fixture(scope="session")
def corpus(world):
    """Target-language training text per language: the instructions in it."""
    return {lang: instruction_texts(world, lang) for lang in ("en", "el", "th", "ar")}


@pytest.fixture(scope="session")
def held_out(world):
    return {lang: held_out_texts(world, lang) for lang in ("en", "el", "th", "ar")}


@pytest.fixture(scope="session")
def base_tokenizers(world):
    from pivotune.toy.model import train_tokenizer
    from pivotune.toy.world import read_pretrain_docs

    text = read_pretrain_docs(world)
    built = {"sentencepiece": sentencepiece_style(text), "byte_level": byte_level(text),
             "toy": train_tokenizer(text, 1024)}
    assert tuple(built) == KINDS
    return built


@pytest.fixture(scope="session")
def extended(base_tokenizers, corpus):
    """Each base tokenizer extended with NEW_TOKENS Thai tokens learned from the Thai instructions."""
    from pivotune.vocab.extend import extend_tokenizer

    return {kind: extend_tokenizer(tok, corpus["th"], NEW_TOKENS) for kind, tok in base_tokenizers.items()}
