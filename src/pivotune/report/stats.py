"""95 % intervals for the report's differences: a percentile bootstrap, seeded and vectorised with numpy.

**Paired over items, then over seeds.** A difference between two methods is ``mean(a) - mean(b)`` over
the same evaluation items. Each replicate draws, in this order from one ``numpy.random.default_rng(seed)``:

1. the seeds of ``a`` with replacement (``integers(0, S_a, (B, S_a))``), then those of ``b``
   (``integers(0, S_b, (B, S_b))``): seeds are independent training runs, and seed s of one method shares
   nothing with seed s of another but the number, so each method's seeds are resampled on their own;
2. for each item pool in order of first appearance, the item indices with replacement
   (``integers(0, N, (B, N))``), shared by both methods (the items are paired: the same questions, so
   their difficulty cancels in the difference) and by every case of the pool (a task's metrics, EM and
   F1 of one answer; in the toy world every language's translation of one item).

The replicate's statistic is the mean over cases of (``a``'s mean over the drawn seeds and items minus
``b``'s); the interval is the 2.5th and 97.5th percentiles of the ``B`` replicates (numpy's default
linear interpolation). With one seed per method only items vary; with one "item" per case (the per-seed
headline scores, where no per-item scores were logged) only seeds do. An interval that excludes zero
decides the difference; one that contains it does not.

:func:`unpaired_bootstrap` is the same with nothing shared between the two sides (each resamples its
own seeds, then its own points): the gradient-interference cosines, logged on each method's own batches.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

ITERATIONS = 2000   # bootstrap replicates (B)
LEVEL = 0.95
SEED = 0            # every interval of a report uses this seed, so the report is reproducible


@dataclass(frozen=True)
class Interval:
    """An observed mean difference and its percentile bootstrap interval."""

    diff: float
    low: float
    high: float
    level: float = LEVEL

    @property
    def sign(self) -> int:
        """+1 when the interval lies above zero, -1 below, 0 when it contains zero (undecided)."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def fmt(self, digits: int = 1) -> str:
        """``+1.2 [-0.3, +2.7]``."""
        return f"{self.diff:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def _weights(draws: np.ndarray, n: int) -> np.ndarray:
    """(B, n) how often each index was drawn in each replicate, divided by the draws per replicate."""
    b = draws.shape[0]
    counts = np.bincount((draws + n * np.arange(b)[:, None]).ravel(), minlength=b * n)
    return counts.reshape(b, n) / draws.shape[1]


def _replicate_means(x: np.ndarray, seed_w: np.ndarray, item_w: np.ndarray) -> np.ndarray:
    """(B,) the mean of ``x`` (seeds × items) over each replicate's drawn seeds and items."""
    return ((seed_w @ x) * item_w).sum(axis=1)


def _as_matrices(cases: Sequence) -> list[np.ndarray]:
    out = []
    for c in cases:
        m = np.asarray(c, dtype=float)
        out.append(m[None, :] if m.ndim == 1 else m)
    return out


def _percentiles(stat: np.ndarray, diff: float, level: float) -> Interval:
    tail = (1 - level) / 2
    low, high = np.quantile(stat, [tail, 1 - tail])
    return Interval(float(diff), float(low), float(high), level)


def paired_bootstrap(a: Sequence, b: Sequence, pools: Sequence[Hashable] | None = None, *,
                     iterations: int = ITERATIONS, seed: int = SEED, level: float = LEVEL) -> Interval:
    """The interval of ``mean over cases (mean a - mean b)``. ``a[c]`` and ``b[c]`` are case c's scores,
    seeds × items (a 1-D array is one seed), columns in the same item order for both methods. ``pools[c]``
    names case c's item pool: cases of one pool have the same items in the same order and are resampled
    together (default: every case its own pool). See the module docstring for the draws."""
    a, b = _as_matrices(a), _as_matrices(b)
    if not a or len(a) != len(b):
        raise ValueError(f"paired_bootstrap needs the same cases on both sides, got {len(a)} and {len(b)}")
    pools = list(range(len(a))) if pools is None else list(pools)
    n_seeds_a, n_seeds_b = a[0].shape[0], b[0].shape[0]
    size: dict[Hashable, int] = {}
    for x, y, p in zip(a, b, pools):
        if x.shape[0] != n_seeds_a or y.shape[0] != n_seeds_b:
            raise ValueError("every case needs the same seeds as the others on its side")
        if x.shape[1] != y.shape[1] or size.setdefault(p, x.shape[1]) != x.shape[1] or x.shape[1] == 0:
            raise ValueError(f"pool {p!r}: both methods' cases need the same, non-zero number of items")
    rng = np.random.default_rng(seed)
    seed_wa = _weights(rng.integers(0, n_seeds_a, (iterations, n_seeds_a)), n_seeds_a)
    seed_wb = _weights(rng.integers(0, n_seeds_b, (iterations, n_seeds_b)), n_seeds_b)
    item_w = {p: _weights(rng.integers(0, n, (iterations, n)), n) for p, n in size.items()}
    stat = sum(_replicate_means(x, seed_wa, item_w[p]) - _replicate_means(y, seed_wb, item_w[p])
               for x, y, p in zip(a, b, pools)) / len(a)
    diff = float(np.mean([x.mean() - y.mean() for x, y in zip(a, b)]))
    return _percentiles(stat, diff, level)


def unpaired_bootstrap(a, b, *, iterations: int = ITERATIONS, seed: int = SEED,
                       level: float = LEVEL) -> Interval:
    """The interval of ``mean a - mean b`` where nothing pairs the two sides: ``a`` and ``b`` are seeds ×
    points (1-D: one seed). Draws, in order: ``a``'s seeds, ``a``'s points, ``b``'s seeds, ``b``'s points."""
    (a,), (b,) = _as_matrices([a]), _as_matrices([b])
    if a.size == 0 or b.size == 0:
        raise ValueError("unpaired_bootstrap needs at least one value on each side")
    rng = np.random.default_rng(seed)
    means = []
    for x in (a, b):
        s, n = x.shape
        seed_w = _weights(rng.integers(0, s, (iterations, s)), s)
        means.append(_replicate_means(x, seed_w, _weights(rng.integers(0, n, (iterations, n)), n)))
    return _percentiles(means[0] - means[1], float(a.mean() - b.mean()), level)


def normal_interval(diff: float, sd_bound: float, n: int, level: float = LEVEL) -> Interval:
    """``diff ± z · sd_bound / √n``: the normal-approximation interval of a mean difference over ``n``
    items whose spread is at most ``sd_bound`` (for the logit lens, which logs spreads, not items)."""
    from statistics import NormalDist

    half = NormalDist().inv_cdf(1 - (1 - level) / 2) * sd_bound / np.sqrt(n)
    return Interval(float(diff), float(diff - half), float(diff + half), level)


__all__ = ["ITERATIONS", "Interval", "LEVEL", "SEED", "normal_interval", "paired_bootstrap",
           "unpaired_bootstrap"]
