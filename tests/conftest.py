"""Shared fixtures: small generated Sensorium trees on disk and their converted stores."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pytest

from sensorium_zarr.converter._convert import convert_mouse
from sensorium_zarr.testing import sample_spec, write_mouse

REPO = Path(__file__).resolve().parents[1]
REAL_METADATA = REPO.parent / "shared" / "real-metadata"


def small_spec(name: str = "dynamic00001-1-1-Video-test", **options):
    defaults = dict(n_neurons=23, n_trials=20, t_pad=30, height=6, width=8)
    return sample_spec(name, **{**defaults, **options})


@pytest.fixture(scope="session")
def folder_mouse(tmp_path_factory) -> Path:
    """A float32 mouse folder with config.json."""
    return write_mouse(small_spec(), tmp_path_factory.mktemp("src-folder"))


@pytest.fixture(scope="session")
def folder_store(folder_mouse, tmp_path_factory) -> Path:
    return convert_mouse(folder_mouse, tmp_path_factory.mktemp("out-folder"), progress=False)


def load_source(mouse_dir: Path, variable: str, trial_id: int) -> np.ndarray:
    return np.load(mouse_dir / "data" / variable / f"{trial_id}.npy", allow_pickle=False)


def source_ids(mouse_dir: Path) -> list[int]:
    names = glob.glob(os.path.join(mouse_dir, "data", "responses", "*.npy"))
    return sorted(int(Path(n).stem) for n in names)
