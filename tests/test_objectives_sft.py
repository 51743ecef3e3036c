import math

import torch

from pivotune.data.records import IGNORE_INDEX
from pivotune.objectives.base import count_supervised, weighted_token_ce


def test_weighted_token_ce_matches_naive_loop():
    torch.manual_seed(0)
    B, T, V = 3, 7, 11
    logits = torch.randn(B, T, V)
    labels = torch.randint(0, V, (B, T))
    labels[0, :3] = IGNORE_INDEX
    labels[2, 5:] = IGNORE_INDEX
    w = torch.tensor([1.0, 0.5, 2.0])
    denom = count_supervised(labels)
    got = weighted_token_ce(logits, labels, w, denom)
    total, n = 0.0, 0
    for b in range(B):
        for t in range(T - 1):
            y = int(labels[b, t + 1])
            if y == IGNORE_INDEX:
                continue
            logp = logits[b, t] - torch.logsumexp(logits[b, t], 0)
            total += float(w[b]) * -float(logp[y])
            n += 1
    assert int(denom) == n
    assert math.isclose(float(got), total / n, rel_tol=1e-6)


def test_unit_weights_equal_torch_mean_ce():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 9)
    labels = torch.randint(0, 9, (2, 5))
    labels[1, 1] = IGNORE_INDEX
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 9), labels[:, 1:].reshape(-1),
                                            ignore_index=IGNORE_INDEX)
    got = weighted_token_ce(logits, labels, torch.ones(2), count_supervised(labels))
    assert torch.allclose(got, ref, atol=1e-6)
