"""The native engine reads exactly what zarr-python reads, for any orthogonal selection the
reader makes, from dense and sparse stores; absent chunks and missing shards read as the
fill value (or fail, when the format says every chunk is present); anything it does not
recognise is read by zarr-python."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorium_zarr import _engine as engine_
from sensorium_zarr import format as fmt
from sensorium_zarr._native import ChunkDecodeError, NativeArray, open_native
from sensorium_zarr.converter import convert_mouse
from sensorium_zarr.converter._chunking import Chunking
from sensorium_zarr.testing import sample_spec, write_mouse

# Shards of 4 trials (the last one part-empty), several inner chunks along neurons (the
# last one padded) and frames (a partial last one), so selections cross every boundary.
CHUNKING = Chunking(trials_per_shard=4, neurons_per_chunk=8, frames_per_video_chunk=16)


@pytest.fixture(scope="module", params=["dense", "sparse"])
def store(request, tmp_path_factory) -> Path:
    spec = sample_spec(n_neurons=30, n_trials=14, t_pad=40, responses=request.param, seed=3)
    source = write_mouse(spec, tmp_path_factory.mktemp("src"))
    return convert_mouse(source, tmp_path_factory.mktemp("out"), chunking=CHUNKING, engine="zarr", progress=False)


def _pair(store: Path, variable: str) -> tuple[zarr.Array, NativeArray]:
    native = engine_.open_reader(str(store), variable, "native")
    assert isinstance(native, NativeArray)
    return engine_.open_array(str(store), variable, "zarr"), native


def _axis(size: int, draw: st.DrawFn) -> object:
    kind = draw(st.sampled_from(["all", "slice", "int", "array", "sorted"]))
    if kind == "all":
        return slice(None)
    if kind == "slice":
        lo = draw(st.integers(-size - 2, size + 2))
        hi = draw(st.integers(-size - 2, size + 2))
        return slice(lo, hi)
    if kind == "int":
        return draw(st.integers(-size, size - 1))
    values = draw(st.lists(st.integers(-size, size - 1), min_size=0, max_size=6))
    return np.array(sorted(values) if kind == "sorted" else values, dtype=np.int64)


@st.composite
def selections(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[object, ...]:
    return tuple(_axis(n, draw) for n in shape)


@pytest.mark.parametrize("variable", list(fmt.VARIABLES))
def test_native_reads_what_zarr_reads(store, variable):
    reference, native = _pair(store, variable)
    np.testing.assert_array_equal(native[...], reference[...])

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(selection=selections(reference.shape))
    def check(selection):
        want = reference.get_orthogonal_selection(selection)
        got = native.get_orthogonal_selection(selection)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)

    check()


@pytest.mark.parametrize("variable", list(fmt.VARIABLES))
def test_the_reader_selections_match(store, variable):
    """The selections ``_read_block`` makes: a trial range or positions, a frame window,
    neuron slices and index arrays."""
    reference, native = _pair(store, variable)
    n_trials = reference.shape[0]
    time_axis = fmt.time_axis(variable)
    for trials in (slice(0, 1), slice(3, 9), np.array([0, 5, 13]), np.array([13, 2, 2])):
        for frames in (slice(0, 40), slice(5, 23), slice(17, 18)):
            neuron_choices: list[object] = [slice(None)]
            if variable == fmt.RESPONSES:
                neuron_choices += [slice(7, 9), slice(29, 30), np.array([29, 0, 8, 15])]
            for neurons in neuron_choices:
                selection: list[object] = [slice(None)] * reference.ndim
                selection[0], selection[time_axis] = trials, frames
                if variable == fmt.RESPONSES:
                    selection[1] = neurons
                want = reference.get_orthogonal_selection(tuple(selection))
                np.testing.assert_array_equal(native.get_orthogonal_selection(tuple(selection)), want)
    assert n_trials == 14


@pytest.mark.parametrize("preadv", [True, False])
def test_small_runs_and_plain_pread_read_the_same(store, monkeypatch, preadv):
    """Runs cut at a few hundred bytes (several reads per shard, some of a single chunk),
    and the ``os.pread`` fallback for systems without ``os.preadv``: the same values as
    zarr."""
    from sensorium_zarr import _native

    monkeypatch.setattr(_native, "_MAX_RUN", 300)
    monkeypatch.setattr(_native, "_PREADV", preadv)
    for variable in fmt.VARIABLES:
        reference, native = _pair(store, variable)
        np.testing.assert_array_equal(native[...], reference[...])
        selection = (np.array([1, 6, 13]),) + (slice(2, None),) * (reference.ndim - 1)
        np.testing.assert_array_equal(
            native.get_orthogonal_selection(selection), reference.get_orthogonal_selection(selection)
        )


def test_a_read_decodes_in_the_calling_thread(store):
    """Reads from the main thread and from another thread start no thread of their own
    (splitting a read over decoding threads made reads slower on two cores)."""
    import threading

    arrays = [_pair(store, variable)[1] for variable in fmt.VARIABLES]
    before = {t.ident for t in threading.enumerate()}
    got = [a[...] for a in arrays]
    reader = threading.Thread(target=lambda: got.extend(a[...] for a in arrays))
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive()
    assert len(got) == 2 * len(arrays)
    assert {t.ident for t in threading.enumerate()} == before


def test_blosc_by_address_is_in_use_and_reads_what_numcodecs_reads(store, monkeypatch):
    """The per-chunk decode calls Blosc by address (``_blosc``) where numcodecs' library
    exports it, as on Linux; without it (``decompress`` None), numcodecs decodes: the same
    values either way, for whole chunks and chunks read in part."""
    import sys

    from sensorium_zarr import _blosc

    if sys.platform.startswith("linux"):
        assert _blosc.decompress is not None
    for variable in (fmt.RESPONSES, fmt.VIDEOS):
        reference, native = _pair(store, variable)
        selection = (np.array([0, 5, 13]), slice(3, 29)) + (slice(None),) * (reference.ndim - 2)
        whole, part = native[...], native.get_orthogonal_selection(selection)
        monkeypatch.setattr(_blosc, "decompress", None)
        np.testing.assert_array_equal(native[...], whole)
        np.testing.assert_array_equal(native.get_orthogonal_selection(selection), part)
        np.testing.assert_array_equal(whole, reference[...])
        monkeypatch.undo()


@pytest.mark.parametrize(("chunks", "shards"), [((2, 1, 10), (4, 3, 10)), ((1, 3, 1), (2, 3, 5)), ((4, 6, 10), None)])
def test_chunks_decoded_straight_into_the_output_only_where_they_are_one_block(tmp_path, chunks, shards):
    """A whole chunk is decoded straight into the output only when its part of it is one
    block of memory: a chunk one element long on an axis the output is longer on is not."""
    values = np.arange(4 * 6 * 10, dtype=np.float32).reshape(4, 6, 10)
    array = zarr.create_array(
        str(tmp_path / "a"), shape=values.shape, dtype="float32", chunks=chunks, shards=shards,
        compressors=CHUNKING.compressors("responses", 4), fill_value=np.nan,
    )
    array[...] = values
    native = open_native(array)
    assert native is not None
    selections = ((slice(None),) * 3, (slice(0, 2), slice(None), slice(None)), (slice(2, 4), slice(0, 3), slice(0, 5)))
    for selection in selections:
        np.testing.assert_array_equal(native.get_orthogonal_selection(selection), values[selection])


def test_out_of_bounds_indices_raise_like_zarr(store):
    _, native = _pair(store, fmt.RESPONSES)
    with pytest.raises(IndexError):
        native.get_orthogonal_selection((14,))
    with pytest.raises(IndexError):
        native.get_orthogonal_selection((np.array([0, 14]),))


def _sharded(tmp_path: Path) -> tuple[zarr.Array, np.ndarray]:
    """A sharded array like the converter's, with chunks left unwritten (so absent from
    the index) and a whole shard never written (so no file)."""
    array = zarr.create_array(
        str(tmp_path / "a"), shape=(12, 10, 6), dtype="float32", chunks=(1, 4, 6), shards=(4, 12, 6),
        compressors=CHUNKING.compressors("responses", 4), fill_value=np.nan,
    )
    values = np.full(array.shape, np.nan, np.float32)
    values[0:2] = np.arange(2 * 10 * 6, dtype=np.float32).reshape(2, 10, 6)
    values[5, 4:8] = 7.0
    array[0:2] = values[0:2]
    array[5, 4:8] = values[5, 4:8]
    return array, values


def test_absent_chunks_and_missing_shards_read_as_the_fill_value(tmp_path):
    array, values = _sharded(tmp_path)
    assert not (tmp_path / "a" / "c" / "2" / "0" / "0").exists(), "trials 8..11 have no shard file"
    native = open_native(array)
    assert native is not None
    np.testing.assert_array_equal(native[...], values)
    np.testing.assert_array_equal(native.get_orthogonal_selection((np.array([9, 5, 1]), slice(3, 9))),
                                  values[[9, 5, 1]][:, 3:9])


def test_absent_chunks_fail_when_every_chunk_must_be_present(tmp_path):
    array, values = _sharded(tmp_path)
    native = open_native(array, every_chunk_present=True)
    assert native is not None
    np.testing.assert_array_equal(native.get_orthogonal_selection((slice(0, 2),)), values[0:2])
    for trials in (slice(5, 6), slice(9, 10)):
        with pytest.raises(ChunkDecodeError, match="missing"):
            native.get_orthogonal_selection((trials,))


def test_other_layouts_and_stores_fall_back_to_zarr(tmp_path):
    zstd = zarr.create_array(str(tmp_path / "zstd"), shape=(4, 3), dtype="float32", chunks=(2, 3))
    zstd[...] = 1.0
    assert open_native(zstd) is None  # zarr's default compressor, not blosc
    reader_array = engine_.open_reader(str(tmp_path), "zstd", "native")
    assert isinstance(reader_array, zarr.Array)
    np.testing.assert_array_equal(engine_.read(reader_array, ..., "here"), np.ones((4, 3), np.float32))

    memory = zarr.storage.MemoryStore()
    in_memory = zarr.create_array(memory, shape=(4, 3), dtype="float32", chunks=(2, 3),
                                  compressors=CHUNKING.compressors("responses", 4))
    assert open_native(in_memory) is None  # not a local folder

    strings = zarr.create_array(str(tmp_path / "s"), shape=(2,), dtype=str, chunks=(2,))
    assert open_native(strings) is None


@pytest.mark.parametrize("variable", list(fmt.VARIABLES))
def test_a_scaled_read_is_the_read_times_the_scale(store, variable, monkeypatch):
    """``scale`` multiplies each chunk's values as they are placed: bit for bit the read
    multiplied afterwards, for whole and partial chunks, coded and uncoded (read straight
    into the output, or through the read buffer when the scattering read is off)."""
    from sensorium_zarr import _native

    reference, native = _pair(store, variable)
    rng = np.random.default_rng(5)
    shape = [1] * reference.ndim
    shape[-2 if variable == fmt.RESPONSES else -1] = -1
    selections = [
        (slice(None),) * reference.ndim,
        (slice(2, 7),) + (slice(None),) * (reference.ndim - 1),
        (np.array([0, 5, 13]), slice(3, 29)) + (slice(None),) * (reference.ndim - 2),
    ]
    scattered: list[int] = []
    real_scatter = _native.NativeArray._scatter

    def counting(self, fd, run, path, into):
        scattered.append(len(run))
        return real_scatter(self, fd, run, path, into)

    monkeypatch.setattr(_native.NativeArray, "_scatter", counting)
    for scatter in (_native._MAX_SCATTER, 0):
        monkeypatch.setattr(_native, "_MAX_SCATTER", scatter)
        scattered.clear()
        for selection in selections:
            want = native.get_orthogonal_selection(selection)
            scale = rng.uniform(0.5, 2.0, want.shape[-2 if variable == fmt.RESPONSES else -1]).astype(want.dtype)
            scale = scale.reshape(shape)
            got = native.get_orthogonal_selection(selection, scale)
            np.testing.assert_array_equal(got, np.multiply(want, scale), err_msg=f"{variable} {selection}")
            np.testing.assert_array_equal(want, reference.get_orthogonal_selection(selection))
        # Uncoded chunks are read straight into the output unless that is switched off.
        assert bool(scattered) == (scatter > 0 and not native.layout.compressed), (variable, scatter)
    with pytest.raises(ValueError, match="keeps every axis"):
        native.get_orthogonal_selection((0,), np.ones(1, native.dtype))


class _IO:
    """Every ``posix_fadvise`` and ``preadv`` of this process while spied on, in order, as
    (kind, inode, start, end): ``advise``, ``read``, or ``probe`` (a ``preadv`` with flags:
    ``NativeArray.cached``'s)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import os

        self.events: list[tuple[str, int, int, int]] = []
        real_fadvise, real_preadv = os.posix_fadvise, os.preadv

        def fadvise(fd, offset, length, advice):
            assert advice == os.POSIX_FADV_WILLNEED
            self.events.append(("advise", os.fstat(fd).st_ino, offset, offset + length))
            return real_fadvise(fd, offset, length, advice)

        def preadv(fd, buffers, offset, *flags):
            n = real_preadv(fd, buffers, offset, *flags)
            self.events.append(("probe" if flags else "read", os.fstat(fd).st_ino, offset, offset + n))
            return n

        monkeypatch.setattr(os, "posix_fadvise", fadvise)
        monkeypatch.setattr(os, "preadv", preadv)

    def of(self, kind: str) -> list[tuple[str, int, int, int]]:
        return [e for e in self.events if e[0] == kind]

    def covered(self, kind: str) -> set[tuple[int, int]]:
        """Every (inode, byte) the events of ``kind`` span."""
        return {(ino, b) for _, ino, lo, hi in self.of(kind) for b in range(lo, hi)}

    def advised_before_reading(self) -> bool:
        kinds = [e[0] for e in self.events]
        return "read" not in kinds or "advise" not in kinds[kinds.index("read"):]


def test_a_read_in_several_places_advises_exactly_the_bytes_it_reads(store, monkeypatch):
    """Before its first system call, a read of runs in several places out of the page
    cache tells the kernel which bytes it will take (so the disk fetches them at once):
    every byte it reads is advised and nothing else is, so a read of one neuron never
    pulls in its shards' other chunks. In the cache, it only probes and advises nothing
    (advising cached pages costs more than it saves). A read of one range (one trial)
    advises nothing: the kernel's read-ahead follows it."""
    import os

    from sensorium_zarr import _native

    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this system")
    reference, native = _pair(store, fmt.RESPONSES)
    selection = (slice(None), slice(3, 4), slice(None))
    expected = reference.get_orthogonal_selection(selection)
    _cached_or_skip(native, selection)
    _evict(store)
    if native.cached(selection) is not False:
        pytest.skip("this file system keeps its pages in the cache (eviction does not take)")
    _evict(store)  # the probe's own read may have started fetching its page
    drop = os.posix_fadvise  # the spy below takes only the reads' own advice
    io = _IO(monkeypatch)
    monkeypatch.setattr(_native, "_MAX_RUN", 300)  # several runs for every selection below

    # One neuron across trials, out of the cache: runs in many places, each advised,
    # nothing else.
    np.testing.assert_array_equal(native.get_orthogonal_selection(selection), expected)
    assert len(io.of("read")) > 1 and len(io.of("advise")) > 1
    assert io.advised_before_reading(), "advice comes before the read's first system call"
    assert io.covered("advise") == io.covered("read")
    # The same read again, in the cache: probed, not advised.
    io.events.clear()
    np.testing.assert_array_equal(native.get_orthogonal_selection(selection), expected)
    assert io.of("probe") and not io.of("advise") and len(io.of("read")) > 1
    # Its last range out of the cache again: advised again, every byte.
    io.events.clear()
    last = max(native.folder.glob("c/*/0/0"), key=lambda path: int(path.parts[-3]))
    fd = os.open(last, os.O_RDONLY)
    try:
        drop(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    np.testing.assert_array_equal(native.get_orthogonal_selection(selection), expected)
    assert io.covered("advise") == io.covered("read")
    # One trial: several runs, but one range, left to the kernel's read-ahead.
    for run in (300, 1 << 30):
        monkeypatch.setattr(_native, "_MAX_RUN", run)
        io.events.clear()
        native.get_orthogonal_selection((slice(2, 3), slice(None), slice(None)))
        assert io.of("read") and not io.of("advise"), run


def _evict(root: Path) -> None:
    """Drop ``root``'s files from the page cache (written back first: dirty pages stay)."""
    import os

    os.sync()
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _cached_or_skip(native: NativeArray, selection: tuple[object, ...]) -> bool:
    found = native.cached(selection)
    if found is None:
        pytest.skip("this system or file system reads no RWF_NOWAIT")
    return found


def test_cached_tells_a_chunk_in_the_page_cache_from_one_out_of_it(store):
    """``cached`` reads one byte of the selection's first stored chunk without waiting for
    the disk: True once the chunk was read, False once its file left the page cache,
    None for what it cannot tell (nothing selected, a missing shard)."""
    import os

    _, native = _pair(store, fmt.RESPONSES)
    trial = (slice(5, 6), slice(None), slice(None))
    native.get_orthogonal_selection(trial)
    assert _cached_or_skip(native, trial) is True
    _evict(store)
    assert native.cached(trial) is False
    _evict(store)  # the probe's own read, which may not wait, may start fetching its page
    assert native.cached((slice(5, 6), np.array([9, 17]), slice(None))) is False  # an index array: its first
    native.get_orthogonal_selection(trial)
    assert native.cached(trial) is True
    assert native.cached((slice(5, 5), slice(None), slice(None))) is None
    shard = native.folder / "c" / "3" / "0" / "0"  # trials 12..13: the last shard
    saved = shard.read_bytes()
    os.remove(shard)
    try:
        assert native.cached((slice(12, 13), slice(None), slice(None))) is None
    finally:
        shard.write_bytes(saved)


def test_will_need_advises_exactly_the_bytes_a_read_takes(store, monkeypatch):
    """``will_need`` advises every byte the read of the same selection takes and nothing
    else, one range or several, and for a missing shard or a damaged index, which it leaves
    for the read to report, it advises what it can and raises nothing."""
    import os

    from sensorium_zarr import _native

    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this system")
    io = _IO(monkeypatch)
    for variable in fmt.VARIABLES:
        _, native = _pair(store, variable)
        t = fmt.time_axis(variable)
        window = [slice(2, 3)] + [slice(None)] * (native.ndim - 1)
        window[t] = slice(17, 33)
        for selection in [(slice(2, 3),), tuple(window), (slice(None), slice(1, 2)), (np.array([0, 5, 13]),)]:
            io.events.clear()
            native.will_need(selection)
            advised = io.covered("advise")
            assert advised, (variable, selection)
            monkeypatch.setattr(_native, "_FADVISE", False)  # the read's own advice aside
            io.events.clear()
            native.get_orthogonal_selection(selection)
            monkeypatch.setattr(_native, "_FADVISE", True)
            assert advised == io.covered("read"), (variable, selection)
    _, native = _pair(store, fmt.RESPONSES)
    shard = native.folder / "c" / "3" / "0" / "0"
    saved = shard.read_bytes()
    try:
        os.remove(shard)
        io.events.clear()
        native.will_need((slice(11, 14),))  # trial 11 in shard 2, trials 12..13 missing
        inodes = {ino for _, ino, _, _ in io.of("advise")}
        assert inodes == {(native.folder / "c" / "2" / "0" / "0").stat().st_ino}
        damaged = bytearray(saved)
        damaged[-1] ^= 1  # the index's checksum
        shard.write_bytes(bytes(damaged))
        io.events.clear()
        native.will_need((slice(12, 14),))
        assert not io.of("advise")
    finally:
        shard.write_bytes(saved)


def test_a_trial_out_of_the_page_cache_advises_its_four_variables_before_reading(store, monkeypatch):
    """``Split.trial`` on local files: where its responses are out of the page cache, every
    byte of the four variables' reads is advised before the first of them reads (so the
    disk fetches them at once), with the values of a warm read; where they are cached,
    nothing is advised."""
    import os

    import sensorium_zarr as sz

    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this system")
    split = sz.open_mouse(store).split("train")
    k = len(split) - 1
    warm = split.trial(k, frames=slice(3, 30))
    _, native = _pair(store, fmt.RESPONSES)
    _evict(store)
    _cached_or_skip(native, (slice(int(split.positions[k]), int(split.positions[k]) + 1),))
    _evict(store)  # again: the probe may have started fetching its page
    io = _IO(monkeypatch)
    cold = split.trial(k, frames=slice(3, 30))
    for v in fmt.VARIABLES:
        np.testing.assert_array_equal(cold[v], warm[v], err_msg=v)
    assert io.of("advise") and io.of("read")
    assert io.advised_before_reading()
    advised, read = io.covered("advise"), io.covered("read")
    assert read <= advised
    files = {v: {p.stat().st_ino for p in (Path(store) / v).rglob("c/**/*") if p.is_file()} for v in fmt.VARIABLES}
    assert all({ino for ino, _ in advised} & files[v] for v in fmt.VARIABLES)  # every variable's
    io.events.clear()
    split.trial(k, frames=slice(3, 30))
    assert not io.of("advise")
