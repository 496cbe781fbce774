"""The in-place read-path standardization agrees with the reference one."""

from __future__ import annotations

import numpy as np
import pytest

from sensorium_zarr._standardize import StandardizationParams, standardize, standardize_inplace


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
