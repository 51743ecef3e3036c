"""Sequence packing: best-fit-decreasing rows, their batches, and the attention that keeps samples apart."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import tiny_llama
from test_arch import build

from pivotune.data.collate import Collator, Encoded
from pivotune.data.packing import (
    POSITION_IDS,
    PackedCollator,
    attention_inputs,
    best_fit_decreasing,
    pack,
    packing_problem,
    padding_share,
    refuse_unpackable,
)
from pivotune.data.records import IGNORE_INDEX
from pivotune.errors import ConfigError


def encoded(n: int, *, role: int = 0, lang: int = 0, weight: float = 1.0, seed: int = 0, index: int = -1) -> Encoded:
    """An encoded sample of ``n`` tokens whose first third is prompt."""
    g = random.Random(seed)
    ids = [g.randrange(3, 300) for _ in range(n)]
    cut = max(1, n // 3)
    return Encoded(ids, [IGNORE_INDEX] * cut + ids[cut:], role, lang, weight, False, index)


def test_bfd_fills_each_item_into_the_fullest_bin_it_fits():
    """Longest first, each into the bin with the least room left that still holds it."""
    assert best_fit_decreasing([5, 4, 3, 3, 2, 1], 8) == [[0, 2], [1, 3, 5], [4]]
    assert best_fit_decreasing([8, 8], 8) == [[0], [1]]
    assert best_fit_decreasing([], 8) == []


def test_bfd_refuses_an_item_over_the_capacity():
    """An item longer than a row is a caller's bug, never silently split."""
    with pytest.raises(ValueError, match="item 1 has length 9"):
        best_fit_decreasing([3, 9], 8)


def test_packing_keeps_every_sample_whole_and_rows_within_length():
    """No sample is split, dropped or repeated, and no row exceeds max_seq_len."""
    rng = random.Random(0)
    items = [encoded(rng.randint(4, 64), role=rng.choice([0, 1]), lang=rng.choice([0, 1, 2]),
                     weight=rng.choice([1.0, 0.5]), seed=i, index=i) for i in range(300)]
    rows = pack(items, 64)
    flat = [e.sample_index for row in rows for e in row.samples]
    assert sorted(flat) == list(range(300))
    assert all(len(row) <= 64 for row in rows)
    assert sum(map(len, rows)) == sum(len(e.input_ids) for e in items)
    # near-optimal: at most one partly filled row per group beyond the volume bound
    groups = {(e.role, e.lang, e.weight) for e in items}
    assert len(rows) <= sum(len(e.input_ids) for e in items) // 64 + 2 * len(groups)


def test_a_packed_row_holds_one_role_language_and_weight():
    """Rows never mix roles, languages or source weights, so per-row routing and weights stay exact."""
    items = [encoded(5, role=r, lang=lang, weight=w, seed=i) for i, (r, lang, w) in
             enumerate([(0, 0, 1.0), (1, 1, 1.0), (0, 0, 0.5), (1, 1, 1.0), (0, 0, 1.0), (1, 2, 1.0)])]
    rows = pack(items, 100)
    assert [(row.role, row.lang, row.weight, len(row.samples)) for row in rows] == [
        (0, 0, 1.0, 2), (1, 1, 1.0, 2), (0, 0, 0.5, 1), (1, 2, 1.0, 1)]


def test_packed_batch_restarts_positions_and_masks_each_samples_first_target():
    """Position ids restart per sample; a sample's first token is never the previous sample's target."""
    a, b, c = encoded(4, seed=1), encoded(3, seed=2), encoded(2, seed=3)
    a.labels = list(a.input_ids)   # fully supervised: its first label must still not become a target
    rows = pack([a, b, c], 7)
    batch = PackedCollator(pad_token_id=0)(rows)
    assert batch[POSITION_IDS].tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 0, 1, 2, 3, 4]]
    assert batch["attention_mask"].tolist() == [[1] * 7, [1, 1, 0, 0, 0, 0, 0]]
    assert batch["input_ids"][0].tolist() == a.input_ids + b.input_ids
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] + a.labels[1:] + [IGNORE_INDEX] + b.labels[1:]
    assert batch["labels"][1].tolist() == [IGNORE_INDEX] + c.labels[1:] + [IGNORE_INDEX] * 5
    assert batch["roles"].tolist() == [0, 0] and batch["weights"].tolist() == [1.0, 1.0]


def test_attention_inputs_send_no_mask_with_packed_positions():
    """A packed batch reaches the model as position ids alone; an unpacked one as its padding mask."""
    items = [encoded(4, seed=1), encoded(3, seed=2)]
    packed = PackedCollator(0)(pack(items, 7))
    plain = Collator(0)(items)
    assert attention_inputs(packed)["attention_mask"] is None
    assert torch.equal(attention_inputs(packed)[POSITION_IDS], packed[POSITION_IDS])
    assert attention_inputs(plain) == {"attention_mask": plain["attention_mask"]}


def test_padding_share():
    """The share of token slots that are padding."""
    assert padding_share([3, 1], [4, 4]) == 0.5
    assert padding_share([], []) == 0.0


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "gemma2", "gpt2"])
def test_packed_rows_give_each_samples_own_logits(arch, one_thread):
    """A packed row's logits equal each sample's logits run alone (to 1e-5), over rows padded to one width."""
    model = build(arch)
    items = [encoded(n, seed=i) for i, n in enumerate([9, 5, 7, 3, 6])]
    for e in items:   # the test architectures' vocabulary is small
        e.input_ids = [x % 90 + 3 for x in e.input_ids]
    batch = PackedCollator(0)(pack(items, 16))
    assert batch["input_ids"].shape[0] >= 2 and (batch["attention_mask"] == 0).any()   # padding included
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], **attention_inputs(batch), use_cache=False).logits
        seen = 0
        for r, positions in enumerate(batch[POSITION_IDS]):
            starts = (positions == 0).nonzero().squeeze(1).tolist()
            for s, end in zip(starts, starts[1:] + [int(batch["attention_mask"][r].sum())]):
                if s >= end:
                    continue
                alone = model(input_ids=batch["input_ids"][r:r + 1, s:end], use_cache=False).logits[0]
                torch.testing.assert_close(logits[r, s:end], alone, atol=1e-5, rtol=1e-5)
                seen += 1
    assert seen == len(items)


def test_packing_refuses_attention_that_would_cross_samples(tokenizer):
    """Attention that builds no per-sample mask is refused before training, naming the fix."""
    model = tiny_llama(tokenizer)
    assert packing_problem(model) is None   # sdpa
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ConfigError, match="flash_attention_2, which keeps packed samples apart only") as err:
        refuse_unpackable(model)
    assert "train.packing: false" in str(err.value) and len(str(err.value)) < 2000
    model.config._attn_implementation = "paged|sdpa"
    assert "does not build per-sample masks" in packing_problem(model)
