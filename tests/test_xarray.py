"""xarray: a version 3 store opens in plain xarray (root, every group, the whole tree), and
``Split.to_xarray`` labels a split's lazy arrays, selecting by label reads only what is
selected (counted at the store)."""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import load_source, reconsolidate, small_spec
from oracles import recomputed_standardization
from test_reader_access import CountingStore

from sensorium_zarr import open_mouse
from sensorium_zarr.converter import Chunking, convert_mouse
from sensorium_zarr.testing import write_mouse

xr = pytest.importorskip("xarray")

DATA = Path(__file__).parent / "data"
VARIABLES = ("videos", "responses", "behavior", "pupil_center")
# Source (time last) -> stored axes, written out here rather than taken from the format.
STORED_AXES = {"videos": (2, 0, 1), "responses": (0, 1), "behavior": (0, 1), "pupil_center": (0, 1)}
FRAMES_PER_VIDEO_CHUNK = 8


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    spec = small_spec("dynamic00004-1-1-Video-xarray", n_neurons=40, n_trials=24, t_pad=30)
    return write_mouse(spec, tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def store(source, tmp_path_factory) -> Path:
    # Small neuron and frame chunks, so a selection can be told from a whole-trial read.
    chunking = Chunking(neurons_per_chunk=8, frames_per_video_chunk=FRAMES_PER_VIDEO_CHUNK)
    return convert_mouse(source, tmp_path_factory.mktemp("out"), progress=False, chunking=chunking)


def _arrays(group: zarr.Group) -> dict[str, zarr.Array]:
    return {path: node for path, node in group.members(max_depth=None) if isinstance(node, zarr.Array)}


def _groups(group: zarr.Group) -> list[str]:
    return [path for path, node in group.members(max_depth=None) if isinstance(node, zarr.Group)]


# -- the store in plain xarray -----------------------------------------------------------


@pytest.mark.parametrize("which", ["converted", "golden-v3", "golden-v4", "golden-v5"])
def test_store_opens_as_a_datatree_with_the_stores_values(store, which):
    path = store if which == "converted" else DATA / f"{which}.zarr"
    with warnings.catch_warnings():
        # xarray warns when it falls back from consolidated metadata: it must not.
        warnings.simplefilter("error", RuntimeWarning)
        tree = xr.open_datatree(path, engine="zarr")
    root = zarr.open_group(str(path), mode="r")
    arrays = _arrays(root)
    assert len(arrays) > 80  # every variable, per-trial array, index, statistic and meta array
    for array_path, array in arrays.items():
        group, _, name = array_path.rpartition("/")
        node = tree[group] if group else tree
        variable = node[name]
        assert variable.dims == array.metadata.dimension_names, array_path
        values, stored = variable.values, array[...]
        if stored.dtype.kind == "T" or stored.dtype == object:
            assert [str(v) for v in values.ravel()] == [str(v) for v in np.asarray(stored).ravel()], array_path
        else:
            np.testing.assert_array_equal(values, stored, err_msg=array_path)


@pytest.mark.parametrize("which", ["converted", "golden-v3", "golden-v4", "golden-v5"])
def test_root_and_every_group_open_with_open_zarr(store, which):
    path = store if which == "converted" else DATA / f"{which}.zarr"
    root = zarr.open_group(str(path), mode="r")
    # From format version 5 the root holds the bundle too, on its own dimension.
    bundle = {"bundle"} if root.attrs["sensorium_zarr"]["format_version"] >= 5 else set()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        dataset = xr.open_zarr(path)
        assert set(dataset.data_vars) == {*VARIABLES, "trial_id", "tier", "valid_frames", "has_responses", *bundle}
        if bundle:
            assert dataset["bundle"].dims == ("bundle_byte",)
            np.testing.assert_array_equal(dataset["bundle"].values, root["bundle"][...])
        np.testing.assert_array_equal(dataset["responses"].values, root["responses"][...])
        for group in _groups(root):
            opened = xr.open_zarr(path, group=group)
            members = {name for name, node in root[group].members() if isinstance(node, zarr.Array)}
            assert set(opened.data_vars) == members, group


# -- Split.to_xarray ----------------------------------------------------------------------


def test_to_xarray_labels_and_values_equal_the_split_and_the_source(source, store):
    mouse = open_mouse(store)
    split = mouse.split(["train", "test"], frames=slice(3, 27), neurons=[1, 5, 17, 30])
    ds = split.to_xarray()
    assert ds.sizes["trial"] == len(split) and ds.sizes["neuron"] == 4 and ds.sizes["time"] == 24
    assert ds.responses.dims == ("trial", "neuron", "time")
    assert ds.videos.dims == ("trial", "time", "height", "width")
    assert ds.behavior.dims == ("trial", "behavior_channel", "time")
    assert ds.pupil_center.dims == ("trial", "pupil_center_channel", "time")
    assert ds.trial.values.tolist() == split.trial_ids.tolist()
    assert ds.tier.values.tolist() == [str(t) for t in split.tiers]
    assert ds.has_responses.values.tolist() == split.has_responses.tolist()
    for column, variable in enumerate(VARIABLES):
        assert ds[f"valid_frames_{variable}"].values.tolist() == split.valid_frames[:, column].tolist()
        assert ds[variable].data.name == split.array(variable).name, "the split's own Dask array"
    np.testing.assert_array_equal(ds.frame.values, np.arange(3, 27))
    np.testing.assert_allclose(ds.time.values, np.arange(3, 27) / 30)
    assert ds.time.attrs["units"] == "s"
    assert ds.neuron.values.tolist() == [1, 5, 17, 30]
    unit_ids = np.load(source / "meta/neurons/unit_ids.npy", allow_pickle=False)
    cells = np.load(source / "meta/neurons/cell_motor_coordinates.npy", allow_pickle=False)
    assert ds.unit_id.values.tolist() == unit_ids[[1, 5, 17, 30]].tolist()
    np.testing.assert_array_equal(ds.cell_motor_coordinates.values, cells[[1, 5, 17, 30]])
    assert ds.behavior_channel.values.tolist() == ["pupil_dilation", "running_speed"]
    assert ds.pupil_center_channel.values.tolist() == ["horizontal", "vertical"]
    assert ds.attrs["mouse"] == mouse.name and ds.attrs["standardized"] is True
    assert ds.attrs["statistics"] == "recomputed"

    # Values: the split's, and the standardization rules recomputed from the source files.
    train = [i for i, t in zip(mouse.trial_ids, mouse.trial_tiers, strict=True) if t == "train"]
    for variable in VARIABLES:
        np.testing.assert_array_equal(ds[variable].values, split.array(variable).compute(), err_msg=variable)
        stack = np.stack([load_source(source, variable, i).transpose(STORED_AXES[variable]) for i in split.trial_ids])
        time_axis = ds[variable].dims.index("time")
        window = [slice(None)] * stack.ndim
        window[time_axis] = slice(3, 27)
        sources = [load_source(source, variable, i) for i in train]
        if variable == "responses":
            expected = recomputed_standardization(variable, stack, sources, ~split.has_responses)
            expected = expected[:, [1, 5, 17, 30]]
        else:
            expected = recomputed_standardization(variable, stack, sources, [])
        np.testing.assert_allclose(
            ds[variable].values, expected[tuple(window)], rtol=2e-6, atol=1e-6, equal_nan=True, err_msg=variable
        )


def test_to_xarray_raw_equals_the_source(source, store):
    ds = open_mouse(store).split("validation", standardize=False).to_xarray()
    assert ds.attrs["standardized"] is False
    for trial_id in ds.trial.values:
        np.testing.assert_array_equal(
            ds.responses.sel(trial=trial_id).values, load_source(source, "responses", int(trial_id))
        )


def test_without_unit_ids_there_is_no_unit_id_coordinate(store, tmp_path):
    lacking = shutil.copytree(store, tmp_path / store.name)
    shutil.rmtree(lacking / "meta/neurons/unit_ids")
    reconsolidate(lacking)
    ds = open_mouse(lacking).split("train").to_xarray()
    assert "unit_id" not in ds.coords and "cell_motor_coordinates" in ds.coords


# -- selecting by label reads only what is selected ------------------------------------------


def _counted(store: Path) -> tuple[CountingStore, xr.Dataset]:
    counting = CountingStore(store)
    ds = open_mouse(counting).split(["train", "test"]).to_xarray()
    counting.reads.clear()
    return counting, ds


def _shard_reads(counting: CountingStore, variable: str) -> list[tuple[str, object]]:
    return [(key, r) for key, r in counting.reads if key.startswith(f"{variable}/c/")]


def test_sel_by_trial_id_reads_that_trials_chunks_only(store):
    counting, ds = _counted(store)
    trial_id = int(ds.trial.values[5])
    one = ds.sel(trial=trial_id)
    assert one.responses.dims == ("neuron", "time")
    values = one.responses.values
    plain = zarr.open_array(str(store / "responses"), mode="r")
    position = open_mouse(store).trial_ids.tolist().index(trial_id)
    reads = _shard_reads(counting, "responses")
    assert {key for key, _ in reads} == {f"responses/c/{position // plain.shards[0]}/0/0"}
    # The shard index, then the trial's own inner chunks: never another trial's.
    assert len(reads) <= 1 + math.ceil(plain.shape[1] / plain.chunks[1])
    other = [k for k in counting.chunk_keys() if not k.startswith(("responses/c/", "statistics/"))]
    assert other == [], "no other variable is read"
    np.testing.assert_array_equal(values, ds.responses.values[5])


def test_isel_neuron_reads_only_that_neurons_chunks(store):
    counting, ds = _counted(store)
    values = ds.responses.isel(neuron=9, trial=slice(0, 4)).values
    inner = [r for _, r in _shard_reads(counting, "responses") if r is not None]
    plain = zarr.open_array(str(store / "responses"), mode="r")
    assert plain.chunks[1] < plain.shape[1]
    # Four trials, one 8-neuron chunk each (plus shard indexes): not every chunk of a trial.
    assert len(inner) <= 4 * 2
    np.testing.assert_array_equal(values, ds.responses.values[:4, 9])


def test_sel_time_window_reads_only_those_frames_chunks(store):
    counting, ds = _counted(store)
    # One selection (a .sel/.isel call) per read: Dask fuses one slicing into the read's
    # own key, not a slicing of a slicing (``.isel(trial=0).sel(time=...)`` reads the trial).
    first_second = ds.videos.sel(trial=ds.trial[0], time=slice(0, (FRAMES_PER_VIDEO_CHUNK - 1) / 30))
    assert first_second.sizes["time"] == FRAMES_PER_VIDEO_CHUNK
    values = first_second.values
    chunk_reads = [r for _, r in _shard_reads(counting, "videos") if r is not None]
    # One frame chunk (and the shard index), not the 4 chunks of the trial's 30 frames.
    assert len(chunk_reads) <= 2
    np.testing.assert_array_equal(values, ds.videos.values[0, :FRAMES_PER_VIDEO_CHUNK])


def test_sel_of_a_trial_list_and_isel_of_a_neuron_list_read_only_those(store):
    counting, ds = _counted(store)
    plain = zarr.open_array(str(store / "responses"), mode="r")
    per_trial = math.ceil(plain.shape[1] / plain.chunks[1])
    ids = [int(ds.trial.values[i]) for i in (6, 1, 3)]
    values = ds.responses.sel(trial=ids).values
    inner = {(key, r.start) for key, r in _shard_reads(counting, "responses") if r is not None and hasattr(r, "start")}
    assert len(inner) == 3 * per_trial, "the three trials' chunks, no other trial's"
    np.testing.assert_array_equal(values, ds.responses.values[[6, 1, 3]])
    counting.reads.clear()
    neurons = ds.responses.isel(neuron=[9, 1]).values  # chunks 1 and 0 of every trial
    inner = {(key, r.start) for key, r in _shard_reads(counting, "responses") if r is not None and hasattr(r, "start")}
    assert len(inner) == 2 * ds.sizes["trial"]
    np.testing.assert_array_equal(neurons, ds.responses.values[:, [9, 1]])
