"""Logit-lens language probabilities (Wendler et al., 2024) and PROM's regulation rule.

For each probe item (an English word ``w_e`` and its target-language counterpart ``w_t``) a few-shot
prompt is built whose correct next word is ``w_t``. At every layer ``k`` the last position's hidden state
is read through the logit lens, ``p_k = softmax(W_U · norm(h_k[last]))``, and summed over the token set
of each word: ``P_{k,en}`` and ``P_{k,tgt}``. PROM sets ``λ_t = 0`` for a language whose mean English
probability at the pivot layer ``n`` is below its mean target probability (METHODS.md, "PROM").

Layer convention
    Every per-layer array has ``N + 1`` columns: column ``k`` is Hugging Face's ``hidden_states[k]``,
    i.e. the output of decoder block ``k`` (1-based, as PROM's pivot layer), and column 0 is the
    embedding output (kept so that the columns line up with block numbers; it is rarely informative).


Word-pair files, prompts and token sets: :mod:`pivotune.analysis.probe_items`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..errors import PivotuneError
from ..models.arch import arch_info, lens_logits
from ..models.pivot_head import pivot_layers, resolve_pivot_layer
from .probe_items import (
    CLOZE_TEMPLATE,
    TRANSLATION_TEMPLATE,
    ProbeItem,
    cloze_prompts,
    repetition_prompts,
    translation_prompts,
)

# ----------------------------------------------------------------------------------------------------
# Language probabilities
# ----------------------------------------------------------------------------------------------------

@dataclass
class LensResult:
    """Per-item, per-layer probabilities. ``p_en``/``p_tgt`` are float64 arrays ``[n_items, N + 1]``;
    column ``k`` is the output of decoder block ``k`` (column 0: embeddings)."""

    p_en: np.ndarray
    p_tgt: np.ndarray
    num_layers: int
    single_token: np.ndarray | None = None  # bool [n_items], when known

    @property
    def n_items(self) -> int:
        return int(self.p_en.shape[0])

    @property
    def layers(self) -> list[int]:
        return list(range(self.num_layers + 1))

    def mean_en(self) -> np.ndarray:
        return self.p_en.mean(axis=0)

    def mean_tgt(self) -> np.ndarray:
        return self.p_tgt.mean(axis=0)

    def sd_en(self) -> np.ndarray:
        """Standard deviation over items (population, ddof = 0)."""
        return self.p_en.std(axis=0)

    def sd_tgt(self) -> np.ndarray:
        return self.p_tgt.std(axis=0)

    def subset(self, mask) -> LensResult:
        mask = np.asarray(mask, dtype=bool)
        st = None if self.single_token is None else self.single_token[mask]
        return LensResult(self.p_en[mask], self.p_tgt[mask], self.num_layers, st)


def _accepts(model, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _index_tensor(sets: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(s) for s in sets))
    idx = torch.zeros(len(sets), width, dtype=torch.long)
    mask = torch.zeros(len(sets), width, dtype=torch.bool)
    for i, s in enumerate(sets):
        idx[i, :len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, :len(s)] = True
    return idx.to(device), mask.to(device)


@torch.inference_mode()
def language_probabilities(model, tokenizer, prompts: Sequence[str], en_token_sets: Sequence[Sequence[int]],
                           tgt_token_sets: Sequence[Sequence[int]], batch_size: int = 8) -> LensResult:
    """Logit-lens probabilities of the English and target token sets at the last position of each prompt.

    Prompts are tokenised as the tokenizer does by default (special tokens included), left-padded into
    batches of ``batch_size`` (sorted by length, order restored), with position ids counted over real
    tokens so padding changes nothing. One forward per batch with ``output_hidden_states=True``; at
    every layer only the last position is decoded through :func:`~pivotune.models.arch.lens_logits`
    (final norm except at N, unembedding, scale/soft-cap), softmaxed in float32 and summed over each
    token set. Returns a :class:`LensResult` with ``[n_items, N + 1]`` arrays.
    """
    if not (len(prompts) == len(en_token_sets) == len(tgt_token_sets)):
        raise PivotuneError(f"language_probabilities: {len(prompts)} prompts but {len(en_token_sets)} English "
                            f"and {len(tgt_token_sets)} target token sets.")
    if batch_size < 1:
        raise PivotuneError(f"batch_size must be at least 1, got {batch_size}.")
    info = arch_info(model)
    n_layers = info.num_layers
    device = info.unembed.weight.device
    p_en = np.zeros((len(prompts), n_layers + 1))
    p_tgt = np.zeros((len(prompts), n_layers + 1))
    if not prompts:
        return LensResult(p_en, p_tgt, n_layers)
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                seq = encoded[i]
                ids[r, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
                mask[r, width - len(seq):] = 1
            pos = (mask.cumsum(-1) - 1).clamp_min(0)
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                        output_hidden_states=True, use_cache=False, **extra)
            last = tuple(h[:, -1, :] for h in out.hidden_states)  # left padding: the last real token
            del out
            en_idx, en_mask = _index_tensor([en_token_sets[i] for i in batch], device)
            tg_idx, tg_mask = _index_tensor([tgt_token_sets[i] for i in batch], device)
            for k in range(n_layers + 1):
                probs = torch.softmax(lens_logits(info, last, k).float(), dim=-1)  # [B, V]
                pe = (probs.gather(1, en_idx) * en_mask).sum(-1)
                pt = (probs.gather(1, tg_idx) * tg_mask).sum(-1)
                p_en[batch, k] = pe.double().cpu().numpy()
                p_tgt[batch, k] = pt.double().cpu().numpy()
    finally:
        model.train(was_training)
    return LensResult(p_en, p_tgt, n_layers)


def probe_items(model, tokenizer, items: Sequence[ProbeItem], pool: Sequence[tuple[str, str]], *,
                task: str = "translation", source_name: str = "", target_name: str = "", batch_size: int = 8,
                seed: int = 0, label: str = "", template: str | None = None) -> LensResult:
    """Build the prompts for ``items`` and run :func:`language_probabilities`. ``task``:

    - ``"translation"``: ``pool`` holds ``(source word, target word)`` demonstrations;
    - ``"repetition"``: the target words of ``pool`` are repeated;
    - ``"cloze"``: ``pool`` holds ``(sentence with ___, answer)`` demonstrations, ``label`` is "Answer"
      in the target language, and every item carries its ``sentence``.

    ``template`` replaces the task's default prompt line (see :mod:`.probe_items`)."""
    if task == "translation":
        prompts = translation_prompts([(it.source or it.english, it.target) for it in items], pool,
                                      source_name, target_name, seed=seed,
                                      template=template or TRANSLATION_TEMPLATE)
    elif task == "repetition":
        prompts = repetition_prompts([it.target for it in items], [t for _, t in pool], target_name, seed=seed,
                                     template=template or TRANSLATION_TEMPLATE)
    elif task == "cloze":
        missing = [it.english for it in items if not it.sentence]
        if missing:
            raise PivotuneError(f"Cloze probe: items without a sentence: {missing[:5]}.")
        prompts = cloze_prompts([(it.sentence, it.target) for it in items], pool, label, seed=seed,
                                template=template or CLOZE_TEMPLATE)
    else:
        raise PivotuneError(f"Unknown probe task '{task}'; choose translation, repetition or cloze.")
    res = language_probabilities(model, tokenizer, prompts, [it.en_ids for it in items],
                                 [it.tgt_ids for it in items], batch_size=batch_size)
    res.single_token = np.array([it.single_token for it in items], dtype=bool)
    return res


# ----------------------------------------------------------------------------------------------------
# PROM regulation and pivot-layer suggestion
# ----------------------------------------------------------------------------------------------------

def target_leads(p_en: float, p_tgt: float) -> bool:
    """The lens decision rule at one layer: the target language leads when the mean English probability is strictly
    below the target's. PROM's regulation switches λ_t off where it holds at the pivot layer; lens-local splits the
    model where it starts to hold for good."""
    return p_en < p_tgt


@dataclass
class RegulationDecision:
    """PROM's rule for one language: ``λ_t = 0`` when ``P̄_{n,en} < P̄_{n,tgt}``, else the configured λ."""

    pivot_layer: int
    p_en: float
    p_tgt: float
    sd_en: float
    sd_tgt: float
    lambda_zero: bool

    def lambda_t(self, lam: float) -> float:
        return 0.0 if self.lambda_zero else lam

    @property
    def text(self) -> str:
        rel = "<" if self.p_en < self.p_tgt else ">="
        act = "λ_t = 0 (pivot term off)" if self.lambda_zero else "keep λ"
        return f"layer {self.pivot_layer}: P(en) {self.p_en:.4f} {rel} P(tgt) {self.p_tgt:.4f} -> {act}"

    def as_dict(self) -> dict:
        return {"pivot_layer": self.pivot_layer, "p_en_mean": self.p_en, "p_tgt_mean": self.p_tgt,
                "p_en_sd": self.sd_en, "p_tgt_sd": self.sd_tgt, "lambda_zero": self.lambda_zero,
                "text": self.text}


def regulation_decision(result: LensResult, pivot_layer: int) -> RegulationDecision:
    """Apply PROM's regulation rule at ``pivot_layer`` (1-based block output, a pivot layer of the model:
    :func:`~pivotune.models.pivot_head.pivot_layers`)."""
    k = resolve_pivot_layer(int(pivot_layer) if isinstance(pivot_layer, np.integer) else pivot_layer,
                            result.num_layers, "pivot layer")
    if result.n_items == 0:
        raise PivotuneError("No probe items: cannot decide the regulation without probabilities.")
    pe, pt = float(result.mean_en()[k]), float(result.mean_tgt()[k])
    return RegulationDecision(k, pe, pt, float(result.sd_en()[k]), float(result.sd_tgt()[k]), target_leads(pe, pt))


@dataclass
class PivotSuggestion:
    layer: int
    candidates: list[int]
    curve: list[float] = field(default_factory=list)  # mean(P_en - P_tgt) at layers 0..N

    def as_dict(self) -> dict:
        return {"layer": self.layer, "candidates": self.candidates, "curve_en_minus_tgt": self.curve}


def suggest_pivot_layer(result: LensResult) -> PivotSuggestion:
    """Among the pivot layers in the upper half of the blocks (``N//2 + 1 .. N - 1``, or ``N - 1`` alone for a
    shallow model), the layer maximising the mean of ``P_en − P_tgt`` (ties: the lowest layer); the whole curve
    (layers 0..N) comes with it. A suggestion only: the user decides."""
    if result.n_items == 0:
        raise PivotuneError("No probe items: cannot suggest a pivot layer.")
    n = result.num_layers
    curve = (result.p_en - result.p_tgt).mean(axis=0)
    valid = pivot_layers(n)
    if not valid:
        raise PivotuneError(f"A {n}-block model has no pivot layer below its top block.")
    cands = [k for k in valid if k > n // 2] or [valid[-1]]
    best = max(cands, key=lambda k: (curve[k], -k))
    return PivotSuggestion(best, cands, [float(c) for c in curve])


