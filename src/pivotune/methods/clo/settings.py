"""CLO's settings: the run config's ``clo`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...settings import Strict


class CloSettings(Strict):
    """CLO (METHODS.md, "CLO"): ``L = λ·L_NLL + (1 − λ)·L_CL`` on cross-lingual preference pairs.

    Used by method ``clo``; ignored by the others. Each English row (role ``en`` sources, in config order)
    is paired with row i of each target language's translation (role ``tgt`` sources, line-aligned).
    Log-probabilities are sums over response tokens (the DPO convention); the reference is the starting
    model, its log-probabilities computed once before training.
    """

    beta: float = Field(0.1, gt=0.0, le=100.0, description="β of the preference term (the paper does not "
                        "state it; DPO's common default).")
    nll_weight: float = Field(0.5, ge=0.0, le=1.0, description="λ: weight of the NLL term on target-language "
                              "responses; the preference term gets 1 − λ (the paper does not state it). 1 = SFT on "
                              "the translated rows only; 0 = the preference term alone.")
    trainable: Literal["attention", "full"] = Field(
        "attention", description="attention: only every layer's attention projections train (full weights, or "
        "LoRA on exactly them when lora.enabled), as the paper does; full: every weight (or LoRA on "
        "lora.target_modules).")
    max_items: int | None = Field(None, ge=1, description="Use the first N English rows (each paired with "
                                  "every target language); the paper sweeps 400 to 6,400.")
    reference_batch_size: int | None = Field(None, ge=1, le=4096, description="Units per forward when computing "
                                             "the reference log-probabilities; default: train.per_device_batch_size.")
