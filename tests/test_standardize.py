"""The in-place read-path standardization agrees with the reference one."""

from __future__ import annotations

import numpy as np
import pytest

from sensorium_zarr._standardize import (
    _LOOKUP_BLOCK,
    StandardizationParams,
    standardize,
    standardize_codes,
    standardize_inplace,
    standardize_into,
    standardize_to,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inplace_rescaling_matches_standardize_within_one_rounding(dtype):
    rng = np.random.default_rng(1)
    x = (rng.exponential(3.0, (4, 50, 30)) * rng.choice([1e-7, 1, 300], (1, 50, 1))).astype(dtype)
    x[:, :, 25:] = np.nan
    scale = rng.uniform(1e-3, 40, (50, 1))
    params = StandardizationParams(np.zeros_like(scale), scale, time_axis=1)
    expected = standardize("responses", x, params)
    got = standardize_inplace("responses", x.copy(), params)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=2 * np.finfo(dtype).eps, atol=0, equal_nan=True)


def test_inplace_refuses_centred_variables():
    params = StandardizationParams(np.zeros((1, 1, 1)), np.ones((1, 1, 1)), time_axis=0)
    with pytest.raises(ValueError, match="subtracts a mean"):
        standardize_inplace("videos", np.ones((2, 3, 4, 5), np.float32), params)


def _whole_array(variable, x, params):
    """The plain expression ``standardize`` computes a block at a time for large arrays."""
    out = x - params.mean if variable in ("videos", "pupil_center") else x
    return (out / params.scale).astype(x.dtype)


@pytest.mark.parametrize(
    ("variable", "shape", "params_shape"),
    [
        ("videos", (2, 150, 36, 64), (1, 1, 1)),  # one trial's worth of blocks of frames
        ("videos", (150, 36, 64), (150, 1, 1)),  # per-frame parameters, no trial axis
        ("pupil_center", (3, 2, 40000), (2, 40000)),  # rows longer than a block
        ("behavior", (70, 2, 324), (2, 1)),  # rescaled only
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_blocked_standardize_equals_the_whole_array_expression_to_the_bit(variable, shape, params_shape, dtype):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 60 + 100).astype(dtype)
    x.reshape(-1)[::89] = np.nan
    params = StandardizationParams(
        rng.standard_normal(params_shape) * 50, rng.uniform(0.5, 80, params_shape), time_axis=0
    )
    for data in (x, x[..., ::3]):  # contiguous and strided
        cut = (
            params
            if data is x or params_shape[-1] == 1
            else StandardizationParams(params.mean[..., ::3], params.scale[..., ::3], 0)
        )
        got = standardize(variable, data, cut)
        expected = _whole_array(variable, data, cut)
        assert got.dtype == dtype and got.shape == data.shape
        np.testing.assert_array_equal(got, expected)
        # Written back into the caller's array: the same values, in that very array.
        owned = data.copy()
        into = standardize_into(variable, owned, cut)
        assert into is owned
        np.testing.assert_array_equal(into, expected)


def test_standardize_into_small_arrays_and_refuses_integers():
    params = StandardizationParams(np.full((2, 1), 3.0), np.full((2, 1), 2.0), time_axis=1)
    x = np.arange(20, dtype=np.float32).reshape(2, 10)
    expected = standardize("pupil_center", x, params)
    np.testing.assert_array_equal(standardize_into("pupil_center", x, params), expected)
    np.testing.assert_array_equal(x, expected)
    with pytest.raises(ValueError, match="not a float array"):
        standardize_into("pupil_center", np.ones((2, 10), np.int16), params)


@pytest.mark.parametrize("cast_first", [True, False])
def test_a_cut_of_parameters_rescales_as_the_parameters_of_the_cut(cast_first):
    rng = np.random.default_rng(2)
    scale = rng.uniform(1e-3, 40, (60, 324))
    params = StandardizationParams(np.zeros_like(scale), scale, time_axis=1)
    f32 = np.dtype(np.float32)
    if cast_first:
        params.in_dtype(f32)  # as the read path does, before it cuts
    cut = params.window(slice(30, 80)).neurons(np.array([3, 7, 59]))
    part = scale[[3, 7, 59], 30:80]
    fresh = StandardizationParams(np.zeros_like(part), part, time_axis=1)
    np.testing.assert_array_equal(cut.scale, part)
    for got, expected in zip(cut.in_dtype(f32), fresh.in_dtype(f32), strict=True):
        assert got.dtype == np.float32 and got.shape == (3, 50)
        np.testing.assert_array_equal(got, expected)
    x = rng.exponential(3.0, (2, 3, 50)).astype(np.float32)
    np.testing.assert_array_equal(standardize_inplace("responses", x.copy(), cut), x * fresh.in_dtype(f32)[1])


@pytest.mark.parametrize("variable", ["videos", "pupil_center", "behavior"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uint8_codes_look_up_what_the_arithmetic_gives_to_the_bit(variable, dtype):
    rng = np.random.default_rng(5)
    # Every code, over more than two lookup blocks and not a multiple of one.
    codes = rng.integers(0, 256, (2 * _LOOKUP_BLOCK + 977,), dtype=np.uint8)
    codes[:256] = np.arange(256)
    codes = codes.reshape(-1, 1, 1)
    for mean, scale in [(117.3, 61.2), (-3.1e5, 7e-4), (0.0, 1.0)]:
        params = StandardizationParams(np.full((1, 1, 1), mean), np.full((1, 1, 1), scale), time_axis=0)
        for data in (codes, codes[::3]):  # contiguous and strided
            expected = standardize_to(variable, data.astype(dtype), params, np.empty(data.shape, dtype))
            got = standardize_codes(variable, data, params, np.dtype(dtype))
            assert got is not None and got.dtype == dtype and got.shape == data.shape
            np.testing.assert_array_equal(got, expected)


def test_uint8_codes_are_left_to_the_arithmetic_where_a_table_cannot_stand_for_it():
    codes = np.arange(256, dtype=np.uint8).reshape(-1, 1, 1)
    f32 = np.dtype(np.float32)

    def params(mean, scale):
        return StandardizationParams(np.asarray(mean, float), np.asarray(scale, float), time_axis=0)

    per_frame = params(np.zeros((256, 1, 1)), np.ones((256, 1, 1)))
    for bad in (per_frame, params([[[1.0]]], [[[0.0]]]), params([[[1.0]]], [[[np.nan]]]),
                params([[[np.inf]]], [[[2.0]]]), params([[[1.0]]], [[[-2.0]]])):
        assert standardize_codes("videos", codes, bad, f32) is None
    assert standardize_codes("videos", codes.astype(np.float32), params([[[1.0]]], [[[2.0]]]), f32) is None
