"""The generated source trees follow SENSORIUM.md, quirks included (real files, no mocks)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import REAL_METADATA, REPO
from oracles import NAN_REDUCERS as STATS

from sensorium_zarr.format import (
    BEHAVIOR,
    NONE_TIER,
    RESPONSES,
    TEST_TIERS,
    TIERS,
    VARIABLES,
    VIDEOS,
)
from sensorium_zarr.testing import (
    SampleSpec,
    sample_spec,
    sample_tree_specs,
    twin_spec,
    write_mouse,
    write_sample_tree,
)

ORIGINAL = "dynamic29156-11-10-Video-8744edeac3b4d1ce16b680916b5267ce"
NEW = "dynamic29515-10-12-Video-9b4f6a1a067fe51e15306b9628efea20"


class Tree:
    """Read access to a written mouse, folder or zip alike, by path in the mouse folder."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        if path.is_dir():
            self.files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
            self.entries: set[str] = set()
        else:
            with zipfile.ZipFile(path) as zf:
                self.entries = set(zf.namelist())
            prefix = f"{name}/"
            self.files = {
                n[len(prefix) :]
                for n in self.entries
                if n.startswith(prefix) and not n.endswith("/")
            }

    def read(self, rel: str) -> bytes:
        if self.path.is_dir():
            return (self.path / rel).read_bytes()
        with zipfile.ZipFile(self.path) as zf:
            return zf.read(f"{self.name}/{rel}")

    def load(self, rel: str) -> np.ndarray:
        return np.load(io.BytesIO(self.read(rel)), allow_pickle=False)

    def trials(self, variable: str, ids: tuple[int, ...]) -> np.ndarray:
        return np.stack([self.load(f"data/{variable}/{i}.npy") for i in ids])


@pytest.fixture(scope="module")
def sample_tree(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[SampleSpec, Tree]]:
    out = tmp_path_factory.mktemp("sample")
    paths = write_sample_tree(out)
    specs = sample_tree_specs()
    assert [as_zip for _, as_zip in specs] == [False, True]
    return [(spec, Tree(path, spec.name)) for (spec, _), path in zip(specs, paths, strict=True)]


@pytest.fixture(params=[0, 1], ids=["folder", "zip"])
def mouse(
    request: pytest.FixtureRequest, sample_tree: list[tuple[SampleSpec, Tree]]
) -> tuple[SampleSpec, Tree]:
    return sample_tree[request.param]


# --- the spec itself -------------------------------------------------------------------


def test_sample_spec_has_every_quirk() -> None:
    spec = sample_spec()
    ids = spec.trial_ids
    assert set(spec.tiers) == set(TIERS)
    missing = sorted(set(range(len(spec.tiers))) - set(ids))
    assert missing, "some ids must be skipped"
    assert all(spec.tiers[i] == NONE_TIER for i in missing)
    assert NONE_TIER not in spec.trial_tiers()
    assert ids != tuple(range(len(ids)))
    valid = spec.valid_frames_array()
    full = (valid == spec.t_pad).all(axis=1)
    assert full.any(), "a trial without any NaN padding"
    assert (~full).any()
    col = {var: VARIABLES.index(var) for var in VARIABLES}
    assert (valid[:, col[BEHAVIOR]] > valid[:, col[VIDEOS]]).any(), "behavior longer than video"
    assert len(set(valid[:, col[VIDEOS]].tolist())) >= 3, "frame counts differ by trial"
    assert spec.withheld_tiers == TEST_TIERS
    for trial, row in zip(ids, valid, strict=True):
        if spec.is_withheld(trial):
            assert row[col[RESPONSES]] == spec.t_pad


def test_sample_spec_is_deterministic_and_seeded() -> None:
    assert sample_spec(seed=3) == sample_spec(seed=3)
    assert sample_spec(seed=3).tiers != sample_spec(seed=4).tiers


@pytest.mark.parametrize(
    "change, match",
    [
        ({"tiers": ("train",)}, "tiers covers ids"),
        ({"trial_ids": (3, 1)}, "strictly ascending"),
        ({"dtype": "float16"}, "dtype"),
        ({"labels": ("x",)}, "labels"),
        ({"unit_ids": (1, 2)}, "unit_ids"),
    ],
)
def test_spec_rejects_inconsistent_fields(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(sample_spec(), **change)


def test_spec_rejects_padded_withheld_responses() -> None:
    spec = sample_spec()
    position = next(k for k, i in enumerate(spec.trial_ids) if spec.is_withheld(i))
    rows = list(spec.valid_frames)
    rows[position] = (rows[position][0], spec.t_pad - 1, *rows[position][2:])
    with pytest.raises(ValueError, match="withheld"):
        dataclasses.replace(spec, valid_frames=tuple(rows))


def test_sample_spec_needs_enough_trials() -> None:
    with pytest.raises(ValueError, match="at least 7"):
        sample_spec(n_trials=6)


# --- the written tree ------------------------------------------------------------------


def test_layout_and_skipped_ids(mouse: tuple[SampleSpec, Tree]) -> None:
    spec, tree = mouse
    expected = {f"data/{var}/{i}.npy" for var in VARIABLES for i in spec.trial_ids}
    assert {f for f in tree.files if f.startswith("data/")} == expected
    skipped = set(range(len(spec.tiers))) - set(spec.trial_ids)
    assert skipped and not any(f"data/responses/{i}.npy" in tree.files for i in skipped)
    assert {"meta/neurons/unit_ids.npy", "meta/neurons/cell_motor_coordinates.npy"} <= tree.files
    assert ("config.json" in tree.files) == spec.config


def test_tiers_file(mouse: tuple[SampleSpec, Tree]) -> None:
    spec, tree = mouse
    tiers = tree.load("meta/trials/tiers.npy")  # allow_pickle=False
    assert tiers.dtype.kind == "U" and tiers.dtype.itemsize > 0
    assert len(tiers) == max(spec.trial_ids) + 1 == len(spec.tiers)
    assert tuple(tiers.tolist()) == spec.tiers
    assert set(tiers.tolist()) == set(TIERS)
    trial_idx = tree.load("meta/trials/trial_idx.npy")
    assert trial_idx.dtype.kind == "i" and np.array_equal(trial_idx, np.arange(len(tiers)))


def test_neurons_meta(mouse: tuple[SampleSpec, Tree]) -> None:
    spec, tree = mouse
    units = tree.load("meta/neurons/unit_ids.npy")
    coords = tree.load("meta/neurons/cell_motor_coordinates.npy")
    assert units.shape == (spec.n_neurons,) and units.dtype.kind == "i"
    assert len(np.unique(units)) == spec.n_neurons
    assert coords.shape == (spec.n_neurons, 3) and coords.dtype.kind == "f"


def test_shapes_dtype_and_nan_padding(mouse: tuple[SampleSpec, Tree]) -> None:
    spec, tree = mouse
    for var in VARIABLES:
        column = VARIABLES.index(var)
        for trial, row in zip(spec.trial_ids, spec.valid_frames, strict=True):
            array = tree.load(f"data/{var}/{trial}.npy")
            assert array.shape == spec.source_shape(var)
            assert array.dtype == np.dtype(spec.dtype)
            valid = row[column]
            assert not np.isnan(array[..., :valid]).any(), (var, trial)
            assert np.isnan(array[..., valid:]).all(), (var, trial)


def test_values_look_like_the_real_data(mouse: tuple[SampleSpec, Tree]) -> None:
    spec, tree = mouse
    videos = tree.trials(VIDEOS, spec.trial_ids)
    real = videos[~np.isnan(videos)]
    assert real.min() >= 0 and real.max() <= 255 and np.array_equal(real, np.rint(real))
    assert real.std() > 10, "a pattern, not a flat screen"
    # Smooth in time, unlike white noise: neighbouring frames differ little.
    assert np.nanmean(np.abs(np.diff(videos, axis=-1))) < 0.5 * real.std()
    behavior = tree.trials(BEHAVIOR, spec.trial_ids)
    assert np.nanmin(behavior[:, 0]) > 0 and np.nanmin(behavior[:, 1]) >= 0
    responses = tree.trials(RESPONSES, spec.trial_ids)
    assert np.nanmedian(responses) < 0.2 * np.nanmax(responses), "sparse events"


def test_tiny_negative_responses(mouse: tuple[SampleSpec, Tree]) -> None:
    spec, tree = mouse
    responses = tree.trials(RESPONSES, spec.trial_ids)
    negative = responses[responses < 0]
    assert negative.size > 0
    assert negative.min() > -1e-6 and negative.max() < -1e-7


def test_withheld_responses_are_zeros(sample_tree: list[tuple[SampleSpec, Tree]]) -> None:
    spec, tree = sample_tree[0]  # the competition-release mouse
    withheld = [i for i in spec.trial_ids if spec.is_withheld(i)]
    assert {spec.tiers[i] for i in withheld} == set(TEST_TIERS)
    for trial in spec.trial_ids:
        responses = tree.load(f"data/responses/{trial}.npy")
        assert (not np.any(responses)) == (trial in withheld)
        if trial in withheld:
            assert not np.isnan(responses).any()
    spec, tree = sample_tree[1]  # the later release: real responses everywhere
    assert spec.withheld_tiers == ()
    assert all(np.nanmax(tree.load(f"data/responses/{i}.npy")) > 0 for i in spec.trial_ids)


def test_provided_statistics(mouse: tuple[SampleSpec, Tree]) -> None:
    spec, tree = mouse
    for var in VARIABLES:
        stack = tree.trials(var, spec.trial_ids).astype(np.float64)
        for stat, reduce in STATS.items():
            got = tree.load(f"meta/statistics/{var}/all/{stat}.npy")
            assert got.shape == spec.source_shape(var), (var, stat)
            assert got.dtype == np.dtype(spec.dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                expected = reduce(stack, axis=0)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"{var}/{stat}")


def test_statistics_are_nan_where_every_trial_is_padded(tmp_path: Path) -> None:
    spec = sample_spec(n_trials=8, t_pad=12, n_neurons=5)
    # No trial keeps its last video frame, so the statistics have nothing there.
    rows = tuple((min(v, spec.t_pad - 1), *rest) for v, *rest in spec.valid_frames)
    tree = Tree(write_mouse(dataclasses.replace(spec, valid_frames=rows), tmp_path), spec.name)
    for stat in STATS:
        values = tree.load(f"meta/statistics/videos/all/{stat}.npy")
        assert np.isnan(values[..., -1]).all() and not np.isnan(values[..., 0]).any()


def test_zip_layout(sample_tree: list[tuple[SampleSpec, Tree]]) -> None:
    spec, tree = sample_tree[1]
    assert tree.path.name == f"{spec.name}.zip"
    tops = {n.split("/")[0] for n in tree.entries}
    assert tops == {spec.name, "__MACOSX"}
    junk = [n for n in tree.entries if n.startswith(f"__MACOSX/{spec.name}/") and "/._" in n]
    assert junk
    with zipfile.ZipFile(tree.path) as zf:
        assert all(zf.read(n).startswith(b"\x00\x05\x16\x07") for n in junk)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())


def test_zip_without_junk(tmp_path: Path) -> None:
    spec = sample_spec(n_trials=7, t_pad=8, n_neurons=3)
    path = write_mouse(spec, tmp_path, as_zip=True, macosx_junk=False)
    with zipfile.ZipFile(path) as zf:
        assert {n.split("/")[0] for n in zf.namelist()} == {spec.name}


def test_config_json(sample_tree: list[tuple[SampleSpec, Tree]]) -> None:
    spec, tree = sample_tree[0]
    assert json.loads(tree.read("config.json"))["links"] == {}
    assert "config.json" not in sample_tree[1][1].files


def test_float64_option(sample_tree: list[tuple[SampleSpec, Tree]]) -> None:
    spec, tree = sample_tree[1]
    assert spec.dtype == "float64"
    assert tree.load(f"data/videos/{spec.trial_ids[0]}.npy").dtype == np.float64
    assert tree.load("meta/statistics/responses/all/std.npy").dtype == np.float64


def test_write_is_deterministic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    spec = sample_spec(n_trials=7, t_pad=8, n_neurons=4)
    first = write_mouse(spec, tmp_path / "a")
    second = write_mouse(spec, tmp_path / "b")
    for rel in ("data/responses", "data/videos", "meta/statistics/responses/all"):
        for f in sorted((first / rel).iterdir()):
            assert f.read_bytes() == (second / rel / f.name).read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        write_mouse(spec, tmp_path / "a")
    assert write_mouse(spec, tmp_path / "a", overwrite=True) == first
    assert not list((tmp_path / "a").glob(".*partial"))


def test_make_sample_script(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_sample.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "24 trials, 60 neurons" in result.stdout and "30 trials, 80 neurons" in result.stdout
    assert (tmp_path / "dynamic00001-1-1-Video-sample").is_dir()
    assert (tmp_path / "dynamic00002-3-5-Video-sample.zip").is_file()


# --- twins of the real mice -------------------------------------------------------------


def _real(mouse: str) -> Path:
    path = REAL_METADATA / mouse
    if not path.is_dir():
        pytest.skip(f"{REAL_METADATA} not available")
    return path


def _real_trials(mouse: str) -> list[dict[str, str]]:
    with (_real(mouse) / "trials.csv").open(newline="") as f:
        return sorted(csv.DictReader(f), key=lambda r: int(r["trial"]))


def test_twin_of_an_original_mouse() -> None:
    rows = _real_trials(ORIGINAL)
    basic = json.loads((_real(ORIGINAL) / "basic.json").read_text())
    spec = twin_spec(_real(ORIGINAL))
    assert spec.name == ORIGINAL
    assert spec.trial_ids == tuple(int(r["trial"]) for r in rows)
    assert spec.n_trials == basic["n_trials"] == 720
    assert len(spec.tiers) == 740
    for row in rows:
        assert spec.tiers[int(row["trial"])] == row["trial_type"]
    missing = set(range(740)) - set(spec.trial_ids)
    assert len(missing) == 20 and {spec.tiers[i] for i in missing} == {NONE_TIER}
    assert spec.n_neurons == basic["n_neurons"] and spec.t_pad == basic["samples_per_trial"]
    assert spec.withheld_tiers == ()
    expected = [
        [
            int(r["valid_frames_video"]),
            int(r["valid_frames_response"]),
            min(int(r["valid_frames_pupil"]), int(r["valid_frames_locomotion"])),
            int(r["valid_frames_gaze"]),
        ]
        for r in rows
    ]
    assert spec.valid_frames_array().tolist() == expected
    assert spec.unit_ids is not None and spec.unit_ids[:2] == (1, 2)
    assert spec.coordinates is not None and spec.coordinates[0] == (-1033.0, -700.0, 275.0)


def test_twin_of_a_new_mouse_withholds_test_responses() -> None:
    spec = twin_spec(_real(NEW))
    assert spec.withheld_tiers == TEST_TIERS
    assert NONE_TIER not in spec.tiers
    valid = spec.valid_frames_array()
    for trial, row in zip(spec.trial_ids, valid, strict=True):
        if spec.is_withheld(trial):
            assert row[VARIABLES.index(RESPONSES)] == spec.t_pad
    released = twin_spec(_real(NEW), withheld=False)
    assert released.withheld_tiers == ()
    np.testing.assert_array_equal(released.valid_frames_array()[:, 1], valid[:, 0])


def test_scaled_twin_keeps_real_ids_and_every_tier() -> None:
    full = twin_spec(_real(ORIGINAL))
    spec = twin_spec(_real(ORIGINAL), neuron_scale=0.01, trial_scale=0.05, t_pad=280)
    assert spec.n_neurons == round(7440 * 0.01)
    assert set(spec.unit_ids or ()) <= set(full.unit_ids or ())
    assert set(spec.trial_ids) <= set(full.trial_ids)
    assert set(spec.trial_tiers()) == set(full.trial_tiers())
    assert len(spec.tiers) == len(full.tiers)
    assert spec.valid_frames_array().max() == 280  # clipped to t_pad
    assert twin_spec(_real(ORIGINAL), neuron_scale=1e-6).n_neurons == 2


def test_twin_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neuron_scale"):
        twin_spec(_real(ORIGINAL), neuron_scale=2)
    with pytest.raises(FileNotFoundError, match="basic.json"):
        twin_spec(tmp_path)


def test_written_twin(tmp_path: Path) -> None:
    spec = twin_spec(_real(NEW), neuron_scale=0.002, trial_scale=0.015, t_pad=320)
    tree = Tree(write_mouse(spec, tmp_path, as_zip=True), spec.name)
    assert tree.path.name == f"{NEW}.zip"
    assert tuple(tree.load("meta/trials/tiers.npy").tolist()) == spec.tiers
    units = tree.load("meta/neurons/unit_ids.npy")
    assert units.tolist() == list(spec.unit_ids or ())
    for trial in spec.trial_ids:
        responses = tree.load(f"data/responses/{trial}.npy")
        assert responses.shape == (spec.n_neurons, 320)
        assert (not np.any(responses)) == spec.is_withheld(trial)
