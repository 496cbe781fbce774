"""The provided statistics a generated mouse ships in ``meta/statistics/<var>/all/``,
computed while its trials are written: ``RunningStats`` (mean, std, min, max, streamed)
and ``MedianSample`` (the median, over the trials that fit a memory budget)."""

from __future__ import annotations

import math

import numpy as np

#: Statistics the dataset provides in ``meta/statistics/<var>/all/``.
PROVIDED_STATISTICS = ("mean", "std", "min", "max", "median")
#: Memory allowed for the trials kept to compute the median (see ``MedianSample``).
_MEDIAN_BUDGET_BYTES = 256 << 20


class RunningStats:
    """NaN-aware mean, std, min and max over trials, keeping every axis, streamed.

    NaN only pads trailing frames, so a trial adds its first ``valid`` frames and the
    count is kept per frame. Sums are float64: float32 sums over 700 trials lose digits.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.sum = np.zeros(shape)
        self.sumsq = np.zeros(shape)
        self.min = np.full(shape, np.inf)
        self.max = np.full(shape, -np.inf)
        self.count = np.zeros(shape[-1], dtype=np.int64)

    def add(self, array: np.ndarray, valid: int) -> None:
        a = array[..., :valid].astype(np.float64)
        self.sum[..., :valid] += a
        low, high = self.min[..., :valid], self.max[..., :valid]
        np.minimum(low, a, out=low)
        np.maximum(high, a, out=high)
        self.sumsq[..., :valid] += np.square(a, out=a)
        self.count[:valid] += 1

    def finish(self) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum / self.count
            var = np.maximum(self.sumsq / self.count - mean**2, 0)
        empty = self.count == 0  # frames padded in every trial
        out = {"mean": mean, "std": np.sqrt(var), "min": self.min.copy(), "max": self.max.copy()}
        for stat in out.values():
            stat[..., empty] = np.nan
        return out


class MedianSample:
    """The median cannot be streamed exactly; it is computed over a subsample of trials
    kept in memory: every trial when they fit in ``_MEDIAN_BUDGET_BYTES`` (small specs:
    exact), otherwise trials evenly spread over the mouse (full-size twins: about 20 of
    720, an approximation). A second pass over the written files would be exact but costs
    a full re-read of a 7 GB tree, and zips cannot be read back cheaply while being
    written."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype: np.dtype, n_trials: int) -> None:
        per_trial = dtype.itemsize * sum(math.prod(s) for s in shapes.values())
        k = max(1, min(n_trials, _MEDIAN_BUDGET_BYTES // per_trial))
        picks = np.unique(np.linspace(0, n_trials - 1, k).round().astype(int))
        self.slot = {int(p): i for i, p in enumerate(picks)}
        self.buffers = {var: np.empty((len(picks), *s), dtype=dtype) for var, s in shapes.items()}
        self.count = {var: np.zeros(s[-1], dtype=np.int64) for var, s in shapes.items()}

    def add(self, position: int, arrays: dict[str, np.ndarray], valid: dict[str, int]) -> None:
        slot = self.slot.get(position)
        if slot is not None:
            for var, array in arrays.items():
                self.buffers[var][slot] = array
                self.count[var][: valid[var]] += 1

    def finish(self) -> dict[str, np.ndarray]:
        """Median per element, as np.nanmedian over the kept trials would give it.

        Sorting in place moves NaN last; since NaN only pads trailing frames, the number
        of real values is the same for every element of a frame, so the middle rows are
        found per frame. np.nanmedian itself goes through masked arrays and is 20x slower.
        """
        out = {}
        for var in list(self.buffers):
            # Sorted in place, the buffer no longer holds the trials: drop it.
            buffer = self.buffers.pop(var)
            buffer.sort(axis=0)
            count = self.count[var]
            index_shape = (1,) * (buffer.ndim - 1) + (-1,)
            low = np.maximum((count - 1) // 2, 0).reshape(index_shape)
            high = (count // 2).clip(max=len(buffer) - 1).reshape(index_shape)
            median = np.take_along_axis(buffer, low, axis=0)[0].astype(np.float64)
            median += np.take_along_axis(buffer, high, axis=0)[0]
            median /= 2
            median[..., count == 0] = np.nan  # frames padded in every kept trial
            out[var] = median
        return out


