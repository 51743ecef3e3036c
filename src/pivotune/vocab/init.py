"""New embedding rows for an extended tokenizer: each the mean of the rows of the old tokens it replaces.

A new token stands for a string the old tokenizer spelled as several old tokens; its input row starts as
the mean of their input rows, its output (unembedding) row as the mean of their output rows. So its first
logit is close to the average logit of its pieces, and its first embedding points where they point
together (docs/methods.md, "Vocabulary extension", says why this baseline and what else there is).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import PivotuneError
from ..models.arch import arch_info, input_embeddings


@dataclass(frozen=True)
class NewRows:
    """Where an extension's tokens live in the embedding matrices and what they start from.

    ``ids[i]`` is a new token's row, ``sources[i]`` the old token ids it decomposes into under the old
    tokenizer; ``num_rows`` is the row count the matrices need (new ids may land in a model's padding rows).
    """

    ids: tuple[int, ...]
    sources: tuple[tuple[int, ...], ...]
    num_rows: int


def plan_new_rows(old_tokenizer, new_tokenizer, num_rows: int = 0) -> NewRows:
    """The rows ``new_tokenizer`` adds to ``old_tokenizer``'s and their decompositions; ``num_rows`` is the
    model's current row count (kept if it already holds every new id)."""
    old_vocab, new_vocab = old_tokenizer.get_vocab(), new_tokenizer.get_vocab()
    moved = [t for t, i in old_vocab.items() if new_vocab.get(t) != i]
    if moved:
        raise PivotuneError(f"The new tokenizer is not an extension of the old one: token {moved[0]!r} has id "
                            f"{old_vocab[moved[0]]} in the old and {new_vocab.get(moved[0])} in the new "
                            f"({len(moved)} tokens differ); extend with pivotune.vocab.extend_tokenizer.")
    added = sorted((i, t) for t, i in new_vocab.items() if t not in old_vocab)
    old_model = old_tokenizer.backend_tokenizer.model
    sources = []
    for _, token in added:
        # the old BPE model on the token's own string: the old tokens the new one replaces
        pieces = tuple(t.id for t in old_model.tokenize(token))
        if not pieces:
            raise PivotuneError(f"New token {token!r} has no decomposition under the old tokenizer.")
        sources.append(pieces)
    need = max([num_rows, *(i + 1 for i, _ in added)])
    return NewRows(ids=tuple(i for i, _ in added), sources=tuple(sources), num_rows=need)


@torch.no_grad()
def init_new_rows(weight: torch.Tensor, rows: NewRows) -> None:
    """Set ``weight[id]`` (a [vocab, d] matrix already holding ``rows.num_rows`` rows) to the mean of its
    source rows, for every new id: for the input and output embeddings, and for any head copied from the
    unembedding (PROM's pivot head) that was copied before the resize."""
    if weight.shape[0] < rows.num_rows:
        raise PivotuneError(f"A weight matrix with {weight.shape[0]} rows cannot take the new tokens' rows "
                            f"(up to id {rows.num_rows - 1}); resize it first.")
    for new_id, pieces in zip(rows.ids, rows.sources):
        weight[new_id] = weight[list(pieces)].float().mean(dim=0).to(weight.dtype)


def grown_linear(linear: nn.Linear, rows: NewRows) -> nn.Linear:
    """A copy of ``linear`` (a [vocab, d] head such as PROM's pivot head) with rows for the new tokens, each
    the mean of its source rows (bias likewise)."""
    out = nn.Linear(linear.in_features, rows.num_rows, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        n = min(linear.out_features, rows.num_rows)
        out.weight.zero_()
        out.weight[:n] = linear.weight[:n]
        init_new_rows(out.weight, rows)
        if linear.bias is not None:
            out.bias.zero_()
            out.bias[:n] = linear.bias[:n]
            init_new_rows(out.bias.unsqueeze(1), rows)
    out.weight.requires_grad_(linear.weight.requires_grad)
    return out


def resize_and_init(model: nn.Module, old_tokenizer, new_tokenizer, *, pad_to_multiple_of: int | None = None
                    ) -> NewRows:
    """Resize ``model``'s input and output embeddings for ``new_tokenizer`` and initialise the new rows
    (mean of their old pieces' rows; tied embeddings stay one matrix). Returns the rows, for
    :mod:`pivotune.vocab.train` and for heads copied from the unembedding."""
    rows_now = input_embeddings(model).weight.shape[0]
    rows = plan_new_rows(old_tokenizer, new_tokenizer, rows_now)
    if rows.num_rows > rows_now:
        model.resize_token_embeddings(rows.num_rows, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False)
        rows = NewRows(rows.ids, rows.sources, input_embeddings(model).weight.shape[0])
    info = arch_info(model)
    init_new_rows(input_embeddings(model).weight, rows)
    if not info.tied:
        init_new_rows(info.unembed.weight, rows)
    if info.unembed.bias is not None:
        init_new_rows(info.unembed.bias.unsqueeze(1), rows)
    return rows
