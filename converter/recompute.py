"""Statistics stage: write the statistics recomputed from the ``train`` tier.

Mean, std, min, max and count come from the streamed ``Moments`` of the writing stage
(no second read). Medians cannot be streamed exactly, so ``median_block`` reads the
written store back, one block of neurons (or video rows, or channels) at a time, which
bounds memory by ``MEDIAN_READ_BYTES`` whatever the number of trials.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import zarr

from reader import format as fmt

from .statistics import Moments, nanmedian
from .writer import create_array, open_array

__all__ = ["create_statistics", "median_blocks", "median_block", "write_medians"]

#: Bytes of stored train data one median task reads at once, and bytes it sorts (counted
#: at 8 per value) at once (the sort copies its input about twice).
MEDIAN_READ_BYTES = 128 * 2**20
MEDIAN_SORT_BYTES = 32 * 2**20

#: The axis (in stored order, trial axis included) along which median tasks split a variable.
_BLOCK_AXIS = {fmt.VIDEOS: 2, fmt.RESPONSES: 1, fmt.BEHAVIOR: 1, fmt.PUPIL_CENTER: 1}


def create_statistics(
    root: zarr.Group, variable: str, moments: Moments, dtype: np.dtype
) -> None:
    """Write every streamed statistic of ``variable`` and create its (empty) medians."""
    time_axis = fmt.time_axis(variable, with_trial_axis=False)
    for granularity, result in (
        (fmt.OVER_TRIALS, moments.finalize()),
        (fmt.OVER_TRIALS_AND_TIME, moments.reduce(time_axis).finalize()),
    ):
        dims = fmt.statistics_dimensions(variable, granularity)
        for stat in fmt.STATISTICS:
            path = fmt.statistics_path(variable, granularity, stat)
            if stat == "median":
                shape = result["mean"].shape
                create_array(root, path, shape, np.float64, dims)
                continue
            values = result[stat]
            if stat in ("min", "max"):
                values = values.astype(dtype)  # exact: they are source values
            array = create_array(root, path, values.shape, values.dtype, dims)
            array[...] = values


def median_blocks(array: zarr.Array, variable: str, n_train: int) -> list[tuple[int, int]]:
    """Ranges along the block axis whose train data fits ``MEDIAN_READ_BYTES``, aligned to
    the array's chunks where the budget allows, so no chunk is decoded twice."""
    return _ranges(array.shape, _BLOCK_AXIS[variable], n_train * array.dtype.itemsize,
                   MEDIAN_READ_BYTES, array.chunks[_BLOCK_AXIS[variable]])


def _ranges(shape: tuple[int, ...], axis: int, bytes_per_value: int, budget: int, align: int = 1) -> list[tuple[int, int]]:
    per_index = bytes_per_value * math.prod(s for a, s in enumerate(shape) if a not in (0, axis))
    size = max(1, budget // max(per_index, 1))
    if size >= align:
        size -= size % align
    return [(lo, min(lo + size, shape[axis])) for lo in range(0, shape[axis], size)]


def median_block(
    store_path: Path, variable: str, train: np.ndarray, lo: int, hi: int, engine: str
) -> dict[str, np.ndarray]:
    """Both medians of ``variable`` for block ``lo:hi`` of its block axis, by granularity.

    Returned rather than written: several blocks share one chunk of a median array, and
    concurrent partial writes of one chunk would race.
    """
    data = open_array(store_path, variable, engine)
    axis = _BLOCK_AXIS[variable]
    time_axis = fmt.time_axis(variable)
    values = _read_trials(data, train, axis, lo, hi)
    results: dict[str, list[np.ndarray]] = {fmt.OVER_TRIALS: [], fmt.OVER_TRIALS_AND_TIME: []}
    for sub_lo, sub_hi in _ranges(values.shape, axis, 8 * max(len(train), 1), MEDIAN_SORT_BYTES):
        part: list[object] = [slice(None)] * values.ndim
        part[axis] = slice(sub_lo, sub_hi)
        block = values[tuple(part)]
        results[fmt.OVER_TRIALS].append(nanmedian(block, axis=0))
        results[fmt.OVER_TRIALS_AND_TIME].append(nanmedian(block, axis=(0, time_axis)))
    return {
        granularity: np.concatenate(parts, axis=_out_axis(variable, granularity))
        for granularity, parts in results.items()
    }


def _read_trials(data: zarr.Array, positions: np.ndarray, axis: int, lo: int, hi: int) -> np.ndarray:
    """``data[positions]`` restricted to ``lo:hi`` along ``axis``, read one shard of trials
    at a time with plain slices: zarr's coordinate indexing is slower than decoding the
    few unwanted trials of each shard."""
    shape = list(data.shape)
    shape[0], shape[axis] = len(positions), hi - lo
    out = np.empty(shape, data.dtype)
    step = (data.shards or data.chunks)[0]
    done = 0
    for start in range(0, data.shape[0], step):
        wanted = positions[(positions >= start) & (positions < start + step)]
        if not len(wanted):
            continue
        region: list[object] = [slice(None)] * data.ndim
        region[0] = slice(int(wanted[0]), int(wanted[-1]) + 1)
        region[axis] = slice(lo, hi)
        out[done:done + len(wanted)] = data[tuple(region)][wanted - wanted[0]]
        done += len(wanted)
    return out


def write_medians(
    root: zarr.Group, variable: str, results: list[dict[str, np.ndarray]]
) -> None:
    for granularity in fmt.GRANULARITIES:
        target = root[fmt.statistics_path(variable, granularity, "median")]
        axis = _out_axis(variable, granularity)
        target[...] = np.concatenate([r[granularity] for r in results], axis=axis)


def _out_axis(variable: str, granularity: str) -> int:
    """Where the block axis lands in a statistic (the trial axis, and maybe time, removed)."""
    axis = _BLOCK_AXIS[variable]
    time_axis = fmt.time_axis(variable)
    if granularity == fmt.OVER_TRIALS_AND_TIME and time_axis < axis:
        return axis - 2
    return axis - 1
