"""LinguaLIFT's settings: the run config's ``lingualift`` section."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from ...settings import LanguageCode, Strict


class LinguaLiftSettings(Strict):
    """LinguaLIFT (METHODS.md, "LinguaLIFT"): a multilingual encoder bridged into the LM by a language alignment
    layer, trained in two stages. Used by method ``lingualift`` only.

    Stage 1 trains only the alignment layer on code-switched prompts (English data of role ``en`` with words
    replaced from ``lexicons``, plus any role ``cs`` data) with English responses; stage 2 trains the LM (full, or
    LoRA with ``lora.enabled``) on the English data with the encoder and alignment layer frozen, using ``train``.
    Run layout: RUN/stage1/ (its checkpoints and model/: the alignment layer, referring to the encoder and LM),
    RUN/stage2/ (checkpoints) and RUN/model/ (the whole bridge; not a plain causal-LM directory).
    """

    encoder: str | None = Field(
        None, description="Hub name or local path of the multilingual encoder (XLM-R, mT5, any AutoModel encoder; "
        "for encoder-decoder models the encoder half is used). Required for method lingualift.")
    encoder_tokenizer: str | None = Field(None, description="Default: same as encoder.")
    encoder_hidden_size: int | None = Field(
        None, ge=1, description="Width of the encoder's last hidden states; read from its config by default. "
        "Needed only for an encoder whose config does not state it; checked against the config otherwise.")
    projector: Literal["ffn", "linear"] = Field(
        "ffn", description="ffn (LinguaLIFT): Linear(d_enc→d_llm) → GELU → Linear(d_llm→d_llm) with learned start "
        "and end vectors; linear (LangBridge): one Linear and a learned end vector.")
    max_encoder_len: int = Field(512, ge=8, le=1_048_576, description="Encoder tokens kept per prompt.")
    stages: list[Literal[1, 2]] = Field(
        default_factory=lambda: [1, 2], min_length=1, description="Stages to run: [1, 2] (default), [1] alone, "
        "or [2] alone from a saved stage 1 (stage1_from).")
    stage1_from: str | None = Field(
        None, description="Stage-1 output directory that stage 2 starts from when stage 1 does not run here "
        "(default: RUN/stage1/model).")
    lexicons: dict[LanguageCode, str] = Field(
        default_factory=dict, description="Bilingual lexicon per target language (lang: path), MUSE's two-column "
        "format: 'english translation' per line. Keys must be in `languages`.")
    switch_ratio: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of content words replaced by a translation in stage 1 (the paper "
        "leaves it open; round(ratio·n) of a sample's n content words).")
    stage1_lr: float = Field(6e-4, gt=0.0, le=1.0, description="Stage-1 learning rate (the paper's 6e-4).")
    stage1_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "constant", description="Stage-1 schedule (the paper: constant).")
    stage1_epochs: float = Field(1.0, gt=0.0, le=1000.0, description="Stage-1 passes over its data.")
    stage1_max_steps: int = Field(-1, ge=-1, description="Stage-1 optimizer steps; overrides stage1_epochs when > 0.")

    def language_codes(self) -> Iterator[tuple[str, str]]:
        """``(field, code)`` for every language code these settings name."""
        return (("lingualift.lexicons", lang) for lang in self.lexicons)
