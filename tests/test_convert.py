"""Round trips: generated Sensorium trees -> stores, checked with plain zarr and numpy."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import (
    chunk_codecs,
    inner_chunks_per_shard,
    load_source,
    shard_index,
    small_spec,
    source_ids,
    stored_values,
)
from oracles import NAN_REDUCERS

from sensorium_zarr import format as fmt
from sensorium_zarr.converter import convert_mouse, verify
from sensorium_zarr.converter._chunking import Chunking
from sensorium_zarr.errors import StoreExistsError
from sensorium_zarr.testing import write_mouse

# The store's layout: source (time last) -> stored axes, checked independently of fmt.
STORED_AXES = {"videos": (2, 0, 1), "responses": (0, 1), "behavior": (0, 1), "pupil_center": (0, 1)}


def _extract(zip_path: Path, into: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        names = [n for n in archive.namelist() if not n.startswith("__MACOSX")]
        archive.extractall(into, members=names)
    return into / zip_path.stem


def _check_round_trip(source_dir: Path, store: Path, spec) -> None:
    root = zarr.open_group(str(store), mode="r")
    assert source_ids(source_dir) == list(spec.trial_ids)
    tiers = np.load(source_dir / "meta/trials/tiers.npy", allow_pickle=False)
    # Format version 2: tier-major (tiers in experiment order), ascending id within a tier.
    rank = {tier: k for k, tier in enumerate(fmt.TIERS)}
    ids = sorted(spec.trial_ids, key=lambda i: (rank[str(tiers[i])], i))
    assert root["trial_id"][:].tolist() == ids
    assert [str(t) for t in root["tier"][:]] == [str(tiers[i]) for i in ids]
    for variable, axes in STORED_AXES.items():
        stored = root[variable]
        assert stored.metadata.dimension_names == fmt.DIMENSIONS[variable]
        for position, trial_id in enumerate(ids):
            source = load_source(source_dir, variable, trial_id)
            value = stored_values(root, variable, position)
            assert value.dtype == source.dtype
            # Lossless: bit-identical values, NaN positions included.
            np.testing.assert_array_equal(value, source.transpose(axes))
    row = {trial_id: k for k, trial_id in enumerate(spec.trial_ids)}
    valid = root["valid_frames"][:]
    np.testing.assert_array_equal(valid, spec.valid_frames_array()[[row[i] for i in ids]])
    withheld = np.array([spec.is_withheld(i) for i in ids])
    np.testing.assert_array_equal(root["has_responses"][:], ~withheld)
    for tier in set(tiers[ids]):
        positions = root[f"index/{tier}"][:]
        assert [ids[p] for p in positions] == [i for i in ids if tiers[i] == tier]
        # One contiguous range per tier: reading a tier decodes no other tier's chunks.
        assert positions.tolist() == list(range(positions[0], positions[0] + len(positions)))
    for path in (source_dir / "meta").rglob("*.npy"):
        rel = path.relative_to(source_dir).with_suffix("").as_posix()
        expected = np.load(path, allow_pickle=False)
        stored = root[rel][...]
        if expected.dtype.kind == "U":
            stored = stored.astype(expected.dtype)
        np.testing.assert_array_equal(stored, expected)


def _every_array(group: zarr.Group):
    for _, node in group.members(max_depth=None):
        if isinstance(node, zarr.Array):
            yield node


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", [True, False], ids=["config", "no-config"])
def test_round_trip(tmp_path, as_zip, dtype, config):
    spec = small_spec(dtype=dtype, config=config, seed=3)
    source = write_mouse(spec, tmp_path / "src", as_zip=as_zip)
    store = convert_mouse(source, tmp_path / "out", progress=False)
    assert store == tmp_path / "out" / f"{spec.name}.zarr"
    source_dir = _extract(source, tmp_path / "x") if as_zip else source
    _check_round_trip(source_dir, store, spec)
    attrs = zarr.open_group(str(store), mode="r").attrs[fmt.ATTRS_KEY]
    assert attrs["complete"] is True
    assert attrs["format_version"] == fmt.FORMAT_VERSION
    assert attrs["source"] == source.name
    assert attrs["source_dtypes"] == {v: dtype for v in fmt.VARIABLES}
    assert attrs["lossy"] == []
    if config:
        assert attrs["config"] == json.loads((source_dir / "config.json").read_text())
    else:
        assert attrs["config"] is None
    assert verify(source, store) == []
    # Only the store is left in the output folder: no .partial, nothing outside it.
    assert [p.name for p in (tmp_path / "out").iterdir()] == [store.name]


def test_every_array_has_dimension_names_and_checksums(folder_store):
    for array in _every_array(zarr.open_group(str(folder_store), mode="r")):
        names = array.metadata.dimension_names
        assert names is not None and len(names) == array.ndim and all(names), array.path
        codecs = json.dumps(array.metadata.to_dict()["codecs"])
        assert "crc32c" in codecs, array.path


def test_quirks_survive(folder_mouse, folder_store):
    root = zarr.open_group(str(folder_store), mode="r")
    ids = root["trial_id"][:]
    # Skipped ids: tiers.npy covers more ids than have files, and the store keeps real ids.
    tiers = np.load(folder_mouse / "meta/trials/tiers.npy", allow_pickle=False)
    assert len(tiers) > len(ids) and ids.max() == len(tiers) - 1
    assert "none" not in [str(t) for t in root["tier"][:]]
    responses = root["responses"][:]
    assert (responses < 0).any() and responses[responses < 0].max() > -1e-6  # tiny negatives kept
    valid = root["valid_frames"][:]
    t_pad = root["responses"].shape[-1]
    assert (valid == t_pad).all(axis=1).any(), "a trial without any NaN padding"
    assert (valid[:, 0] != valid[:, 2]).any(), "per-variable frame counts differ"
    withheld = ~root["has_responses"][:]
    assert withheld.any()
    assert np.all(responses[withheld] == 0)


def test_recomputed_statistics_match_numpy(folder_mouse, folder_store):
    _check_recomputed_statistics(folder_mouse, folder_store)


@pytest.mark.parametrize("integer_videos", [True, False], ids=["counted", "fallback"])
def test_medians_over_many_blocks_match_numpy(folder_mouse, tmp_path, monkeypatch, caplog, integer_videos):
    """Videos' pooled medians come from value counts of integer frames, or the general
    way when a value is not an integer 0..255; both exact, whatever the blocks."""
    import shutil

    from sensorium_zarr.converter import _recompute as recompute

    mouse = tmp_path / folder_mouse.name
    shutil.copytree(folder_mouse, mouse)
    tiers = np.load(mouse / "meta/trials/tiers.npy", allow_pickle=False)
    train = [i for i in source_ids(mouse) if tiers[i] == "train"]
    if not integer_videos:
        path = mouse / "data/videos" / f"{train[1]}.npy"
        video = np.load(path)
        video[2, 3, :5] += 0.25
        np.save(path, video)
    # Small budgets: many blocks along every axis, sub-blocks inside them.
    monkeypatch.setattr(recompute, "MEDIAN_READ_BYTES", 4000)
    monkeypatch.setattr(recompute, "MEDIAN_SORT_BYTES", 2000)
    with caplog.at_level("INFO", logger="sensorium_zarr"):
        store = convert_mouse(mouse, tmp_path / "out", progress=False)
    assert ("pooled median from whole-time blocks" in caplog.text) is not integer_videos
    _check_recomputed_statistics(mouse, store)


def _check_recomputed_statistics(folder_mouse: Path, store: Path) -> None:
    root = zarr.open_group(str(store), mode="r")
    tiers = np.load(folder_mouse / "meta/trials/tiers.npy", allow_pickle=False)
    train = [i for i in source_ids(folder_mouse) if tiers[i] == "train"]
    reducers = NAN_REDUCERS
    for variable, axes in STORED_AXES.items():
        stack = np.stack([load_source(folder_mouse, variable, i).transpose(axes) for i in train]).astype(np.float64)
        time_axis = fmt.DIMENSIONS[variable].index("time")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for stat, reduce in reducers.items():
                for granularity, over in (("trials", (0,)), ("trials_time", (0, time_axis))):
                    stored = root[f"statistics/train/{variable}/{granularity}/{stat}"][...]
                    np.testing.assert_allclose(stored, reduce(stack, axis=over), rtol=1e-9, atol=1e-12,
                                               err_msg=f"{variable} {granularity} {stat}")
        count = (~np.isnan(stack)).sum(axis=(0, time_axis))
        np.testing.assert_array_equal(root[f"statistics/train/{variable}/trials_time/count"][...], count)


def test_existing_store_needs_overwrite(folder_mouse, tmp_path):
    store = convert_mouse(folder_mouse, tmp_path, progress=False)
    before = (store / "zarr.json").read_bytes()
    with pytest.raises(StoreExistsError, match="--overwrite"):
        convert_mouse(folder_mouse, tmp_path, progress=False)
    assert (store / "zarr.json").read_bytes() == before
    again = convert_mouse(folder_mouse, tmp_path, progress=False, overwrite=True)
    assert again == store and verify(folder_mouse, store) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [store.name]


def test_float32_option_is_lossy_and_recorded(tmp_path):
    spec = small_spec(dtype="float64")
    source = write_mouse(spec, tmp_path / "src")
    store = convert_mouse(source, tmp_path / "out", progress=False, float32=True)
    root = zarr.open_group(str(store), mode="r")
    assert root["responses"].dtype == np.float32
    attrs = root.attrs[fmt.ATTRS_KEY]
    assert attrs["source_dtypes"]["responses"] == "float64"
    assert attrs["stored_dtypes"]["responses"] == "float32"
    assert attrs["lossy"] == ["float64 stored as float32"]
    first = load_source(source, "responses", spec.trial_ids[0])
    np.testing.assert_array_equal(root["responses"][0], first.astype(np.float32))


@pytest.mark.parametrize("chunking", [Chunking(trials_per_shard=3, neurons_per_chunk=5), Chunking(trials_per_shard=64)])
def test_chunking_does_not_change_content(folder_mouse, tmp_path, chunking):
    store = convert_mouse(folder_mouse, tmp_path, progress=False, chunking=chunking, workers=2)
    assert verify(folder_mouse, store) == []
    root = zarr.open_group(str(store), mode="r")
    # Shards are never longer than the mouse: the attributes record the length used.
    used = min(chunking.trials_per_shard, root.attrs[fmt.ATTRS_KEY]["n_trials"])
    assert root.attrs[fmt.ATTRS_KEY]["chunking"]["trials_per_shard"] == used


@pytest.mark.parametrize("chunking", [
    Chunking(trials_per_shard=3, neurons_per_chunk=5, frames_per_video_chunk=7),
    Chunking(trials_per_shard=6, neurons_per_chunk=7, frames_per_video_chunk=64, frames_per_response_chunk=6),
    # Format version 7: every variable uncoded (Blosc never saves 100%).
    Chunking(trials_per_shard=3, neurons_per_chunk=5, frames_per_video_chunk=7, min_blosc_saving=100),
])
def test_shards_hold_their_chunks_in_c_order(folder_mouse, tmp_path, chunking):
    """From format version 6: in every shard of every sharded variable the inner chunks
    follow one another in C order of the shard's chunk grid (so a trial's chunks are one
    byte range), the index last; boundary shards (trials, neurons and frames that do not
    fill one) included, Blosc-coded or uncoded, and every engine reads them back equal to
    the source."""
    store = convert_mouse(folder_mouse, tmp_path, progress=False, chunking=chunking)
    root = zarr.open_group(str(store), mode="r")
    assert root.attrs[fmt.ATTRS_KEY]["format_version"] == fmt.FORMAT_VERSION
    checked = 0
    for variable in ("responses", "videos"):
        array = root[variable]
        n = inner_chunks_per_shard(array)
        assert any(dim % s for dim, s in zip(array.shape, array.shards, strict=True)), "no boundary shard"
        for path in sorted((store / variable / "c").rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            index = shard_index(data, n)
            ends = np.cumsum(index[:, 1])
            np.testing.assert_array_equal(index[:, 0], np.concatenate([[0], ends[:-1]]), err_msg=str(path))
            assert ends[-1] == len(data) - (16 * n + 4), path
            checked += 1
        if chunking.min_blosc_saving == 100:
            assert [c["name"] for c in chunk_codecs(array)] == ["bytes", "crc32c"]
    assert checked >= 4
    for engine in ("native", "zarr", "zarrs"):
        assert verify(folder_mouse, store, engine=engine) == [], engine


def test_withheld_means_no_nonzero_real_value():
    from sensorium_zarr.converter._writer import responses_withheld

    zeros = np.zeros((4, 10), np.float32)
    zeros[:, 8:] = np.nan  # padding
    assert responses_withheld(zeros)
    assert responses_withheld(np.full((2, 3), np.nan))
    one = zeros.copy()
    one[3, 2] = 1e-30
    assert not responses_withheld(one)
    late = zeros.copy()
    late[0, 9] = -2.0  # a real value inside the padded frames still counts
    assert not responses_withheld(late)
    assert responses_withheld(np.zeros(5, np.int64)) and not responses_withheld(np.arange(5))


def _coded(array: zarr.Array) -> bool:
    names = [c["name"] for c in chunk_codecs(array)]
    assert names in (["bytes", "blosc", "crc32c"], ["bytes", "crc32c"])
    return "blosc" in names


@pytest.mark.parametrize(("responses", "saving", "coded"), [
    # Full-entropy traces, and this twin's small uint8 frames (format version 8): Blosc
    # saves a few percent of each.
    ("dense", 10, set()),
    ("sparse", 10, {"responses"}),  # mostly zeros: Blosc saves most of it
    ("dense", 0, set(fmt.VARIABLES)),  # always Blosc
])
def test_variables_blosc_barely_shrinks_are_stored_uncoded_and_read_alike(tmp_path, responses, saving, coded):
    """Format version 7: the converter codes a variable with Blosc only if Blosc saves at
    least ``min_blosc_saving`` percent of its first trial's bytes; every engine reads the
    store equal to its source, and the reader's own engine reads an uncoded variable
    (whole trials, windows and single neurons) as zarr does."""
    import sensorium_zarr as reader
    from sensorium_zarr._native import NativeArray

    spec = small_spec(n_neurons=130, n_trials=12, t_pad=70, responses=responses, seed=3)
    source = write_mouse(spec, tmp_path / "src")
    chunking = Chunking(trials_per_shard=4, neurons_per_chunk=16, frames_per_video_chunk=16, min_blosc_saving=saving)
    store = convert_mouse(source, tmp_path / "out", chunking=chunking, progress=False)
    root = zarr.open_group(str(store), mode="r")
    assert root.attrs[fmt.ATTRS_KEY]["chunking"]["min_blosc_saving"] == saving
    assert {v for v in ("videos", "responses") if _coded(root[v])} == coded & {"videos", "responses"}
    for engine in ("native", "zarr", "zarrs"):
        assert verify(source, store, engine=engine) == [], engine
    ours, theirs = (reader.open_mouse(store, engine=e).split("train") for e in ("native", "zarr"))
    assert all(isinstance(ours._handle.array(v), NativeArray) for v in fmt.VARIABLES)
    for k in range(len(ours)):
        for frames in (None, slice(5, 40)):
            got, want = ours.trial(k, frames=frames), theirs.trial(k, frames=frames)
            for variable in fmt.VARIABLES:
                np.testing.assert_array_equal(got[variable], want[variable])
    np.testing.assert_array_equal(ours.responses[:, 17].compute(), theirs.responses[:, 17].compute())
    np.testing.assert_array_equal(ours.videos[2:5, 10:30].compute(), theirs.videos[2:5, 10:30].compute())
