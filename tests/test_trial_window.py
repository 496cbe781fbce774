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
from sensorium_zarr.converter._chunking import Chunking
from sensorium_zarr.converter._convert import convert_mouse
from sensorium_zarr.testing import sample_spec, write_mouse

#: Video frames per inner chunk: a 50-frame window aligned to it decodes one chunk of three.
PER_CHUNK = 50


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    spec = sample_spec("dynamic00004-1-1-Video-window", n_neurons=12, n_trials=8, t_pad=150, height=4, width=6)
    source = write_mouse(spec, tmp_path_factory.mktemp("src"))
    chunking = Chunking(frames_per_video_chunk=PER_CHUNK)
    return convert_mouse(source, tmp_path_factory.mktemp("out"), progress=False, chunking=chunking)


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
