"""One flipped bit anywhere in a chunk file fails every read that decodes it, with one line
naming the array; no read returns wrong values.

Each test flips one bit at many positions of one array's chunk file (for a sharded array:
the start, middle and checksum of every inner chunk, and fields of the shard index),
reads through the public API after each flip, and puts the bit back. The store has
several inner chunks per trial and several trials per shard, so partial reads of shards
and chunks are what is tested; reads that do not touch the damaged chunk must return the
stored values exactly. The per-trial arrays are damaged on disk and, the same way, in a
bucket of the real S3 server (the session's ``s3_server``), object by object.

Every test runs on a store whose variables are Blosc-coded and on one whose variables are
all uncoded (format version 7: ``bytes`` and ``crc32c`` only, checked and copied on read).

From format version 5 opening reads the bundle, one chunk duplicating the small arrays:
damage in it fails opening, and damage in an array it duplicates is not read there (a
version 4 store, the committed golden one, shows the per-array checks it replaces).
"""

from __future__ import annotations

import shutil
import struct
import uuid
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import chunk_codecs, small_spec

import sensorium_zarr as reader
from sensorium_zarr import format as fmt
from sensorium_zarr._location import Remote
from sensorium_zarr._native import NativeArray
from sensorium_zarr._remote import RemoteArray
from sensorium_zarr._standardize import required_statistics
from sensorium_zarr.converter import convert_mouse
from sensorium_zarr.converter._chunking import Chunking
from sensorium_zarr.errors import StoreFormatError
from sensorium_zarr.testing import write_mouse

TRIALS_PER_SHARD = 4
SHARD = 1  # the damaged shard (or chunk) of a per-trial array: store positions 4..7
DAMAGED_POSITIONS = range(SHARD * TRIALS_PER_SHARD, (SHARD + 1) * TRIALS_PER_SHARD)
VARIABLES = list(fmt.VARIABLES)
STANDARDIZING = ("mean", "std", "count")


#: The store's variables Blosc-coded (``min_blosc_saving`` 0), or all uncoded (format
#: version 7: 100, which no codec reaches).
CODINGS = {"blosc": 0, "uncoded": 100}


@pytest.fixture(scope="module", params=list(CODINGS))
def pristine(request, tmp_path_factory) -> Path:
    source = write_mouse(small_spec(), tmp_path_factory.mktemp("src"))
    chunking = Chunking(trials_per_shard=TRIALS_PER_SHARD, neurons_per_chunk=8, frames_per_video_chunk=8,
                        min_blosc_saving=CODINGS[request.param])
    store = convert_mouse(source, tmp_path_factory.mktemp("out"), chunking=chunking, engine="zarr", progress=False)
    for variable in VARIABLES:
        codecs = chunk_codecs(zarr.open_array(str(store / variable), mode="r"))
        assert ("blosc" in [c["name"] for c in codecs]) == (request.param == "blosc"), variable
    return store


@pytest.fixture(scope="module")
def store(pristine, tmp_path_factory) -> Path:
    """A copy the tests damage, one bit at a time, and always mend."""
    return Path(shutil.copytree(pristine, tmp_path_factory.mktemp("damaged") / pristine.name))


@pytest.fixture(scope="module")
def expected(pristine):
    mouse = reader.open_mouse(pristine)
    split = mouse.split(list(mouse.tiers))
    return {
        "trials": [split.trial(k) for k in range(split.n_trials)],
        "arrays": {v: getattr(split, v).compute() for v in VARIABLES},
        "statistics": mouse.statistics(),
        "provided": mouse.provided_statistics(),
    }


def chunk_file(store: Path, path: str, index: tuple[int, ...]) -> Path:
    return store / path / "c" / "/".join(map(str, index))


def spread(n_bytes: int, count: int) -> list[int]:
    """``count`` byte positions spread over ``n_bytes``, always including the first and the
    last four (the checksum)."""
    inner = np.linspace(0, n_bytes - 1, num=min(count, n_bytes)).astype(int).tolist()
    return sorted({*inner, *range(max(0, n_bytes - 4), n_bytes)})


def shard_positions(data: bytes, n_inner: int) -> dict[int, int | None]:
    """Damage positions of one shard -> the inner chunk they damage (None: the index)."""
    index_size = 16 * n_inner + 4
    index_start = len(data) - index_size
    fields = struct.unpack(f"<{2 * n_inner}Q", data[index_start : index_start + 16 * n_inner])
    positions: dict[int, int | None] = {}
    for inner in range(n_inner):
        offset, length = fields[2 * inner], fields[2 * inner + 1]
        assert offset + length <= index_start, "every inner chunk is stored"
        for at in (offset, offset + length // 2, offset + length - 1):
            positions[at] = inner
    for inner in range(0, n_inner, max(1, n_inner // 4)):
        for byte in (0, 7, 8, 15):  # low and high bytes of the offset and length fields
            positions[index_start + 16 * inner + byte] = None
    for byte in range(index_size - 4, index_size):
        positions[index_start + byte] = None
    return positions


class Flip:
    """Flip one bit of ``path`` at ``position`` for the ``with`` block."""

    def __init__(self, path: Path, position: int) -> None:
        self.path, self.position = path, position

    def _toggle(self) -> None:
        data = bytearray(self.path.read_bytes())
        data[self.position] ^= 1 << (self.position % 8)
        self.path.write_bytes(bytes(data))

    def __enter__(self) -> Flip:
        self._toggle()
        return self

    def __exit__(self, *exc: object) -> None:
        self._toggle()


def assert_damage_named(error: pytest.ExceptionInfo, array: str) -> None:
    message = str(error.value)
    assert f"'{array}' is damaged: a chunk fails its CRC32C checksum" in message, message
    assert "\n" not in message and "convert the source again" in message, message


def raises_naming(array: str, read, *args, **kwargs):
    with pytest.raises(StoreFormatError) as error:
        read(*args, **kwargs)
    assert_damage_named(error, array)


#: The engines that must catch every damaged chunk (zarrs does not: see the last test).
CHECKING = ["native", "zarr"]


def damage_of(store: Path, variable: str) -> tuple[Path, dict[int, int | None], int | None]:
    """The damaged shard (or chunk) file of ``variable``, the positions flipped in it (each
    with the inner chunk it damages, None: the index or the whole chunk) and the inner
    chunks per trial (None: a plain chunk)."""
    array = zarr.open_array(str(store / variable), mode="r")
    path = chunk_file(store, variable, (SHARD,) + (0,) * (array.ndim - 1))
    if array.shards is None:
        return path, dict.fromkeys(spread(path.stat().st_size, 32)), None
    grid = [s // c for s, c in zip(array.shards, array.chunks, strict=True)]
    return path, shard_positions(path.read_bytes(), int(np.prod(grid))), int(np.prod(grid[1:]))


def assert_every_read_fails(split, expected, variable, damage, per_trial, flip) -> None:
    """Each flip (``flip(position)``, a context manager) fails every read of the trials it
    damages, with one line naming the array, and no other trial's read changes."""
    assert split.positions.tolist() == list(range(split.n_trials))
    assert len(damage) >= 24
    for position, inner in damage.items():
        with flip(position):
            hit = DAMAGED_POSITIONS if inner is None or per_trial is None else [
                SHARD * TRIALS_PER_SHARD + inner // per_trial
            ]
            for k in DAMAGED_POSITIONS:
                if k in hit:
                    raises_naming(variable, split.trial, k)
                    raises_naming(variable, getattr(split, variable)[k].compute)
                else:
                    np.testing.assert_array_equal(split.trial(k)[variable], expected["trials"][k][variable])
                    np.testing.assert_array_equal(
                        getattr(split, variable)[k].compute(), expected["arrays"][variable][k]
                    )
            raises_naming(variable, getattr(split, variable).compute)
    np.testing.assert_array_equal(getattr(split, variable).compute(), expected["arrays"][variable])


@pytest.mark.parametrize("engine", CHECKING)
@pytest.mark.parametrize("variable", VARIABLES)
def test_every_read_of_a_damaged_trial_array_fails(store, expected, variable, engine):
    mouse = reader.open_mouse(store, engine=engine)
    if engine == "native":  # read by the reader's own path, not zarr's fallback
        assert isinstance(mouse._handle.array(variable), NativeArray)
    path, damage, per_trial = damage_of(store, variable)
    assert_every_read_fails(
        mouse.split(list(mouse.tiers)), expected, variable, damage, per_trial, lambda at: Flip(path, at)
    )


@pytest.fixture(scope="module")
def bucket(pristine, s3_server) -> str:
    """The pristine store uploaded to a bucket of the real S3 server, as its files are."""
    from benchmarks.s3 import upload

    url = f"s3://sensorium-test/damage-{uuid.uuid4().hex[:8]}/{pristine.name}"
    upload(pristine, Remote.of(url, s3_server.storage_options()))
    return url


class FlipObject:
    """Flip one bit of the object ``key`` at ``position`` for the ``with`` block (each put
    gives the object a new ETag, so a cached shard index is stale until read again)."""

    def __init__(self, objects, key: str, position: int) -> None:
        self.objects, self.key, self.position = objects, key, position

    def _toggle(self) -> None:
        import obstore

        data = bytearray(bytes(obstore.get(self.objects, self.key).bytes()))
        data[self.position] ^= 1 << (self.position % 8)
        obstore.put(self.objects, self.key, bytes(data))

    def __enter__(self) -> FlipObject:
        self._toggle()
        return self

    def __exit__(self, *exc: object) -> None:
        self._toggle()


@pytest.mark.parametrize("engine", [None, "zarr"])
@pytest.mark.parametrize("variable", VARIABLES)
def test_every_read_of_a_damaged_trial_array_in_a_bucket_fails(pristine, bucket, s3_server, expected, variable, engine):
    options = s3_server.storage_options()
    mouse = reader.open_mouse(bucket, storage_options=options, engine=engine)
    if engine is None:  # the default for a bucket: ranged GETs, checked by the native code
        assert isinstance(mouse._handle.array(variable), RemoteArray)
    path, damage, per_trial = damage_of(pristine, variable)
    objects = Remote.of(bucket, options).objects()
    key = path.relative_to(pristine).as_posix()
    assert_every_read_fails(
        mouse.split(list(mouse.tiers)), expected, variable, damage, per_trial,
        lambda at: FlipObject(objects, key, at),
    )


SMALL = [fmt.TRIAL_ID, fmt.TIER, fmt.VALID_FRAMES, fmt.HAS_RESPONSES]


def only_chunk(store: Path, path: str) -> Path:
    (chunk,) = (p for p in (store / path / "c").rglob("*") if p.is_file())
    return chunk


GOLDEN_V4 = Path(__file__).parent / "data" / "golden-v4.zarr"


@pytest.fixture(scope="module")
def store_v4(tmp_path_factory) -> Path:
    """A copy of the committed version 4 store, which has no bundle: opening reads each
    small array itself."""
    return Path(shutil.copytree(GOLDEN_V4, tmp_path_factory.mktemp("v4") / GOLDEN_V4.name))


@pytest.mark.parametrize("engine", ["native", "zarr", "zarrs"])
@pytest.mark.parametrize("array", SMALL + ["index"])
def test_a_damaged_trial_index_of_a_version_4_store_fails_opening(store_v4, engine, array):
    paths = [array] if array != "index" else [f"{fmt.INDEX_GROUP}/{t}" for t in reader.open_mouse(store_v4).tiers]
    for path in paths:
        chunk = only_chunk(store_v4, path)
        for position in spread(chunk.stat().st_size, 24):
            with Flip(chunk, position):
                raises_naming(path, reader.open_mouse, store_v4, engine=engine)
    assert reader.open_mouse(store_v4, engine=engine).n_trials == 8


@pytest.mark.parametrize("engine", ["native", "zarr", "zarrs"])
def test_a_damaged_bundle_fails_opening(store, engine):
    """A flipped bit anywhere in the bundle's one chunk (its start, the members, the
    checksum) fails opening with one line naming it, whatever the engine."""
    chunk = only_chunk(store, fmt.BUNDLE)
    positions = spread(chunk.stat().st_size, 64)
    assert len(positions) >= 64
    for position in positions:
        with Flip(chunk, position):
            raises_naming(fmt.BUNDLE, reader.open_mouse, store, engine=engine)
    assert reader.open_mouse(store, engine=engine).n_trials == 20


def test_a_deleted_bundle_chunk_fails_opening(store, tmp_path):
    broken = Path(shutil.copytree(store, tmp_path / store.name))
    only_chunk(broken, fmt.BUNDLE).unlink()
    with pytest.raises(StoreFormatError) as error:
        reader.open_mouse(broken)
    message = str(error.value)
    assert message.startswith(f"{broken}: chunk c/0 of 'bundle' is missing"), message
    assert "\n" not in message and "the store is damaged, convert the source again" in message


@pytest.mark.parametrize("array", SMALL + ["index"])
def test_opening_reads_the_bundle_not_the_arrays_it_duplicates(store, pristine, array):
    """Version 5 opens from the bundle: a damaged chunk of an array it duplicates is not
    read (``verify`` reports it), and what opening gives is the stored values."""
    want = reader.open_mouse(pristine)
    paths = [array] if array != "index" else [f"{fmt.INDEX_GROUP}/{t}" for t in want.tiers]
    for path in paths:
        chunk = only_chunk(store, path)
        for position in spread(chunk.stat().st_size, 4):
            with Flip(chunk, position):
                got = reader.open_mouse(store)
                np.testing.assert_array_equal(got.trial_ids, want.trial_ids)
                np.testing.assert_array_equal(got.trial_tiers, want.trial_tiers)
                np.testing.assert_array_equal(got.valid_frames, want.valid_frames)
                np.testing.assert_array_equal(got.has_responses, want.has_responses)
                assert {t: p.tolist() for t, p in got.positions_by_tier.items()} == {
                    t: p.tolist() for t, p in want.positions_by_tier.items()
                }


def _arrays_under(store: Path, group: str) -> list[str]:
    root = zarr.open_group(str(store / group), mode="r")
    return sorted(f"{group}/{path}" for path, node in root.members(max_depth=None) if isinstance(node, zarr.Array))


def _standardizes(path: str, variable: str) -> bool:
    """Whether ``split`` reads the statistic at ``path`` to standardize ``variable``."""
    stat = path.split("/")[-1]
    if path.startswith("meta/"):
        return stat in required_statistics(variable)
    return f"/{fmt.OVER_TRIALS_AND_TIME}/" in path and stat in STANDARDIZING


@pytest.mark.parametrize("engine", ["native", "zarr", "zarrs"])
def test_every_read_of_a_damaged_statistic_fails(store, expected, engine):
    recomputed = _arrays_under(store, "statistics")
    provided = _arrays_under(store, "meta/statistics")
    assert len(recomputed) == len(VARIABLES) * len(fmt.GRANULARITIES) * len(fmt.STATISTICS) and provided
    mouse = reader.open_mouse(store, engine=engine)
    bundled = set(mouse._handle.bundle())
    variable_of = {p: next(v for v in VARIABLES if f"/{v}/" in p) for p in recomputed + provided}
    assert {p for p, v in variable_of.items() if _standardizes(p, v)} <= bundled
    for path in recomputed + provided:
        chunk = only_chunk(store, path)
        variable = next(v for v in VARIABLES if f"/{v}/" in path)
        source = reader.PROVIDED if path.startswith("meta/") else reader.RECOMPUTED
        size = chunk.stat().st_size
        # The first byte, the middle and the checksum: three flips per array (68 arrays,
        # each flip re-reads them all), one for zarrs, which decodes whole chunks here.
        positions = [size // 2] if engine == "zarrs" else [0, size // 2, size - 1]
        for position in positions:
            with Flip(chunk, position):
                if source == reader.PROVIDED:
                    raises_naming(path, mouse.provided_statistics)
                else:
                    raises_naming(path, mouse.statistics)
                if _standardizes(path, variable):
                    # A new Mouse: standardization parameters are read once per handle.
                    split = reader.open_mouse(store, engine=engine).split("train", statistics=source)
                    if path in bundled:
                        # Standardized with the bundle's copy, which is intact.
                        trial = split.trial(0)[variable]
                        if source == reader.RECOMPUTED:
                            np.testing.assert_array_equal(trial, expected["trials"][0][variable])
                    else:
                        raises_naming(path, split.trial, 0)
                        raises_naming(path, getattr(split, variable)[0].compute)
    mouse = reader.open_mouse(store, engine=engine)
    _assert_nested_equal(mouse.statistics(), expected["statistics"])
    _assert_nested_equal(mouse.provided_statistics(), expected["provided"])


def _assert_nested_equal(got, want) -> None:
    if isinstance(want, dict):
        assert got.keys() == want.keys()
        for key in want:
            _assert_nested_equal(got[key], want[key])
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("variable", ["responses", "behavior"])
def test_zarrs_skips_checksums_on_partial_reads(store, pristine, variable):
    """What the README must not claim: the zarrs engine returns some damaged chunks as
    wrong values when a read covers part of a shard (or chunk). If this starts failing,
    zarrs checks partial reads now: update the engine docs and the README."""
    mouse = reader.open_mouse(store, engine="zarrs")
    split = mouse.split(list(mouse.tiers), standardize=False)
    k = SHARD * TRIALS_PER_SHARD
    stored = zarr.open_array(str(pristine / variable), mode="r")[k]
    path = chunk_file(store, variable, (SHARD,) + (0,) * (len(split.shapes[variable]) - 1))
    wrong = 0
    for position in spread(path.stat().st_size, 48):
        with Flip(path, position):
            try:
                values = getattr(split, variable)[k].compute()
            except StoreFormatError:
                continue
            wrong += not np.array_equal(values, stored, equal_nan=True)
    assert wrong > 0
