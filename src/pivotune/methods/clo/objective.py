"""CLO's objective: a cross-lingual preference term plus NLL on target-language responses.

For an English item (x_e, y_e) and its translation (x_t, y_t) (one *unit*), CLO (Lee et al., ACL 2025)
prefers the response in the language of the prompt::

    L    = λ·L_NLL + (1 − λ)·L_CL
    L_CL = −log σ(β[log π/π_ref(y_e|x_e) − log π/π_ref(y_t|x_e)])
           −log σ(β[log π/π_ref(y_t|x_t) − log π/π_ref(y_e|x_t)])
    L_NLL = −log π(y_t|x_t)

with log π(y|x) the **sum** of the response tokens' log-probabilities (the DPO convention). Over an
optimizer step, L_CL is the mean over units (each unit contributes both pair terms) and L_NLL is
the summed negative log-likelihood of the target responses divided by their token count (the SFT
convention), each weighted by its unit's source weight. Both denominators span the whole step
(all micro-batches, all ranks), so gradient accumulation is exact.

Written here rather than with TRL's DPOTrainer: TRL 1.16 runs on transformers 5.23, but its NLL
("sft") term covers every chosen response, English included, which CLO's ablation leaves out, and
changing that means overriding its private ``_compute_loss``.

A batch holds 4B rows for B units, in four blocks of B (see :data:`~pivotune.methods.clo.units.BLOCKS`);
``ref_logps`` [4B] are the reference model's log-probabilities, computed once before training (the CLO road).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...data.packing import SEQUENCE_IDS, attention_inputs
from ...objectives.base import Objective, count_supervised, supervised_targets
from .units import BLOCKS


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, sequences: torch.Tensor | None = None,
                   count: int | None = None) -> torch.Tensor:
    """Σ over response tokens of log p(token) per row: ``logits`` [R, T, V] (position t predicts t+1),
    ``labels`` [R, T] unshifted with -100 on prompt and padding. Returns [R] in float32 (float64 for float64 logits).
    Packed rows: ``sequences`` [R, T] names each token's sequence (0 .. ``count`` - 1), and the sums are per sequence,
    [count]."""
    shift_labels = labels[:, 1:]
    mask = supervised_targets(labels)
    logp = torch.log_softmax(logits[:, :-1, :].to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    token = logp.gather(-1, shift_labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    if sequences is None:
        return (token * mask).sum(-1)
    return token.new_zeros(count).index_add_(0, sequences[:, 1:][mask], token[mask])


def batch_logps(model, batch: dict) -> torch.Tensor:
    """``model``'s sequence log-probabilities of a CLO batch's 4B sequences, [4B] in block order, whether its rows
    are padded sequences or packed ones (:class:`~pivotune.methods.clo.units.UnitCollator`)."""
    out = model(input_ids=batch["input_ids"], **attention_inputs(batch), use_cache=False)
    return sequence_logps(out.logits, batch["labels"], batch.get(SEQUENCE_IDS),
                          len(BLOCKS) * batch["unit_weights"].numel())


def clo_loss(policy: torch.Tensor, reference: torch.Tensor, weights: torch.Tensor, *, beta: float,
             nll_weight: float, nll_tokens: torch.Tensor | float, units: torch.Tensor | float):
    """CLO's loss for one micro-batch from sequence log-probabilities.

    ``policy`` and ``reference`` are [4, B] (rows in :data:`BLOCKS` order), ``weights`` [B] the units'
    weights; ``nll_tokens`` and ``units`` are the step's target-response token count and unit count
    (the denominators). Returns ``(loss, parts)`` with the unweighted terms in ``parts``.
    """
    ratio = policy - reference
    margin_en = ratio[0] - ratio[1]     # English prompt: y_e over y_t
    margin_tgt = ratio[2] - ratio[3]    # target prompt: y_t over y_e
    pref = -(F.logsigmoid(beta * margin_en) + F.logsigmoid(beta * margin_tgt))
    cl = (pref * weights).sum() / units
    nll = -(policy[2] * weights).sum() / nll_tokens
    loss = nll_weight * nll + (1.0 - nll_weight) * cl
    parts = {"clo_cl": cl.detach(), "clo_nll": nll.detach(),
             "clo_accuracy": ((margin_en > 0).float().mean() + (margin_tgt > 0).float().mean()).detach() / 2}
    return loss, parts


def count_target_tokens(batch: dict) -> torch.Tensor:
    """Supervised tokens of the NLL sequences (block 2) of a CLO batch, padded or packed."""
    labels, b = batch["labels"], batch["unit_weights"].numel()
    sequences = batch.get(SEQUENCE_IDS)
    if sequences is None:
        return count_supervised(labels[2 * b:3 * b])
    return sequences[:, 1:][supervised_targets(labels)].div(b, rounding_mode="floor").eq(2).sum()


class CLOObjective(Objective):
    """CLO's loss with β and λ from its settings (the run config's ``clo`` section)."""

    def __init__(self, settings):
        self.beta = settings.beta
        self.nll_weight = settings.nll_weight

    def normalizers(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"tgt_tokens": count_target_tokens(batch),
                "units": torch.tensor(batch["unit_weights"].numel())}

    def loss(self, model, batch: dict, norms: dict[str, torch.Tensor]):
        n = len(BLOCKS)
        policy = batch_logps(model, batch).view(n, -1)
        reference = batch["ref_logps"].to(policy.dtype).view(n, -1)
        return clo_loss(policy, reference, batch["unit_weights"].to(policy.dtype), beta=self.beta,
                        nll_weight=self.nll_weight, nll_tokens=norms["tgt_tokens"].clamp(min=1),
                        units=norms["units"].clamp(min=1))
