"""The run config's ``vocab`` section: extend the base tokenizer for the target script before training."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field, field_validator, model_validator

from ..errors import PivotuneError
from ..settings import KeyProblem, LanguageCode, Strict


class VocabSettings(Strict):
    """Vocabulary extension before training (METHODS.md, "Vocabulary extension"): ``n_new`` target-script tokens
    learned from the run's target data (or ``corpus``) are added to the base tokenizer as BPE merges, the model's
    embeddings resized (new rows: the mean of their old pieces' rows), the new rows trained alone first when
    ``warmup_steps`` is set, and then trained with every method.
    """

    n_new: int = Field(0, ge=0, le=1_000_000, description="Tokens to add; 0 = no extension.")
    languages: list[LanguageCode] = Field(
        default_factory=list, description="The languages whose script gets the new tokens and whose tgt/mt data "
        "they are learned from; default: the run's languages.")
    scripts: list[str] = Field(
        default_factory=list, description="Their Unicode scripts as ISO 15924 codes (Thai, Grek, Arab, Deva); "
        "default: from the language codes (th -> Thai), else the corpus's most frequent script.")
    corpus: list[str] = Field(
        default_factory=list, description="Text to learn from instead of the run's tgt/mt data: .txt files (one text "
        "a line) or instruction files (Alpaca or chat .json/.jsonl/.parquet/.csv).")
    parallel: list[str] = Field(
        default_factory=list, description="Parallel corpora whose target side is learned from as well (.tsv, or "
        ".jsonl/.json/.parquet/.csv with source/target).")
    check: list[str] = Field(
        default_factory=list, description="More text that must tokenize as before where it has no target-script "
        "character (a built-in multilingual sample is always checked).")
    min_frequency: int = Field(2, ge=1, description="Fewest occurrences of a pair (or character) to become a token.")
    embedding_lr: float | None = Field(
        None, gt=0.0, le=1.0, description="Learning rate of the parameters holding the new rows (under LoRA, the "
        "new rows' trainable tokens; with full fine-tuning, the embedding matrices); default: train.lr.")
    warmup_steps: int = Field(
        0, ge=0, le=1_000_000, description="Optimizer steps of the embedding warm-up before the method trains: only "
        "the new rows (input and output embeddings) train, with the causal-LM loss on the text the tokens are "
        "learned from, every other weight frozen; 0 = none.")
    warmup_lr: float | None = Field(
        None, gt=0.0, le=1.0, description="The warm-up's learning rate; default: vocab.embedding_lr, else train.lr.")
    freeze_old_rows: bool = Field(
        False, description="With full fine-tuning, keep every old embedding row as it was (its gradient zeroed, no "
        "weight decay): only the new rows move. Methods that leave the embeddings frozen (LoRA, CLO's attention-only "
        "training, lens-local) always keep the old rows.")

    @model_validator(mode="after")
    def _warmup_needs_new_rows(self):
        if self.warmup_steps and not self.enabled:
            raise KeyProblem(("vocab", "warmup_steps"), f"vocab.warmup_steps={self.warmup_steps} trains the new rows "
                             "of a vocabulary extension, and vocab.n_new is 0 (no extension): set vocab.n_new to the "
                             "tokens to add, or vocab.warmup_steps to 0")
        return self

    @property
    def enabled(self) -> bool:
        return self.n_new > 0

    def language_codes(self) -> Iterator[tuple[str, str]]:
        yield from (("vocab.languages", lang) for lang in self.languages)

    @field_validator("scripts")
    @classmethod
    def _scripts(cls, v: list[str]) -> list[str]:
        from .scripts import CONFIG_NAMES, TargetScripts

        if v:
            try:
                TargetScripts(tuple(v), CONFIG_NAMES)
            except PivotuneError as e:   # a ValueError, so pydantic reports it at this field
                raise ValueError(str(e)) from None
        return v
