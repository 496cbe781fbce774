"""How the reader touches a store: what it reads and when (counted at the store), the
Dask graph it builds, pickling, folders of stores, and every bad input."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import reconsolidate
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.codecs import Crc32cCodec
from zarr.storage import LocalStore

from sensorium_zarr import (
    FormatVersionError,
    IncompleteStoreError,
    SelectionError,
    StoreFormatError,
    StoreNotFoundError,
    open_mouse,
    open_sensorium,
)
from sensorium_zarr.converter._chunking import Chunking
from sensorium_zarr.converter._convert import convert_mouse
from sensorium_zarr.format import FORMAT_VERSION
from sensorium_zarr.testing import sample_spec, write_mouse

VARIABLES = ("videos", "responses", "behavior", "pupil_center")
PER_TRIAL = ("trial_id", "tier", "valid_frames", "has_responses", "index")
#: What opening a format version 5 store reads besides the root's zarr.json: the bundle's chunk.
BUNDLE_CHUNK = "bundle/c/0"


class CountingStore(LocalStore):
    """A local store that records every key (and byte range) read through it."""

    def __init__(self, root: Path | str, *, read_only: bool = True) -> None:
        super().__init__(root, read_only=read_only)
        self.reads: list[tuple[str, object]] = []

    async def get(self, key, prototype=None, byte_range=None):
        self.reads.append((key, byte_range))
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        self.reads.extend(key_ranges)
        return await super().get_partial_values(prototype, key_ranges)

    def chunk_keys(self) -> list[str]:
        return [key for key, _ in self.reads if "/c/" in key]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    spec = sample_spec("dynamic00003-2-2-Video-access", n_neurons=40, n_trials=24, t_pad=30, height=6, width=8)
    return write_mouse(spec, tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def store(source, tmp_path_factory) -> Path:
    return convert_mouse(source, tmp_path_factory.mktemp("out"), progress=False)


def _copy(store: Path, into: Path, name: str | None = None) -> Path:
    target = into / (name or store.name)
    shutil.copytree(store, target)
    return target


def _edit_attrs(store: Path, **changes) -> None:
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["sensorium_zarr"].update(changes)
    meta_path.write_text(json.dumps(meta))


# -- laziness --------------------------------------------------------------------------


def test_open_and_split_read_no_data_and_one_trial_reads_its_chunk_only(store):
    counting = CountingStore(store)
    mouse = open_mouse(counting)
    opened = counting.chunk_keys()
    assert opened == [BUNDLE_CHUNK], "opening reads the bundle of the small per-trial arrays, nothing else"

    counting.reads.clear()
    for statistics in ("recomputed", "provided"):
        for standardize in (True, False):
            split = mouse.split(["train", "test"], statistics=statistics, standardize=standardize)
            arrays = [split.videos, split.responses, split.behavior, split.pupil_center]
    assert counting.chunk_keys() == [], "split() and building its arrays read no chunk"
    assert all(a.shape[0] == len(split) for a in arrays)

    split = mouse.split("train")
    k = 5
    position = int(split.positions[k])
    plain = zarr.open_array(str(store / "responses"), mode="r")
    trials_per_shard = plain.shards[0]
    assert trials_per_shard > 1, "the store must hold several trials per shard for this test"
    chunks_per_trial = math.ceil(plain.shape[1] / plain.chunks[1])
    counting.reads.clear()
    one = split.responses[k].compute()
    reads = [(key, r) for key, r in counting.reads if key.startswith("responses/c/")]
    assert {key for key, _ in reads} == {f"responses/c/{position // trials_per_shard}/0/0"}
    # Inside the shard: its index, then this trial's chunk(s), never the whole shard file.
    assert all(isinstance(r, (RangeByteRequest, SuffixByteRequest)) for _, r in reads)
    assert sum(isinstance(r, RangeByteRequest) for _, r in reads) == chunks_per_trial
    assert len(reads) <= 2 * chunks_per_trial + 1
    wanted = ("responses/c/", "statistics/train/responses/")
    other = [key for key in counting.chunk_keys() if not key.startswith(wanted)]
    assert other == [], "no other variable is read"
    np.testing.assert_array_equal(one, split.responses.compute()[k])


@pytest.mark.parametrize("which", ["converted", "golden-v3", "golden-v4", "golden-v5"])
def test_opening_a_version_3_store_is_one_metadata_read(store, which):
    """Consolidated metadata: the root's zarr.json is the only metadata read, however many
    trials and tiers (24 trials and 6 tiers here, 8 and 6 in the golden store); the rest
    are the small per-trial and tier index arrays' one chunk each (versions 3 and 4), or
    the one chunk of the bundle that duplicates them (version 5)."""
    path = store if which == "converted" else Path(__file__).parent / "data" / f"{which}.zarr"
    counting = CountingStore(path)
    mouse = open_mouse(counting)
    assert mouse.attrs.format_version >= 3
    metadata = [key for key, _ in counting.reads if key.endswith("zarr.json")]
    assert metadata == ["zarr.json"]
    chunks = counting.chunk_keys()
    if mouse.attrs.format_version >= 5:
        assert chunks == [key for key, _ in counting.reads][1:] == [BUNDLE_CHUNK], chunks
    else:
        assert len(chunks) == len(counting.reads) - 1 == 4 + len(mouse.attrs.tiers), chunks
    counting.reads.clear()
    mouse.split("train").responses[0].compute()
    # The first data read opens the variable for the engine, from its own zarr.json.
    assert [key for key, _ in counting.reads if key.endswith("zarr.json")] == ["responses/zarr.json"]


def test_version_2_store_reads_every_arrays_metadata():
    counting = CountingStore(Path(__file__).parent / "data" / "golden-v2.zarr")
    mouse = open_mouse(counting)
    metadata = [key for key, _ in counting.reads if key.endswith("zarr.json")]
    assert len(metadata) == 1 + len(VARIABLES) + len(PER_TRIAL) - 1 + len(mouse.attrs.tiers)


def test_version_3_store_without_consolidated_metadata_is_refused(store, tmp_path):
    plain = _copy(store, tmp_path)
    meta = json.loads((plain / "zarr.json").read_text())
    del meta["consolidated_metadata"]
    (plain / "zarr.json").write_text(json.dumps(meta))
    refused = f"no consolidated metadata in zarr.json, which format version {FORMAT_VERSION}"
    with pytest.raises(StoreFormatError, match=refused) as e:
        open_mouse(plain)
    _one_line(e)


def test_variable_changed_behind_the_consolidated_metadata_is_refused(store, tmp_path):
    changed = _copy(store, tmp_path)
    meta = json.loads((changed / "responses" / "zarr.json").read_text())
    meta["attributes"] = {"edited": True}
    (changed / "responses" / "zarr.json").write_text(json.dumps(meta))
    split = open_mouse(changed).split("train")  # checked from the consolidated copy
    with pytest.raises(StoreFormatError, match="the consolidated metadata of 'responses' differs from its zarr.json"):
        split.responses[0].compute()


def test_reader_never_writes(store):
    def snapshot() -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(store.rglob("*"))}

    before = snapshot()
    mouse = open_mouse(store)
    for statistics in ("recomputed", "provided"):
        split = mouse.split(["train", "validation", "test"], statistics=statistics, frames=slice(2, 9))
        for variable in VARIABLES:
            getattr(split, variable).compute()
    mouse.statistics()
    mouse.provided_statistics()
    assert snapshot() == before


# -- Dask graph ------------------------------------------------------------------------


@pytest.mark.parametrize("trials_per_block", [1, 4, 100])
def test_one_layer_one_task_per_block(store, trials_per_block):
    mouse = open_mouse(store)
    for statistics in ("recomputed", "provided"):
        split = mouse.split(["train", "test"], statistics=statistics, trials_per_block=trials_per_block)
        n_blocks = math.ceil(len(split) / trials_per_block)
        for variable in VARIABLES:
            array = getattr(split, variable)
            assert len(array.dask.layers) == 1, variable
            assert len(array.dask) == n_blocks == array.numblocks[0]
            assert array.numblocks[1:] == (1,) * (array.ndim - 1)  # full extent elsewhere
            assert array.chunks[0] == tuple(
                min(trials_per_block, len(split) - lo) for lo in range(0, len(split), trials_per_block)
            )
    one = mouse.split(["train", "test"])
    many = mouse.split(["train", "test"], trials_per_block=4)
    np.testing.assert_array_equal(one.videos.compute(), many.videos.compute())


# -- pickling --------------------------------------------------------------------------


def test_mouse_split_and_arrays_pickle(store):
    mouse = open_mouse(store)
    split = mouse.split(["train", "validation"], frames=slice(3, 20))
    expected = {v: getattr(split, v).compute() for v in VARIABLES}

    mouse2 = pickle.loads(pickle.dumps(mouse))
    assert mouse2.name == mouse.name and mouse2.trial_ids.tolist() == mouse.trial_ids.tolist()
    split_from_mouse = mouse2.split(["train", "validation"], frames=slice(3, 20))
    split2 = pickle.loads(pickle.dumps(split))
    assert split2.trial_ids.tolist() == split.trial_ids.tolist()
    for variable in VARIABLES:
        array2 = pickle.loads(pickle.dumps(getattr(split, variable)))
        for got in (getattr(split_from_mouse, variable), getattr(split2, variable), array2):
            np.testing.assert_array_equal(got.compute(), expected[variable])
    # The pickled state is small: no open Zarr objects and no data.
    assert len(pickle.dumps(split.responses)) < 20_000
    assert len(pickle.dumps(mouse)) < 20_000


def test_mouse_from_a_store_object_pickles(store):
    # A writable store object is opened read-only all the same.
    mouse = pickle.loads(pickle.dumps(open_mouse(LocalStore(store))))
    assert mouse.path == store
    expected = open_mouse(store).split("oracle").behavior.compute()
    np.testing.assert_array_equal(mouse.split("oracle").behavior.compute(), expected)


# -- folders of stores -----------------------------------------------------------------


def test_open_sensorium_skips_hidden_and_incomplete_stores(store, tmp_path):
    _copy(store, tmp_path)
    other = _copy(store, tmp_path, "dynamic00004-1-1-Video-other.zarr")
    _edit_attrs(other, mouse="dynamic00004-1-1-Video-other")
    _copy(store, tmp_path, f".{store.name}.partial")
    _edit_attrs(_copy(store, tmp_path, "dynamic00005-1-1-Video-half.zarr"), complete=False)
    mice = open_sensorium(tmp_path)
    assert sorted(mice) == sorted([store.stem, "dynamic00004-1-1-Video-other"])
    assert mice[store.stem].path == tmp_path / store.name
    assert mice[store.stem].n_trials == open_mouse(store).n_trials


def test_open_sensorium_bad_folders(tmp_path):
    with pytest.raises(StoreNotFoundError, match="no such folder"):
        open_sensorium(tmp_path / "missing")
    with pytest.raises(StoreNotFoundError, match="no complete"):
        open_sensorium(tmp_path)


# -- bad input -------------------------------------------------------------------------


def _one_line(excinfo) -> None:
    assert "\n" not in str(excinfo.value)


def test_not_a_store(tmp_path, store):
    with pytest.raises(StoreNotFoundError, match="no such file") as e:
        open_mouse(tmp_path / "missing.zarr")
    _one_line(e)
    with pytest.raises(StoreNotFoundError, match="not a Zarr v3 store") as e:
        open_mouse(tmp_path)
    _one_line(e)
    with pytest.raises(StoreNotFoundError, match="not a Zarr v3"):
        open_mouse(LocalStore(tmp_path, read_only=True))
    # An array of a store is not a store.
    with pytest.raises(StoreNotFoundError, match="responses"):
        open_mouse(store / "responses")
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
    plain.attrs["other"] = 1
    with pytest.raises(StoreFormatError, match="not a store written by sensorium-zarr"):
        open_mouse(tmp_path / "plain.zarr")
    with pytest.raises(TypeError, match="expected a path or a zarr Store"):
        open_mouse(42)  # type: ignore[arg-type]


def test_incomplete_store(store, tmp_path):
    half = _copy(store, tmp_path)
    _edit_attrs(half, complete=False)
    with pytest.raises(IncompleteStoreError, match=f"{half}.*never finished") as e:
        open_mouse(half)
    _one_line(e)


def test_unknown_format_version(store, tmp_path):
    future = _copy(store, tmp_path)
    _edit_attrs(future, format_version=99)
    with pytest.raises(FormatVersionError, match="format version 99 is not supported") as e:
        open_mouse(future)
    _one_line(e)


def test_damaged_store_names_the_missing_array(store, tmp_path):
    damaged = _copy(store, tmp_path)
    shutil.rmtree(damaged / "has_responses")
    reconsolidate(damaged)
    with pytest.raises(StoreFormatError, match="no array 'has_responses'") as e:
        open_mouse(damaged)
    _one_line(e)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda p: p[::-1], "'index/train' is not in ascending position and trial id order"),
        (
            lambda p: np.concatenate([p[:1], p[2:]]),
            f"'index/train' is not one consecutive range of trials, as format version {FORMAT_VERSION} requires",
        ),
    ],
    ids=["shuffled", "gap"],
)
def test_tier_index_out_of_order_is_refused(store, tmp_path, edit, match):
    """Reads cover ascending runs of the trial axis, one per tier in format version 2."""
    broken = _copy(store, tmp_path)
    index = zarr.open_array(str(broken / "index" / "train"), mode="r")
    edited = edit(index[...])
    # Rewritten as the converter writes it (checksummed), so only the order is wrong.
    replaced = zarr.open_group(str(broken / "index"), mode="r+").create_array(
        "train", shape=edited.shape, dtype=edited.dtype, overwrite=True,
        dimension_names=index.metadata.dimension_names, compressors=[Crc32cCodec()])
    replaced[...] = edited
    reconsolidate(broken)
    with pytest.raises(StoreFormatError, match=match) as e:
        open_mouse(broken)
    _one_line(e)


@pytest.mark.parametrize(
    "names, match",
    [
        ("bogus", "unknown split or tier 'bogus'; valid names: train, validation, test"),
        (["train", "Train"], "unknown split or tier 'Train'"),
        ([], "no split or tier named"),
    ],
)
def test_unknown_split(store, names, match):
    with pytest.raises(SelectionError, match=match) as e:
        open_mouse(store).split(names)
    _one_line(e)
    assert str(store) in str(e.value)


@pytest.mark.parametrize(
    "frames, match",
    [
        (slice(10, 10), r"expected 0 <= start < stop <= t_pad=30"),
        (slice(12, 5), r"frames 12\.\.5"),
        (slice(0, 31), r"t_pad=30"),
        (slice(-3, None), r"frames -3\.\.30"),
        (slice(0, 10, 2), "step 2"),
        (slice(0.5, 10), "must be integers"),
        ((0, 10), "expected slice"),
    ],
)
def test_bad_frames_window(store, frames, match):
    with pytest.raises(SelectionError, match=match) as e:
        open_mouse(store).split("train", frames=frames)
    _one_line(e)
    assert str(store) in str(e.value)


def test_bad_split_options(store):
    mouse = open_mouse(store)
    with pytest.raises(SelectionError, match="statistics='mine'"):
        mouse.split("train", statistics="mine")
    with pytest.raises(SelectionError, match="trials_per_block=0"):
        mouse.split("train", trials_per_block=0)
    with pytest.raises(SelectionError, match="unknown variable 'speed'"):
        mouse.split("train").array("speed")
    with pytest.raises(SelectionError, match="no statistics recomputed from tier 'oracle'; available: train"):
        mouse.statistics("oracle")


def test_missing_provided_statistic(store, tmp_path):
    lacking = _copy(store, tmp_path)
    shutil.rmtree(lacking / "meta/statistics/videos/all/std")
    reconsolidate(lacking)
    mouse = open_mouse(lacking)
    message = r"provides no meta/statistics/videos/all/std; use statistics='recomputed'"
    with pytest.raises(StoreFormatError, match=message) as e:
        mouse.split("train", statistics="provided")
    _one_line(e)
    # The recomputed statistics and the raw values still work.
    assert mouse.split("train").videos.compute().shape[0] > 0
    assert "std" not in mouse.provided_statistics()["videos"]


def test_neuron_subset_reads_only_its_chunks(source, tmp_path):
    store = convert_mouse(source, tmp_path, progress=False, chunking=Chunking(neurons_per_chunk=8))
    counting = CountingStore(store)
    mouse = open_mouse(counting)
    full = mouse.split("train").responses.compute()
    counting.reads.clear()
    subset = mouse.split("train", neurons=[9, 12])
    assert subset.responses.shape == (len(subset), 2, full.shape[-1])
    assert subset.responses.numblocks[0] == 1, "one neuron's worth: every trial in one block"
    values = subset.responses.compute()
    np.testing.assert_array_equal(values, full[:, [9, 12]])
    chunk_reads = [(key, r.start, r.end) for key, r in counting.reads
                   if key.startswith("responses/c/") and isinstance(r, RangeByteRequest)]
    # Neurons 9 and 12 share one 8-neuron chunk per trial; the train trials are one
    # contiguous range of the store (format 2), so exactly one chunk per train trial.
    span = int(subset.positions[-1] - subset.positions[0] + 1)
    assert len(chunk_reads) == span == len(subset)
    assert len(set(chunk_reads)) == len(chunk_reads), "no chunk read twice"
    # Consecutive neurons are read as a slice; the values are the same.
    np.testing.assert_array_equal(mouse.split("train", neurons=[9, 10, 11]).responses.compute(), full[:, 9:12])
    window = mouse.split("validation", neurons=slice(3, 5), frames=slice(2, 20), statistics="provided")
    expected = mouse.split("validation", frames=slice(2, 20), statistics="provided").responses[:, 3:5]
    np.testing.assert_array_equal(window.responses.compute(), expected.compute())
    assert window.standardization_params("responses").scale.shape[0] == 2


@pytest.mark.parametrize(
    "neurons, match",
    [([], "non-empty"), ([40], r"outside 0\.\.39"), ([-1], "outside"), (slice(5, 5), "non-empty slice"),
     (slice(0, 10, 2), "step 1"), (["a"], "list of integers")],
)
def test_bad_neuron_selection(store, neurons, match):
    with pytest.raises(SelectionError, match=match) as excinfo:
        open_mouse(store).split("train", neurons=neurons)
    _one_line(excinfo)


@pytest.mark.parametrize("standardize", [True, False])
def test_trial_returns_the_same_numpy_as_the_dask_arrays(store, standardize):
    split = open_mouse(store).split(["train", "test"], standardize=standardize, frames=slice(3, 25), neurons=[1, 5, 7])
    for k in (0, len(split) - 1, -1):
        one = split.trial(k)
        assert set(one) == {"videos", "responses", "behavior", "pupil_center"}
        for variable, values in one.items():
            np.testing.assert_array_equal(values, split.array(variable)[k].compute(), err_msg=variable)
    withheld = int(np.flatnonzero(~split.has_responses)[0])
    assert np.isnan(split.trial(withheld)["responses"]).all() == standardize


@pytest.mark.parametrize("index", [10_000, -10_000, 1.5, True])
def test_trial_index_out_of_range(store, index):
    with pytest.raises(SelectionError, match="trial index") as excinfo:
        open_mouse(store).split("train").trial(index)
    _one_line(excinfo)
