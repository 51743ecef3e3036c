"""Training an extension's new rows: they always train, with a learning rate of their own.

* Full fine-tuning: the input and output embedding matrices are trainable parameters; with
  :func:`freeze_old_rows` a gradient hook zeroes every old row's gradient, so only the new rows move (give
  their optimizer group no weight decay: decoupled decay would still shrink the frozen rows).
* LoRA: :func:`trainable_token_indices` is the ``LoraConfig(trainable_token_indices=...)`` value that makes
  peft train exactly the new rows of the input embedding and, when untied, of the output embedding
  (peft's trainable tokens: a small delta per row, merged into the matrices by ``merge_and_unload``).
* Either way :func:`new_row_parameters` finds the parameters that hold the new rows, and
  :func:`with_new_row_group` moves them into an optimizer group of their own (``embedding_lr``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.arch import arch_info, input_embeddings, unwrap
from .init import NewRows


def embedding_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The input embedding and (when untied) the output embedding weight."""
    emb, unembed = input_embeddings(model).weight, arch_info(model).unembed.weight
    return [emb] if unembed is emb else [emb, unembed]


def freeze_old_rows(model: nn.Module, rows: NewRows, weights: list[nn.Parameter] | None = None
                    ) -> list[torch.utils.hooks.RemovableHandle]:
    """Make the embedding matrices (or those of them in ``weights``) trainable with every old row's gradient
    zeroed; returns the hooks."""
    handles = []
    for weight in embedding_matrices(model) if weights is None else weights:
        mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
        mask[list(rows.ids)] = 1
        weight.requires_grad_(True)
        handles.append(weight.register_hook(lambda grad, m=mask: grad * m))
    return handles


def trainable_token_indices(model: nn.Module, rows: NewRows) -> dict[str, list[int]]:
    """``LoraConfig.trainable_token_indices`` for the new rows: the input embedding's module name, and the
    output embedding's when it is a matrix of its own (peft ties a tied one itself)."""
    lm = unwrap(model)
    names = {id(m): name for name, m in lm.named_modules()}
    emb, unembed = input_embeddings(lm), arch_info(lm).unembed
    out = {names[id(emb)]: list(rows.ids)}
    if unembed.weight is not emb.weight:
        out[names[id(unembed)]] = list(rows.ids)
    return out


def new_row_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters holding the new rows: peft's trainable-token deltas when the model has them,
    else the embedding matrices."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    deltas = {id(p): p for m in model.modules() if isinstance(m, TrainableTokensLayer)
              for p in m.trainable_tokens_delta.parameters() if p.requires_grad}
    if deltas:
        return list(deltas.values())
    return [p for p in embedding_matrices(model) if p.requires_grad]


def with_new_row_group(groups: list[dict], model: nn.Module, *, embedding_lr: float,
                       weight_decay: float = 0.0) -> list[dict]:
    """Optimizer ``groups`` (e.g. the Trainer's decay / no-decay split) with the new-row parameters moved into
    a group of their own at ``embedding_lr``."""
    return with_own_group(groups, new_row_parameters(model), lr=embedding_lr, weight_decay=weight_decay)


def with_own_group(groups: list[dict], params: list[nn.Parameter], *, lr: float, weight_decay: float) -> list[dict]:
    """``groups`` with ``params`` taken out of them (groups left empty dropped) and into a group of their own."""
    taken = {id(p) for p in params}
    out = [{**g, "params": [p for p in g["params"] if id(p) not in taken]} for g in groups]
    return [*(g for g in out if g["params"]), {"params": list(params), "lr": lr, "weight_decay": weight_decay}]
