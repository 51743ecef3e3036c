"""Method mixtures: which samples a method trains on, in a seeded order.

Translation-task samples are Alpaca records built from parallel pairs, the
x-LLaMA shape that PROM follows: an English instruction naming the target
language, drawn by cycling a small pool of paraphrases, the English sentence
as ``input`` and its translation as ``output``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Collection
from typing import TYPE_CHECKING

from ..languages import english_name
from .records import ParallelPair, Sample

if TYPE_CHECKING:
    from ..config import DataSource, RunConfig
    from .load import LoadResult

log = logging.getLogger(__name__)

# The pool of instruction phrasings, cycled in order (x-LLaMA uses ~30; a few
# suffice to keep the model from keying on one string).
MT_INSTRUCTIONS = (
    "Translate the following sentences from {src} to {tgt}.",
    "Translate this text from {src} into {tgt}.",
    "Please translate the {src} text below into {tgt}.",
    "What is the {tgt} translation of the following {src} text?",
    "Render the following {src} passage in {tgt}.",
    "Convert the text below from {src} to {tgt}.",
    "Give a {tgt} translation of this {src} sentence.",
    "Translate into {tgt}:",
)


def translation_samples(pairs: list[ParallelPair], tgt_lang: str, *, source: str = "parallel",
                        weight: float = 1.0, instructions: list[str] | None = None) -> list[Sample]:
    """English→target translation-task samples, instructions cycled from the pool.

    ``instructions`` replaces the pool; ``{src}``/``{tgt}`` in it are filled with language names.
    """
    src_name, tgt_name = english_name("en"), english_name(tgt_lang)
    pool = list(instructions or MT_INSTRUCTIONS)
    out = []
    for i, p in enumerate(pairs):
        instruction = pool[i % len(pool)].replace("{src}", src_name).replace("{tgt}", tgt_name)
        out.append(Sample(instruction=instruction, input=p.source, output=p.target, role="mt",
                          lang=tgt_lang, source=source, weight=weight, origin=p.origin))
    return out


def load_source(src: DataSource, skip_invalid: bool = False) -> list[Sample]:
    """Read one configured source into samples of its role, language and weight (skipped rows logged)."""
    samples, res = read_source(src, skip_invalid)
    if res.skipped:
        log.warning("%s: skipped %d invalid rows: %s", src.name, len(res.skipped), "; ".join(res.skipped[:5]))
    return samples


def read_source(src: DataSource, skip_invalid: bool = False) -> tuple[list[Sample], LoadResult]:
    """One configured source's samples (``max_samples`` applied) and its load result (rows skipped)."""
    from .load import load_instructions, load_parallel

    if src.kind == "parallel":
        res = load_parallel(src.path, src.target_path, src_lang="en", tgt_lang=src.lang,
                            skip_invalid=skip_invalid)
        samples = translation_samples(res.records, src.lang, source=src.name, weight=src.weight,
                                      instructions=src.mt_instructions)
    else:
        res = load_instructions(src.path, role=src.role, lang=src.lang, source=src.name, weight=src.weight,
                                skip_invalid=skip_invalid, split=src.split, fields=src.fields)
        samples = list(res.records)
    if src.max_samples is not None:
        samples = samples[: src.max_samples]
    return samples, res


def build_mixture(roles: Collection[str], samples: list[Sample], seed: int) -> list[Sample]:
    """Keep the samples of ``roles`` (those a method trains on) and shuffle them with ``seed``."""
    kept = [s for s in samples if s.role in roles]
    random.Random(seed).shuffle(kept)
    return kept


def mixture_for_config(cfg: RunConfig, roles: Collection[str]) -> list[Sample]:
    """Load every configured source of ``roles`` (those the run's method trains on) and build its mixture."""
    samples: list[Sample] = []
    for src in cfg.data:
        if src.role not in roles:
            log.info("method %s does not train on role %s: source %s left out", cfg.method, src.role, src.name)
            continue
        samples.extend(load_source(src, skip_invalid=cfg.skip_invalid))
    return build_mixture(roles, samples, cfg.seed)


def summarize(samples: list[Sample]) -> dict[str, int]:
    """Counts per (role, language), for logs and run metadata."""
    counts: dict[str, int] = {}
    for s in samples:
        key = f"{s.role}:{s.lang}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


__all__ = ["MT_INSTRUCTIONS", "build_mixture", "load_source",
           "mixture_for_config", "read_source", "summarize", "translation_samples"]
