"""Sources in object storage: a mouse zip, a mouse folder or a folder of mice under a URL
(``s3://bucket/path/mouse.zip``, ``s3://bucket/path/mouse/``), read by ranged GET
requests so that nothing is downloaded whole. Entry points: ``RemoteObject``,
``RangedFile``, ``list_folder``, ``find_remote``.

A ``RangedFile`` is a seekable binary file over one object, so the zip layer (``_zip``)
and the ``.npy`` parser (``_npy``) read a bucket exactly as they read a disk, with every
check they make. Each read that misses fetches one range; a reader that knows how much
it is about to read (a zip member, a ``.npy`` header) says so with ``expect``, and the
first read then fetches the whole of it in one request. Bytes of a zip's end records
and central directory are kept (``Pins``), so every thread's ``ZipFile`` parses the
directory without fetching it again.
"""

from __future__ import annotations

import errno
import io
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sensorium_zarr._fork import PerProcessPool
from sensorium_zarr._location import Remote, describe, is_storage_error, missing_extra
from sensorium_zarr.errors import SourceError

__all__ = ["RemoteObject", "RangedFile", "Pins", "list_folder", "find_remote", "in_order", "FETCHED"]

T = TypeVar("T")
Item = TypeVar("Item")

#: The most one request fetches: a read window larger than this (a member claiming a
#: huge size) is fetched in pieces, so memory follows what is really read.
WINDOW_CAP = 64 * 2**20
#: The most one read may ask for: the only large single reads are a zip's central
#: directory (tens of bytes per member); a directory claiming more is damage.
MAX_READ = 512 * 2**20
#: Bytes a zip's first request fetches from its end: the end records (98 bytes with the
#: zip64 ones) and a comment, or the central directory of a small archive; a larger
#: directory (a real mouse's is megabytes) is one more request.
TAIL = 8 * 2**10 + 98


class _Counter:
    """Requests and bytes fetched by this process, for tests and logs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes = 0

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += nbytes

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.requests, self.bytes


FETCHED = _Counter()

#: Requests in flight while a remote source is scanned or a block of its trials read:
#: each costs a round trip, so they overlap. One pool per process, so its threads (each
#: with its own ``ZipFile``, which parses the central directory once) are reused.
REQUESTS = 16
_POOL = PerProcessPool(REQUESTS, "sensorium-zarr-source")


def in_order(function: Callable[[Item], T], items: Iterable[Item], ahead: int = REQUESTS) -> Iterator[T]:
    """``function`` over ``items`` on the source pool, at most ``ahead`` in flight, the
    results in order. When the caller stops (an error), what is queued is cancelled and
    what runs is waited for: no read lands in a buffer after the caller has moved on."""
    pool = _POOL.get()
    pending: deque[Future[T]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        wait(pending)


def _obstore(where: str) -> Any:
    try:
        import obstore
    except ImportError:
        raise missing_extra(where) from None
    return obstore


def _source_error(where: str, error: BaseException) -> SourceError:
    if isinstance(error, FileNotFoundError) and "NoSuchBucket" not in str(error):
        return SourceError(f"{where}: no such object (gone since it was listed?)")
    return SourceError(f"{where}: could not be read ({describe(error)})")


@dataclass(frozen=True)
class RemoteObject:
    """One object: ``key`` under the folder ``folder``, of ``size`` bytes (as listed)."""

    folder: Remote
    key: str
    size: int
    tail: bytes = field(default=b"", compare=False, repr=False)  # its last bytes, when fetched

    @property
    def url(self) -> str:
        return f"{self.folder.url}/{self.key}"

    def fetch(self, start: int, stop: int, where: str) -> bytes:
        """Bytes ``start`` to ``stop`` of the object, in one ranged GET."""
        obstore = _obstore(where)
        try:
            data = bytes(obstore.get_range(self.folder.objects(), self.key, start=start, end=stop))
        except Exception as e:
            if not is_storage_error(e) and not isinstance(e, OSError):
                raise
            raise _source_error(where, e) from e
        FETCHED.add(len(data))
        if len(data) != stop - start:
            raise SourceError(
                f"{where}: {len(data)} bytes at {start} where {stop - start} were asked; "
                "did the object change while it was converted?"
            )
        return data


@dataclass
class Pins:
    """Ranges of one object kept for good: a zip's end records and central directory."""

    blocks: list[tuple[int, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def find(self, start: int, stop: int) -> memoryview | None:
        for lo, data in self.blocks:
            if lo <= start and stop <= lo + len(data):
                return memoryview(data)[start - lo : stop - lo]
        return None

    def add(self, start: int, data: bytes) -> None:
        with self.lock:
            if self.find(start, start + len(data)) is None:
                self.blocks.append((start, data))


class RangedFile(io.RawIOBase):
    """A read-only, seekable file over one object; see the module's docstring.

    Holds one fetched block at a time (at most ``WINDOW_CAP`` bytes) besides the pins.
    """

    def __init__(self, source: RemoteObject, where: str, pins: Pins | None = None) -> None:
        super().__init__()
        self.source = source
        self.name = where
        self._pins = pins
        self.recording = False  # fetched blocks go to the pins (zip directory reads)
        self._pos = 0
        self._block_start = 0
        self._block = b""
        self._window = (0, 0)
        self._short_from: int | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.source.size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "seek before the start of the object")
        self._pos = base + offset
        return self._pos

    def expect(self, start: int, stop: int, short_from: int | None = None) -> None:
        """The next reads from ``start`` go up to ``stop``: fetch them in one request.

        ``short_from``: a read from there on that runs past ``stop`` returns only what is
        before ``stop`` (a short read, as a file may give). ``zipfile`` reads member data
        at least 4 kB at a time and takes short reads, so a header-only window fetches
        just the header, not 4 kB of each member; its header reads, before this offset,
        always get every byte they ask for.
        """
        self._window = (start, min(stop, start + WINDOW_CAP))
        self._short_from = short_from

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        pos, size = self._pos, self.source.size
        stop = min(size, pos + len(view))
        if stop <= pos:
            return 0
        if self._short_from is not None and self._short_from <= pos < self._window[1] < stop:
            stop = self._window[1]
        if stop - pos > MAX_READ:
            raise SourceError(
                f"{self.name}: a read of {stop - pos} bytes at {pos}, more than {MAX_READ}; "
                "damaged archive (its directory claims more than any mouse holds)"
            )
        data = self._cached(pos, stop)
        if data is None:
            data = self._fetch(pos, stop)
        view[: len(data)] = data
        self._pos = stop
        if stop >= self._block_start + len(self._block):
            self._block = b""  # read to its end: readers go forward, so free it now
        return len(data)

    def _cached(self, pos: int, stop: int) -> memoryview | None:
        if self._pins is not None:
            pinned = self._pins.find(pos, stop)
            if pinned is not None:
                return pinned
        lo = self._block_start
        if lo <= pos and stop <= lo + len(self._block):
            return memoryview(self._block)[pos - lo : stop - lo]
        return None

    def _fetch(self, pos: int, stop: int) -> memoryview:
        lo, hi = self._window
        end = min(self.source.size, max(stop, min(hi, pos + WINDOW_CAP)) if lo <= pos < hi else stop)
        # What the held block already has of the start is not fetched again.
        have = b""
        block_end = self._block_start + len(self._block)
        if self._block_start <= pos < block_end:
            have = self._block[pos - self._block_start :]
        block = have + self.source.fetch(pos + len(have), end, self.name)
        if self.recording and self._pins is not None:
            self._pins.add(pos, block)
        self._block_start, self._block = pos, block
        return memoryview(block)[: stop - pos]


def list_folder(folder: Remote) -> dict[str, int]:
    """Every object under ``folder``, by key relative to it, with its size."""
    obstore = _obstore(folder.url)
    try:
        return {
            str(meta["path"]): int(meta["size"]) for batch in obstore.list(folder.objects()) for meta in batch
        }
    except Exception as e:
        if not is_storage_error(e) and not isinstance(e, OSError):
            raise
        raise _source_error(folder.url, e) from e


def zip_object(location: Remote, suffix: int = TAIL) -> RemoteObject:
    """The zip at ``location`` with its last ``suffix`` bytes, fetched in one request (a GET,
    not a HEAD: the server's refusal has a body that says why); SourceError when there
    is none."""
    obstore = _obstore(location.url)
    parent, _, key = location.url.rpartition("/")
    folder = Remote(parent, location.options)
    try:
        result = obstore.get(folder.objects(), key, options={"range": {"suffix": suffix}})
        tail = bytes(result.bytes())
    except FileNotFoundError as e:
        if "NoSuchBucket" in str(e):
            raise _source_error(location.url, e) from e
        raise SourceError(f"{location.url}: no such object") from e
    except Exception as e:
        if not is_storage_error(e) and not isinstance(e, OSError):
            raise
        raise _source_error(location.url, e) from e
    FETCHED.add(len(tail))
    return RemoteObject(folder, key, int(result.meta["size"]), tail)


def is_zip_url(location: Remote) -> bool:
    return location.url.lower().endswith(".zip")


def find_remote(location: Remote) -> list[Remote]:
    """The mice ``location`` names: itself (a mouse zip or a mouse folder) or the mouse
    folders and zips one level below it, a folder winning over a zip of the same name."""
    if is_zip_url(location):
        zip_object(location, suffix=1)  # there, and readable with these credentials
        return [location]
    obstore = _obstore(location.url)
    try:
        listed = obstore.list_with_delimiter(location.objects())
        if "data" in {p.rstrip("/").rsplit("/", 1)[-1] for p in listed["common_prefixes"]}:
            return [location]
        folders = []
        for prefix in sorted(listed["common_prefixes"]):
            name = prefix.rstrip("/").rsplit("/", 1)[-1]
            if name.startswith("."):
                continue
            child = location.child(name)
            below = obstore.list_with_delimiter(child.objects())["common_prefixes"]
            if "data" in {p.rstrip("/").rsplit("/", 1)[-1] for p in below}:
                folders.append(child)
    except Exception as e:
        if not is_storage_error(e) and not isinstance(e, OSError):
            raise
        raise _source_error(location.url, e) from e
    names = {f.name for f in folders}
    zips = [
        location.child(name) for name in sorted(str(m["path"]).rsplit("/", 1)[-1] for m in listed["objects"])
        if name.lower().endswith(".zip") and not name.startswith(".") and name[: -len(".zip")] not in names
    ]
    found = sorted(folders + zips, key=lambda r: r.name)
    if not found:
        if not listed["objects"] and not listed["common_prefixes"]:
            raise SourceError(f"{location.url}: no such object or folder")
        raise SourceError(f"{location.url}: holds no Sensorium mouse (no sub-folder with data/, no .zip)")
    return found
