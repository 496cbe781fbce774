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

A plain chunk (``behavior``, ``pupil_center``) is one object. An array of plain chunks of
at most ``_KEEP_PLAIN`` bytes (those two: 16 bytes a frame) is fetched whole at its first
read in this process, every chunk at once in the first round, and its stored bytes kept:
later reads of it make no request. A larger one costs one GET per chunk, in the second round.
Each chunk's CRC32C is checked and the chunk decoded exactly as ``NativeArray`` does
(``NativeArray._decode``), on its threads; an absent shard or chunk reads as the fill value
(or is an error, with ``every_chunk_present``), as on disk.

A cached index is only ever used with the object it was read from: every ranged GET of a
shard's chunks is conditional on the ETag its index came with (``If-Match``). If the
object changed, the server refuses the GET; the index is read again and the read made
again, once. Whether the store as a whole was replaced is ``StoreHandle``'s check, a HEAD
of the root ``zarr.json`` for each read, as for every engine. From a bucket that HEAD need not
wait for the read (``Check``): it is sent once every request of the read whose answer is
not tied to an ETag is answered (index reads, GETs of plain chunks), while the conditional
GETs may still be under way, and proves as much as a HEAD after the read would: data of
the opened store, or an error.

Requests run on one asyncio event loop per process, in a thread of its own (so a caller
that runs an event loop itself, a notebook's, can read too), made again in a forked child,
where ``_location`` refuses object storage anyway (obstore's runtime does not survive a
fork).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import zarr

from . import _fork
from ._location import Remote
from ._native import ChunkDecodeError, Layout, NativeArray, _Chunk, _Into, _name, layout_of

__all__ = ["Check", "RemoteArray", "current_check", "open_remote", "taking_part"]

#: Gaps between needed chunks of one shard up to this many bytes are read, not skipped.
_COALESCE = 1024 * 1024
#: A run of chunks read with one GET is at most this many bytes (unless one chunk is
#: larger): larger runs are split, so that their parts come in parallel.
_MAX_RUN = 8 * 1024 * 1024
#: Requests under way at once in this process, over all reads.
_IN_FLIGHT = 32
#: An array of plain chunks holding at most this many bytes of values is fetched whole
#: at its first read and its stored chunks kept (``RemoteArray._fetch_plain``).
_KEEP_PLAIN = 32 * 1024 * 1024

_T = TypeVar("_T")
# The bytes of one shard a read fetched: the start of each run, and the runs (numpy views
# of the response bodies, and the same as memoryviews).
_Runs = tuple[list[int], list[tuple[np.ndarray, memoryview, int]]]


class _Changed(Exception):
    """The shards (keys) whose object is no longer the one their cached index was read from."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(", ".join(keys))
        self.keys = keys


class Check:
    """A replaced-store check (``probe``: a coroutine function giving the store's identity
    now, one HEAD) that goes out while ``parts`` reads from the store's bucket are under
    way, instead of after them.

    Sent after a read, a HEAD that finds the store opened proves its data that store's.
    Sent earlier it proves as much if everything the reads took was either answered before
    it went out, or tied to what was: so each part, a read of ``RemoteArray`` in a thread
    taking part (``taking_part``), says ``ready`` once its index reads and its GETs of plain
    chunks (whole objects, unconditional) are answered. Its remaining GETs are conditional
    on the ETags of indexes read before, and a changed object is refused, never read. When
    every part is ready the HEAD goes out; ``result`` waits for it. A part that had to read
    an index again marks the check ``stale``, and ``result`` then sends the HEAD again,
    after the reads. A part that never reads (an empty selection, another engine) leaves
    the HEAD to ``result``, after the reads as before."""

    def __init__(self, parts: int, probe: Callable[[], Awaitable[Any]]) -> None:
        self._left = parts
        self._probe = probe
        self._sent: asyncio.Task[Any] | None = None
        self.stale = False

    def ready(self) -> None:
        """One part's unconditional requests are answered (on the request loop)."""
        self._left -= 1
        if self._left < 0:
            self.stale = True  # more reads than parts: this one's answers may have come after the HEAD
        elif self._left == 0 and not self.stale:
            self._sent = asyncio.ensure_future(self._probe())
            # Its error, if no one waits for it (a read failed first), is not news.
            self._sent.add_done_callback(lambda t: t.cancelled() or t.exception())

    def result(self) -> Any:
        """The identity the HEAD found (its error raised), once the reads are done."""
        return _run(self._result())

    async def _result(self) -> Any:
        sent = self._sent
        if sent is None or self.stale:
            return await self._probe()
        return await sent

    @contextmanager
    def taking_part(self) -> Iterator[None]:
        """The reads of ``RemoteArray`` in this thread, in the block, are parts of this check."""
        token = _CHECK.set(self)
        try:
            yield
        finally:
            _CHECK.reset(token)


#: The check the reads of this thread take part in (``Check.taking_part``), if any.
_CHECK: ContextVar[Check | None] = ContextVar("sensorium_zarr_check", default=None)


def current_check() -> Check | None:
    """The check this thread's reads take part in, if any."""
    return _CHECK.get()


def taking_part(check: Check | None) -> AbstractContextManager[None]:
    """``check.taking_part()``, or a block that takes part in nothing for no check."""
    return nullcontext() if check is None else check.taking_part()


def open_remote(array: zarr.Array[Any], remote: Remote, every_chunk_present: bool = False) -> RemoteArray | None:
    """``array`` (opened by zarr-python from ``remote``'s store) read by this path, or None
    if its layout is not one ``_native`` reads."""
    layout = layout_of(array.metadata.to_dict(), array.fill_value)
    if layout is None:
        return None
    return RemoteArray(array, remote, layout, every_chunk_present)


#: The key in a RemoteArray's caches (shard indexes, plain chunks) saying every shard's
#: was asked for (``RemoteArray._missing``).
_EVERY_SHARD = ""


class RemoteArray(NativeArray):
    """An array of a store at ``remote``, read by ranged GETs: ``get_orthogonal_selection``
    and ``[...]`` as ``NativeArray``'s; zarr-python's array reads what this path does not."""

    local_files = False

    def __init__(self, array: zarr.Array[Any], remote: Remote, layout: Layout, every_chunk_present: bool) -> None:
        # Keys relative to the store's root, where NativeArray has paths in its folder.
        super().__init__(array, Path(array.path), layout, every_chunk_present)
        self.remote = remote
        self._keeps_plain = not layout.sharded and math.prod(layout.shape) * layout.dtype.itemsize <= _KEEP_PLAIN
        # Per plain chunk's key, its stored bytes (None: no such object), once fetched.
        self._plain: dict[str, tuple[np.ndarray, memoryview, int] | None] = _fork.per_process_dict()

    def __repr__(self) -> str:
        return f"<RemoteArray {self.remote.url}/{self.path} shape={self.shape} dtype={self.dtype}>"

    def _read(self, axes: list[Any], scale: np.ndarray | None = None) -> np.ndarray:
        out, kept = self._output(axes)
        if out.size == 0:
            return out.reshape(kept)
        shards = list(self._shards(axes))
        check = _CHECK.get()
        try:
            stored, fetched = _run(self._fetch(shards, out, check))
        except _Changed as changed:
            if check is not None:
                check.stale = True  # this read's new indexes came after the check went out
            for key in changed.keys:
                self._indexes.pop(key, None)
            try:
                stored, fetched = _run(self._fetch(shards, out))
            except _Changed as again:
                raise ChunkDecodeError(
                    f"shard {_name(again.keys[0])} changed again while being read; is the store being rewritten?"
                ) from None
        try:
            self._decode_all(stored, out, fetched, scale)
        except Exception:
            if self._keeps_plain:
                # Not kept if they fail their checks: the next read fetches them again, and
                # sees the object as the bucket holds it then (repaired, or still damaged).
                for shard, _ in shards:
                    self._plain.pop(self._shard_file(shard), None)
            raise
        return out.reshape(kept)

    async def _fetch(
        self, shards: list[tuple[tuple[int, ...], list[_Chunk]]], out: np.ndarray, check: Check | None = None
    ) -> tuple[list[tuple[tuple[int, ...], _Chunk]], dict[tuple[int, ...], _Runs]]:
        """The stored chunks of ``shards`` (the absent ones' output filled) and the bytes
        holding them, per shard; ``check`` told when only conditional GETs are left."""
        objects = self.remote.objects()
        keys = {shard: self._shard_file(shard) for shard, _ in shards}
        if self.layout.sharded:
            # The first read fetches every shard's index at once (a full-size mouse: 90
            # small GETs in flight together, about 1.4 MB for responses), not only its
            # own: a later read of another shard would otherwise wait for its index, one
            # round trip, before it could ask for its chunks.
            missing = self._missing(self._indexes, keys.values())
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
        kept = bool(wholes) and self._keeps_plain
        if kept:
            await self._fetch_plain(objects, [key for _, key, _ in wholes])
        # Tasks now, so that every request is under way while the check waits for some.
        tasks = [asyncio.ensure_future(_get_range(objects, key, etag, start, end))
                 for _, key, etag, start, end in requests]
        if not kept:
            tasks += [asyncio.ensure_future(_get_whole(objects, key)) for _, key, _ in wholes]
        if check is not None:
            unconditional = [t for t, (_, _, etag, _, _) in zip(tasks, requests, strict=False) if etag is None]
            unconditional += tasks[len(requests):]
            if unconditional:
                await asyncio.wait(unconditional)
            check.ready()
        results = await _gather(tasks)
        if kept:
            results += [self._plain[key] for _, key, _ in wholes]
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
            buffers = data if kept else _buffers(data)
            for chunk in chunks:
                chunk.offset, chunk.nbytes = 0, len(buffers[0])
                stored.append((shard, chunk))
            fetched[shard] = ([0], [buffers])
        return stored, fetched

    async def _fetch_plain(self, objects: Any, keys: list[str]) -> None:
        """Every plain chunk of ``keys`` kept (``_plain``); at the first read in this process
        every chunk of the array, at once, so that no later read waits for one."""
        missing = self._missing(self._plain, keys)
        if not missing:
            return
        for key, data in zip(missing, await _gather(_get_whole(objects, k) for k in missing), strict=True):
            self._plain[key] = None if data is None else _buffers(data)

    def _missing(self, cache: dict[str, Any], keys: Iterable[str]) -> list[str]:
        """The shard keys of ``keys`` that ``cache`` lacks, and at the first read in this
        process that lacks any (the dict is reset in a fork), every other shard's too."""
        missing = [key for key in keys if key not in cache]
        if missing and _EVERY_SHARD not in cache:
            cache[_EVERY_SHARD] = None
            wanted = set(missing)
            missing += [k for k in self._every_shard_key() if k not in cache and k not in wanted]
        return missing

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
