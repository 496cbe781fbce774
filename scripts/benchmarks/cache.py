"""Files on disk and the page cache: sizes, warming, eviction (posix_fadvise) and a check
that eviction really makes reads cold on this machine."""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .timing import median_time


def files_under(root: Path) -> list[Path]:
    return sorted(Path(d) / f for d, _, names in os.walk(root) for f in names)


def bytes_on_disk(root: Path) -> tuple[int, int]:
    """(allocated, apparent) bytes of every file under ``root``: what ``du`` and ``ls`` say."""
    allocated = apparent = 0
    for path in files_under(root):
        st = path.stat()
        allocated += st.st_blocks * 512
        apparent += st.st_size
    return allocated, apparent


def read_all(paths: Iterable[Path]) -> int:
    """Read every byte of ``paths`` (into one reused buffer) so they sit in the page cache."""
    buffer = bytearray(16 << 20)
    view = memoryview(buffer)
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                total += n
    return total


def evict(paths: Iterable[Path]) -> None:
    """Drop ``paths`` from the page cache, so the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_fraction(paths: Sequence[Path]) -> float | None:
    """Share of the pages of ``paths`` in the page cache (mincore), or None if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        page = mmap.PAGESIZE
        resident = total = 0
        for path in paths:
            size = path.stat().st_size
            if size == 0:
                continue
            with open(path, "rb") as f:
                # ACCESS_COPY gives a writable buffer ctypes can take the address of; it is
                # private and never written, so the file's own cached pages are what mincore sees.
                mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
            try:
                pages = (size + page - 1) // page
                vec = (ctypes.c_ubyte * pages)()
                address = ctypes.addressof(ctypes.c_char.from_buffer(mm))
                if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vec) != 0:
                    return None
                resident += sum(b & 1 for b in vec)
                total += pages
            finally:
                mm.close()
        return resident / total if total else None
    except (OSError, AttributeError, ValueError, BufferError):
        return None


@dataclass(frozen=True)
class ColdCheck:
    possible: bool
    reason: str


def check_eviction(sample: Sequence[Path]) -> ColdCheck:
    """Whether posix_fadvise(DONTNEED) really makes reads of ``sample`` cold here.

    Two pieces of evidence: pages left resident after the call (mincore), and the time of
    a read after it vs a warm read. On a VM the host may still cache the disk, in which
    case the guest evicts but "cold" reads are barely slower; we report that as it is.
    """
    drop_caches = os.access("/proc/sys/vm/drop_caches", os.W_OK)
    if not hasattr(os, "posix_fadvise"):
        return ColdCheck(False, "os.posix_fadvise is not available on this platform")
    try:
        read_all(sample)
        warm = median_time(lambda: read_all(sample), 3)
        evict(sample)
        left = resident_fraction(sample)
        start = time.perf_counter()
        read_all(sample)
        cold = time.perf_counter() - start
    except OSError as e:
        return ColdCheck(False, f"posix_fadvise(DONTNEED) failed: {e}")
    detail = (
        f"read of {len(sample)} files after fadvise {cold * 1e3:.1f} ms vs warm {warm * 1e3:.1f} ms"
        + (f", {left:.0%} of their pages still resident after it" if left is not None else "")
        + f"; /proc/sys/vm/drop_caches {'writable' if drop_caches else 'not writable'}"
    )
    if left is not None and left > 0.5:
        return ColdCheck(False, f"the kernel kept the pages: {detail}")
    if left is None and cold < 1.5 * warm:
        return ColdCheck(False, f"eviction had no measurable effect: {detail}")
    return ColdCheck(True, detail)
