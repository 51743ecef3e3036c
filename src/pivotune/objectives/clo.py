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

A batch holds 4B rows for B units, in four blocks of B (see :data:`BLOCKS`); ``ref_logps`` [4B] are the
reference model's log-probabilities, computed once before training (``pivotune.train.clo``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Objective, count_supervised, supervised_targets
#: Row blocks of a CLO batch: (prompt language, response language). Pairs: (0 chosen, 1 rejected) on
#: English prompts, (2 chosen, 3 rejected) on target prompts; block 2 is also the NLL term's data.
BLOCKS = (("en", "en"), ("en", "tgt"), ("tgt", "tgt"), ("tgt", "en"))


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ over response tokens of log p(token) per row: ``logits`` [R, T, V] (position t predicts t+1),
    ``labels`` [R, T] unshifted with -100 on prompt and padding. Returns [R] in float32 (float64 for float64 logits)."""
    shift_labels = labels[:, 1:]
    mask = supervised_targets(labels)
    logp = torch.log_softmax(logits[:, :-1, :].to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    token = logp.gather(-1, shift_labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token * mask).sum(-1)


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


def count_target_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Supervised tokens of the NLL rows (block 2) of a CLO batch."""
    b = labels.shape[0] // len(BLOCKS)
    return count_supervised(labels[2 * b:3 * b])


class CLOObjective(Objective):
    """CLO's loss with β and λ from its settings (the run config's ``clo`` section)."""

    def __init__(self, settings):
        self.beta = settings.beta
        self.nll_weight = settings.nll_weight

    def normalizers(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"tgt_tokens": count_target_tokens(batch["labels"]),
                "units": torch.tensor(batch["unit_weights"].numel())}

    def loss(self, model, batch: dict, norms: dict[str, torch.Tensor]):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        n = len(BLOCKS)
        policy = sequence_logps(out.logits, batch["labels"]).view(n, -1)
        reference = batch["ref_logps"].to(policy.dtype).view(n, -1)
        return clo_loss(policy, reference, batch["unit_weights"].to(policy.dtype), beta=self.beta,
                        nll_weight=self.nll_weight, nll_tokens=norms["tgt_tokens"].clamp(min=1),
                        units=norms["units"].clamp(min=1))
