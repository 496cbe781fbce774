"""Statistics stage: write the statistics recomputed from the ``train`` tier.

Mean, std, min, max and count come from the streamed ``Moments`` of the writing stage
(no second read). Medians cannot be streamed exactly, so ``median_block`` reads the
written store back, one block of neurons (or frames, or channels) at a time, which
bounds memory by ``MEDIAN_READ_BYTES`` whatever the number of trials.

Videos are read in blocks of frames, aligned to their chunks, so each chunk is decoded
once. Their median over trials and time (per pixel) then cannot come from one block:
videos hold integers 0..255 (SENSORIUM.md), so each block returns per-pixel counts of
every value and the exact median comes from the summed counts. A block holding any other
value returns None instead, and ``pooled_median_block`` computes that median the general
way, from blocks of rows that each hold every frame (decoding every chunk once per block).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from sensorium_zarr import format as fmt
from sensorium_zarr._location import Remote

from ._statistics import Moments, nanmedian
from ._writer import Blueprint, open_array

__all__ = [
    "create_statistics", "median_blocks", "median_block", "pooled_median_blocks", "pooled_median_block",
    "write_medians", "write_pooled_medians",
]

#: Bytes of stored train data one median task reads at once (up to twice this when that
#: makes a block one whole chunk), and bytes it sorts at once (counted at 8 per value;
#: the sort copies its input about twice).
MEDIAN_READ_BYTES = 128 * 2**20
MEDIAN_SORT_BYTES = 32 * 2**20

#: The axis (in stored order, trial axis included) along which median tasks split a variable.
_BLOCK_AXIS = {fmt.VIDEOS: 1, fmt.RESPONSES: 1, fmt.BEHAVIOR: 1, fmt.PUPIL_CENTER: 1}
#: Variables whose pooled (over trials and time) median comes from value counts, and the
#: axis along which the general fallback splits them.
_COUNTED = {fmt.VIDEOS: 2}
#: Values counted: integers 0 .. _LEVELS - 1 (the uint8 range, see ``_value_counts``).
_LEVELS = 256
#: Trials counted per ``np.bincount`` call.
_COUNT_TRIALS = 16


def create_statistics(root: zarr.Group, variable: str, moments: Moments, blueprint: Blueprint) -> None:
    """Write every streamed statistic of ``variable`` and create its (empty) medians; dims,
    dtypes and shapes come from the format's table."""
    time_axis = fmt.time_axis(variable, with_trial_axis=False)
    for granularity, result in (
        (fmt.OVER_TRIALS, moments.finalize()),
        (fmt.OVER_TRIALS_AND_TIME, moments.reduce(time_axis).finalize()),
    ):
        for stat in fmt.STATISTICS:
            array = blueprint.create(root, fmt.statistics_path(variable, granularity, stat))
            if stat != "median":
                # min and max are source values, exact in the stored dtype the table gives.
                array[...] = result[stat].astype(array.dtype)


def median_blocks(array: zarr.Array[Any], variable: str, n_train: int) -> list[tuple[int, int]]:
    """Ranges along the block axis whose train data fits ``MEDIAN_READ_BYTES`` (as the
    values are sorted: a ``uint8`` array's as float32), aligned to the array's chunks
    where the budget allows, so no chunk is decoded twice."""
    return _ranges(array.shape, _BLOCK_AXIS[variable], n_train * _value_itemsize(array),
                   MEDIAN_READ_BYTES, array.chunks[_BLOCK_AXIS[variable]])


#: What the values of a ``uint8`` variable (format version 8) are restored to for their
#: medians: integers 0..255 and NaN, exact in it, so the medians are those of the source.
_DECODED = np.float32


def _value_itemsize(array: zarr.Array[Any]) -> int:
    return np.dtype(_DECODED).itemsize if array.dtype == np.uint8 else array.dtype.itemsize


def _restored(values: np.ndarray, valid: np.ndarray | None, axis: int, lo: int, hi: int, time_axis: int) -> np.ndarray:
    """``values`` read of a ``uint8`` variable (``valid``: the train trials' real frame
    counts) as floats with NaN padding; the block ``lo:hi`` of ``axis``; others as read."""
    if valid is None:
        return values
    frames = slice(lo, hi) if axis == time_axis else slice(0, values.shape[time_axis])
    return fmt.restore_padding(values.astype(_DECODED), valid, frames, time_axis)


def _ranges(
    shape: tuple[int, ...], axis: int, bytes_per_value: int, budget: int, align: int = 1
) -> list[tuple[int, int]]:
    per_index = bytes_per_value * math.prod(s for a, s in enumerate(shape) if a not in (0, axis))
    size = max(1, budget // max(per_index, 1))
    if size >= align:
        size -= size % align
    elif align * per_index <= 2 * budget:
        size = align  # one whole chunk per block, up to twice the budget: no chunk decoded twice
    return [(lo, min(lo + size, shape[axis])) for lo in range(0, shape[axis], size)]


def median_block(
    store_path: Path | Remote, variable: str, train: np.ndarray, lo: int, hi: int, engine: str,
    valid: np.ndarray | None = None,
) -> dict[str, np.ndarray | None]:
    """Both medians of ``variable`` for block ``lo:hi`` of its block axis, by granularity;
    for a counted variable (videos) the second is that block's value counts, or None.
    ``valid``: the train trials' real frame counts, for a variable stored as ``uint8``.

    Returned rather than written: several blocks share one chunk of a median array, and
    concurrent partial writes of one chunk would race.
    """
    data = open_array(store_path, variable, engine)
    axis = _BLOCK_AXIS[variable]
    time_axis = fmt.time_axis(variable)
    values = _restored(_read_trials(data, train, axis, lo, hi), valid, axis, lo, hi, time_axis)
    over_trials, pooled = [], []
    for block in _sort_blocks(values, axis):
        over_trials.append(nanmedian(block, axis=0))
        if variable not in _COUNTED:
            pooled.append(nanmedian(block, axis=(0, time_axis)))
    return {
        fmt.OVER_TRIALS: np.concatenate(over_trials, axis=_out_axis(variable, fmt.OVER_TRIALS)),
        fmt.OVER_TRIALS_AND_TIME: (
            _value_counts(values) if variable in _COUNTED
            else np.concatenate(pooled, axis=_out_axis(variable, fmt.OVER_TRIALS_AND_TIME))
        ),
    }


def _value_counts(values: np.ndarray) -> np.ndarray | None:
    """Per-pixel counts (pixels, _LEVELS) of the non-NaN values of ``values`` (trial,
    time, pixel axes...), or None if any of them is not an integer in 0.._LEVELS - 1."""
    n_pixels = math.prod(values.shape[2:])
    counts = np.zeros(n_pixels * _LEVELS, np.int64)
    offsets = np.arange(n_pixels, dtype=np.intp) * _LEVELS
    for lo in range(0, values.shape[0], _COUNT_TRIALS):
        x = values[lo:lo + _COUNT_TRIALS].reshape(-1, n_pixels)
        nan = np.isnan(x)
        any_nan = bool(nan.any())
        level = np.where(nan, 0, x) if any_nan else x
        # A value survives the round trip through uint8 only if it is an integer 0..255
        # (negative, fractional or larger ones come back different; the cast may warn).
        with np.errstate(invalid="ignore"):
            small = level.astype(np.uint8)
        if not np.array_equal(small, level):
            return None
        index = small.astype(np.intp)
        index += offsets
        counts += np.bincount(index[~nan] if any_nan else index.ravel(), minlength=counts.size)
    return counts.reshape(n_pixels, _LEVELS)


def _median_of_counts(counts: np.ndarray) -> np.ndarray:
    """Exact median of each row's values from its counts of 0.._LEVELS - 1 (NaN if none):
    the mean of the two middle values, as ``np.nanmedian``."""
    total = counts.sum(axis=1)
    below = np.cumsum(counts, axis=1)
    low = (below > (np.maximum(total - 1, 0) // 2)[:, None]).argmax(axis=1)
    high = (below > (total // 2)[:, None]).argmax(axis=1)
    return np.where(total > 0, (low + high) / 2.0, np.nan)


def pooled_median_blocks(array: zarr.Array[Any], variable: str, n_train: int) -> list[tuple[int, int]]:
    """Ranges for ``pooled_median_block``: along the fallback axis, every frame in each."""
    return _ranges(array.shape, _COUNTED[variable], n_train * _value_itemsize(array), MEDIAN_READ_BYTES)


def pooled_median_block(
    store_path: Path | Remote, variable: str, train: np.ndarray, lo: int, hi: int, engine: str,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """The median over trials and time of a counted variable whose values were not all
    small integers, for block ``lo:hi`` of its fallback axis (``valid`` as for
    ``median_block``)."""
    data = open_array(store_path, variable, engine)
    axis = _COUNTED[variable]
    values = _restored(_read_trials(data, train, axis, lo, hi), valid, axis, lo, hi, fmt.time_axis(variable))
    parts = [nanmedian(block, axis=(0, fmt.time_axis(variable))) for block in _sort_blocks(values, axis)]
    return np.concatenate(parts, axis=axis - 2)


def _sort_blocks(values: np.ndarray, axis: int) -> Iterator[np.ndarray]:
    """``values`` cut along ``axis`` into views that ``nanmedian`` sorts within
    ``MEDIAN_SORT_BYTES`` (counted at 8 bytes a value, for every trial)."""
    for lo, hi in _ranges(values.shape, axis, 8 * max(values.shape[0], 1), MEDIAN_SORT_BYTES):
        part: list[slice] = [slice(None)] * values.ndim
        part[axis] = slice(lo, hi)
        yield values[tuple(part)]


def _read_trials(data: zarr.Array[Any], positions: np.ndarray, axis: int, lo: int, hi: int) -> np.ndarray:
    """``data[positions]`` restricted to ``lo:hi`` along ``axis``, one plain slice per run
    of consecutive positions: a tier is one run in a version 2 store, and one slice lets
    the codec pipeline decode all its chunks in parallel (a full-size video block: 0.07 s,
    against 0.44 s shard by shard), while zarr's coordinate indexing is slower still."""
    shape = list(data.shape)
    shape[0], shape[axis] = len(positions), hi - lo
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    runs = np.split(positions, breaks) if len(positions) else []
    if len(runs) == 1:
        return np.asarray(data[_region(data.ndim, axis, lo, hi, runs[0])])
    out = np.empty(shape, data.dtype)
    done = 0
    for run in runs:
        out[done:done + len(run)] = data[_region(data.ndim, axis, lo, hi, run)]
        done += len(run)
    return out


def _region(ndim: int, axis: int, lo: int, hi: int, run: np.ndarray) -> tuple[slice, ...]:
    region = [slice(None)] * ndim
    region[0] = slice(int(run[0]), int(run[-1]) + 1)
    region[axis] = slice(lo, hi)
    return tuple(region)


def write_medians(
    root: zarr.Group, variable: str, results: list[dict[str, np.ndarray | None]]
) -> bool:
    """Write the medians from ``median_block``'s results; False if the pooled one is
    still to be computed with ``pooled_median_block`` (values that could not be counted)."""
    done = True
    for granularity in fmt.GRANULARITIES:
        target = _median_array(root, variable, granularity)
        parts = [r[granularity] for r in results]
        # None only stands for a block of uncountable values (see ``median_block``).
        present = [p for p in parts if p is not None]
        if granularity == fmt.OVER_TRIALS_AND_TIME and variable in _COUNTED:
            if len(present) != len(parts):
                done = False
                continue
            counts = np.sum(present, axis=0) if present else np.zeros((math.prod(target.shape), _LEVELS), np.int64)
            target[...] = _median_of_counts(counts).reshape(target.shape)
            continue
        target[...] = np.concatenate(present, axis=_out_axis(variable, granularity))
    return done


def _median_array(root: zarr.Group, variable: str, granularity: str) -> zarr.Array[Any]:
    path = fmt.statistics_path(variable, granularity, "median")
    target = root[path]
    if not isinstance(target, zarr.Array):
        raise TypeError(f"{path}: a group where the format has an array")
    # Opened through the group, the array has zarr's default config, which skips chunks
    # equal to the fill value; the format (from version 3) stores every chunk.
    return target.with_config({"write_empty_chunks": fmt.spec(fmt.FORMAT_VERSION).every_chunk_present})


def write_pooled_medians(root: zarr.Group, variable: str, parts: list[np.ndarray]) -> None:
    """Write ``pooled_median_block``'s results, in block order."""
    target = _median_array(root, variable, fmt.OVER_TRIALS_AND_TIME)
    target[...] = np.concatenate(parts, axis=_COUNTED[variable] - 2) if parts else np.full(target.shape, np.nan)


def _out_axis(variable: str, granularity: str) -> int:
    """Where the block axis lands in a statistic (the trial axis, and maybe time, removed)."""
    axis = _BLOCK_AXIS[variable]
    time_axis = fmt.time_axis(variable)
    if granularity == fmt.OVER_TRIALS_AND_TIME and time_axis < axis:
        return axis - 2
    return axis - 1
