"""The oracles themselves: independent of the package, right on cases worked by hand."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from helpers import REPO
from oracles import is_withheld, nan_statistics, real_frames, response_threshold


def test_oracles_never_import_the_package() -> None:
    code = (
        "import sys; sys.path.insert(0, 'tests'); import oracles; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sensorium_zarr'))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_nan_statistics_by_hand() -> None:
    stack = np.array([[1.0, 4.0, np.nan], [3.0, np.nan, np.nan]], dtype=np.float32)
    got = nan_statistics(stack, 0)
    np.testing.assert_array_equal(got["mean"], [2.0, 4.0, np.nan])
    np.testing.assert_array_equal(got["std"], [1.0, 0.0, np.nan])
    np.testing.assert_array_equal(got["median"], [2.0, 4.0, np.nan])
    np.testing.assert_array_equal(got["count"], [2, 1, 0])
    assert got["mean"].dtype == np.float64
    assert nan_statistics(stack, (0, 1), ("max",)) == {"max": 4.0}


def test_real_frames_and_withheld_by_hand() -> None:
    stack = np.zeros((3, 2, 5))
    stack[0, 1, 3:] = np.nan  # one channel padded from frame 3
    stack[1, :, 1:] = np.nan
    assert real_frames(stack, 2).tolist() == [3, 1, 5]
    assert is_withheld(stack[0]) and is_withheld(np.full((2, 2), np.nan))
    stack[2, 0, 4] = -3e-7
    assert not is_withheld(stack[2])
    assert response_threshold(np.array([1.0, 3.0, np.nan])) == 0.02
