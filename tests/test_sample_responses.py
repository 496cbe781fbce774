"""Dense and sparse generated responses: dense trees are byte for byte what they were,
sparse ones are zeros but for about ``active_fraction`` of the values and keep every
quirk (real files, no mocks)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import REAL_METADATA, REPO
from oracles import is_withheld, nan_statistics, real_frames

from sensorium_zarr.converter import convert_mouse, verify
from sensorium_zarr.format import RESPONSES, TEST_TIERS, VARIABLES, VIDEOS
from sensorium_zarr.testing import RESPONSE_KINDS, SampleSpec, sample_spec, twin_spec, write_mouse

NEW = "dynamic29515-10-12-Video-9b4f6a1a067fe51e15306b9628efea20"
def _golden_spec(key: str) -> SampleSpec:
    if key == "f32":
        return sample_spec(
            "dynamic00009-1-1-Video-golden", n_neurons=7, n_trials=9, t_pad=14, height=5, width=6, seed=5
        )
    if key == "f64":
        return sample_spec(
            "dynamic00009-1-2-Video-golden", n_neurons=6, n_trials=8, t_pad=12, height=4, width=5,
            dtype="float64", config=False, withheld=False, seed=6,
        )
    if not (REAL_METADATA / NEW).is_dir():
        pytest.skip(f"{REAL_METADATA} not available")
    return twin_spec(REAL_METADATA / NEW, neuron_scale=0.001, trial_scale=0.01, t_pad=20)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _stack(root: Path, variable: str, ids: tuple[int, ...] | list[int]) -> np.ndarray:
    return np.stack([np.load(root / f"data/{variable}/{i}.npy", allow_pickle=False) for i in ids])


@pytest.mark.parametrize("key", ["f32", "f64", "twin"])
def test_dense_trees_ignore_the_sparse_options(tmp_path: Path, key: str) -> None:
    # Dense is the default and draws exactly what it drew before sparse responses
    # existed (checked byte for byte when the option was added; not pinned here, since
    # float32 transcendentals may differ in the last bit across numpy builds and CPUs).
    spec = _golden_spec(key)
    assert spec.responses == "dense"
    explicit = dataclasses.replace(spec, responses="dense", active_fraction=0.5)
    assert _digest(write_mouse(spec, tmp_path / "default")) == _digest(write_mouse(explicit, tmp_path / "explicit"))
    sparse = dataclasses.replace(spec, responses="sparse")
    assert _digest(write_mouse(sparse, tmp_path / "sparse")) != _digest(write_mouse(spec, tmp_path / "again"))


@pytest.fixture(scope="module")
def sparse(tmp_path_factory: pytest.TempPathFactory) -> tuple[SampleSpec, Path]:
    spec = sample_spec(
        "dynamic00003-1-1-Video-sparse", n_neurons=120, n_trials=16, t_pad=50, height=4, width=5,
        responses="sparse", seed=2,
    )
    return spec, write_mouse(spec, tmp_path_factory.mktemp("sparse"))


def test_sparse_is_zero_but_for_the_active_fraction(sparse: tuple[SampleSpec, Path]) -> None:
    spec, root = sparse
    assert spec.active_fraction == 0.1
    released = [i for i in spec.trial_ids if not spec.is_withheld(i)]
    responses = _stack(root, RESPONSES, released)
    real = ~np.isnan(responses)
    nonzero = (responses != 0) & real
    assert abs(nonzero.sum() / real.sum() - 0.1) < 0.01  # 0.1 +- 10% of 36000 values
    per_neuron = nonzero.sum(axis=(0, 2)) / real.sum(axis=(0, 2))
    assert per_neuron.min() < 0.07 and per_neuron.max() > 0.13, "neurons differ"
    # Non-negative but for tiny negatives, a few of them; events are large.
    negative = responses[real & (responses < 0)]
    assert 0 < negative.size < 0.1 * nonzero.sum()
    assert negative.min() > -1e-6 and negative.max() < -1e-7
    assert np.nanmax(responses) > 1


@pytest.mark.parametrize("fraction", [0.02, 0.3])
def test_sparse_follows_other_fractions(tmp_path: Path, fraction: float) -> None:
    spec = sample_spec(
        n_neurons=100, n_trials=8, t_pad=60, height=2, width=2, withheld=False,
        responses="sparse", active_fraction=fraction,
    )
    responses = _stack(write_mouse(spec, tmp_path), RESPONSES, spec.trial_ids)
    real = ~np.isnan(responses)
    share = ((responses != 0) & real).sum() / real.sum()
    assert abs(share - fraction) < 0.15 * fraction + 0.003, share


def test_sparse_keeps_nan_padding(sparse: tuple[SampleSpec, Path]) -> None:
    spec, root = sparse
    for column, variable in enumerate(VARIABLES):
        stack = _stack(root, variable, spec.trial_ids)
        assert stack.dtype == np.float32 and stack.shape[1:] == spec.source_shape(variable)
        expected = spec.valid_frames_array()[:, column]
        np.testing.assert_array_equal(real_frames(stack, stack.ndim - 1), expected, err_msg=variable)
        for array, valid in zip(stack, expected, strict=True):
            assert np.isnan(array[..., valid:]).all() and not np.isnan(array[..., :valid]).any()
    assert (spec.valid_frames_array()[:, VARIABLES.index(RESPONSES)] < spec.t_pad).any()


def test_sparse_withheld_responses_are_zeros(sparse: tuple[SampleSpec, Path]) -> None:
    spec, root = sparse
    withheld = [i for i in spec.trial_ids if spec.is_withheld(i)]
    assert {spec.tiers[i] for i in withheld} == set(TEST_TIERS)
    for trial in spec.trial_ids:
        responses = np.load(root / f"data/responses/{trial}.npy")
        assert is_withheld(responses) == (trial in withheld)
        if trial in withheld:
            assert not np.isnan(responses).any() and not responses.any()


def test_sparse_statistics_are_those_of_the_files(sparse: tuple[SampleSpec, Path]) -> None:
    spec, root = sparse
    for variable in VARIABLES:
        expected = nan_statistics(_stack(root, variable, spec.trial_ids), 0)
        for stat in ("mean", "std", "min", "max", "median"):
            got = np.load(root / f"meta/statistics/{variable}/all/{stat}.npy")
            assert got.dtype == np.float32 and got.shape == spec.source_shape(variable)
            np.testing.assert_allclose(got, expected[stat], rtol=1e-5, atol=1e-5, err_msg=f"{variable}/{stat}")
    # Most values are zero, and so is the median of most neurons' frames.
    median = np.load(root / "meta/statistics/responses/all/median.npy")
    assert np.mean(median[:, 0] == 0) > 0.5
    config = json.loads((root / "config.json").read_text())
    assert config["links"] == {} and config["responses"] == "sparse" and config["active_fraction"] == 0.1


def test_sparse_trees_convert_and_verify(tmp_path: Path, sparse: tuple[SampleSpec, Path]) -> None:
    spec, root = sparse
    store = convert_mouse(root, tmp_path, progress=False)
    assert verify(root, store) == []
    group = zarr.open_group(str(store), mode="r")
    withheld = {int(i): spec.is_withheld(int(i)) for i in group["trial_id"][:]}
    assert group["has_responses"][:].tolist() == [not w for w in withheld.values()]


def test_every_released_sparse_trial_has_a_response(tmp_path: Path) -> None:
    spec = sample_spec(n_neurons=1, n_trials=30, t_pad=4, height=2, width=2, withheld=False,
                       responses="sparse", active_fraction=0.01)
    root = write_mouse(spec, tmp_path)
    for trial in spec.trial_ids:
        assert not is_withheld(np.load(root / f"data/responses/{trial}.npy")), trial


def test_sparse_changes_only_what_follows_responses(tmp_path: Path, sparse: tuple[SampleSpec, Path]) -> None:
    spec, root = sparse
    dense = write_mouse(dataclasses.replace(spec, responses="dense"), tmp_path)
    trial = next(i for i in spec.trial_ids if not spec.is_withheld(i))
    video = f"data/{VIDEOS}/{trial}.npy"
    np.testing.assert_array_equal(np.load(root / video), np.load(dense / video))
    assert np.mean(np.load(dense / f"data/responses/{trial}.npy") == 0) < 0.01
    assert "responses" not in json.loads((dense / "config.json").read_text())


def test_sparse_float64_zip_and_twin(tmp_path: Path) -> None:
    spec = sample_spec(n_neurons=30, n_trials=8, t_pad=40, height=3, width=3, dtype="float64",
                       withheld=False, responses="sparse", active_fraction=0.2)
    path = write_mouse(spec, tmp_path, as_zip=True)
    with zipfile.ZipFile(path) as zf, zf.open(f"{spec.name}/data/responses/{spec.trial_ids[0]}.npy") as f:
        responses = np.load(f)
    assert responses.dtype == np.float64
    real = responses[~np.isnan(responses)]
    assert 0.05 < np.mean(real != 0) < 0.4
    if (REAL_METADATA / NEW).is_dir():
        twin = twin_spec(REAL_METADATA / NEW, neuron_scale=0.01, trial_scale=0.02, responses="sparse")
        assert twin.responses == "sparse" and twin.active_fraction == 0.1


@pytest.mark.parametrize(
    "change, match",
    [({"responses": "spiky"}, "responses 'spiky'; expected one of dense, sparse"),
     ({"active_fraction": 0.0}, r"active_fraction=0.0 must be in \(0, 1\]"),
     ({"active_fraction": 1.5}, "active_fraction")],
)
def test_spec_rejects_bad_response_options(change: dict, match: str) -> None:
    assert RESPONSE_KINDS == ("dense", "sparse")
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(sample_spec(), **change)


def test_make_sample_script_writes_sparse_responses(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_sample.py"), str(tmp_path), "--responses", "sparse",
         "--active-fraction", "0.05"],
        capture_output=True, text=True, check=True, timeout=300,
    )
    folder = tmp_path / "dynamic00001-1-1-Video-sample"
    config = json.loads((folder / "config.json").read_text())
    assert config["responses"] == "sparse" and config["active_fraction"] == 0.05
    spec = sample_spec("dynamic00001-1-1-Video-sample", n_neurons=60, n_trials=24, t_pad=40)
    released = [i for i in spec.trial_ids if not spec.is_withheld(i)]
    responses = _stack(folder, RESPONSES, released)
    real = ~np.isnan(responses)
    assert abs(((responses != 0) & real).sum() / real.sum() - 0.05) < 0.01
    assert (tmp_path / "dynamic00002-3-5-Video-sample.zip").is_file()
