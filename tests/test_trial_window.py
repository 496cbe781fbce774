"""``Split.trial(k, frames=...)``: a window of one trial reads only the chunks of its
frames (counted at the store) and equals the same frames of the whole trial."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_reader_access import CountingStore
from zarr.abc.store import RangeByteRequest

from sensorium_zarr import SelectionError, open_mouse
from sensorium_zarr import format as fmt
from sensorium_zarr.converter import main, verify
from sensorium_zarr.converter._chunking import Chunking
from sensorium_zarr.converter._convert import convert_mouse
from sensorium_zarr.testing import sample_spec, write_mouse

#: Video frames per inner chunk: a 50-frame window aligned to it decodes one chunk of three.
PER_CHUNK = 50


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    spec = sample_spec("dynamic00004-1-1-Video-window", n_neurons=12, n_trials=8, t_pad=150, height=4, width=6)
    return write_mouse(spec, tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def store(source, tmp_path_factory) -> Path:
    chunking = Chunking(frames_per_video_chunk=PER_CHUNK)
    return convert_mouse(source, tmp_path_factory.mktemp("out"), progress=False, chunking=chunking)


@pytest.fixture(scope="module")
def time_cut(source, tmp_path_factory) -> Path:
    """The same source with response chunks cut along time too (format version 4), written
    through the command line as a user would."""
    out = tmp_path_factory.mktemp("out-time")
    assert main(["convert", str(source), "--out", str(out), "--no-progress",
                 "--neurons-per-chunk", "4", "--frames-per-response-chunk", str(PER_CHUNK)]) == 0
    return out / f"{source.name}.zarr"


def _video_chunk_reads(counting: CountingStore) -> int:
    return sum(
        isinstance(r, RangeByteRequest) for key, r in counting.reads if key.startswith(f"{fmt.VIDEOS}/c/")
    )


@pytest.mark.parametrize("engine", ["zarr", "zarrs"])
def test_a_50_frame_window_reads_only_its_video_chunks(store, engine):
    if engine == "zarrs":
        pytest.importorskip("zarrs")
    counting = CountingStore(store)
    split = open_mouse(counting, engine=engine).split("train")
    whole = split.trial(0)  # also reads the statistics, once
    counting.reads.clear()
    split.trial(0)
    assert _video_chunk_reads(counting) == 3, "the whole trial: every one of its three video chunks"

    counting.reads.clear()
    window = split.trial(0, frames=slice(PER_CHUNK, 2 * PER_CHUNK))
    assert _video_chunk_reads(counting) == 1, counting.reads
    counting.reads.clear()
    straddling = split.trial(0, frames=slice(PER_CHUNK - 10, 2 * PER_CHUNK - 10))
    assert _video_chunk_reads(counting) == 2, counting.reads

    for variable in fmt.VARIABLES:
        axis = fmt.time_axis(variable, with_trial_axis=False)
        expected = np.take(whole[variable], np.arange(PER_CHUNK, 2 * PER_CHUNK), axis=axis)
        np.testing.assert_array_equal(window[variable], expected, err_msg=variable)
        expected = np.take(whole[variable], np.arange(PER_CHUNK - 10, 2 * PER_CHUNK - 10), axis=axis)
        np.testing.assert_array_equal(straddling[variable], expected, err_msg=variable)


def test_window_counts_within_the_splits_frames(store):
    mouse = open_mouse(store)
    inner = mouse.split("train", frames=slice(20, 120)).trial(1, frames=slice(5, 15))
    outer = mouse.split("train").trial(1, frames=slice(25, 35))
    for variable in fmt.VARIABLES:
        np.testing.assert_array_equal(inner[variable], outer[variable], err_msg=variable)
    with pytest.raises(SelectionError, match="expected 0 <= start < stop <= t_pad=100"):
        mouse.split("train", frames=slice(20, 120)).trial(1, frames=slice(90, 110))


def _response_chunk_reads(counting: CountingStore) -> set[tuple[str, int]]:
    return {
        (key, r.start) for key, r in counting.reads
        if key.startswith(f"{fmt.RESPONSES}/c/") and isinstance(r, RangeByteRequest)
    }


def test_response_chunks_cut_along_time_are_the_layout_asked_for_and_verify(source, time_cut):
    import zarr

    responses = zarr.open_array(str(time_cut / fmt.RESPONSES), mode="r")
    assert responses.chunks == (1, 4, PER_CHUNK) and responses.shards == (8, 12, 150)
    assert open_mouse(time_cut).attrs.chunking["frames_per_response_chunk"] == PER_CHUNK
    assert open_mouse(time_cut).attrs.format_version == fmt.FORMAT_VERSION >= 4
    assert verify(source, time_cut) == []


@pytest.mark.parametrize("engine", ["zarr", "zarrs"])
def test_a_window_reads_only_its_response_chunks_when_they_are_cut_along_time(store, time_cut, engine):
    if engine == "zarrs":
        pytest.importorskip("zarrs")
    counting = CountingStore(time_cut)
    split = open_mouse(counting, engine=engine).split("train")
    split.trial(0)
    counting.reads.clear()
    split.trial(0)
    assert len(_response_chunk_reads(counting)) == 3 * 3, "the whole trial: 3 neuron chunks x 3 frame chunks"
    counting.reads.clear()
    window = split.trial(0, frames=slice(PER_CHUNK, 2 * PER_CHUNK))
    assert len(_response_chunk_reads(counting)) == 3, "the window: one frame chunk of each neuron chunk"
    reference = open_mouse(store).split("train")
    np.testing.assert_array_equal(window[fmt.RESPONSES], reference.trial(0)[fmt.RESPONSES][:, PER_CHUNK:2 * PER_CHUNK])


def test_a_store_cut_along_time_reads_the_same_values(store, time_cut):
    cut, plain = open_mouse(time_cut).split("train"), open_mouse(store).split("train")
    for variable in fmt.VARIABLES:
        np.testing.assert_array_equal(cut.array(variable).compute(), plain.array(variable).compute(), err_msg=variable)
    np.testing.assert_array_equal(cut.responses[:, 5].compute(), plain.responses[:, 5].compute())
    key = ([-1, 0], slice(None), slice(40, 120))
    np.testing.assert_array_equal(cut.responses[key].compute(), plain.responses[key].compute())
    for k in range(len(cut)):
        for variable, values in cut.trial(k, frames=slice(30, 80)).items():
            np.testing.assert_array_equal(values, plain.trial(k, frames=slice(30, 80))[variable], err_msg=variable)
