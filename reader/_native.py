"""The reader's own read path (the ``"native"`` engine) for exactly the layouts the converter
writes. Entry point: ``open_native`` (None for an array it does not recognise).

Recognised: a Zarr v3 array in a local folder, regular chunk grid, default chunk keys,
a little-endian numeric data type, and either plain chunks coded ``[bytes, blosc,
crc32c]`` (``behavior``, ``pupil_center``) or ``sharding_indexed`` shards whose inner
chunks are coded so and whose index is coded ``[bytes, crc32c]`` (``responses``,
``videos``); or, in either, chunks coded ``[bytes, crc32c]`` without Blosc (format
version 7, for values Blosc barely shrinks). Anything else is read by zarr-python
(``_engine`` falls back).

Why a reader of its own: zarr-python's per-chunk overhead, not decompression, dominates
a read of one trial (hundreds of small inner chunks), and zarrs, which is fast, does not
check the checksum of chunks it reads in part. This path reads each shard's index once
per process (checked against its CRC32C, then cached for as long as the file's identity
is unchanged), reads each contiguous run of the inner chunks a selection touches (up to
``_MAX_RUN`` bytes) with one ``os.preadv`` into a buffer each thread reuses (a read of
several runs in several places first tells the kernel, ``posix_fadvise(WILLNEED)``,
exactly which bytes they hold, so that from a cold page cache the disk fetches them at
once), checks every
chunk's CRC32C before decoding it, and decodes with Blosc, called by address (``_blosc``:
numcodecs' wrapper costs more than a small chunk's decoding), straight into the output
where a whole chunk fills one contiguous block of it. Uncoded chunks that each fill a
contiguous block of the output, stored back to back, are read straight into it: one
``preadv`` per run scatters their values into place and their checksums aside, then each
is checked (and, for a read with a ``scale``, rescaled while it is in the cache); other
uncoded chunks are checked in the buffer and copied out. A read decodes in the thread
that makes it: split over a pool of decoding threads, a trial, a window and a training
sample took longer on two cores, and reads of many trials no less (``google_crc32c``'s
checksum holds the GIL); threads that read at once (Dask's, ``Split.trial``'s from a
bucket, DataLoader workers) share the cores instead.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs.blosc
import numpy as np
import zarr
from zarr.storage import LocalStore

from . import _blosc, _fork

__all__ = ["NativeArray", "ChecksumError", "ChunkDecodeError", "open_native", "layout_of", "empty_axis"]

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
#: A contiguous run read with one system call is at most this many bytes (unless one chunk
#: is larger): each thread that reads keeps a buffer of this size for its reads.
_MAX_RUN = 1024 * 1024


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
    #: Whether chunks are Blosc-coded; if not (format version 7), a chunk is its values'
    #: bytes and their CRC32C.
    compressed: bool = True

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


def _chunk_codecs(codecs: Any, itemsize: int) -> bool | None:
    """Whether a chunk codec chain this path reads is Blosc-coded (``[bytes, blosc,
    crc32c]``: True; ``[bytes, crc32c]``: False), or None for any other chain."""
    if not (isinstance(codecs, (list, tuple)) and codecs and _is_bytes_little(codecs[0], itemsize)):
        return None
    if len(codecs) == 3 and _is_named(codecs[1], "blosc") and codecs[2] == {"name": "crc32c"}:
        return True
    if len(codecs) == 2 and codecs[1] == {"name": "crc32c"}:
        return False
    return None


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
    compressed = _chunk_codecs(codecs, dtype.itemsize)
    if compressed is not None:
        return Layout(shape, dtype, fill_value, outer, outer, False, True, separator, compressed)
    if not (isinstance(codecs, (list, tuple)) and len(codecs) == 1 and _is_named(codecs[0], "sharding_indexed")):
        return None
    config = codecs[0].get("configuration") or {}
    inner = tuple(int(c) for c in config.get("chunk_shape", ()))
    index_codecs = config.get("index_codecs")
    location = config.get("index_location", "end")
    compressed = _chunk_codecs(config.get("codecs"), dtype.itemsize)
    if (
        len(inner) != len(shape) or min(inner, default=0) < 1
        or any(o % i for o, i in zip(outer, inner, strict=True))
        or compressed is None
        or not (isinstance(index_codecs, (list, tuple)) and len(index_codecs) == 2
                and _is_bytes_little(index_codecs[0], 8) and index_codecs[1] == {"name": "crc32c"})
        or location not in ("start", "end")
    ):
        return None
    return Layout(shape, dtype, fill_value, outer, inner, True, location == "end", separator, compressed)


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


class _Chunk:
    """One inner chunk a read needs: where it is stored and where its values go."""

    __slots__ = ("number", "coords", "out", "inside", "whole", "basic", "offset", "nbytes")

    def __init__(
        self,
        number: int,
        coords: tuple[int, ...],
        out: tuple[slice | np.ndarray, ...],
        inside: tuple[slice | np.ndarray, ...],
        whole: bool,
        basic: bool,
    ) -> None:
        self.number = number  # its position in the shard index (C order)
        self.coords = coords  # its position in the array's grid of inner chunks
        self.out = out  # per axis, its part of the output
        self.inside = inside  # per axis, that part's positions in the chunk
        self.whole = whole  # it fills its output part with every value it holds
        self.basic = basic  # its parts, in the output and in the chunk, are slices on every axis
        self.offset = 0
        self.nbytes = 0


class NativeArray:
    """An array read by this path: ``get_orthogonal_selection`` and ``[...]`` as zarr's,
    same values; the zarr-python array it was opened from reads what this path does not
    (``fallback``)."""

    #: Its reads are of local files, bound by the CPU (a bucket's are bound by requests).
    local_files = True

    def __init__(self, array: zarr.Array[Any], folder: Path, layout: Layout, every_chunk_present: bool) -> None:
        self.fallback = array
        self.folder = folder
        self.layout = layout
        self.every_chunk_present = every_chunk_present
        self._indexes = _fork.per_process_dict()
        self._paths: dict[tuple[int, ...], str] = {}
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

    def get_orthogonal_selection(self, selection: Any, scale: np.ndarray | None = None) -> np.ndarray:
        """The orthogonal ``selection`` (per axis: a slice, an integer, an integer array).

        ``scale`` (for a selection that keeps every axis: no integers): an array of the
        output's dtype that broadcasts against the output; each chunk's values are
        multiplied by it as they are placed, while they are in the cache, which gives what
        ``np.multiply(output, scale, out=output)`` gives, value for value, without a second
        pass over the output. Absent chunks' fill values are not multiplied: the caller
        passes a ``scale`` only where that would not change them."""
        axes = self._axes(selection)
        if axes is None:
            return self._fallback(selection, scale)
        if scale is not None and not all(keep for _, keep in axes):
            raise ValueError("a scaled read keeps every axis: select with slices and index arrays")
        return self._read(axes, scale)

    def cached(self, selection: Any) -> bool | None:
        """Whether the first stored chunk of the orthogonal ``selection`` starts in the page
        cache: a one-byte read of it that may not wait for the disk (``RWF_NOWAIT``). None
        where that cannot tell (no such read on this system or file system, an absent chunk,
        a selection this path does not read)."""
        axes = self._advised_axes(selection)
        if axes is None or not _NOWAIT or any(empty_axis(a) for a, _ in axes):
            return None
        layout = self.layout
        coords = tuple((int(a.start) if isinstance(a, slice) else int(a.min())) // n
                       for (a, _), n in zip(axes, layout.inner, strict=True))
        shard = tuple(c // k for c, k in zip(coords, layout.per_shard, strict=True))
        path = self._shard_file(shard)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            offset = 0
            if layout.sharded:
                number = 0
                for c, k in zip(coords, layout.per_shard, strict=True):
                    number = number * k + c % k
                offsets, _ = self._index(fd, path)
                offset = offsets[number]
                if offset == _ABSENT:
                    return None
            return _probe(fd, offset)
        except (OSError, ValueError):
            return None  # for the read itself to report
        finally:
            os.close(fd)

    def will_need(self, selection: Any) -> None:
        """Tell the kernel which bytes a read of ``selection`` will take, all of them, even
        one range (``posix_fadvise(WILLNEED)``): for a read that finds them out of the page
        cache, so that the disk fetches them, and those of other reads advised with them,
        at once. Advice only: whatever this cannot find or parse (a missing file, a damaged
        index) it leaves for the read itself to report."""
        axes = self._advised_axes(selection)
        if axes is None or not _FADVISE or any(empty_axis(a) for a, _ in axes):
            return
        fds: dict[tuple[int, ...], int] = {}
        try:
            stored: list[tuple[tuple[int, ...], _Chunk]] = []
            for shard, chunks in self._shards(axes):
                stored.extend((shard, c) for c in self._locate(shard, chunks, None, fds))
            stored.sort(key=_file_order)
            for shard, lo, hi in _ranges(stored, _runs(stored)):
                os.posix_fadvise(fds[shard], lo, hi - lo, os.POSIX_FADV_WILLNEED)
        except (OSError, ValueError):
            return
        finally:
            for fd in fds.values():
                os.close(fd)

    def _axes(self, selection: Any) -> list[_Axis] | None:
        """``selection`` parsed per axis as ``get_orthogonal_selection`` parses it, or None
        for one it leaves to zarr-python."""
        if selection is Ellipsis:
            selection = ()
        if not isinstance(selection, tuple):
            selection = (selection,)
        if len(selection) > self.ndim or any(s is Ellipsis for s in selection):
            return None
        selection = selection + (slice(None),) * (self.ndim - len(selection))
        try:
            return [_parse_axis(s, n) for s, n in zip(selection, self.shape, strict=True)]
        except _Unsupported:
            return None

    def _advised_axes(self, selection: Any) -> list[_Axis] | None:
        """``_axes``, and None for a selection out of bounds (the read reports it)."""
        try:
            return self._axes(selection)
        except IndexError:
            return None

    def _fallback(self, selection: Any, scale: np.ndarray | None) -> np.ndarray:
        values = np.asarray(self.fallback.get_orthogonal_selection(selection))
        if scale is None:
            return values
        scaled: np.ndarray = np.multiply(values, scale, out=values if values.flags.writeable else None)
        return scaled

    def _read(self, axes: list[_Axis], scale: np.ndarray | None = None) -> np.ndarray:
        out, kept = self._output(axes)
        if out.size == 0:
            return out.reshape(kept)
        fds: dict[tuple[int, ...], int] = {}
        try:
            stored: list[tuple[tuple[int, ...], _Chunk]] = []
            for shard, chunks in self._shards(axes):
                stored.extend((shard, c) for c in self._locate(shard, chunks, out, fds))
            self._decode_all(stored, out, fds, scale)
        finally:
            for fd in fds.values():
                os.close(fd)
        return out.reshape(kept)

    def _output(self, axes: list[_Axis]) -> tuple[np.ndarray, tuple[int, ...]]:
        """The (uninitialised) output of the selection ``axes``, every axis kept, and its
        shape without the axes an integer selected."""
        full_shape = tuple(
            (a.stop - a.start) if isinstance(a, slice) else len(a) for a, _ in axes
        )
        kept = tuple(n for (_, keep), n in zip(axes, full_shape, strict=True) if keep)
        return np.empty(full_shape, self.layout.dtype), kept

    def _shards(self, axes: list[_Axis]) -> Iterator[tuple[tuple[int, ...], list[_Chunk]]]:
        """Each shard (or plain chunk) the selection ``axes`` touches, in grid order, with
        the inner chunks of it that the selection needs."""
        layout = self.layout
        # Per axis, the chunks' pieces grouped by the shard they fall in along that axis,
        # each with its share of the chunk's number in the shard index (C order) and
        # whether it covers the chunk along that axis: every chunk of a shard is then one
        # product of pieces, with no per-chunk arithmetic on coordinates.
        by_axis: list[dict[int, list[tuple[_Piece, int, bool, bool]]]] = []
        stride = 1
        strides = []
        for k in reversed(layout.per_shard):
            strides.append(stride)
            stride *= k
        for (a, _), size, k, step in zip(axes, layout.inner, layout.per_shard, reversed(strides), strict=True):
            groups: dict[int, list[tuple[_Piece, int, bool, bool]]] = {}
            for piece in _pieces(a, size):
                c, where, inside = piece
                basic = isinstance(where, slice) and isinstance(inside, slice)
                whole = basic and inside.stop - inside.start == size  # type: ignore[union-attr]
                groups.setdefault(c // k, []).append((piece, (c % k) * step, whole, basic))
            by_axis.append(groups)
        for shard in itertools.product(*(sorted(g) for g in by_axis)):
            # Built up one axis at a time: a read of one trial has one piece on most axes,
            # so this makes a few tuples per chunk, not a generator per chunk and field.
            combos: list[tuple[int, tuple[int, ...], tuple[Any, ...], tuple[Any, ...], bool, bool]] = [
                (0, (), (), (), True, True)
            ]
            for g, c in zip(by_axis, shard, strict=True):
                combos = [
                    (n + step, coords + (piece[0],), out + (piece[1],), inside + (piece[2],), whole and w, basic and b)
                    for n, coords, out, inside, whole, basic in combos
                    for piece, step, w, b in g[c]
                ]
            yield shard, [_Chunk(*combo) for combo in combos]

    def _shard_file(self, shard: tuple[int, ...]) -> str:
        path = self._paths.get(shard)
        if path is None:
            sep = self.layout.separator
            path = self._paths[shard] = str(self.folder / ("c" + sep + sep.join(map(str, shard))))
        return path

    def _locate(
        self, shard: tuple[int, ...], chunks: list[_Chunk], out: np.ndarray | None, fds: dict[tuple[int, ...], int]
    ) -> list[_Chunk]:
        """``chunks`` of ``shard`` that are stored, with their byte ranges (the shard's
        file left open in ``fds``); the others' output filled with the fill value (with
        ``out`` None, only left out)."""
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
        offsets, lengths = self._index(fd, path)
        return self._place(chunks, offsets, lengths, path, out)

    def _place(
        self, chunks: list[_Chunk], offsets: list[int], lengths: list[int], path: str, out: np.ndarray | None
    ) -> list[_Chunk]:
        """``chunks`` of the shard at ``path`` that its index (``offsets``, ``lengths``)
        holds, with their byte ranges; the others' output filled with the fill value (with
        ``out`` None, only left out)."""
        stored: list[_Chunk] = []
        for chunk in chunks:
            offset = offsets[chunk.number]
            if offset == _ABSENT:
                self._absent(chunk, path, out)
                continue
            chunk.offset, chunk.nbytes = offset, lengths[chunk.number]
            stored.append(chunk)
        return stored

    def _absent(self, chunk: _Chunk, path: str, out: np.ndarray | None) -> None:
        if out is None:
            return  # only locating (will_need): nothing to fill, and the read reports
        if self.every_chunk_present:
            raise ChunkDecodeError(f"chunk {chunk.coords} is missing from {_name(path)}, which the format forbids")
        _assign(out, chunk.out, self.layout.fill_value)

    def _index(self, fd: int, key: str) -> tuple[list[int], list[int]]:
        """The checked index of the open shard ``fd``: each inner chunk's offset and length
        (as lists: a read looks up every chunk it needs, and a list lookup costs less than
        a numpy scalar's)."""
        stat = os.fstat(fd)
        identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        cached = self._indexes.get(key)
        if cached is not None and cached[0] == identity:
            found: tuple[list[int], list[int]] = cached[1]
            return found
        nbytes = self._index_nbytes
        if stat.st_size < nbytes:
            raise ChunkDecodeError(f"shard {Path(key).name} is {stat.st_size} bytes, shorter than its index")
        raw = os.pread(fd, nbytes, stat.st_size - nbytes if self.layout.index_at_end else 0)
        if len(raw) != nbytes:
            raise ChunkDecodeError(f"shard {Path(key).name} was cut short while being read")
        lists = self._parse_index(raw, stat.st_size, key)
        self._indexes[key] = (identity, lists)
        return lists

    @property
    def _index_nbytes(self) -> int:
        """The size of a shard's index, its checksum included."""
        return math.prod(self.layout.per_shard) * _INDEX_ENTRY + _CRC

    def _parse_index(self, raw: bytes, size: int, key: str) -> tuple[list[int], list[int]]:
        """The checked index ``raw`` (``_index_nbytes`` bytes) of the shard ``key``, a file
        of ``size`` bytes: each inner chunk's offset and length."""
        n = math.prod(self.layout.per_shard)
        _check(raw, f"the index of shard {Path(key).name}")
        index = np.frombuffer(raw, "<u8", count=2 * n).reshape(n, 2)
        absent = index[:, 0] == _ABSENT
        if not np.array_equal(absent, index[:, 1] == _ABSENT):
            raise ChunkDecodeError(f"the index of shard {Path(key).name} holds a half-absent chunk")
        offsets, lengths = index[~absent, 0], index[~absent, 1]
        shortest = _BLOSC_HEADER + _CRC if self.layout.compressed else self._chunk_nbytes + _CRC
        if len(offsets) and (
            lengths.min() < shortest or np.any(offsets > size)
            or np.any(lengths > size - offsets)
        ):
            raise ChunkDecodeError(f"the index of shard {Path(key).name} points outside the file")
        return index[:, 0].tolist(), index[:, 1].tolist()

    def _decode_all(
        self, chunks: list[tuple[tuple[int, ...], _Chunk]], out: np.ndarray, fds: dict[tuple[int, ...], Any],
        scale: np.ndarray | None = None,
    ) -> None:
        """Read and decode ``chunks`` of the open shard files ``fds``, one contiguous run of
        a shard per system call."""
        if not chunks:
            return
        # In file order, so that each contiguous run of a shard is one read.
        chunks.sort(key=_file_order)
        runs = _runs(chunks)
        if len(runs) > 1 and _FADVISE:
            _will_need(chunks, runs, fds)
        into = _Into(out, self.layout, scale)
        # Uncoded chunks that each fill a block of the output are read straight into it.
        scatter = not self.layout.compressed and into.direct and _PREADV and _MAX_SCATTER > 0
        for start, end in runs:
            shard = chunks[start][0]
            path = self._shard_file(shard)
            if scatter:
                self._read_scattering(fds[shard], chunks[start:end], path, into)
            else:
                self._read_run(fds[shard], chunks[start:end], path, into)
        into.finish()

    def _read_run(self, fd: int, run: list[tuple[tuple[int, ...], _Chunk]], path: str, into: _Into) -> None:
        """Read the chunks ``run`` (in file order, close together) with one system call, then
        check and decode each."""
        first, last = run[0][1], run[-1][1]
        # Into this thread's reused buffer: a fresh bytes object per read costs more in
        # page faults than the read itself.
        data, address = _read_buffer(last.offset + last.nbytes - first.offset)
        if _read_into(fd, data, first.offset) != len(data):
            raise ChunkDecodeError(f"shard {_name(path)} was cut short while being read")
        view = data.data
        for _, chunk in run:
            self._decode(chunk, data, view, address, chunk.offset - first.offset, path, into)

    def _read_scattering(self, fd: int, run: list[tuple[tuple[int, ...], _Chunk]], path: str, into: _Into) -> None:
        """Read the uncoded chunks ``run``: each stretch of whole chunks stored back to back
        straight into the output (``_scatter``), each stretch of the others through the
        read buffer."""
        size = self._chunk_nbytes + _CRC

        def fits(chunk: _Chunk) -> bool:
            return chunk.whole and chunk.nbytes == size

        i = 0
        while i < len(run):
            j = i + 1
            if fits(run[i][1]):
                while (
                    j < len(run) and j - i < _MAX_SCATTER and fits(run[j][1])
                    and run[j][1].offset == run[j - 1][1].offset + size
                ):
                    j += 1
                self._scatter(fd, run[i:j], path, into)
            else:
                while j < len(run) and not fits(run[j][1]):
                    j += 1
                self._read_run(fd, run[i:j], path, into)
            i = j

    def _scatter(self, fd: int, run: list[tuple[tuple[int, ...], _Chunk]], path: str, into: _Into) -> None:
        """Read the run of uncoded chunks ``run`` with one ``preadv`` that puts each chunk's
        values in its place in the output and its checksum aside, then check each chunk
        (and rescale it, for a scaled read) while it is in the cache."""
        nbytes = self._chunk_nbytes
        flat = into.flat
        assert flat is not None  # only for a direct output (_decode_all)
        crcs = _crc_buffer(len(run))
        places = [into.address(chunk) - into.base for _, chunk in run]
        vectors: list[memoryview] = []
        for i, at in enumerate(places):
            vectors.append(flat[at : at + nbytes].data)
            vectors.append(crcs[4 * i : 4 * i + 4].data)
        if os.preadv(fd, vectors, run[0][1].offset) != len(run) * (nbytes + _CRC):
            raise ChunkDecodeError(f"shard {_name(path)} was cut short while being read")
        stored = crcs[: 4 * len(run)].view("<u4").tolist()
        for (_, chunk), at, crc in zip(run, places, stored, strict=True):
            if google_crc32c.value(flat[at : at + nbytes]) != crc:
                raise ChecksumError(f"chunk {chunk.coords} in {_name(path)} fails its CRC32C checksum")
            into.rescale(chunk)

    def _decode(
        self, chunk: _Chunk, data: np.ndarray, view: memoryview, address: int, at: int, path: str, into: _Into
    ) -> None:
        """Check and decode ``chunk``, whose bytes start at ``at`` in ``data`` (``view``: the
        same bytes as a memoryview; ``address``: where they start in memory), into its part
        of the output."""
        nbytes = chunk.nbytes - _CRC
        uncoded = not self.layout.compressed
        if uncoded and nbytes != self._chunk_nbytes:
            raise ChunkDecodeError(
                f"chunk {chunk.coords} in {_name(path)} is {nbytes} bytes, expected {self._chunk_nbytes}"
            )
        if nbytes < _BLOSC_HEADER and not uncoded:
            raise ChunkDecodeError(f"chunk {chunk.coords} in {_name(path)} is too short for Blosc")
        end = at + nbytes
        # A numpy view: google_crc32c takes no memoryview.
        stored = data[at:end]
        if google_crc32c.value(stored) != _UINT32.unpack_from(view, end)[0]:
            raise ChecksumError(f"chunk {chunk.coords} in {_name(path)} fails its CRC32C checksum")
        if uncoded:
            into.put(chunk, stored.view(self.layout.dtype).reshape(self.layout.inner))
            return
        # Blosc's header: version bytes, flags, typesize, then nbytes, blocksize, cbytes (uint32).
        decoded, _, cbytes = _SIZES.unpack_from(view, at + 4)
        if decoded != self._chunk_nbytes or cbytes != nbytes:
            raise ChunkDecodeError(
                f"chunk {chunk.coords} in {_name(path)} decodes to {decoded} bytes in {cbytes}, "
                f"expected {self._chunk_nbytes} in {nbytes}"
            )
        # A whole chunk decodes straight into the output when its part is one block.
        direct = chunk.whole and into.direct
        if _blosc.decompress is not None:
            target = into.address(chunk) if direct else into.scratch_address
            if _blosc.decompress(address + at, target, decoded, 1) != decoded:
                raise ChunkDecodeError(f"chunk {chunk.coords} in {_name(path)}: Blosc cannot decode it")
        else:
            try:
                numcodecs.blosc.decompress(stored, into.out[chunk.out] if direct else into.scratch)
            except RuntimeError as e:
                raise ChunkDecodeError(f"chunk {chunk.coords} in {_name(path)}: {e}") from e
        if direct:
            into.rescale(chunk)
        else:
            into.put(chunk, into.scratch)


class _Into:
    """Where one thread decodes chunks of one read: the output (and its address in memory)
    and the thread's scratch buffer for chunks that fill only part of it."""

    __slots__ = (
        "out", "scale", "copied", "rescaled", "base", "strides", "direct", "flat", "scratch", "scratch_address"
    )

    def __init__(self, out: np.ndarray, layout: Layout, scale: np.ndarray | None = None) -> None:
        self.out = out
        # What the values are multiplied by (NativeArray.get_orthogonal_selection): a chunk
        # placed whole (decoded or read into the output) at once, while it is in the
        # cache; chunks copied in part afterwards (``finish``), in one pass if they are all
        # there is, since one multiply per small part costs more than the pass.
        self.scale = None if scale is None else np.broadcast_to(scale, out.shape)
        self.copied: list[_Chunk] = []
        self.rescaled = False
        self.base = out.ctypes.data
        self.strides = out.strides
        # A whole chunk's part of a C-ordered output is one block of memory when every axis
        # after the first it spans more than one element of is as long in the output.
        spans = [i for i, n in enumerate(layout.inner) if n > 1]
        self.direct = out.flags.c_contiguous and all(
            layout.inner[i] == out.shape[i] for i in range(spans[0] + 1 if spans else out.ndim, out.ndim)
        )
        # The output's bytes, for reads straight into it (only where it is contiguous).
        self.flat = out.reshape(-1).view(np.uint8) if self.direct else None
        self.scratch, self.scratch_address = _scratch(layout.inner, layout.dtype)

    def put(self, chunk: _Chunk, values: np.ndarray) -> None:
        """Copy ``chunk``'s part of ``values`` (the whole chunk, decoded) into the output."""
        if chunk.basic:
            self.out[chunk.out] = values[chunk.inside]
        else:
            _assign(self.out, chunk.out, _take(values, chunk.inside))
        if self.scale is not None:
            self.copied.append(chunk)

    def rescale(self, chunk: _Chunk) -> None:
        """Multiply the values of ``chunk`` (a whole one, just placed) by the scale."""
        if self.scale is not None:
            part = self.out[chunk.out]
            np.multiply(part, self.scale[chunk.out], out=part)
            self.rescaled = True

    def finish(self) -> None:
        """Multiply what ``put`` copied by the scale, once every chunk is placed."""
        if self.scale is None or not self.copied:
            return
        if not self.rescaled:
            # Absent chunks' fill values too, which the scale keeps as they are.
            np.multiply(self.out, self.scale, out=self.out)
            return
        for chunk in self.copied:
            if chunk.basic:
                part = self.out[chunk.out]
                np.multiply(part, self.scale[chunk.out], out=part)
            else:
                _assign(self.out, chunk.out, np.multiply(_take(self.out, chunk.out), _take(self.scale, chunk.out)))

    def address(self, chunk: _Chunk) -> int:
        """Where the first value of ``chunk`` (a whole one: its parts are slices) goes."""
        offset = self.base
        for part, stride in zip(chunk.out, self.strides, strict=True):
            offset += part.start * stride  # type: ignore[union-attr]
        return offset


def _runs(chunks: list[tuple[tuple[int, ...], _Chunk]]) -> list[tuple[int, int]]:
    """``chunks`` (in file order) cut into runs read with one system call each, as
    (start, end) positions: neighbours of one shard with gaps of at most ``_MAX_GAP``
    bytes, at most ``_MAX_RUN`` bytes from the first's start (unless one chunk is larger)."""
    runs: list[tuple[int, int]] = []
    start = 0
    while start < len(chunks):
        shard, first = chunks[start]
        end, reach = start + 1, first.offset + first.nbytes
        while end < len(chunks):
            next_shard, chunk = chunks[end]
            if (
                next_shard != shard or chunk.offset < reach or chunk.offset - reach > _MAX_GAP
                or chunk.offset + chunk.nbytes - first.offset > _MAX_RUN
            ):
                break
            reach = chunk.offset + chunk.nbytes
            end += 1
        runs.append((start, end))
        start = end
    return runs


def _will_need(
    chunks: list[tuple[tuple[int, ...], _Chunk]], runs: list[tuple[int, int]], fds: dict[tuple[int, ...], Any]
) -> None:
    """Tell the kernel, before the first of a read's several system calls, which bytes
    all of them will take (``_ranges``), so that a cold read has the disk fetch them at
    once, not one run after the other: where they are several ranges (one neuron across
    trials), which the kernel's own read-ahead does not foresee, unless they are in the
    page cache already (``_ranges_cached``). Only those bytes: a shard's first-to-last span
    could be a whole shard. One range (a trial, a window) is
    left to the kernel's read-ahead, which follows it (``Split.trial`` advises a trial's
    variables together where it finds them out of the cache: ``NativeArray.will_need``)."""
    advice = _ranges(chunks, runs)
    if len(advice) < 2 or _ranges_cached(advice, fds):
        return
    for shard, lo, hi in advice:
        os.posix_fadvise(fds[shard], lo, hi - lo, os.POSIX_FADV_WILLNEED)


def _ranges(
    chunks: list[tuple[tuple[int, ...], _Chunk]], runs: list[tuple[int, int]]
) -> list[tuple[tuple[int, ...], int, int]]:
    """The bytes the ``runs`` of ``chunks`` read, as (shard, start, end), runs that touch as one."""
    advice: list[tuple[tuple[int, ...], int, int]] = []
    for start, end in runs:
        shard, first = chunks[start]
        last = chunks[end - 1][1]
        lo, hi = first.offset, last.offset + last.nbytes
        if advice and advice[-1][0] == shard and lo == advice[-1][2]:
            advice[-1] = (shard, advice[-1][1], hi)
        else:
            advice.append((shard, lo, hi))
    return advice


_FADVISE = hasattr(os, "posix_fadvise")
_NOWAIT = hasattr(os, "RWF_NOWAIT") and hasattr(os, "preadv")


def empty_axis(axis: slice | np.ndarray) -> bool:
    """Whether a selection of one axis (a step-1 slice or an index array) selects nothing."""
    return axis.stop <= axis.start if isinstance(axis, slice) else not len(axis)


def _probe(fd: int, offset: int) -> bool | None:
    """Whether the byte at ``offset`` of ``fd`` is in the page cache: a one-byte read that
    may not wait for the disk (``RWF_NOWAIT``). None where that cannot tell (a byte past
    the end, a file system that refuses such reads)."""
    try:
        return True if os.preadv(fd, [_probe_buffer()], offset, os.RWF_NOWAIT) == 1 else None
    except BlockingIOError:
        return False
    except OSError:
        return None


def _ranges_cached(advice: list[tuple[tuple[int, ...], int, int]], fds: dict[tuple[int, ...], Any]) -> bool:
    """Whether the first, a middle and the last of the ranges ``advice`` start in the page
    cache (``_probe``): then the read's bytes are taken to be there, and advising them
    would cost more than it could save (the kernel walks every page of them). False where
    any is not, or this cannot tell."""
    if not _NOWAIT:
        return False
    probed = dict.fromkeys((advice[0], advice[len(advice) // 2], advice[-1]))
    return all(_probe(fds[shard], lo) is True for shard, lo, _ in probed)


def _probe_buffer() -> memoryview:
    """The calling thread's one-byte buffer for ``_probe``."""
    buffer: memoryview | None = getattr(_local, "probe", None)
    if buffer is None:
        buffer = _local.probe = memoryview(bytearray(1))
    return buffer


def _file_order(item: tuple[tuple[int, ...], _Chunk]) -> tuple[tuple[int, ...], int]:
    return item[0], item[1].offset


def _name(path: str) -> str:
    return os.path.basename(path)


_UINT32 = struct.Struct("<I")
_SIZES = struct.Struct("<III")


def _check(data: bytes, what: str) -> None:
    if google_crc32c.value(data[:-_CRC]) != int.from_bytes(data[-_CRC:], "little"):
        raise ChecksumError(f"{what} fails its CRC32C checksum")


_local = threading.local()


def _read_buffer(nbytes: int) -> tuple[np.ndarray, int]:
    """``nbytes`` of the calling thread's read buffer (reused: its contents are garbage),
    and its address."""
    buffer: np.ndarray | None = getattr(_local, "read", None)
    if buffer is None or len(buffer) < nbytes:
        buffer = _local.read = np.empty(max(nbytes, _MAX_RUN), np.uint8)
        _local.read_address = buffer.ctypes.data
    return buffer[:nbytes], _local.read_address


def _read_into(fd: int, buffer: np.ndarray, offset: int) -> int:
    """Bytes of ``fd`` from ``offset`` read into ``buffer``, up to its length: how many."""
    if _PREADV:
        return os.preadv(fd, [buffer.data], offset)
    data = os.pread(fd, len(buffer), offset)
    buffer[: len(data)] = np.frombuffer(data, np.uint8)
    return len(data)


_PREADV = hasattr(os, "preadv")


def _iov_max() -> int:
    try:
        return int(os.sysconf("SC_IOV_MAX"))
    except (AttributeError, ValueError, OSError):
        return 16  # POSIX's least


#: Chunks in one scattering ``preadv``: two buffers each, within the system's limit on
#: buffers per call (1024 on Linux).
_MAX_SCATTER = max(1, min(512, _iov_max() // 2))


def _crc_buffer(n: int) -> np.ndarray:
    """The calling thread's buffer for the checksums of ``n`` chunks (its contents are garbage)."""
    buffer: np.ndarray | None = getattr(_local, "crcs", None)
    if buffer is None or len(buffer) < 4 * n:
        buffer = _local.crcs = np.empty(4 * max(n, _MAX_SCATTER), np.uint8)
    return buffer


def _scratch(shape: tuple[int, ...], dtype: np.dtype[Any]) -> tuple[np.ndarray, int]:
    """The calling thread's buffer for one decoded chunk (its contents are garbage), and its
    address: a chunk that fills only part of the output is decoded here, then copied."""
    buffers: dict[tuple[tuple[int, ...], np.dtype[Any]], tuple[np.ndarray, int]] | None = getattr(
        _local, "buffers", None
    )
    if buffers is None:
        buffers = _local.buffers = {}
    found = buffers.get((shape, dtype))
    if found is None:
        buffer = np.empty(shape, dtype)
        found = buffers[(shape, dtype)] = (buffer, buffer.ctypes.data)
    return found


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

