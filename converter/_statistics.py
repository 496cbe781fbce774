"""NaN-aware statistics over trials, streamed in one pass (mean, std, min, max, count)
and exact medians in bounded memory.

``Moments`` accumulates one trial at a time and merges (Chan et al.'s pairwise update),
so blocks of trials can be reduced in any order and in parallel. ``nanmedian`` is exact
(it matches ``np.nanmedian``) and several times faster on padded data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Moments", "nanmedian"]

#: Rows up to this many values are sorted whole; longer ones are partitioned (measured:
#: 83000 rows of 350 sort in 0.29 s, partition in 0.42 s; 256 rows of 113400 sort in
#: 1.5 s, partition in 0.34 s).
_SORT_MAX_ROW = 4096

#: Elements per slab in ``Moments.add_block``: float64 temporaries of 8 trials x 8192
#: stay in cache (measured on 8 full-size response trials: 67 ms at 8192, 106 ms at
#: 32768, 179 ms at 262144; the per-trial add it replaced took 376 ms).
_SLAB = 8192


@dataclass
class Moments:
    """Running NaN-aware moments over a stream of equally shaped arrays (float64 inside)."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> Moments:
        return cls(
            count=np.zeros(shape, np.int64),
            mean=np.zeros(shape, np.float64),
            m2=np.zeros(shape, np.float64),
            min=np.full(shape, np.nan),
            max=np.full(shape, np.nan),
        )

    def add(self, x: np.ndarray) -> None:
        """Fold in one observation of every element; NaN elements are skipped."""
        self.add_block(np.asarray(x)[np.newaxis])

    def add_block(self, block: np.ndarray) -> None:
        """Fold in ``block[0]``, ``block[1]``, ...: each block is reduced two-pass (its mean,
        then squared deviations from it) and merged once, which is as accurate as adding
        observation by observation and several times faster."""
        block = np.asarray(block)
        k = block.shape[0]
        if k == 0:
            return
        flat = block.reshape(k, -1)
        count, mean, m2, low, high = (a.reshape(-1) for a in (self.count, self.mean, self.m2, self.min, self.max))
        # Slabs of elements keep every float64 temporary cache-sized and reused, instead of
        # a dozen fresh full-size arrays per block (page faults dominated the old per-trial add).
        for lo in range(0, flat.shape[1], _SLAB):
            hi = min(lo + _SLAB, flat.shape[1])
            x = flat[:, lo:hi]
            nan = np.isnan(x)
            n_b = k - nan.sum(axis=0)
            xs = x.astype(np.float64)
            np.copyto(xs, 0.0, where=nan)
            mean_b = xs.sum(axis=0) / np.maximum(n_b, 1)
            xs -= mean_b
            np.copyto(xs, 0.0, where=nan)
            m2_b = np.einsum("ij,ij->j", xs, xs)
            n_a = count[lo:hi]
            n = n_a + n_b
            safe = np.maximum(n, 1)
            delta = mean_b - mean[lo:hi]
            mean[lo:hi] += delta * (n_b / safe)
            m2[lo:hi] += m2_b + delta**2 * (n_a * n_b / safe)
            count[lo:hi] = n
            with np.errstate(invalid="ignore"):
                np.fmin(low[lo:hi], np.fmin.reduce(x, axis=0), out=low[lo:hi])
                np.fmax(high[lo:hi], np.fmax.reduce(x, axis=0), out=high[lo:hi])

    def merge(self, other: Moments) -> Moments:
        """Combine two disjoint streams into a new ``Moments``."""
        count = self.count + other.count
        safe = np.maximum(count, 1)
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / safe)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / safe)
        return Moments(count, mean, m2, np.fmin(self.min, other.min), np.fmax(self.max, other.max))

    def reduce(self, axis: int) -> Moments:
        """Moments pooled over ``axis`` as if every element along it were one stream."""
        count = self.count.sum(axis)
        safe = np.maximum(count, 1)
        mean = (self.count * self.mean).sum(axis) / safe
        spread = self.count * (self.mean - np.expand_dims(mean, axis)) ** 2
        m2 = self.m2.sum(axis) + spread.sum(axis)
        with np.errstate(invalid="ignore"):
            low = np.fmin.reduce(self.min, axis=axis)
            high = np.fmax.reduce(self.max, axis=axis)
        return Moments(count, mean, m2, low, high)

    def finalize(self) -> dict[str, np.ndarray]:
        """mean, std (population, ddof=0 like ``np.nanstd``), min, max and count; NaN
        where no value was seen."""
        empty = self.count == 0
        safe = np.maximum(self.count, 1)
        return {
            "mean": np.where(empty, np.nan, self.mean),
            "std": np.where(empty, np.nan, np.sqrt(np.maximum(self.m2, 0.0) / safe)),
            "min": self.min.copy(),
            "max": self.max.copy(),
            "count": self.count.copy(),
        }


def nanmedian(x: np.ndarray, axis: int | tuple[int, ...] = 0) -> np.ndarray:
    """Exact NaN-ignoring median over ``axis`` (float64 result, NaN where all are NaN),
    equal to ``np.nanmedian(x.astype(np.float64), axis)``."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    # Floats are ordered in their own dtype (float32 sorts twice as fast as float64);
    # only the two middle values are widened, so the mean of them matches numpy's.
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % x.ndim for a in axes)
    kept = [a for a in range(x.ndim) if a not in axes]
    out_shape = tuple(x.shape[a] for a in kept)
    # One contiguous row per output value: numpy sorts and partitions the last axis fastest.
    if x.size == 0:
        return np.full(out_shape, np.nan)
    rows = np.ascontiguousarray(np.transpose(x, (*kept, *axes)).reshape(math.prod(out_shape), -1))
    # numpy's sort and partition put NaN after +inf, so each row's values come first.
    counts = rows.shape[1] - np.count_nonzero(np.isnan(rows), axis=1)
    lo, hi = np.maximum(counts - 1, 0) // 2, counts // 2
    if rows.shape[1] <= _SORT_MAX_ROW:
        # Short rows (the trials of one element): numpy's row-wise sort beats a two-kth
        # partition, whose per-row overhead dominates at this length.
        rows.sort(axis=1)
        index = np.arange(len(rows))
        out = (rows[index, lo].astype(np.float64) + rows[index, hi]) / 2
    else:
        out = np.empty(len(rows))
        for c in np.unique(counts):
            chosen = counts == c
            part = rows if chosen.all() else rows[chosen]
            low, high = max(c - 1, 0) // 2, c // 2
            # One kth, then the largest value below it: 25% faster than partitioning at
            # both middle positions (256 rows of 113400 float32: 0.24 s against 0.32 s).
            part = np.partition(part, high, axis=1)
            below = part[:, high] if low == high else part[:, :high].max(axis=1)
            out[chosen] = (below.astype(np.float64) + part[:, high]) / 2
    out[counts == 0] = np.nan
    result: np.ndarray = out.reshape(out_shape)
    return result
