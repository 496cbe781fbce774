"""Independent test oracles: plain-numpy reference implementations that tests compare
our code against.

Each oracle restates a documented rule (SENSORIUM.md, docs/FORMAT.md, neuralpredictors'
NeuroNormalizer) the simplest way numpy allows, with no concern for memory or speed.
This module never imports sensorium_zarr: an oracle that shared code with what it checks
would agree with its bugs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

#: The NaN-aware numpy reductions, by the statistic names the store and the source use.
NAN_REDUCERS: dict[str, Callable[..., np.ndarray]] = {
    "mean": np.nanmean,
    "std": np.nanstd,
    "min": np.nanmin,
    "max": np.nanmax,
    "median": np.nanmedian,
}
#: Factor of the mean response std below which a neuron's std is replaced by it.
RESPONSE_STD_THRESHOLD = 0.01


def nan_statistics(
    stack: np.ndarray,
    axis: int | tuple[int, ...],
    names: Sequence[str] = ("mean", "std", "min", "max", "median", "count"),
) -> dict[str, np.ndarray]:
    """Statistics of ``stack`` over ``axis`` in float64, ignoring NaN; ``count`` is the
    number of real values. All-NaN slices give NaN (numpy's warning silenced)."""
    x = np.asarray(stack).astype(np.float64)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in names:
            out[name] = (~np.isnan(x)).sum(axis) if name == "count" else NAN_REDUCERS[name](x, axis)
    return out


def response_threshold(std: np.ndarray) -> float:
    """The smallest std a response is divided by: 1% of the mean std over neurons."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(RESPONSE_STD_THRESHOLD * np.nanmean(std))


def is_withheld(responses: np.ndarray) -> bool:
    """Whether a trial's responses are withheld: no real value other than zero."""
    return not np.any(np.nan_to_num(responses))


def real_frames(stack: np.ndarray, time_axis: int) -> np.ndarray:
    """Per trial (axis 0), the frames before the first frame where any value is NaN;
    the whole length when no frame is."""
    other = tuple(a for a in range(1, stack.ndim) if a != time_axis)
    nan_frames = np.isnan(stack).any(axis=other)
    return np.where(nan_frames.any(axis=1), nan_frames.argmax(axis=1), stack.shape[time_axis])


def recomputed_standardization(
    variable: str, x: np.ndarray, train: Sequence[np.ndarray], withheld: Sequence[bool]
) -> np.ndarray:
    """The store's own standardization rules (statistics recomputed over the train
    trials), from every real value of the ``train`` source arrays (time last), in float64.

    ``x`` is a stack of trials (trial first) whose channel axis (neuron, behavior or
    pupil coordinate) is second to last; videos use one pooled mean and std. Responses
    are divided by their std (never below ``response_threshold``), behavior by its std,
    videos and pupil center centred and divided by the std; the responses of the
    ``withheld`` trials become NaN.
    """
    source = [a.astype(np.float64) for a in train]
    x = x.astype(np.float64)
    if variable == "videos":
        values = np.concatenate([a.ravel() for a in source])
        return (x - np.nanmean(values)) / np.nanstd(values)
    pooled = np.concatenate(source, axis=-1)  # (neuron or channel, all train frames)
    mean, std = np.nanmean(pooled, axis=1)[:, None], np.nanstd(pooled, axis=1)[:, None]
    if variable == "responses":
        threshold = response_threshold(std)
        out = x / np.where(std > threshold, std, threshold)
        out[list(withheld)] = np.nan
        return out
    if variable == "behavior":
        return x / std
    return (x - mean) / std


class NeuroNormalizer:
    """neuralpredictors' NeuroNormalizer rules with the dataset's provided statistics
    (``meta/statistics/<variable>/all/<stat>.npy``), applied to source arrays (time
    last). ``statistics[variable][stat]`` holds those arrays."""

    def __init__(self, statistics: dict) -> None:
        s = statistics["responses"]["std"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            threshold = 0.01 * np.nanmean(s)
            idx = s > threshold
        self.response_precision = np.ones_like(s) / threshold
        self.response_precision[idx] = 1 / s[idx]
        self.stats = statistics

    def __call__(self, variable: str, x: np.ndarray) -> np.ndarray:
        st = self.stats[variable]
        if variable == "videos":
            return (x - st["mean"]) / st["std"]
        if variable == "responses":
            return x * self.response_precision
        if variable == "behavior":
            return x * (1 / st["std"])
        return (x - st["mean"]) / st["std"]
