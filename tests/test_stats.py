"""The report's bootstrap intervals: an independent loop over the same draws, and cases with known answers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pivotune.report.stats import Interval, normal_interval, paired_bootstrap, unpaired_bootstrap


def _loop_paired(a, b, pools, iterations, seed, level=0.95):
    """The same statistic by a plain loop over replicates, drawing exactly as the docstring says."""
    rng = np.random.default_rng(seed)
    sa, sb = len(a[0]), len(b[0])
    seeds_a = rng.integers(0, sa, (iterations, sa))
    seeds_b = rng.integers(0, sb, (iterations, sb))
    sizes = {}
    for case, p in zip(a, pools):
        sizes.setdefault(p, len(case[0]))
    items = {p: rng.integers(0, n, (iterations, n)) for p, n in sizes.items()}
    stats = []
    for r in range(iterations):
        total = 0.0
        for x, y, p in zip(a, b, pools):
            mean_x = sum(x[s][i] for s in seeds_a[r] for i in items[p][r]) / (sa * sizes[p])
            mean_y = sum(y[s][i] for s in seeds_b[r] for i in items[p][r]) / (sb * sizes[p])
            total += mean_x - mean_y
        stats.append(total / len(a))
    stats.sort()
    return np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])


def test_paired_bootstrap_matches_a_plain_loop_over_the_same_draws():
    """Several seeds, two pools (one shared by two cases): the vectorised interval is the loop's."""
    rng = np.random.default_rng(1)
    a = [rng.integers(0, 2, (3, 12)) * 100.0, rng.random((3, 12)) * 100, rng.integers(0, 2, (3, 7)) * 100.0]
    b = [rng.integers(0, 2, (2, 12)) * 100.0, rng.random((2, 12)) * 100, rng.integers(0, 2, (2, 7)) * 100.0]
    pools = ["xquad", "xquad", "mgsm"]
    got = paired_bootstrap(a, b, pools, iterations=300, seed=7)
    low, high = _loop_paired([x.tolist() for x in a], [y.tolist() for y in b], pools, 300, 7)
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-9)
    assert got.diff == pytest.approx(np.mean([x.mean() - y.mean() for x, y in zip(a, b)]))
    assert paired_bootstrap(a, b, pools, iterations=300, seed=7) == got     # seeded: the same twice
    assert paired_bootstrap(a, b, pools, iterations=300, seed=8) != got


def test_identical_methods_give_zero_and_a_constant_shift_gives_the_shift():
    """Known answers: a method against itself is [0, 0] (undecided); b + 2.5 everywhere is [2.5, 2.5]."""
    b = np.random.default_rng(0).random((1, 50)) * 100
    same = paired_bootstrap([b], [b])
    assert (same.diff, same.low, same.high, same.sign) == (0.0, 0.0, 0.0, 0)
    shifted = paired_bootstrap([b + 2.5], [b])
    assert (shifted.diff, shifted.low, shifted.high) == pytest.approx((2.5, 2.5, 2.5)) and shifted.sign == 1
    # several identical seeds on each side: the shift still comes out exactly
    many = np.repeat(b, 3, axis=0)
    assert paired_bootstrap([many - 1.0], [many]).high == pytest.approx(-1.0)


def test_one_point_on_a_hundred_binary_items_is_not_a_win():
    """The bug this rule fixes: one item answered differently out of 100, one seed, is not decided."""
    b = np.zeros(100)
    b[:40] = 100.0
    a = b.copy()
    a[40] = 100.0                      # +1 point
    iv = paired_bootstrap([a], [b])
    assert iv.diff == pytest.approx(1.0) and iv.low <= 0 <= iv.high and iv.sign == 0
    a[40:60] = 100.0                   # +20 points, paired: decided
    assert paired_bootstrap([a], [b]).sign == 1


def test_pooled_cases_are_resampled_together():
    """Two cases that always differ in opposite directions on the same items cancel only when they share
    their item draws: one pool gives exactly zero, separate pools do not."""
    rng = np.random.default_rng(2)
    a1 = rng.random(30)
    b1 = np.zeros(30)
    joint = paired_bootstrap([a1, b1], [b1, a1], pools=["q", "q"])
    assert (joint.low, joint.high) == pytest.approx((0.0, 0.0))
    apart = paired_bootstrap([a1, b1], [b1, a1])
    assert apart.high - apart.low > 0.01


def test_unpaired_bootstrap_matches_a_loop_and_known_answers():
    """Each side resamples its own seeds then points; constant sides give their difference exactly."""
    a = np.array([[0.2, 0.4, 0.3], [0.25, 0.35, 0.1]])
    b = np.array([0.1, 0.12, 0.05, 0.2])
    got = unpaired_bootstrap(a, b, iterations=200, seed=3)
    rng = np.random.default_rng(3)
    draws = []
    for x in (a, b[None, :]):
        s, n = x.shape
        draws.append((x, rng.integers(0, s, (200, s)), rng.integers(0, n, (200, n))))
    stats = [np.mean([[x[si][pi] for pi in ps[r]] for si in ss[r]]) for x, ss, ps in draws for r in range(200)]
    diffs = np.array(stats[:200]) - np.array(stats[200:])
    assert (got.low, got.high) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])), abs=1e-12)
    const = unpaired_bootstrap(np.full(5, 0.3), np.full(4, 0.1))
    assert (const.low, const.high) == pytest.approx((0.2, 0.2))


def test_interval_formatting_sign_and_normal_interval():
    """The printed form, the decision, and the normal interval's half width z·sd/√n."""
    assert Interval(1.234, -0.31, 2.7).fmt() == "+1.2 [-0.3, +2.7]" and Interval(1, -0.3, 2.7).sign == 0
    assert Interval(-2, -3, -1).sign == -1 and Interval(2, 1, 3).sign == 1
    iv = normal_interval(0.1, 0.2, 100)
    assert (iv.low, iv.high) == pytest.approx((0.1 - 1.959964 * 0.02, 0.1 + 1.959964 * 0.02))


def test_default_bootstrap_is_fast():
    """B = 2000 on a demo-sized comparison (9 cases of 100 items, 3 seeds) takes well under a second."""
    rng = np.random.default_rng(0)
    a = [rng.random((3, 100)) for _ in range(9)]
    b = [rng.random((3, 100)) for _ in range(9)]
    t0 = time.perf_counter()
    paired_bootstrap(a, b, pools=["m", "x", "x"] * 3)
    assert time.perf_counter() - t0 < 1.0


def test_mismatched_inputs_are_refused():
    """Cases that do not pair up raise instead of giving a number."""
    with pytest.raises(ValueError):
        paired_bootstrap([np.ones(3)], [np.ones(4)])
    with pytest.raises(ValueError):
        paired_bootstrap([np.ones(3), np.ones(4)], [np.ones(3), np.ones(4)], pools=["p", "p"])
