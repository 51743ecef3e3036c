"""PROM's settings: the run config's ``prom`` section (methods prom and prom-noreg)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field, field_validator

from ...settings import DEFAULT_CHUNK_SIZE, RECOMPUTE_AUTO, LanguageCode, Strict


class PromSettings(Strict):
    """PROM's objective (METHODS.md, "PROM"): ``L = λ·CE_α(head_n(h_n); s_e) + CE(head_N(h_N); s_t ∪ s_mt)``.

    Used by methods ``prom`` and ``prom-noreg``; ignored by the others, but for ``chunk_size`` and
    ``recompute_logits``, which every method with cross-entropy at the final head reads. English rows reach
    only the pivot term and run through decoder blocks 1..n only.
    """

    pivot_layer: int | None = Field(
        None, ge=1, description="Pivot layer n, 1-based: the output of decoder block n (Hugging Face "
        "hidden_states[n]; 0 would be the embeddings), below the top: 1 <= n <= N-1 for an N-block model "
        "(n = N would be a second final head, not a pivot; docs/methods.md). Default: round(0.75·N) (half up), "
        "i.e. 24 for Llama-2-7B, 1 for N = 2. Checked against the model's depth by --check (local models) and "
        "when training starts.")
    label_smoothing: float = Field(
        0.1, ge=0.0, lt=1.0, description="α of the pivot term's cross-entropy (0 = plain cross-entropy).")
    lambda_en: float = Field(
        0.1, ge=0.0, le=100.0, description="λ, the weight of the pivot term. 0 turns it off (English rows "
        "then contribute nothing and are not run).")
    head: Literal["copy", "copy_norm", "tied"] = Field(
        "copy", description="head_n. copy (default): the model's own final norm module applied to h_n, "
        "then a separate trainable Linear initialised as a copy of the unembedding W_U — the logit-lens "
        "reading of layer n at initialisation, with the final head left to the final term. copy_norm: the "
        "same with a private trainable copy of the final norm. tied: the final norm and W_U themselves "
        "(no parameters of its own; W_U then receives both terms' gradients).")
    lambda_per_language: dict[LanguageCode, float] | None = Field(
        None, description="λ_t per target language, overriding lambda_en (PROM's regulation writes 0 for "
        "a language whose logit lens shows no English pivot). Keys must be in `languages`. English rows "
        "are weighted by the mean of λ_t over the run's target languages (languages missing here count "
        "as lambda_en); method prom only.")
    probe: str | None = Field(
        None, description="Regulation evidence for method prom: a probe.json written by `pivotune probe` "
        "for this base model; λ_t is decided from its per-layer means at pivot_layer.")
    probe_pairs: dict[LanguageCode, str] | None = Field(
        None, description="Regulation evidence for method prom: word-pair files per target language "
        "(lang: path, `english<TAB>target` lines); the logit-lens probe runs on the base model before "
        "training and writes RUN/probe/.")
    probe_names: dict[LanguageCode, str] | None = Field(
        None, description="Language names (in their own language) for the probe prompts, for codes "
        "pivotune's table lacks.")
    probe_template: str | None = Field(
        None, description="The probe's prompt line, replacing Wendler et al.'s "
        "'{source_name}: \"{source}\" - {target_name}: \"{target}\"' (fields: source_name, source, "
        "target_name, target, the last one last); for a model trained on another bilingual format. For "
        "probe_task cloze it replaces '{sentence} {label}: \"{answer}\"' (fields: sentence, label, answer).")
    probe_task: Literal["translation", "cloze"] = Field(
        "translation", description="The prompts of the probe run on prom.probe_pairs. translation (Wendler et al.): "
        "English word -> target word, so the prompt shows the English word. cloze (what PROM's paper ran): a "
        "target-language sentence with a gap `___`, no English in the prompt; prom.probe_pairs then name cloze "
        "files (`english<TAB>target<TAB>sentence` lines).")
    probe_labels: dict[LanguageCode, str] | None = Field(
        None, description="The word for 'Answer' per language in cloze prompts, for codes pivotune's table lacks.")
    chunk_size: int = Field(
        DEFAULT_CHUNK_SIZE, ge=1, le=1_048_576, description="Supervised positions per chunk when computing logits and "
        "cross-entropy for a head on the chunked path (no [batch, seq, vocab] tensor is ever held); for every "
        "method whose loss is cross-entropy at the final head too (english, bactrian, xllama, lens-local).")
    recompute_logits: Literal["auto"] | bool = Field(
        RECOMPUTE_AUTO, description="Recompute each chunk's logits in the backward pass (activation checkpointing "
        "per chunk) instead of keeping them: memory for one chunk of logits instead of all of them, "
        "for one more head matmul. Gradients are identical. auto (default): recompute only when the logits "
        "kept for backward would outgrow the trainable parameters' gradients (decided once per run, from the "
        "most supervised positions a micro-batch of the run's data holds; docs/methods.md). Like chunk_size, "
        "for the final head of every such method too.")

    def language_codes(self) -> Iterator[tuple[str, str]]:
        """``(field, code)`` for every language code these settings name."""
        for name, by_lang in (("lambda_per_language", self.lambda_per_language), ("probe_pairs", self.probe_pairs),
                              ("probe_names", self.probe_names), ("probe_labels", self.probe_labels)):
            yield from ((f"prom.{name}", lang) for lang in by_lang or {})

    @field_validator("lambda_per_language")
    @classmethod
    def _lambdas(cls, v):
        if v is None:
            return v
        for lang, lam in v.items():
            if lang == "en":
                raise ValueError("'en' is not a target language; English rows get the mean of the target "
                                 "languages' λ_t (set lambda_en to change λ itself)")
            if not 0.0 <= lam <= 100.0:
                raise ValueError(f"λ for '{lang}' is {lam}; it must satisfy 0 <= λ <= 100")
        return v
