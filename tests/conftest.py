"""Shared fixtures: small generated Sensorium trees on disk and their converted stores.
Helpers (paths, ``small_spec``, source access) are in helpers.py, reference
implementations in oracles.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import small_spec

from sensorium_zarr.converter._convert import convert_mouse
from sensorium_zarr.testing import write_mouse


@pytest.fixture(scope="session")
def folder_mouse(tmp_path_factory) -> Path:
    """A float32 mouse folder with config.json."""
    return write_mouse(small_spec(), tmp_path_factory.mktemp("src-folder"))


@pytest.fixture(scope="session")
def folder_store(folder_mouse, tmp_path_factory) -> Path:
    return convert_mouse(folder_mouse, tmp_path_factory.mktemp("out-folder"), progress=False)
