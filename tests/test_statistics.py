"""Streaming statistics against numpy, as hypothesis properties."""

from __future__ import annotations

import warnings
from itertools import pairwise

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from oracles import nan_statistics

from sensorium_zarr.converter._statistics import Moments, nanmedian

values = st.floats(-1e6, 1e6, width=32) | st.just(float("nan"))
stacks = arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 5), st.integers(1, 6)), elements=values)


def _numpy(stack: np.ndarray, axis) -> dict[str, np.ndarray]:
    return nan_statistics(stack, axis, ("mean", "std", "min", "max", "count"))


@settings(max_examples=60, deadline=None)
@given(stacks, st.integers(0, 11))
def test_streamed_then_merged_moments_equal_numpy(stack, split):
    split = min(split, len(stack))
    first, second = Moments.empty(stack.shape[1:]), Moments.empty(stack.shape[1:])
    for i, trial in enumerate(stack):
        (first if i < split else second).add(trial)
    merged = first.merge(second)
    for name, (got, expected) in {k: (merged.finalize()[k], v) for k, v in _numpy(stack, 0).items()}.items():
        np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-6, err_msg=name)
    pooled = merged.reduce(axis=1).finalize()
    for name, expected in _numpy(stack, (0, 2)).items():
        np.testing.assert_allclose(pooled[name], expected, rtol=1e-7, atol=1e-6, err_msg=name)


@settings(max_examples=60, deadline=None)
@given(stacks, st.lists(st.integers(0, 12), max_size=4))
def test_blocks_of_trials_give_the_same_moments_as_numpy(stack, cuts):
    """The writer folds in a block of trials at once; any cut into blocks must agree."""
    edges = [0, *sorted(min(c, len(stack)) for c in cuts), len(stack)]
    moments = Moments.empty(stack.shape[1:])
    for lo, hi in pairwise(edges):
        moments.add_block(stack[lo:hi])
    got = moments.finalize()
    for name, expected in _numpy(stack, 0).items():
        np.testing.assert_allclose(got[name], expected, rtol=1e-7, atol=1e-6, err_msg=name)


def test_block_moments_over_many_slabs_equal_numpy():
    """Elements beyond one slab (the writer's cache-sized unit) land in the right place."""
    rng = np.random.default_rng(7)
    stack = rng.normal(100.0, 3.0, size=(5, 3, 7000)).astype(np.float32)
    stack[:, 1, 6000:] = np.nan
    stack[2, 2, :] = np.nan
    moments = Moments.empty(stack.shape[1:])
    moments.add_block(stack[:3])
    moments.add_block(stack[3:])
    got = moments.finalize()
    for name, expected in _numpy(stack, 0).items():
        np.testing.assert_allclose(got[name], expected, rtol=1e-9, atol=1e-9, err_msg=name)


@settings(max_examples=60, deadline=None)
@given(stacks)
def test_nanmedian_equals_numpy(stack):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for axis in (0, (0, 2), 2):
            np.testing.assert_array_equal(nanmedian(stack, axis), np.nanmedian(stack.astype(np.float64), axis))


def test_nanmedian_long_rows_take_the_partition_path_and_equal_numpy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 4500, 4))  # 4500 * 3 values per output: beyond the sort limit
    x[:, 4000:, 1] = np.nan  # differing counts per output column
    x[:, :, 2] = np.nan  # all NaN
    x[0, 7, 3] = np.nan
    for axis in ((0, 1), 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            np.testing.assert_array_equal(nanmedian(x, axis), np.nanmedian(x, axis))


def test_value_counts_give_numpys_median_and_refuse_other_values():
    from sensorium_zarr.converter._recompute import _median_of_counts, _value_counts

    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(36, 9, 3, 4)).astype(np.float32)  # (trial, time, h, w): even counts
    x[:, 7:] = np.nan  # padded frames
    x[5:, :, 1, 2] = np.nan  # a pixel seen in few trials
    x[:, :, 2, 3] = np.nan  # a pixel never seen
    counts = _value_counts(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(x.astype(np.float64), axis=(0, 1)).ravel()
    np.testing.assert_array_equal(_median_of_counts(counts), expected)
    for bad in (0.5, -1.0, 256.0):
        y = x.copy()
        y[20, 3, 0, 0] = bad
        assert _value_counts(y) is None, bad
