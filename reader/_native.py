"""The reader's own read path (the ``"native"`` engine) for exactly the layouts the converter
writes. Entry point: ``open_native`` (None for an array it does not recognise).

Recognised: a Zarr v3 array in a local folder, regular chunk grid, default chunk keys,
a little-endian numeric data type, and either plain chunks coded ``[bytes, blosc,
crc32c]`` (``behavior``, ``pupil_center``) or ``sharding_indexed`` shards whose inner
chunks are coded so and whose index is coded ``[bytes, crc32c]`` (``responses``,
``videos``). Anything else is read by zarr-python (``_engine`` falls back).

Why a reader of its own: zarr-python's per-chunk overhead, not decompression, dominates
a read of one trial (hundreds of small inner chunks), and zarrs, which is fast, does not
check the checksum of chunks it reads in part. This path reads each shard's index once
per process (checked against its CRC32C, then cached for as long as the file's identity
is unchanged), reads each contiguous run of the inner chunks a selection touches with
one ``os.pread``, checks every chunk's CRC32C before decoding it, and decodes with Blosc
(which, like the CRC32C of ``google_crc32c``, releases the GIL) on a small thread pool.

Absent chunks (an inner chunk indexed 2^64-1, a missing shard file) read as the fill
value, as zarr reads them, unless the array is opened with ``every_chunk_present``.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
import sys
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs.blosc
import numpy as np
import zarr
from zarr.storage import LocalStore

from . import _fork

__all__ = ["NativeArray", "ChecksumError", "ChunkDecodeError", "open_native", "layout_of"]

_ABSENT = 2**64 - 1
_INDEX_ENTRY = 16  # an (offset, nbytes) pair of little-endian uint64
_CRC = 4
_BLOSC_HEADER = 16
_NUMERIC = {
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
}
#: Gaps between the inner chunks of one read up to this many bytes are read, not skipped:
#: one system call less costs more than copying a few kB.
_MAX_GAP = 16 * 1024
#: A read decodes on several threads only when it has at least this many compressed bytes
#: per thread; below, handing work to the pool costs more than it saves.
_BYTES_PER_THREAD = 512 * 1024


class ChecksumError(ValueError):
    """A chunk or shard index whose CRC32C does not match its bytes."""


class ChunkDecodeError(ValueError):
    """A chunk or shard index that passes its checksum but cannot be decoded."""


class _Unsupported(Exception):
    """A selection this path does not handle; zarr-python reads it instead."""


@dataclass(frozen=True)
class Layout:
    """What the reader needs of a recognised array's metadata."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fill_value: Any
    #: The stored files' chunk shape (for a sharded array, the shard shape).
    outer: tuple[int, ...]
    #: The shape of one decoded chunk (for a plain array, ``outer``).
    inner: tuple[int, ...]
    sharded: bool
    index_at_end: bool
    separator: str

    @property
    def per_shard(self) -> tuple[int, ...]:
        return tuple(o // i for o, i in zip(self.outer, self.inner, strict=True))


def _is_bytes_little(codec: Any, itemsize: int) -> bool:
    if not isinstance(codec, Mapping) or codec.get("name") != "bytes":
        return False
    endian = (codec.get("configuration") or {}).get("endian")
    return endian == "little" or (endian is None and itemsize == 1)


def _is_named(codec: Any, name: str) -> bool:
    return isinstance(codec, Mapping) and codec.get("name") == name


def _is_chunk_codecs(codecs: Any, itemsize: int) -> bool:
    return (
        isinstance(codecs, (list, tuple)) and len(codecs) == 3 and _is_bytes_little(codecs[0], itemsize)
        and _is_named(codecs[1], "blosc") and codecs[2] == {"name": "crc32c"}
    )


def layout_of(metadata: Mapping[str, Any], fill_value: Any) -> Layout | None:
    """The layout of an array with this Zarr v3 ``metadata`` (``to_dict()``), or None if
    it is not one this path reads."""
    if sys.byteorder != "little":
        return None
    if metadata.get("zarr_format") != 3 or metadata.get("node_type") != "array":
        return None
    if metadata.get("storage_transformers") not in (None, [], ()):
        return None
    data_type = metadata.get("data_type")
    if data_type not in _NUMERIC:
        return None
    dtype = np.dtype(str(data_type))
    grid = metadata.get("chunk_grid") or {}
    keys = metadata.get("chunk_key_encoding") or {}
    if grid.get("name") != "regular" or keys.get("name") != "default":
        return None
    separator = (keys.get("configuration") or {}).get("separator", "/")
    shape = tuple(int(s) for s in metadata.get("shape", ()))
    outer = tuple(int(c) for c in (grid.get("configuration") or {}).get("chunk_shape", ()))
    if len(outer) != len(shape) or not shape or separator not in ("/", ".") or min(outer) < 1:
        return None
    codecs = metadata.get("codecs")
    if _is_chunk_codecs(codecs, dtype.itemsize):
        return Layout(shape, dtype, fill_value, outer, outer, False, True, separator)
    if not (isinstance(codecs, (list, tuple)) and len(codecs) == 1 and _is_named(codecs[0], "sharding_indexed")):
        return None
    config = codecs[0].get("configuration") or {}
    inner = tuple(int(c) for c in config.get("chunk_shape", ()))
    index_codecs = config.get("index_codecs")
    location = config.get("index_location", "end")
    if (
        len(inner) != len(shape) or min(inner, default=0) < 1
        or any(o % i for o, i in zip(outer, inner, strict=True))
        or not _is_chunk_codecs(config.get("codecs"), dtype.itemsize)
        or not (isinstance(index_codecs, (list, tuple)) and len(index_codecs) == 2
                and _is_bytes_little(index_codecs[0], 8) and index_codecs[1] == {"name": "crc32c"})
        or location not in ("start", "end")
    ):
        return None
    return Layout(shape, dtype, fill_value, outer, inner, True, location == "end", separator)


def open_native(array: zarr.Array[Any], every_chunk_present: bool = False) -> NativeArray | None:
    """``array`` (opened by zarr-python) read by this path, or None if its store is not
    zarr's own ``LocalStore`` or its layout is not one this path reads."""
    store = array.store
    if type(store) is not LocalStore:  # a subclass may change how keys are read
        return None
    layout = layout_of(array.metadata.to_dict(), array.fill_value)
    if layout is None:
        return None
    return NativeArray(array, Path(store.root) / array.path, layout, every_chunk_present)


# One axis of a selection: a step-1 slice (start, stop), or an index array; and whether the
# output keeps the axis (an integer selection drops it).
_Axis = tuple[slice | np.ndarray, bool]
# One inner chunk's share of one axis: (chunk number, output positions, positions in the chunk).
_Piece = tuple[int, slice | np.ndarray, slice | np.ndarray]


def _parse_axis(sel: Any, n: int) -> _Axis:
    if isinstance(sel, slice):
        start, stop, step = sel.indices(n)
        if step != 1:
            raise _Unsupported
        return slice(start, max(start, stop)), True
    if isinstance(sel, (int, np.integer)) and not isinstance(sel, (bool, np.bool_)):
        i = int(sel)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for an axis of size {n}")
        i %= n
        return slice(i, i + 1), False
    index = np.asarray(sel)
    if index.ndim != 1 or index.dtype.kind not in "iu":
        raise _Unsupported
    index = index.astype(np.int64, copy=False)
    if len(index) and (index.min() < -n or index.max() >= n):
        raise IndexError(f"an index is out of bounds for an axis of size {n}")
    return np.where(index < 0, index + n, index), True


def _pieces(axis: slice | np.ndarray, size: int) -> list[_Piece]:
    """How the chunks of ``size`` elements share the selected ``axis``, in chunk order."""
    if isinstance(axis, slice):
        start, stop = axis.start, axis.stop
        pieces: list[_Piece] = []
        for c in range(start // size, -(-stop // size)):
            lo, hi = max(start, c * size), min(stop, (c + 1) * size)
            pieces.append((c, slice(lo - start, hi - start), slice(lo - c * size, hi - c * size)))
        return pieces
    chunks = axis // size
    order = np.argsort(chunks, kind="stable")
    bounds = np.flatnonzero(np.diff(chunks[order])) + 1
    pieces = []
    for group in np.split(order, bounds) if len(order) else []:
        c = int(chunks[group[0]])
        within = axis[group] - c * size
        out: slice | np.ndarray = group
        inside: slice | np.ndarray = within
        if len(group) == group[-1] - group[0] + 1 and np.all(np.diff(group) == 1):
            out = slice(int(group[0]), int(group[-1]) + 1)
            if np.all(np.diff(within) == 1):
                inside = slice(int(within[0]), int(within[-1]) + 1)
        pieces.append((c, out, inside))
    return pieces


@dataclass
class _Chunk:
    """One inner chunk a read needs: where it is stored and where its values go."""

    shard: tuple[int, ...]
    number: int  # its position in the shard index (C order)
    coords: tuple[int, ...]  # its position in the array's grid of inner chunks
    out: tuple[slice | np.ndarray, ...]
    inside: tuple[slice | np.ndarray, ...]
    offset: int = 0
    nbytes: int = 0


class NativeArray:
    """An array read by this path: ``get_orthogonal_selection`` and ``[...]`` as zarr's,
    same values; the zarr-python array it was opened from reads what this path does not
    (``fallback``)."""

    def __init__(self, array: zarr.Array[Any], folder: Path, layout: Layout, every_chunk_present: bool) -> None:
        self.fallback = array
        self.folder = folder
        self.layout = layout
        self.every_chunk_present = every_chunk_present
        self._indexes = _fork.per_process_dict()
        self._chunk_nbytes = math.prod(layout.inner) * layout.dtype.itemsize

    @property
    def shape(self) -> tuple[int, ...]:
        return self.layout.shape

    @property
    def ndim(self) -> int:
        return len(self.layout.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.layout.dtype

    @property
    def metadata(self) -> Any:
        return self.fallback.metadata

    @property
    def path(self) -> str:
        return self.fallback.path

    def __repr__(self) -> str:
        return f"<NativeArray {self.folder} shape={self.shape} dtype={self.dtype}>"

    def __getitem__(self, selection: Any) -> Any:
        if selection is Ellipsis:
            return self.get_orthogonal_selection(Ellipsis)
        return self.fallback[selection]

    def get_orthogonal_selection(self, selection: Any) -> np.ndarray:
        """The orthogonal ``selection`` (per axis: a slice, an integer, an integer array)."""
        if selection is Ellipsis:
            selection = ()
        if not isinstance(selection, tuple):
            selection = (selection,)
        if len(selection) > self.ndim or any(s is Ellipsis for s in selection):
            return np.asarray(self.fallback.get_orthogonal_selection(selection))
        selection = selection + (slice(None),) * (self.ndim - len(selection))
        try:
            axes = [_parse_axis(s, n) for s, n in zip(selection, self.shape, strict=True)]
        except _Unsupported:
            return np.asarray(self.fallback.get_orthogonal_selection(selection))
        return self._read(axes)

    def _read(self, axes: list[_Axis]) -> np.ndarray:
        layout = self.layout
        full_shape = tuple(
            (a.stop - a.start) if isinstance(a, slice) else len(a) for a, _ in axes
        )
        out = np.empty(full_shape, layout.dtype)
        kept = tuple(n for (_, keep), n in zip(axes, full_shape, strict=True) if keep)
        if out.size == 0:
            return out.reshape(kept)
        per_axis = [_pieces(a, size) for (a, _), size in zip(axes, layout.inner, strict=True)]
        per_shard = layout.per_shard
        by_shard: dict[tuple[int, ...], list[_Chunk]] = {}
        for combo in itertools.product(*per_axis):
            coords = tuple(p[0] for p in combo)
            shard = tuple(c // k for c, k in zip(coords, per_shard, strict=True))
            number = 0
            for c, k in zip(coords, per_shard, strict=True):
                number = number * k + c % k
            chunk = _Chunk(shard, number, coords, tuple(p[1] for p in combo), tuple(p[2] for p in combo))
            by_shard.setdefault(shard, []).append(chunk)
        fds: dict[tuple[int, ...], int] = {}
        try:
            stored: list[_Chunk] = []
            for shard, chunks in by_shard.items():
                stored.extend(self._locate(shard, chunks, out, fds))
            self._decode_all(stored, out, fds)
        finally:
            for fd in fds.values():
                os.close(fd)
        return out.reshape(kept)

    def _shard_file(self, shard: tuple[int, ...]) -> Path:
        sep = self.layout.separator
        return self.folder / ("c" + sep + sep.join(map(str, shard)))

    def _locate(
        self, shard: tuple[int, ...], chunks: list[_Chunk], out: np.ndarray, fds: dict[tuple[int, ...], int]
    ) -> list[_Chunk]:
        """``chunks`` of ``shard`` that are stored, with their byte ranges (the shard's
        file left open in ``fds``); the others' output filled with the fill value."""
        path = self._shard_file(shard)
        try:
            fd = fds[shard] = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            for chunk in chunks:
                self._absent(chunk, path, out)
            return []
        if not self.layout.sharded:
            size = os.fstat(fd).st_size
            for chunk in chunks:
                chunk.offset, chunk.nbytes = 0, size
            return chunks
        index = self._index(fd, str(path))
        stored: list[_Chunk] = []
        for chunk in chunks:
            if index[chunk.number, 0] == _ABSENT:
                self._absent(chunk, path, out)
                continue
            chunk.offset, chunk.nbytes = int(index[chunk.number, 0]), int(index[chunk.number, 1])
            stored.append(chunk)
        return stored

    def _absent(self, chunk: _Chunk, path: Path, out: np.ndarray) -> None:
        if self.every_chunk_present:
            raise ChunkDecodeError(f"chunk {chunk.coords} is missing from {path.name}, which the format forbids")
        _assign(out, chunk.out, self.layout.fill_value)

    def _index(self, fd: int, key: str) -> np.ndarray:
        """The checked (number of inner chunks, 2) index of the open shard ``fd``."""
        stat = os.fstat(fd)
        identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        cached = self._indexes.get(key)
        if cached is not None and cached[0] == identity:
            index: np.ndarray = cached[1]
            return index
        n = math.prod(self.layout.per_shard)
        nbytes = n * _INDEX_ENTRY + _CRC
        if stat.st_size < nbytes:
            raise ChunkDecodeError(f"shard {Path(key).name} is {stat.st_size} bytes, shorter than its index")
        raw = os.pread(fd, nbytes, stat.st_size - nbytes if self.layout.index_at_end else 0)
        if len(raw) != nbytes:
            raise ChunkDecodeError(f"shard {Path(key).name} was cut short while being read")
        _check(raw, f"the index of shard {Path(key).name}")
        index = np.frombuffer(raw, "<u8", count=2 * n).reshape(n, 2)
        absent = index[:, 0] == _ABSENT
        if not np.array_equal(absent, index[:, 1] == _ABSENT):
            raise ChunkDecodeError(f"the index of shard {Path(key).name} holds a half-absent chunk")
        offsets, lengths = index[~absent, 0], index[~absent, 1]
        if len(offsets) and (
            lengths.min() < _BLOSC_HEADER + _CRC or np.any(offsets > stat.st_size)
            or np.any(lengths > stat.st_size - offsets)
        ):
            raise ChunkDecodeError(f"the index of shard {Path(key).name} points outside the file")
        self._indexes[key] = (identity, index)
        return index

    def _decode_all(self, chunks: list[_Chunk], out: np.ndarray, fds: dict[tuple[int, ...], int]) -> None:
        if not chunks:
            return
        total = sum(c.nbytes for c in chunks)
        if total < _BYTES_PER_THREAD:
            self._decode_group(chunks, out, fds)
            return
        # On the pool even for one group: Blosc called from the main thread goes through
        # its global context (a lock and its own threads), slower for these chunk sizes.
        # Consecutive chunks (in file order) per thread, about the same bytes each, so each
        # thread reads its own contiguous runs.
        threads = max(1, min(_POOL_SIZE, total // _BYTES_PER_THREAD, len(chunks)))
        chunks = sorted(chunks, key=lambda c: (c.shard, c.offset))
        groups: list[list[_Chunk]] = [[]]
        share, done = total / threads, 0
        for chunk in chunks:
            if done >= share * len(groups) and len(groups) < threads:
                groups.append([])
            groups[-1].append(chunk)
            done += chunk.nbytes
        futures: list[Future[None]] = [_POOL.get().submit(self._decode_group, g, out, fds) for g in groups]
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error

    def _decode_group(self, chunks: list[_Chunk], out: np.ndarray, fds: dict[tuple[int, ...], int]) -> None:
        for path, run in self._runs(chunks, fds):
            for chunk, data in run:
                self._decode(chunk, data, path, out)

    def _runs(
        self, chunks: list[_Chunk], fds: dict[tuple[int, ...], int]
    ) -> Iterator[tuple[Path, list[tuple[_Chunk, np.ndarray]]]]:
        """Each chunk with its bytes, read one contiguous run of a shard at a time."""
        chunks = sorted(chunks, key=lambda c: (c.shard, c.offset))
        for shard, in_shard in itertools.groupby(chunks, key=lambda c: c.shard):
            path, fd = self._shard_file(shard), fds[shard]
            run: list[_Chunk] = []
            for chunk in [*in_shard, None]:
                if run and (chunk is None or chunk.offset - (run[-1].offset + run[-1].nbytes) > _MAX_GAP
                            or chunk.offset < run[-1].offset + run[-1].nbytes):
                    start = run[0].offset
                    length = max(c.offset + c.nbytes for c in run) - start
                    # numpy views: google_crc32c takes no memoryview.
                    data = np.frombuffer(os.pread(fd, length, start), np.uint8)
                    if len(data) != length:
                        raise ChunkDecodeError(f"shard {path.name} was cut short while being read")
                    yield path, [(c, data[c.offset - start : c.offset - start + c.nbytes]) for c in run]
                    run = []
                if chunk is not None:
                    run.append(chunk)

    def _decode(self, chunk: _Chunk, data: np.ndarray, path: Path, out: np.ndarray) -> None:
        payload = data[:-_CRC]
        if google_crc32c.value(payload) != int.from_bytes(data[-_CRC:].tobytes(), "little"):
            raise ChecksumError(f"chunk {chunk.coords} in {path.name} fails its CRC32C checksum")
        if len(payload) < _BLOSC_HEADER:
            raise ChunkDecodeError(f"chunk {chunk.coords} in {path.name} is too short for Blosc")
        # Blosc's header: version bytes, flags, typesize, then nbytes, blocksize, cbytes (uint32).
        nbytes, _, cbytes = struct.unpack_from("<III", payload.data, 4)
        if nbytes != self._chunk_nbytes or cbytes != len(payload):
            raise ChunkDecodeError(
                f"chunk {chunk.coords} in {path.name} decodes to {nbytes} bytes in {cbytes}, "
                f"expected {self._chunk_nbytes} in {len(payload)}"
            )
        target = _direct_target(out, chunk, self.layout.inner)
        try:
            if target is not None:
                numcodecs.blosc.decompress(payload, target)
                return
            values = _scratch(self.layout.inner, self.layout.dtype)
            numcodecs.blosc.decompress(payload, values)
        except RuntimeError as e:
            raise ChunkDecodeError(f"chunk {chunk.coords} in {path.name}: {e}") from e
        _assign(out, chunk.out, _take(values, chunk.inside))


def _check(data: bytes, what: str) -> None:
    if google_crc32c.value(data[:-_CRC]) != int.from_bytes(data[-_CRC:], "little"):
        raise ChecksumError(f"{what} fails its CRC32C checksum")


_local = threading.local()


def _scratch(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """The calling thread's buffer for one decoded chunk (its contents are garbage): a chunk
    that fills only part of the output is decoded here, then copied."""
    buffers: dict[tuple[tuple[int, ...], np.dtype[Any]], np.ndarray] | None = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buffer = buffers.get((shape, dtype))
    if buffer is None:
        buffer = buffers[(shape, dtype)] = np.empty(shape, dtype)
    return buffer


def _direct_target(out: np.ndarray, chunk: _Chunk, inner: tuple[int, ...]) -> np.ndarray | None:
    """The part of ``out`` a whole chunk fills, if it is one contiguous block (so the
    chunk decodes straight into it)."""
    for s, n in zip(chunk.inside, inner, strict=True):
        if not isinstance(s, slice) or s.start != 0 or s.stop != n:
            return None
    if not all(isinstance(s, slice) for s in chunk.out):
        return None
    target = out[chunk.out]
    return target if target.flags.c_contiguous and target.shape == inner else None


def _take(values: np.ndarray, inside: tuple[slice | np.ndarray, ...]) -> np.ndarray:
    if all(isinstance(s, slice) for s in inside):
        return values[inside]
    for axis, s in enumerate(inside):
        values = values[(slice(None),) * axis + (s,)]
    return values


def _assign(out: np.ndarray, where: tuple[slice | np.ndarray, ...], values: Any) -> None:
    if sum(not isinstance(s, slice) for s in where) <= 1:
        out[where] = values
        return
    ranges = [np.arange(out.shape[a])[s] if isinstance(s, slice) else s for a, s in enumerate(where)]
    out[np.ix_(*ranges)] = values


_POOL_SIZE = max(1, min(8, os.cpu_count() or 1))
_POOL = _fork.PerProcessPool(_POOL_SIZE, "sensorium-zarr-decode")
