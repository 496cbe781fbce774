"""NaN-aware statistics over trials, streamed in one pass (mean, std, min, max, count)
and exact medians in bounded memory.

``Moments`` accumulates one trial at a time and merges (Chan et al.'s pairwise update),
so blocks of trials can be reduced in any order and in parallel. ``nanmedian`` is exact
(it matches ``np.nanmedian``) without ``np.nanmedian``'s per-column Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Moments", "nanmedian"]


@dataclass
class Moments:
    """Running NaN-aware moments over a stream of equally shaped arrays (float64 inside)."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> "Moments":
        return cls(
            count=np.zeros(shape, np.int64),
            mean=np.zeros(shape, np.float64),
            m2=np.zeros(shape, np.float64),
            min=np.full(shape, np.nan),
            max=np.full(shape, np.nan),
        )

    def add(self, x: np.ndarray) -> None:
        """Fold in one observation of every element; NaN elements are skipped."""
        x = np.asarray(x, dtype=np.float64)
        valid = ~np.isnan(x)
        self.count += valid
        delta = np.where(valid, x - self.mean, 0.0)
        self.mean += delta / np.maximum(self.count, 1)
        self.m2 += np.where(valid, delta * (x - self.mean), 0.0)
        np.fmin(self.min, x, out=self.min)
        np.fmax(self.max, x, out=self.max)

    def merge(self, other: "Moments") -> "Moments":
        """Combine two disjoint streams into a new ``Moments``."""
        count = self.count + other.count
        safe = np.maximum(count, 1)
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / safe)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / safe)
        return Moments(count, mean, m2, np.fmin(self.min, other.min), np.fmax(self.max, other.max))

    def reduce(self, axis: int) -> "Moments":
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
    """Exact NaN-ignoring median over ``axis`` (float64 result, NaN where all are NaN)."""
    x = np.asarray(x, dtype=np.float64)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % x.ndim for a in axes)
    kept = [a for a in range(x.ndim) if a not in axes]
    out_shape = tuple(x.shape[a] for a in kept)
    columns = np.transpose(x, (*axes, *kept)).reshape(-1, int(np.prod(out_shape, dtype=np.int64)))
    nan = np.isnan(columns)
    counts = columns.shape[0] - nan.sum(axis=0)
    filled = np.where(nan, np.inf, columns)  # NaN sorts last as +inf, below every count
    del nan
    out = np.full(columns.shape[1], np.nan)
    # Columns with the same number of values share one vectorised partition.
    for c in np.unique(counts):
        if c == 0:
            continue
        cols = np.flatnonzero(counts == c)
        lo, hi = (int(c) - 1) // 2, int(c) // 2
        block = filled if len(cols) == filled.shape[1] else filled[:, cols]
        part = np.partition(block, sorted({lo, hi}), axis=0)
        out[cols] = (part[lo] + part[hi]) / 2
    return out.reshape(out_shape)
