"""Sequence packing (``train.packing``): several encoded samples in one row of at most ``max_seq_len`` tokens, each
sample attending only to itself.

Samples are packed once, before training, best-fit-decreasing (the longest first, each into the fullest row it
still fits, as TRL's ``packing_strategy="bfd"``); no sample is split or dropped. A packed row holds samples of one
role, one language and one source weight, so everything a batch carries per row (the role PROM routes by, the
per-role and per-language losses, the weight of every token) stays exact.

Attention stays inside each sample the way transformers supports it: position ids restart at 0 for every sample
and no attention mask goes to the model, so transformers builds the block-diagonal causal mask from the position
ids (``masking_utils.find_packed_sequence_indices``: sdpa, eager, flex attention); while a packed stage trains, an
sdpa model attends per sample instead (:mod:`pivotune.models.packed_attention`). Flash attention reads packed
position ids only in a batch flattened into one row; it, and any other attention, would attend across samples
here, so :func:`packing_problem` names it before training.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

from .collate import Encoded
from .records import IGNORE_INDEX

#: the batch entry of a packed batch's position ids (restarting at 0 for every sample)
POSITION_IDS = "position_ids"
#: the batch entry that names each token's sequence, where a loss sums over sequences (CLO; -1: padding)
SEQUENCE_IDS = "sequence_ids"
#: attention implementations whose masks transformers builds per sample from packed position ids, in any rows
MASKED_ATTENTION = ("sdpa", "eager", "flex_attention")


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of ``lengths`` in bins of total at most ``capacity``: longest first (ties in index order), each into
    the bin with the least room that still holds it, else a new bin. Bins in the order they were opened."""
    bins: list[list[int]] = []
    room: list[tuple[int, int]] = []   # (room left, bin) sorted; the best fit is the first with enough room
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"item {i} has length {n}, over the capacity {capacity}")
        at = bisect.bisect_left(room, (n, -1))
        if at < len(room):
            left, b = room.pop(at)
        else:
            left, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        bisect.insort(room, (left - n, b))
    return bins


@dataclass
class PackedRow:
    """Encoded samples that share one row, in packing order; all of one role, language and weight."""

    samples: list[Encoded]

    @property
    def role(self) -> int:
        return self.samples[0].role

    @property
    def lang(self) -> int:
        return self.samples[0].lang

    @property
    def weight(self) -> float:
        return self.samples[0].weight

    def __len__(self) -> int:
        return sum(len(e.input_ids) for e in self.samples)


def row_key(e: Encoded) -> Hashable:
    """What the samples of one packed row share: role, language and source weight."""
    return e.role, e.lang, e.weight


def pack(encoded: Sequence[Encoded], max_seq_len: int, key: Callable[[Encoded], Hashable] = row_key) -> list[PackedRow]:
    """``encoded`` packed best-fit-decreasing into rows of at most ``max_seq_len`` tokens, each row's samples sharing
    ``key``; groups in the order their first sample appears."""
    groups: dict[Hashable, list[Encoded]] = {}
    for e in encoded:
        groups.setdefault(key(e), []).append(e)
    rows = []
    for members in groups.values():
        bins = best_fit_decreasing([len(e.input_ids) for e in members], max_seq_len)
        rows += [PackedRow([members[i] for i in b]) for b in bins]
    return rows


def padding_share(lengths: Sequence[int], widths: Sequence[int]) -> float:
    """The share of a batch's token slots that are padding: rows of ``lengths`` padded to ``widths``."""
    total = sum(widths)
    return 1.0 - sum(lengths) / total if total else 0.0


def packed_tensors(rows: Sequence[Sequence[Encoded]], pad_token_id: int,
                   sequence_ids: Sequence[Sequence[int]] | None = None) -> dict[str, torch.Tensor]:
    """Rows of samples laid end to end, right-padded: ``input_ids``, ``labels`` (each sample's first token never a
    target: nothing before it in its sample predicts it), ``position_ids`` restarting at 0 for every sample (and
    for the padding, its own segment), and ``attention_mask`` (1 on samples' tokens; it marks the padding for the
    batch's readers and never goes to the model, see :func:`attention_inputs`). With ``sequence_ids`` (an id per
    sample, row by row), :data:`SEQUENCE_IDS` holds each token's sample id (-1 on padding)."""
    width = max(sum(len(e.input_ids) for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    sequences = torch.full((len(rows), width), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for k, e in enumerate(row):
            n = len(e.input_ids)
            ids[r, at:at + n] = torch.tensor(e.input_ids)
            labels[r, at:at + n] = torch.tensor(e.labels)
            labels[r, at] = IGNORE_INDEX
            positions[r, at:at + n] = torch.arange(n)
            if sequence_ids is not None:
                sequences[r, at:at + n] = sequence_ids[r][k]
            at += n
        mask[r, :at] = 1
        positions[r, at:] = torch.arange(width - at)
    batch = {"input_ids": ids, "labels": labels, POSITION_IDS: positions, "attention_mask": mask}
    if sequence_ids is not None:
        batch[SEQUENCE_IDS] = sequences
    return batch


class PackedCollator:
    """Batch :class:`PackedRow` items like :class:`pivotune.data.collate.Collator` batches samples, with each row's
    role, language and weight, and the position ids that keep each sample's attention to itself."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[PackedRow]) -> dict[str, torch.Tensor]:
        return {**packed_tensors([row.samples for row in items], self.pad_token_id),
                "roles": torch.tensor([row.role for row in items], dtype=torch.long),
                "langs": torch.tensor([row.lang for row in items], dtype=torch.long),
                "weights": torch.tensor([row.weight for row in items], dtype=torch.float32)}


def attention_inputs(batch: dict) -> dict[str, torch.Tensor | None]:
    """The model's attention inputs for ``batch``: a packed batch's position ids with no mask (transformers then
    builds each sample's own causal mask from them), else the padding mask."""
    positions = batch.get(POSITION_IDS)
    if positions is not None:
        return {"attention_mask": None, POSITION_IDS: positions}
    return {"attention_mask": batch["attention_mask"]}


def packing_problem(model) -> str | None:
    """Why ``model`` cannot train on packed rows (its attention would reach across samples), or None."""
    from transformers import PreTrainedModel

    from ..models.arch import unwrap

    lm = unwrap(model)
    name = type(lm).__name__
    if not isinstance(lm, PreTrainedModel) or not type(lm).__module__.startswith("transformers."):
        return (f"the model class {name} comes from outside transformers (remote code), so pivotune cannot tell "
                "whether it keeps packed samples apart")
    attn = lm.config._attn_implementation
    if attn in MASKED_ATTENTION:
        return None
    if attn.startswith("flash_attention"):
        return (f"{name} runs {attn}, which keeps packed samples apart only in a batch flattened into one row, "
                "not in the rows of max_seq_len that pivotune packs")
    return f"{name} runs attention implementation {attn!r}, which does not build per-sample masks"


def refuse_unpackable(model) -> None:
    """Stop before training when packing would let samples attend to each other (:func:`packing_problem`)."""
    from ..errors import ConfigError

    problem = packing_problem(model)
    if problem is not None:
        raise ConfigError(f"train.packing: {problem}. Packed rows need attention that transformers masks per sample "
                          f"from restarting position ids ({', '.join(MASKED_ATTENTION)}): load the model with one "
                          "of them (transformers' attn_implementation, e.g. in its config.json), or set "
                          "train.packing: false.")
