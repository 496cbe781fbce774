"""The native engine's read path for a store in object storage (``RemoteArray``): the
layouts ``_native`` recognises, checked and decoded by its code, with ranged GETs in place
of ``preadv``. Entry point: ``open_remote``.

One read of a sharded array (``responses``, ``videos``) costs two rounds of requests, each
sent all at once (at most ``_IN_FLIGHT`` under way in this process):

1. the index of every shard the read touches whose index this process has not read yet:
   one suffix-range GET each (``bytes=-N``), checked against its CRC32C, then cached
   with the object's ETag and size;
2. the inner chunks the read needs, merged per shard into runs of neighbouring chunks
   (gaps up to ``_COALESCE`` bytes are read, not skipped: one request costs more than
   that many bytes), one ranged GET per run of at most ``_MAX_RUN`` bytes.

A plain chunk (``behavior``, ``pupil_center``) is one object: one GET, in the second round.
Each chunk's CRC32C is checked and the chunk decoded exactly as ``NativeArray`` does
(``NativeArray._decode``), on its threads; an absent shard or chunk reads as the fill value
(or is an error, with ``every_chunk_present``), as on disk.

A cached index is only ever used with the object it was read from: every ranged GET of a
shard's chunks is conditional on the ETag its index came with (``If-Match``). If the
object changed, the server refuses the GET; the index is read again and the read made
again, once. Whether the store as a whole was replaced is ``StoreHandle``'s check, a HEAD
of the root ``zarr.json`` after each read, as for every engine.

Requests run on one asyncio event loop per process, in a thread of its own (so a caller
that runs an event loop itself, a notebook's, can read too), made again in a forked child,
where ``_location`` refuses object storage anyway (obstore's runtime does not survive a
fork).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import os
import threading
from collections.abc import Awaitable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import zarr

from ._location import Remote
from ._native import ChunkDecodeError, Layout, NativeArray, _Chunk, _Into, _name, layout_of

__all__ = ["RemoteArray", "open_remote"]

#: Gaps between needed chunks of one shard up to this many bytes are read, not skipped.
_COALESCE = 1024 * 1024
#: A run of chunks read with one GET is at most this many bytes (unless one chunk is
#: larger): larger runs are split, so that their parts come in parallel.
_MAX_RUN = 8 * 1024 * 1024
#: Requests under way at once in this process, over all reads.
_IN_FLIGHT = 32

_T = TypeVar("_T")
# The bytes of one shard a read fetched: the start of each run, and the runs (numpy views
# of the response bodies, and the same as memoryviews).
_Runs = tuple[list[int], list[tuple[np.ndarray, memoryview, int]]]


class _Changed(Exception):
    """The shards (keys) whose object is no longer the one their cached index was read from."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(", ".join(keys))
        self.keys = keys


def open_remote(array: zarr.Array[Any], remote: Remote, every_chunk_present: bool = False) -> RemoteArray | None:
    """``array`` (opened by zarr-python from ``remote``'s store) read by this path, or None
    if its layout is not one ``_native`` reads."""
    layout = layout_of(array.metadata.to_dict(), array.fill_value)
    if layout is None:
        return None
    return RemoteArray(array, remote, layout, every_chunk_present)


#: The key in a RemoteArray's index cache saying every shard index was asked for.
_EVERY_INDEX = ""


class RemoteArray(NativeArray):
    """An array of a store at ``remote``, read by ranged GETs: ``get_orthogonal_selection``
    and ``[...]`` as ``NativeArray``'s; zarr-python's array reads what this path does not."""

    local_files = False

    def __init__(self, array: zarr.Array[Any], remote: Remote, layout: Layout, every_chunk_present: bool) -> None:
        # Keys relative to the store's root, where NativeArray has paths in its folder.
        super().__init__(array, Path(array.path), layout, every_chunk_present)
        self.remote = remote

    def __repr__(self) -> str:
        return f"<RemoteArray {self.remote.url}/{self.path} shape={self.shape} dtype={self.dtype}>"

    def _read(self, axes: list[Any], scale: np.ndarray | None = None) -> np.ndarray:
        out, kept = self._output(axes)
        if out.size == 0:
            return out.reshape(kept)
        shards = list(self._shards(axes))
        try:
            stored, fetched = _run(self._fetch(shards, out))
        except _Changed as changed:
            for key in changed.keys:
                self._indexes.pop(key, None)
            try:
                stored, fetched = _run(self._fetch(shards, out))
            except _Changed as again:
                raise ChunkDecodeError(
                    f"shard {_name(again.keys[0])} changed again while being read; is the store being rewritten?"
                ) from None
        self._decode_all(stored, out, fetched, scale)
        return out.reshape(kept)

    async def _fetch(
        self, shards: list[tuple[tuple[int, ...], list[_Chunk]]], out: np.ndarray
    ) -> tuple[list[tuple[tuple[int, ...], _Chunk]], dict[tuple[int, ...], _Runs]]:
        """The stored chunks of ``shards`` (the absent ones' output filled) and the bytes
        holding them, per shard."""
        objects = self.remote.objects()
        keys = {shard: self._shard_file(shard) for shard, _ in shards}
        if self.layout.sharded:
            missing = [key for key in keys.values() if key not in self._indexes]
            if missing and _EVERY_INDEX not in self._indexes:
                # The first read fetches every shard's index at once (a full-size mouse: 90
                # small GETs in flight together, about 1.4 MB for responses), not only its
                # own: a later read of another shard would otherwise wait for its index,
                # one round trip, before it could ask for its chunks.
                self._indexes[_EVERY_INDEX] = None  # once per process (the dict is reset in a fork)
                wanted = set(missing)
                missing += [k for k in self._every_shard_key() if k not in self._indexes and k not in wanted]
            for key, index in zip(missing, await _gather(self._read_index(objects, k) for k in missing), strict=True):
                if index is not None:
                    self._indexes[key] = index
        stored: list[tuple[tuple[int, ...], _Chunk]] = []
        requests: list[tuple[tuple[int, ...], str, str | None, int, int]] = []
        wholes: list[tuple[tuple[int, ...], str, list[_Chunk]]] = []
        for shard, chunks in shards:
            key = keys[shard]
            if not self.layout.sharded:
                wholes.append((shard, key, chunks))
                continue
            index = self._indexes.get(key)
            if index is None:  # no such object
                for chunk in chunks:
                    self._absent(chunk, key, out)
                continue
            etag, _, offsets, lengths = index
            located = self._place(chunks, offsets, lengths, key, out)
            located.sort(key=lambda c: c.offset)
            stored.extend((shard, c) for c in located)
            requests.extend((shard, key, etag, start, end) for start, end in _runs(located))
        results = await _gather(
            [_get_range(objects, key, etag, start, end) for _, key, etag, start, end in requests]
            + [_get_whole(objects, key) for _, key, _ in wholes]
        )
        changed = sorted({key for (_, key, *_), data in zip(requests, results, strict=False) if data is None})
        if changed:
            raise _Changed(changed)
        fetched: dict[tuple[int, ...], _Runs] = {}
        for (shard, key, _, start, end), data in zip(requests, results, strict=False):
            assert data is not None
            if len(data) != end - start:
                raise ChunkDecodeError(f"shard {_name(key)} was cut short while being read")
            starts, runs = fetched.setdefault(shard, ([], []))
            starts.append(start)
            runs.append(_buffers(data))
        for (shard, key, chunks), data in zip(wholes, results[len(requests) :], strict=True):
            if data is None:
                for chunk in chunks:
                    self._absent(chunk, key, out)
                continue
            for chunk in chunks:
                chunk.offset, chunk.nbytes = 0, len(data)
                stored.append((shard, chunk))
            fetched[shard] = ([0], [_buffers(data)])
        return stored, fetched

    def _every_shard_key(self) -> list[str]:
        grid = (range(-(-n // o)) for n, o in zip(self.shape, self.layout.outer, strict=True))
        return [self._shard_file(shard) for shard in itertools.product(*grid)]

    async def _read_index(self, objects: Any, key: str) -> tuple[str | None, int, list[int], list[int]] | None:
        """The checked index of the shard ``key``, with the object's ETag and size; None if
        there is no such object."""
        import obstore

        nbytes = self._index_nbytes
        # obstore types its options as a TypedDict; this is one of its two range forms.
        options: Any = {"range": {"suffix": nbytes} if self.layout.index_at_end else (0, nbytes)}
        try:
            result = await _limited(obstore.get_async(objects, key, options=options))
            raw = bytes(await result.bytes_async())
        except FileNotFoundError:
            return None
        size = int(result.meta["size"])
        if size < nbytes or len(raw) != nbytes:
            raise ChunkDecodeError(f"shard {_name(key)} is {size} bytes, shorter than its index")
        return result.meta.get("e_tag"), size, *self._parse_index(raw, size, key)

    def _decode_all(
        self, chunks: list[tuple[tuple[int, ...], _Chunk]], out: np.ndarray, fds: dict[tuple[int, ...], Any],
        scale: np.ndarray | None = None,
    ) -> None:
        """Check and decode ``chunks`` from the bytes fetched for them (``fds``: per shard,
        the runs ``_fetch`` read)."""
        into = _Into(out, self.layout, scale)
        for shard, chunk in chunks:
            starts, runs = fds[shard]
            at = bisect.bisect_right(starts, chunk.offset) - 1
            data, view, address = runs[at]
            self._decode(chunk, data, view, address, chunk.offset - starts[at], self._shard_file(shard), into)
        into.finish()


def _runs(chunks: list[_Chunk]) -> Iterable[tuple[int, int]]:
    """(start, end) of the runs of neighbouring ``chunks`` (in file order) read with one
    GET each."""
    start = end = -1
    for chunk in chunks:
        if start >= 0 and chunk.offset - end <= _COALESCE and chunk.offset + chunk.nbytes - start <= _MAX_RUN:
            end = max(end, chunk.offset + chunk.nbytes)
            continue
        if start >= 0:
            yield start, end
        start, end = chunk.offset, chunk.offset + chunk.nbytes
    if start >= 0:
        yield start, end


def _buffers(data: Any) -> tuple[np.ndarray, memoryview, int]:
    view = memoryview(data)
    array = np.frombuffer(view, np.uint8)
    return array, view, array.ctypes.data


async def _get_range(objects: Any, key: str, etag: str | None, start: int, end: int) -> Any | None:
    """Bytes ``start:end`` of ``key`` if its ETag is still ``etag`` (else None)."""
    import obstore
    from obstore.exceptions import PreconditionError

    options: Any = {"range": (start, end)}
    if etag is not None:
        options["if_match"] = etag
    try:
        result = await _limited(obstore.get_async(objects, key, options=options))
        return await result.bytes_async()
    except (PreconditionError, FileNotFoundError):
        return None


async def _get_whole(objects: Any, key: str) -> Any | None:
    """The bytes of ``key``, or None if there is no such object."""
    import obstore

    try:
        result = await _limited(obstore.get_async(objects, key))
        return await result.bytes_async()
    except FileNotFoundError:
        return None


async def _gather(awaitables: Iterable[Awaitable[_T]]) -> list[_T]:
    """Every result of ``awaitables``, run at once; the first error raised once all are done
    (none is left running, holding a connection, after the read)."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


async def _limited(request: Awaitable[_T]) -> _T:
    async with _loop().limit:
        return await request


class _Loop:
    """This process's event loop for requests, run by a daemon thread of its own."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.limit = asyncio.Semaphore(_IN_FLIGHT)
        self.thread = threading.Thread(target=self.loop.run_forever, name="sensorium-zarr-requests", daemon=True)
        self.thread.start()


_state: dict[str, _Loop] = {}
_lock = threading.Lock()


def _loop() -> _Loop:
    current = _state.get("loop")
    if current is None or current.pid != os.getpid():
        with _lock:
            current = _state.get("loop")
            if current is None or current.pid != os.getpid():
                current = _state["loop"] = _Loop()
    return current


def _run(coroutine: Any) -> Any:
    """The result of ``coroutine``, run on this process's request loop."""
    future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, _loop().loop)
    return future.result()


def _forget_lock() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_lock)
