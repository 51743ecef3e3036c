"""A base model extended for a target script, written as a plain Hugging Face directory.

``OUT`` holds the resized model (``model.safetensors``, ``config.json``), the extended tokenizer
(``tokenizer.json`` and its config; files that would still describe the old vocabulary, such as a
SentencePiece ``tokenizer.model``, are not written) and ``vocab_extension.json``, the record of what was
added. ``AutoModelForCausalLM`` and ``AutoTokenizer`` load it without pivotune. The directory appears only
when complete (:func:`pivotune.io.atomic_path`), so a refused or failed extension writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import PivotuneError
from ..io import atomic_path
from .extend import STALE_FILES, Extension, extend_tokenizer
from .init import NewRows
from .measure import tokens_per_word

RECORD = "vocab_extension.json"


@dataclass(frozen=True)
class Written:
    out_dir: Path
    extension: Extension
    tokens_per_word: tuple[float, float]   # on the corpus, before and after
    num_rows: int | None                   # embedding rows of the written model (None: tokenizer only)


def write_extended(base: str, texts: Sequence[str], n_new: int, out_dir: str | Path, *,
                   scripts: Sequence[str] | None = None, check_texts: Sequence[str] = (), min_frequency: int = 2,
                   tokenizer_only: bool = False, force: bool = False, dtype: str | None = None) -> Written:
    """Extend ``base``'s tokenizer with ``n_new`` tokens learned from ``texts``, resize and initialise its
    embeddings (unless ``tokenizer_only``), and write both to ``out_dir``."""
    from ..models.loading import load_model, load_tokenizer

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise PivotuneError(f"{out_dir} exists and is not empty; choose another directory or pass --force to "
                            "replace it.")
    tokenizer = load_tokenizer(base)
    ext = extend_tokenizer(tokenizer, texts, n_new, scripts=scripts, check_texts=check_texts,
                           min_frequency=min_frequency, name=base)
    fertility = (tokens_per_word(tokenizer, list(texts)), tokens_per_word(ext.tokenizer, list(texts)))
    model = rows = None
    if not tokenizer_only:
        from .init import resize_and_init

        model = load_model(base, dtype=dtype)
        rows = resize_and_init(model, tokenizer, ext.tokenizer)
    record = extension_record(base, ext, fertility, rows)
    with atomic_path(out_dir) as tmp:
        if model is not None:
            model.save_pretrained(tmp, safe_serialization=True)
        save_tokenizer(ext.tokenizer, tmp)
        write_record(tmp, record)
    return Written(out_dir, ext, fertility, rows.num_rows if rows else None)


def extension_record(base: str, ext: Extension, fertility: tuple[float, float], rows: NewRows | None) -> dict:
    """What ``vocab_extension.json`` records (``rows``: None when no model was resized)."""
    return {
        "base": base, "scripts": list(ext.scripts), "tokenizer": ext.kind, "new_tokens": len(ext.new_tokens),
        "new_characters": ext.characters, "words_kept_whole": ext.words_kept_whole,
        "new_ids": [ext.new_ids[0], ext.new_ids[-1]], "embedding_rows": rows.num_rows if rows else None,
        "init": "mean of the old tokens' rows" if rows else None,
        "tokens_per_word_on_corpus": {"before": round(fertility[0], 4), "after": round(fertility[1], 4)},
        "check_texts_unchanged": ext.checked,
    }


def save_tokenizer(tokenizer, directory: Path) -> None:
    """An extended tokenizer's files in ``directory``, without any that would still describe the old vocabulary."""
    tokenizer.save_pretrained(directory)
    for stale in STALE_FILES:
        (Path(directory) / stale).unlink(missing_ok=True)


def write_record(directory: Path, record: dict) -> None:
    (Path(directory) / RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
