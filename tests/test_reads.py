"""Slicing a split's Dask arrays the way users write it reads only the chunks holding the
selection (counted at the store, zarr engine), and gives the values of the whole array
and of the source files standardized by the oracles."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
from helpers import load_source, small_spec
from oracles import recomputed_standardization
from test_reader_access import CountingStore
from zarr.abc.store import RangeByteRequest

from sensorium_zarr import SelectionError, open_mouse
from sensorium_zarr.converter import Chunking, convert_mouse
from sensorium_zarr.testing import write_mouse

NEURONS_PER_CHUNK = 8
FRAMES_PER_CHUNK = 8
STORED_AXES = {"videos": (2, 0, 1), "responses": (0, 1), "behavior": (0, 1), "pupil_center": (0, 1)}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    spec = small_spec("dynamic00005-1-1-Video-reads", n_neurons=40, n_trials=24, t_pad=30)
    return write_mouse(spec, tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def store(source, tmp_path_factory) -> Path:
    chunking = Chunking(neurons_per_chunk=NEURONS_PER_CHUNK, frames_per_video_chunk=FRAMES_PER_CHUNK)
    return convert_mouse(source, tmp_path_factory.mktemp("out"), progress=False, chunking=chunking)


@pytest.fixture(scope="module")
def full(store):
    """Every variable of the train split, computed whole (the values slices must equal)."""
    split = open_mouse(store).split("train")
    return {v: split.array(v).compute() for v in STORED_AXES}


def _counted(store: Path, **options):
    counting = CountingStore(store)
    split = open_mouse(counting).split("train", **options)
    counting.reads.clear()
    return counting, split


def _chunks_read(counting: CountingStore, variable: str) -> list[tuple[str, int]]:
    """Inner chunks read (byte ranges within shard files; shard indexes are suffix reads)."""
    return [(key, r.start) for key, r in counting.reads
            if key.startswith(f"{variable}/c/") and isinstance(r, RangeByteRequest)]


def _oracle(source: Path, split, variable: str) -> np.ndarray:
    """The train split's ``variable`` from the source files, standardized by the oracle."""
    stack = np.stack([load_source(source, variable, i).transpose(STORED_AXES[variable]) for i in split.trial_ids])
    train = [load_source(source, variable, i) for i in split.trial_ids]
    withheld = ~split.has_responses if variable == "responses" else []
    return recomputed_standardization(variable, stack, train, withheld)


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6, equal_nan=True)


def test_one_neuron_across_trials_reads_one_chunk_per_trial(source, store, full):
    counting, split = _counted(store)
    n = 13
    values = split.responses[:, n].compute()
    chunks = _chunks_read(counting, "responses")
    assert len(chunks) == len(split) and len(set(chunks)) == len(chunks), "one 8-neuron chunk per trial"
    assert not _chunks_read(counting, "videos"), "no other variable is read"
    np.testing.assert_array_equal(values, full["responses"][:, n])
    _close(values, _oracle(source, split, "responses")[:, n])


def test_a_neuron_range_reads_only_its_chunks(store, full):
    counting, split = _counted(store)
    values = split.responses[:, 6:11].compute()  # neurons 6..10: chunks 0 and 1
    assert len(set(_chunks_read(counting, "responses"))) == 2 * len(split)
    np.testing.assert_array_equal(values, full["responses"][:, 6:11])


def test_a_reduction_over_one_neuron_reads_only_its_chunks(store, full):
    counting, split = _counted(store)
    mean = dask.array.nanmean(split.responses[:, 30], axis=1).compute()
    chunks = _chunks_read(counting, "responses")
    assert len(chunks) == len(split)
    assert {key for key, _ in chunks} <= {key for key, _ in counting.reads if key.startswith("responses/c/")}
    np.testing.assert_allclose(mean, np.nanmean(full["responses"][:, 30], axis=1), rtol=1e-6)


def test_trial_index_array_reads_only_those_trials(store, full):
    counting, split = _counted(store)
    idx = np.array([7, 2, 11])
    values = split.responses[idx].compute()
    chunks_per_trial = 40 // NEURONS_PER_CHUNK
    assert len(set(_chunks_read(counting, "responses"))) == len(idx) * chunks_per_trial
    np.testing.assert_array_equal(values, full["responses"][idx])


def test_a_frame_window_of_one_trial_reads_only_its_frame_chunks(source, store, full):
    counting, split = _counted(store)
    k, t0, t1 = 4, 9, 15  # within the second 8-frame chunk
    values = split.videos[k, t0:t1].compute()
    assert len(_chunks_read(counting, "videos")) == 1
    np.testing.assert_array_equal(values, full["videos"][k, t0:t1])
    _close(values, _oracle(source, split, "videos")[k, t0:t1])


def test_trial_with_frames_reads_only_the_window(source, store, full):
    counting, split = _counted(store)
    k = 3
    one = split.trial(k, frames=slice(16, 24))  # the third frame chunk of videos
    assert len(_chunks_read(counting, "videos")) == 1
    for variable, values in one.items():
        window: list[object] = [k, slice(None), slice(None)]
        window[1 if variable == "videos" else 2] = slice(16, 24)
        np.testing.assert_array_equal(values, full[variable][tuple(window)], err_msg=variable)
        _close(values, _oracle(source, split, variable)[tuple(window)])
    np.testing.assert_array_equal(split.trial(k)["videos"], full["videos"][k])
    for bad in (slice(0, 31), slice(5, 5), slice(0, 10, 2), 3):
        with pytest.raises(SelectionError, match="frames="):
            split.trial(k, frames=bad)


def test_slices_of_a_neuron_and_frame_subset_split(store):
    """Keys are relative to the split's own neurons and frames, whatever they are."""
    mouse = open_mouse(store)
    subset = mouse.split(["train", "test"], neurons=[30, 2, 17, 18], frames=slice(4, 26), statistics="provided")
    whole = mouse.split(["train", "test"], frames=slice(4, 26), statistics="provided").responses.compute()
    expected = whole[:, [30, 2, 17, 18]]
    np.testing.assert_array_equal(subset.responses.compute(), expected)
    np.testing.assert_array_equal(subset.responses[:, 1].compute(), expected[:, 1])
    np.testing.assert_array_equal(subset.responses[3:9, 2:4, 5:7].compute(), expected[3:9, 2:4, 5:7])
    np.testing.assert_array_equal(subset.responses[[5, 1], ::-1, -3].compute(), expected[[5, 1], ::-1, -3])
    # A withheld trial stays NaN, alone or in a slice.
    withheld = int(np.flatnonzero(~subset.has_responses)[0])
    assert np.isnan(subset.responses[withheld, 0].compute()).all()


@pytest.mark.parametrize(
    "key",
    [np.s_[2], np.s_[-1, 3:9], np.s_[1:5, :, 2, ::3], np.s_[..., 1], np.s_[[0, 0, 3], 2:2], np.s_[:, -5:]],
)
def test_any_basic_or_orthogonal_key_gives_numpys_values(store, full, key):
    split = open_mouse(store).split("train")
    np.testing.assert_array_equal(split.videos[key].compute(), full["videos"][key])
    np.testing.assert_array_equal(split.source("videos")[key], full["videos"][key])


def _mask(n: int, picked: list[int]) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[picked] = True
    return mask


@pytest.mark.parametrize("trials_per_block", [None, 1, 5, 100])
@pytest.mark.parametrize("index", [[7, 2, 11], [3, 4, 4, 9], [-1, 0], "mask", [5]])
def test_trial_index_arrays_read_only_those_trials_whatever_the_blocks(store, full, trials_per_block, index):
    counting, split = _counted(store, trials_per_block=trials_per_block)
    idx = _mask(len(split), [1, 6, 7]) if index == "mask" else np.array(index)
    wanted = {i % len(split) for i in np.flatnonzero(idx)} if index == "mask" else {i % len(split) for i in index}
    values = split.responses[idx].compute()
    assert len(set(_chunks_read(counting, "responses"))) == len(wanted) * (40 // NEURONS_PER_CHUNK)
    np.testing.assert_array_equal(values, full["responses"][idx])


@pytest.mark.parametrize("trials_per_block", [None, 3])
def test_neuron_index_arrays_read_only_their_chunks(store, full, trials_per_block):
    counting, split = _counted(store, trials_per_block=trials_per_block)
    values = split.responses[:, [13, 2, 30, 2]].compute()  # chunks 1, 0 and 3 of each trial
    assert len(set(_chunks_read(counting, "responses"))) == 3 * len(split)
    np.testing.assert_array_equal(values, full["responses"][:, [13, 2, 30, 2]])


@pytest.mark.parametrize(
    ("variable", "key"),
    [
        ("responses", (np.array([9, 1]), 5)),
        ("responses", (np.array([9, 1]), slice(None), slice(3, 9))),
        ("responses", (4, [3, 1])),
        ("responses", (slice(2, 9), np.array([0, 39]), 7)),
        ("responses", (Ellipsis, [2, 0])),
        ("videos", ([1, 5], slice(2, 4))),
        ("videos", ([5, 1], Ellipsis, 3)),
        ("behavior", [0, 3, 3]),
        ("pupil_center", (slice(None), [1, 0])),
    ],
)
def test_index_arrays_mixed_with_other_keys_index_like_numpy(store, full, variable, key):
    split = open_mouse(store).split("train", trials_per_block=4)
    np.testing.assert_array_equal(split.array(variable)[key].compute(), full[variable][key])


def test_default_blocks_fill_dasks_chunk_size(store):
    with dask.config.set({"array.chunk-size": "50KiB"}):
        split = open_mouse(store).split("train")
        per_trial = 40 * 30 * 4  # neurons x frames x float32
        step = 50 * 1024 // per_trial
        assert split.responses.chunks[0] == tuple(min(step, len(split) - lo) for lo in range(0, len(split), step))
    # With Dask's default (128 MiB), one neuron across this small split is one task.
    assert open_mouse(store).split("train").responses[:, 13].npartitions == 1


def test_default_blocks_are_at_most_16_mib_whatever_dasks_chunk_size(store):
    """A larger ``array.chunk-size`` (Dask's default is 128 MiB) does not make blocks
    larger than ``BLOCK_BYTES``: a reduction's temporaries must stay reusable."""
    from sensorium_zarr._daskarray import BLOCK_BYTES, trials_per_block

    assert BLOCK_BYTES == 16 * 2**20
    source = open_mouse(store).split("train").source("responses")
    per_trial = 40 * 30 * 4
    for size in ("128MiB", "1GiB"):
        with dask.config.set({"array.chunk-size": size}):
            assert trials_per_block(source) == BLOCK_BYTES // per_trial
    with dask.config.set({"array.chunk-size": "1MiB"}):
        assert trials_per_block(source) == 2**20 // per_trial


@pytest.mark.parametrize(
    "key",
    [np.s_[:, 13], np.s_[3, -1], np.s_[2:9, 5:17], np.s_[:, 35:100], np.s_[:, -2, 3:7], np.s_[[4, 1], 7],
     np.s_[:, 39:1], np.s_[:, ::2]],
)
def test_neuron_integers_and_slices_index_like_numpy(store, full, key):
    split = open_mouse(store).split("train", trials_per_block=2)
    np.testing.assert_array_equal(split.responses[key].compute(), full["responses"][key])


def test_one_neuron_or_a_few_is_one_task_whatever_the_blocks_of_whole_trials(store, full):
    with dask.config.set({"array.chunk-size": "5KiB"}):  # one trial a block for all neurons
        split = open_mouse(store).split("train")
        assert split.responses.npartitions == len(split)
        for key, neurons in ((np.s_[:, 13], 1), (np.s_[:, 3:11], 8)):
            per_block = 5 * 1024 // (neurons * 30 * 4)  # trials of those neurons in 5 KiB
            assert split.responses[key].npartitions == -(-len(split) // per_block) < len(split), key
            np.testing.assert_array_equal(split.responses[key].compute(), full["responses"][key])
    with pytest.raises(IndexError, match="out of bounds"):
        split.responses[:, 40]


def test_a_pickled_array_keeps_its_type_and_values(store, full):
    import pickle

    split = open_mouse(store).split("train")
    array = pickle.loads(pickle.dumps(split.responses))
    assert type(array) is type(split.responses)  # so its index arrays still read only what they index
    np.testing.assert_array_equal(array[[8, 3]].compute(), full["responses"][[8, 3]])
    np.testing.assert_array_equal(array[:, 13].compute(), full["responses"][:, 13])


def test_neuron_subsets_alike_at_both_ends_computed_together_give_their_own_values(tmp_path):
    """Dask names a graph by a token of what it reads: two subsets of over 1000 neurons
    (numpy abbreviates such an array in its str()), alike at both ends, are two graphs."""
    spec = small_spec("dynamic00007-1-1-Video-wide", n_neurons=1100, n_trials=12, t_pad=6, height=2, width=2)
    store = convert_mouse(write_mouse(spec, tmp_path / "src"), tmp_path / "out", progress=False)
    mouse = open_mouse(store)
    first, second = (mouse.split("train", neurons=np.delete(np.arange(1100), k)) for k in (600, 500))
    together = dask.compute(first.responses, second.responses, first.responses[:, 550], second.responses[:, 550])
    whole = mouse.split("train").responses.compute()
    for values, kept in zip(together, [np.delete(np.arange(1100), k) for k in (600, 500)] * 2, strict=True):
        expected = whole[:, kept]
        np.testing.assert_array_equal(values, expected if values.ndim == 3 else expected[:, 550])
    assert not np.array_equal(together[2], together[3], equal_nan=True)
    assert first.responses.name != second.responses.name


def test_an_index_array_out_of_bounds_is_an_index_error(store):
    split = open_mouse(store).split("train")
    with pytest.raises(IndexError, match="out of bounds"):
        split.responses[[0, len(split)]]
    with pytest.raises(IndexError, match="out of bounds"):
        split.responses[:, [40]]


# -- the native engine (the default) reads only the selection's bytes ------------------------
# The counting store above goes through zarr-python; the native engine reads shard files
# with os.pread, which the kernel counts in the process's rchar (/proc/self/io, every
# thread). It reads small gaps between wanted chunks rather than skip them, so this store's
# chunks are larger than those gaps: 8 neurons x 640 frames of dense float32.


def _rchar() -> int:
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


def _bytes_read(compute) -> tuple[np.ndarray, int]:
    before = _rchar()
    values = compute()
    return values, _rchar() - before


@pytest.fixture(scope="module")
def long_store(tmp_path_factory) -> Path:
    spec = small_spec("dynamic00006-1-1-Video-long", n_neurons=40, n_trials=24, t_pad=640, height=16, width=16)
    source = write_mouse(spec, tmp_path_factory.mktemp("long-src"))
    chunking = Chunking(neurons_per_chunk=NEURONS_PER_CHUNK, frames_per_video_chunk=FRAMES_PER_CHUNK)
    return convert_mouse(source, tmp_path_factory.mktemp("long-out"), progress=False, chunking=chunking)


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc/self/io")
def test_native_engine_reads_only_the_selections_chunks(long_store):
    split = open_mouse(long_store).split("train")  # the default engine
    assert type(split.source("responses").handle.array("responses")).__name__ == "NativeArray"
    split.responses.compute(), split.videos.compute()  # warm up: shard indexes, lazy imports
    responses, whole = _bytes_read(split.responses.compute)
    chunks_per_trial = 40 // NEURONS_PER_CHUNK
    values, one_neuron = _bytes_read(lambda: split.responses[:, 13].compute())
    np.testing.assert_array_equal(values, responses[:, 13])
    assert 0 < one_neuron <= 1.2 * whole / chunks_per_trial, (one_neuron, whole)
    idx = [7, 2, 11]
    values, three = _bytes_read(lambda: split.responses[idx].compute())
    np.testing.assert_array_equal(values, responses[idx])
    assert 0 < three <= 1.2 * whole * len(idx) / len(split), (three, whole)
    values, two = _bytes_read(lambda: split.responses[:, [30, 2]].compute())
    np.testing.assert_array_equal(values, responses[:, [30, 2]])
    assert 0 < two <= 1.2 * 2 * whole / chunks_per_trial, (two, whole)
    videos, all_videos = _bytes_read(split.videos.compute)
    values, window = _bytes_read(lambda: split.videos[4, 9:15].compute())  # one 8-frame chunk
    np.testing.assert_array_equal(values, videos[4, 9:15])
    frame_chunks = 640 // FRAMES_PER_CHUNK
    assert 0 < window <= 1.2 * all_videos / (len(split) * frame_chunks), (window, all_videos)
