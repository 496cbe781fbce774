"""Format version 8: videos stored as uint8 when every trial's real frames hold integers
0..255 and its padding only NaN, read back as the source's float values and NaN padding
by every engine and every spelling; any trial that does not fit makes the converter
store the videos in their float dtype instead, losslessly either way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import load_source, small_spec, source_ids, stored_values

import sensorium_zarr as reader
from sensorium_zarr import format as fmt
from sensorium_zarr.converter import Chunking, convert_mouse, verify
from sensorium_zarr.testing import write_mouse

STORED_AXES = fmt.SOURCE_TO_STORED_AXES
ENGINES = ("native", "zarr", "zarrs")


@pytest.fixture(scope="module")
def uint8_mouse(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("uint8")
    source = write_mouse(small_spec(n_trials=14, t_pad=40, seed=5), tmp / "src")
    chunking = Chunking(trials_per_shard=4, frames_per_video_chunk=16)
    return source, convert_mouse(source, tmp / "out", chunking=chunking, workers=2, progress=False)


def test_integer_videos_are_stored_as_uint8_with_zero_padding(uint8_mouse):
    source, store = uint8_mouse
    root = zarr.open_group(str(store), mode="r")
    attrs = root.attrs[fmt.ATTRS_KEY]
    assert attrs["format_version"] == 8
    assert attrs["uint8_variables"] == ["videos"]
    assert attrs["stored_dtypes"]["videos"] == "float32"
    assert root["videos"].dtype == np.uint8
    assert root["responses"].dtype == np.float32
    ids = root["trial_id"][:]
    valid = root["valid_frames"][:, 0]
    assert (valid < 40).any() and (valid == 40).any(), "the twin has padded and unpadded videos"
    for position, trial_id in enumerate(ids):
        raw = root["videos"][position]
        assert not raw[valid[position]:].any(), "padding frames are stored as 0"
        # Lossless: the source's values and NaN positions, bit for bit (helpers' own rule).
        np.testing.assert_array_equal(
            stored_values(root, "videos", position), load_source(source, "videos", int(trial_id)).transpose(2, 0, 1)
        )
    assert verify(source, store) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_every_spelling_reads_uint8_videos_as_the_float_source(uint8_mouse, engine):
    """trial(k), windows crossing the first padding frame, Dask slices and index arrays,
    raw and standardized: the values of the source's float32 files, NaN padding included,
    and standardized as the same float32 values would be."""
    source, store = uint8_mouse
    mouse = reader.open_mouse(store, engine=engine)
    for name in ("train", "test"):
        raw, std = mouse.split(name, standardize=False), mouse.split(name)
        videos = np.stack([
            load_source(source, "videos", int(i)).transpose(STORED_AXES["videos"]) for i in raw.trial_ids
        ])
        params = std.standardization_params("videos")
        expected = reader.standardize("videos", videos, params)
        assert raw.videos.dtype == std.videos.dtype == np.float32
        np.testing.assert_array_equal(raw.videos.compute(), videos)
        np.testing.assert_array_equal(std.videos.compute(), expected)
        for k in range(len(raw)):
            np.testing.assert_array_equal(raw.trial(k)["videos"], videos[k])
            np.testing.assert_array_equal(std.trial(k)["videos"], expected[k])
            real = int(raw.valid_frames[k, 0])
            window = slice(max(0, real - 3), min(40, real + 2))
            np.testing.assert_array_equal(std.trial(k, frames=window)["videos"], expected[k, window])
        np.testing.assert_array_equal(std.videos[1:3, 30:38, 2].compute(), expected[1:3, 30:38, 2])
        np.testing.assert_array_equal(std.videos[[2, 0]][:, [39, 1, 35]].compute(), expected[[2, 0]][:, [39, 1, 35]])
        later = mouse.split(name, frames=slice(30, 40))
        np.testing.assert_array_equal(later.videos.compute(), expected[:, 30:40])


def test_uint8_videos_read_the_same_in_forked_and_pickled_splits(uint8_mouse):
    import multiprocessing
    import pickle

    _, store = uint8_mouse
    split = reader.open_mouse(store).split("train")
    expected = split.videos.compute()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(split)).videos.compute(), expected)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        result = pool.map_async(_trial_videos, [(split, k) for k in range(len(split))])
        got = result.get(timeout=120)
    np.testing.assert_array_equal(np.stack(got), expected)


def _trial_videos(args) -> np.ndarray:
    split, k = args
    return split.trial(k)["videos"]


def _set(where: tuple, value: float):
    def change(video: np.ndarray) -> None:
        video[where] = value
    return change


def _value_in_padding(video: np.ndarray) -> None:
    video[3, 3, -1] = 9.0  # the last frame is padding (NaN) in the trial chosen


@pytest.mark.parametrize(("case", "change"), [
    ("fraction", _set((2, 3, 4), 17.5)),
    ("above 255", _set((0, 0, 0), 256.0)),
    ("negative", _set((5, 7, 1), -1.0)),
    ("negative zero", _set((1, 1, 1), -0.0)),
    ("a partly NaN frame among real ones", _set((4, 2, 20), np.nan)),
    ("a value in a padding frame", _value_in_padding),
])
def test_videos_uint8_cannot_hold_are_stored_in_their_float_dtype(tmp_path, caplog, case, change):
    """One trial past the first shard (so the other block tasks of the first attempt ran
    on), padded: the converter stores the whole variable in its float dtype, the store
    reads back equal to the source, bit for bit, and verifies clean."""
    spec = small_spec(n_trials=14, t_pad=40, seed=5)
    source = write_mouse(spec, tmp_path / "src")
    ids = source_ids(source)
    padded = [i for i in ids[8:] if np.isnan(load_source(source, "videos", i)).any()]
    assert padded, "the twin has padded trials past the first shard"
    path = source / "data/videos" / f"{padded[0]}.npy"
    video = np.load(path, allow_pickle=False)
    change(video)
    np.save(path, video)
    with caplog.at_level("INFO", logger="sensorium_zarr"):
        store = convert_mouse(source, tmp_path / "out", chunking=Chunking(trials_per_shard=4), workers=2,
                              progress=False)
    assert f"videos: trial {padded[0]} holds a value" in caplog.text
    assert "stored as float32 instead of uint8" in caplog.text
    root = zarr.open_group(str(store), mode="r")
    assert root.attrs[fmt.ATTRS_KEY].get("uint8_variables", []) == []
    assert root["videos"].dtype == np.float32
    positions = {int(i): p for p, i in enumerate(root["trial_id"][:])}
    for trial_id in ids:
        stored = root["videos"][positions[trial_id]]
        source_video = load_source(source, "videos", trial_id).transpose(2, 0, 1)
        np.testing.assert_array_equal(stored, source_video)
        assert np.array_equal(np.signbit(stored), np.signbit(source_video)), "bit for bit, signs of zeros too"
    assert verify(source, store) == []
    mouse = reader.open_mouse(store)
    everything = mouse.split(list(mouse.attrs.tiers), standardize=False)
    k = list(everything.trial_ids).index(padded[0])
    np.testing.assert_array_equal(everything.trial(k)["videos"], video.transpose(2, 0, 1))


def test_verify_reports_uint8_padding_that_is_not_zero(tmp_path):
    source = write_mouse(small_spec(n_trials=8, t_pad=40, seed=5), tmp_path / "src")
    store = convert_mouse(source, tmp_path / "out", progress=False)
    root = zarr.open_group(str(store), mode="r+")
    valid = root["valid_frames"][:, 0]
    position = int(np.flatnonzero(valid < 40)[0])
    videos = root["videos"]
    videos[position, 39, 0, 0] = 7
    problems = verify(source, store)
    assert any("its uint8 padding frames hold values other than 0" in p for p in problems), problems


def test_uint8_attribute_is_refused_where_the_format_does_not_allow_it(tmp_path):
    from sensorium_zarr.errors import StoreFormatError

    good = {
        "format_version": 8, "complete": True, "mouse": "m", "n_trials": 0, "n_neurons": 0, "t_pad": 1,
        "source": "m", "source_dtypes": dict.fromkeys(fmt.VARIABLES, "float32"),
        "stored_dtypes": dict.fromkeys(fmt.VARIABLES, "float32"), "tiers": [], "converter_version": "x",
    }
    assert fmt.MouseAttrs.from_dict({**good, "uint8_variables": ["videos"]}, "s").array_dtype("videos") == "uint8"
    assert fmt.MouseAttrs.from_dict(good, "s").uint8_variables == ()
    for bad, message in [
        ({"uint8_variables": ["videos"], "format_version": 7}, "empty in a format version 7 store"),
        ({"uint8_variables": "videos"}, "a list of strings"),
        ({"uint8_variables": ["videos", "videos"]}, "distinct variable names"),
        ({"uint8_variables": ["responses", "videos"]}, "distinct variable names in the order"),
        ({"uint8_variables": ["frames"]}, "distinct variable names"),
        ({"uint8_variables": ["videos"], "stored_dtypes": {**good["stored_dtypes"], "videos": "int16"}},
         "only variables whose stored_dtypes are float"),
    ]:
        with pytest.raises(StoreFormatError, match="uint8_variables") as caught:
            fmt.MouseAttrs.from_dict({**good, **bad}, "store.zarr")
        assert message in str(caught.value)
        assert str(caught.value).startswith("store.zarr: ")
