"""Per-sample attention for packed rows (``train.packing``): sdpa run on each sample of a row on its own.

A packed row keeps its samples apart through a block-diagonal causal mask that transformers builds from the
restarting position ids; sdpa then still computes every cross-sample block of scores, only to mask it out, and a
masked sdpa call cannot take the fused causal kernels. Attention is the only part of a step that cares where
samples start, so this implementation runs transformers' own ``sdpa_attention_forward`` once per sample, causal
and unmasked: the same attention to float rounding, a share of the work (a row of k samples of length L/k costs
about 1/k of the full row's scores). pivotune writes it by hand because transformers has no per-sample path for
sdpa (its padding-free path is flash attention's, on a batch flattened into one row).

It is registered with transformers' ``AttentionInterface`` as :data:`PACKED_SDPA` (its masks: sdpa's), and a
packed run switches an sdpa model to it for training only (:func:`per_sample_attention`): the saved model's
config names no implementation (transformers does not serialise it). Where per-sample attention would not equal
the masked one, the call takes the masked path, so a model always gets the attention it was given:

- the model does not hand its attention the position ids (per-sample bounds unknown);
- a sample longer than the layer's sliding window (the window, not the sample, bounds its attention);
- queries and keys of different lengths (a key/value cache), or position ids not shaped like the queries' rows;
- the position ids do not read as packed samples (each one 0, 1, 2, ... after its sample's start).

pivotune's training forwards run without a cache (``use_cache=False``), where transformers builds the per-sample
mask; with a cache it masks causally only, so the switch is for training forwards alone.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import torch

#: the name the per-sample attention is registered under (AttentionInterface and AttentionMaskInterface)
PACKED_SDPA = "pivotune_packed_sdpa"
#: the implementation it stands in for
SDPA = "sdpa"

# the last position ids' sample bounds: one forward calls every layer with the same tensor object
_last_bounds: tuple[weakref.ref, list[list[tuple[int, int]]] | None] | None = None


def sample_bounds(position_ids: torch.Tensor) -> list[list[tuple[int, int]]] | None:
    """Each row's samples as (start, end) spans, where position ids restart at 0 and count up by one inside a
    sample; None when they do not read that way (a left-padded generation's ids, a single sequence)."""
    global _last_bounds
    if _last_bounds is not None and _last_bounds[0]() is position_ids:
        return _last_bounds[1]
    bounds = None
    if position_ids.dim() == 2 and position_ids.shape[1] > 1:
        steps = position_ids[:, 1:] - position_ids[:, :-1]
        starts = position_ids[:, 1:] == 0
        packed = bool(((steps == 1) | starts).all()) and bool((position_ids[:, 0] == 0).all()) \
            and bool(starts.any())
        if packed:
            width = position_ids.shape[1]
            bounds = []
            for row in starts.cpu().tolist():
                cut = [0, *(t + 1 for t, s in enumerate(row) if s), width]
                bounds.append(list(zip(cut[:-1], cut[1:])))
    _last_bounds = (weakref.ref(position_ids), bounds)
    return bounds


def packed_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract (``query``/``key``/``value`` [B, heads, T, D]; returns the output
    [B, T, heads, D] and no weights): sdpa per packed sample, else sdpa with the mask given (module docstring)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.pop("position_ids", None)
    bounds = None
    # per sample only where the ids describe this call's rows: [B, T] for B rows of T queries, and as many keys
    if position_ids is not None and tuple(position_ids.shape) == (query.shape[0], query.shape[2]) \
            and query.shape[2] == key.shape[2]:
        bounds = sample_bounds(position_ids)
        window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
        if bounds is not None and window and any(end - start > window for spans in bounds for start, end in spans):
            bounds = None
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    kwargs.pop("is_causal", None)
    rows = []
    # unbind and split, not slicing: a slice's backward fills a zero tensor of the whole input per sample
    for spans, q_row, k_row, v_row in zip(bounds, query.unbind(0), key.unbind(0), value.unbind(0)):
        lengths = [end - start for start, end in spans]
        parts = [sdpa_attention_forward(module, q[None], k[None], v[None], None, is_causal=True, **kwargs)[0]
                 for q, k, v in zip(q_row.split(lengths, dim=1), k_row.split(lengths, dim=1),
                                    v_row.split(lengths, dim=1))]
        rows.append(torch.cat(parts, dim=1))
    return torch.cat(rows, dim=0), None


def register() -> None:
    """Make :data:`PACKED_SDPA` a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
    AttentionMaskInterface.register(PACKED_SDPA, ALL_MASK_ATTENTION_FUNCTIONS[SDPA])   # the fallback's masks


@contextlib.contextmanager
def per_sample_attention(model) -> Iterator[bool]:
    """While open, an sdpa ``model`` (a transformers model, its wrappers unwrapped) attends per packed sample;
    yields whether it does (other implementations stay as they are). Restored on exit, also on an error."""
    from .arch import unwrap

    lm = unwrap(model)
    if lm.config._attn_implementation != SDPA:
        yield False
        return
    register()
    lm.set_attn_implementation(PACKED_SDPA)
    switched = lm.config._attn_implementation == PACKED_SDPA   # models outside the AttentionInterface stay
    try:
        yield switched
    finally:
        if switched:
            lm.set_attn_implementation(SDPA)
