"""``pivotune demo --extend-vocab``: every run extends the toy base's tokenizer for the target languages' scripts,
and the study reports tokens per word before and after.

The toy grammar has about 150 words per language, so its data yield only so many tokens: the demo asks for
:data:`TOKENS_PER_LANGUAGE` per target language, or as many as the data yield when fewer (learned once here,
on the files every run then learns from: the world's target-language instructions and parallel sentences).
"""

from __future__ import annotations

import json
from pathlib import Path

#: tokens the demo adds per target language (bench/vocab.py: Thai falls from 2.3-2.8 to 1.0-1.2 tokens per word)
TOKENS_PER_LANGUAGE = 300
#: the embedding warm-up's learning rate in the demo, 10x the methods' (at 1e-3 the new rows barely move in the
#: demo's steps; at 3e-2 English's held-out loss rises, the new output rows taking its mass)
WARMUP_LR = 1e-2
#: its steps, as a share of the methods' (bench/vocab.py --demo: xllama loses on no language beyond the interval
#: with 85 or 170 warm-up steps; 85 add about half to a run's training time, which its shorter inputs win back in
#: evaluation)
WARMUP_SHARE = 0.5


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def held_out_texts(world: Path, lang: str) -> list[str]:
    """Text no run trains on: the evaluation questions and contexts of ``lang``."""
    out = [r["question"] for r in _jsonl(world / "eval" / f"mgsm_{lang}.jsonl")]
    return out + list(dict.fromkeys(r["context"] for r in _jsonl(world / "eval" / f"xquad_{lang}.jsonl")))


def vocab_block(base: Path, world: Path, languages: list[str], method_steps: int = 0) -> dict:
    """The ``vocab`` section of every demo run config: learned from the world's target-language instructions and
    the target side of its parallel sentences (named as files, so LinguaLIFT, whose data hold neither, learns the
    same tokens), TOKENS_PER_LANGUAGE per language or as many as they yield; given the methods' steps, the new rows
    first train alone for WARMUP_SHARE of them at WARMUP_LR."""
    from ..models.loading import load_tokenizer
    from ..vocab.corpus import read_parallel_targets, read_texts
    from ..vocab.extend import CorpusTooSmall, extend_tokenizer
    from ..vocab.run import scripts_of

    corpus = [str(world / "instructions" / f"{lang}.jsonl") for lang in languages]
    parallel = [str(world / "parallel" / f"en-{lang}.jsonl") for lang in languages]
    texts = [t for f in corpus for t in read_texts(f)] + [t for f in parallel for t in read_parallel_targets(f)]
    n_new = TOKENS_PER_LANGUAGE * len(languages)
    try:
        extend_tokenizer(load_tokenizer(str(base)), texts, n_new, scripts=scripts_of(languages))
    except CorpusTooSmall as e:
        n_new = e.learnable
    warmup_steps = round(method_steps * WARMUP_SHARE)
    warmup = {"warmup_steps": warmup_steps, "warmup_lr": WARMUP_LR} if warmup_steps else {}
    return {"n_new": n_new, "languages": list(languages), "corpus": corpus, "parallel": parallel, **warmup}


def run_tokenizer_dir(run_dir: Path) -> Path:
    """Where a run saved its (extended) tokenizer: RUN/model, or the LM inside LinguaLIFT's bridge."""
    model = run_dir / "model"
    return model if (model / "tokenizer_config.json").is_file() else model / "lm"


def tokens_per_word_by_language(base: Path, extended: Path, world: Path, languages: list[str]) -> dict:
    """``{lang: {"before", "after"}}``: tokens per word on held-out text under the base tokenizer and a run's
    extended one (what results.json records and :func:`pivotune.vocab.measure.fertility_table` shows)."""
    from ..models.loading import load_tokenizer
    from ..vocab.measure import tokens_per_word

    old, new = load_tokenizer(str(base)), load_tokenizer(str(extended))
    return {lang: {"before": round(tokens_per_word(old, texts), 4), "after": round(tokens_per_word(new, texts), 4)}
            for lang in languages for texts in [held_out_texts(world, lang)]}
