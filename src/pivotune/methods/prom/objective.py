"""PROM — pivoted and regulated optimisation (METHODS.md, "PROM")::

    L = λ_e · CE_α( head_n(h_n) ; s_e )  +  CE( head_N(h_N) ; s_t ∪ s_mt )

* English rows (role ``en``) reach **only** the pivot term: they run through decoder blocks 1..n (the
  truncated forward; blocks above n are never computed for them) and are read by the pivot head
  (:mod:`pivotune.models.pivot_head`), with label smoothing α.
* Every other row (``tgt``, ``mt``; ``cs`` if a mixture ever carries it) runs the full body; the final
  norm + ``W_U`` is applied only at supervised positions.
* Each term is a sum over its supervised tokens, each token scaled by its sample's source weight, divided
  by the number of supervised tokens *of that term* in the whole optimizer step (all micro-batches, all
  ranks: the normalisers ``en`` and ``final``), so gradient accumulation and DDP stay exact.
* Logits exist only for supervised positions, each head's cross-entropy computed by
  :class:`pivotune.objectives.head_loss.HeadLoss`: Liger's fused kernel on CUDA, else ``prom.chunk_size``
  positions at a time, with ``prom.recompute_logits`` (``auto``: resolved once per run by the logits' size)
  each chunk's logits recomputed in the backward pass instead of kept (torch.utils.checkpoint per chunk).
  Gradients are exact.
* Each row's own loss summed over its tokens (English rows: CE_α at the pivot head; the others: CE at the
  final layer; unweighted) comes back with the loss (``RowLosses``), for the per-role and per-language log.

λ of English rows (the multi-language rule). PROM's λ belongs to a *target language* (the regulation sets
λ_t = 0 for a language whose logit lens shows no English pivot at layer n), but the English instructions
are shared by all target languages of a run — an English row is not paired with one language. pivotune
weights every English row by

    λ_e = mean over the run's target languages t of λ_t      (λ_t = prom.lambda_per_language[t],
                                                              default prom.lambda_en)

A single-language run (the paper's setting) gets exactly λ_t; languages that agree give that λ; a run
mixing regulated and unregulated languages keeps the pivot signal in proportion to the languages that
show an English pivot (2 of 4 switched off → λ/2). With no target language listed, λ_e = λ. When λ_e = 0
English rows are not run at all (their data then only costs the data loading). ``prom-noreg`` uses
λ_e = λ (no regulation; the config rejects lambda_per_language for it).
"""

from __future__ import annotations

import copy

import torch

from ...data.packing import POSITION_IDS, attention_inputs
from ...data.records import ROLE_IDS
from ...errors import PivotuneError
from ...models.arch import arch_info, truncated_forward, unembed_logits, unwrap
from ...models.fused_ce import LinearHead
from ...models.pivot_head import PivotedModel, PivotHead, resolve_pivot_layer
from ...objectives.base import ROW_LOSSES, Objective, RowLosses, supervised_targets
from ...objectives.head_loss import HeadLoss, RecomputeLogits, gather_supervised, per_position

EN = ROLE_IDS["en"]


def english_lambda(lambda_en: float, languages: list[str] | None = None,
                   lambda_per_language: dict[str, float] | None = None) -> float:
    """λ_e, the weight of the pivot term for English rows (the rule in the module docstring)."""
    targets = [t for t in (languages or []) if t != "en"]
    if not targets:
        return float(lambda_en)
    per = lambda_per_language or {}
    return float(sum(per.get(t, lambda_en) for t in targets) / len(targets))


def _trim(batch: dict, rows: torch.Tensor) -> dict:
    """The rows ``rows`` of a batch, without trailing columns that are padding in all of them (exact:
    such columns are masked keys and unsupervised queries)."""
    mask = batch["attention_mask"][rows]
    cols = mask.any(0).nonzero()
    width = int(cols[-1]) + 1 if cols.numel() else mask.shape[1]
    sub = {"input_ids": batch["input_ids"][rows, :width], "attention_mask": mask[:, :width],
           "labels": batch["labels"][rows, :width], "weights": batch["weights"][rows]}
    if POSITION_IDS in batch:   # packed rows
        sub[POSITION_IDS] = batch[POSITION_IDS][rows, :width]
    return sub


class _RowSums:
    """The batch's :class:`RowLosses`, filled term by term from each term's per-position losses."""

    def __init__(self, batch: dict):
        self.labels = batch["labels"]
        self.sums: torch.Tensor | None = None   # in the terms' loss dtype (at least float32)
        self.tokens = self.labels.new_zeros(self.labels.shape[0])

    def put(self, rows: torch.Tensor, each: torch.Tensor, sel: torch.Tensor) -> None:
        """``rows`` (indices or a mask) of the batch, whose supervised positions ``sel`` had losses ``each``."""
        if self.sums is None:
            self.sums = self.labels.new_zeros(self.labels.shape[0], dtype=each.dtype)
        self.sums[rows] = per_position(each, sel).sum(1)
        self.tokens[rows] = sel.sum(1)

    def result(self) -> RowLosses:
        sums = self.sums if self.sums is not None else self.labels.new_zeros(self.labels.shape[0], dtype=torch.float32)
        return RowLosses(sums, self.tokens)


class PromObjective(Objective):
    """The PROM loss with its settings (the run config's ``prom`` section) and λ_e, the weight of English rows'
    pivot term (:func:`english_lambda`, or λ itself for ``prom-noreg``); the model must be the
    :class:`PivotedModel` that :meth:`prepare_model` builds. ``meta`` is recorded with the pivot head;
    ``positions``: the most supervised positions a micro-batch holds, for ``prom.recompute_logits: auto``
    (:class:`~pivotune.objectives.head_loss.RecomputeLogits`)."""

    find_unused_parameters = True   # English-only micro-batches leave blocks > n unused, and so on

    def __init__(self, settings, lambda_english_rows: float, *, meta: dict | None = None,
                 same_modules_every_rank: bool = False, positions: int | None = None):
        self.settings = settings
        self.lambda_e = float(lambda_english_rows)
        self.meta = dict(meta or {})
        # sharded training (FSDP, ZeRO-3): every rank runs every block and both heads once per micro-batch,
        # whatever its rows' roles (see compute_same_modules)
        self.same_modules_every_rank = same_modules_every_rank
        self.recompute = RecomputeLogits(settings.recompute_logits, positions)
        self._heads(sharded=same_modules_every_rank)
        self._step_logs: dict[str, torch.Tensor] = {}
        self._step_key = None

    def _heads(self, sharded: bool) -> None:
        s = self.settings
        self.pivot_loss = HeadLoss("pivot head", label_smoothing=s.label_smoothing, chunk_size=s.chunk_size,
                                   sharded=sharded)
        self.final_loss = HeadLoss("final head", chunk_size=s.chunk_size, sharded=sharded)

    def for_sharded_training(self) -> PromObjective:
        """This loss computed so that every rank runs the same modules (:meth:`compute_same_modules`)."""
        sharded = copy.copy(self)
        sharded.same_modules_every_rank = True
        sharded._heads(sharded=True)
        return sharded

    # -- model
    def prepare_model(self, model) -> PivotedModel:
        """Wrap the (possibly LoRA-wrapped) LM with a pivot head; the pivot layer is checked here."""
        s = self.settings
        info = arch_info(model)
        n = resolve_pivot_layer(s.pivot_layer, info.num_layers)
        head = PivotHead.from_model(unwrap(model), s.head, info)
        meta = {"label_smoothing": s.label_smoothing, "lambda_en": s.lambda_en, "lambda_english_rows": self.lambda_e,
                "lambda_per_language": s.lambda_per_language, **self.meta}
        pm = PivotedModel(model, head, n, meta=meta)
        if self.recompute.positions:   # the gradients the rule weighs include the pivot head's
            self.recompute.resolve(pm, info)
        return pm

    def describe(self, model) -> dict:
        inner = _unwrap_pivoted(model)
        return {"prom": {"pivot_layer": inner.pivot_layer, "num_layers": inner.info.num_layers,
                         "head": inner.pivot_head.kind, "lambda_english_rows": self.lambda_e,
                         "label_smoothing": self.settings.label_smoothing, "recompute_logits": self.recompute.value,
                         "kernels": {"pivot head": self.pivot_loss.describe(),
                                     "final head": self.final_loss.describe()}}}

    # -- normalisers and loss
    def normalizers(self, batch: dict) -> dict[str, torch.Tensor]:
        sup = supervised_targets(batch["labels"]).sum(1)
        en = batch["roles"].eq(EN)
        return {"en": sup[en].sum(), "final": sup[~en].sum()}

    def loss(self, model, batch: dict, norms: dict[str, torch.Tensor]):
        if not isinstance(_unwrap_pivoted(model), PivotedModel):
            raise PivotuneError("The prom objective needs the model from PromObjective.prepare_model (the LM with "
                                "its pivot head), got " + type(model).__name__ + ".")
        out = model(batch, norms, self.compute)
        logs = {k: v for k, v in out.items() if k not in ("loss", ROW_LOSSES)}
        # per-step diagnostics: the trainer gives every micro-batch of a step the same norms dict
        if norms is not self._step_key:
            self._step_key, self._step_logs = norms, {}
        for k, v in logs.items():
            self._step_logs[k] = self._step_logs.get(k, 0) + v
        return out["loss"], {**self._step_logs, "lambda_english_rows": torch.tensor(self.lambda_e),
                             ROW_LOSSES: out[ROW_LOSSES]}

    def compute(self, pm: PivotedModel, batch: dict, norms: dict) -> dict[str, torch.Tensor]:
        """Runs inside ``PivotedModel.forward`` (so inside DDP's forward): the loss, its two terms and the rows'
        losses (English rows: their pivot term's CE_α)."""
        recompute = self.recompute.resolve(pm, pm.info, batch["labels"].numel())
        if self.same_modules_every_rank:
            return self.compute_same_modules(pm, batch, norms, recompute)
        info, lm = pm.info, pm.lm
        en = batch["roles"].eq(EN)
        loss = None
        logs: dict[str, torch.Tensor] = {}
        row_sums = _RowSums(batch)

        en_rows = en.nonzero().squeeze(1)
        if self.lambda_e > 0 and en_rows.numel():
            sub = _trim(batch, en_rows)
            _, raw = truncated_forward(lm, sub["input_ids"], n=pm.pivot_layer, info=info, return_raw=True,
                                       **attention_inputs(sub))
            h, targets, w, sel = gather_supervised(raw, sub["labels"], sub["weights"])
            total, each = self.pivot_loss(LinearHead.pivot(pm.pivot_head, info), h, targets, w, recompute=recompute)
            row_sums.put(en_rows, each, sel)
            term = total / norms["en"].clamp(min=1)
            logs["pivot_ce"] = term.detach()
            loss = self.lambda_e * term

        tgt_rows = (~en).nonzero().squeeze(1)
        if tgt_rows.numel():
            sub = _trim(batch, tgt_rows)
            normed = truncated_forward(lm, sub["input_ids"], n=info.num_layers, info=info, **attention_inputs(sub))
            h, targets, w, sel = gather_supervised(normed, sub["labels"], sub["weights"])
            total, each = self.final_loss(LinearHead.final(info), h, targets, w, recompute=recompute)
            row_sums.put(tgt_rows, each, sel)
            term = total / norms["final"].clamp(min=1)
            logs["final_ce"] = term.detach()
            loss = term if loss is None else loss + term

        if loss is None:
            # Only English rows and λ_e = 0: nothing to learn. The zero still touches one parameter, so
            # that under DDP an autograd hook fires and the reducer joins the other ranks' all-reduce.
            p = next(p for p in pm.parameters() if p.requires_grad)
            loss = p.reshape(-1)[0].float() * 0.0
        return {"loss": loss, **logs, ROW_LOSSES: row_sums.result()}

    def compute_same_modules(self, pm: PivotedModel, batch: dict, norms: dict,
                             recompute: bool) -> dict[str, torch.Tensor]:
        """The same loss, computed so that every rank runs the same modules in the same order.

        Sharded training (FSDP, ZeRO-3) gathers each block's parameters when it runs and reduces its
        gradients when its backward runs, in lockstep over the ranks; a rank whose micro-batch is all
        English must not stop at block n while the others go on. So: one forward of every row through all
        N blocks (block n's output is read by a hook on the way), each term over its own rows as in
        :meth:`compute`, and a zero-weighted touch of both heads at one position, so that every block and
        both heads take part in every backward even when a term has no rows here. English rows pay blocks
        n+1..N; the terms and their gradients are those of :meth:`compute`.
        """
        info, lm = pm.info, pm.lm
        at_pivot: list[torch.Tensor] = []
        handle = info.layers[pm.pivot_layer - 1].register_forward_hook(
            lambda _m, _a, out: at_pivot.append(out[0] if isinstance(out, (tuple, list)) else out))
        try:
            final = truncated_forward(lm, batch["input_ids"], n=info.num_layers, info=info,
                                      **attention_inputs(batch))
        finally:
            handle.remove()
        raw = at_pivot[-1]
        head = pm.pivot_head
        loss = (head(raw[:1, :1], info).sum() + unembed_logits(info, final[:1, :1]).sum()) * 0.0
        logs: dict[str, torch.Tensor] = {}
        row_sums = _RowSums(batch)
        en = batch["roles"].eq(EN)
        for name, rows, hidden, head_loss, linear, lam in (
                ("pivot_ce", en, raw, self.pivot_loss, LinearHead.pivot(head, info), self.lambda_e),
                ("final_ce", ~en, final, self.final_loss, LinearHead.final(info), 1.0)):
            if lam == 0 or not rows.any():
                continue
            h, targets, w, sel = gather_supervised(hidden[rows], batch["labels"][rows], batch["weights"][rows])
            total, each = head_loss(linear, h, targets, w, recompute=recompute)
            row_sums.put(rows, each, sel)
            term = total / norms["en" if name == "pivot_ce" else "final"].clamp(min=1)
            logs[name] = term.detach()
            loss = loss + lam * term
        return {"loss": loss, **logs, ROW_LOSSES: row_sums.result()}


def _unwrap_pivoted(model):
    while isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return model
