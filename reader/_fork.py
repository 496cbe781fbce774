"""What a forked child must not inherit. Entry points: ``per_process_dict``, ``forked``.

``fork`` copies a process's memory but only the thread that called it: a thread pool made
in the parent reaches the child as a queue that no thread serves, and the child's first
task on it waits forever. Every per-process object of the reader that holds threads (or
holds something that does) is therefore made again, lazily, in a forked child:

- ``Split.trial``'s thread pool (``_split``);
- the arrays a ``StoreHandle`` opened (their codec pipeline may hold the zarrs engine's
  Rust thread pool; see ``_engine`` for what a child opens instead);
- Dask's default thread pool, which Dask keeps per process and does not check after a
  fork, so a child of any process that has run a threaded Dask compute would hang in its
  own first one, with or without sensorium-zarr (reset here when Dask is imported).

zarr-python resets its own event loop and thread pool after a fork. Spawned processes
(PyTorch's ``multiprocessing_context="spawn"``, Dask's ``processes`` scheduler and
``dask.distributed``'s workers by default) start empty and unpickle what they need.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["PerProcessDict", "PerProcessPool", "per_process_dict", "forked"]

_FORKED = False


class PerProcessDict(dict[str, Any]):
    """A cache that a forked child finds empty."""


_caches: weakref.WeakValueDictionary[int, PerProcessDict] = weakref.WeakValueDictionary()


def per_process_dict() -> PerProcessDict:
    """An empty cache, emptied again in every forked child."""
    cache = PerProcessDict()
    _caches[id(cache)] = cache
    return cache


class PerProcessPool:
    """A thread pool made on first use, and made again in a forked child, which inherits
    the parent's pool without its threads (the parent's is only forgotten there: shutting
    it down would wait on threads the child lacks)."""

    def __init__(self, size: int, name: str) -> None:
        self.size, self.name = size, name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        _pools.add(self)

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.size, thread_name_prefix=self.name)
            return self._pool

    def _forget(self) -> None:
        self._pool = None
        self._lock = threading.Lock()


_pools: weakref.WeakSet[PerProcessPool] = weakref.WeakSet()


def forked() -> bool:
    """Whether this process is a forked child of a process that imported the reader."""
    return _FORKED


def _reset_dask_threaded() -> None:
    if "dask.threaded" not in sys.modules:
        return
    import dask.threaded as threaded

    # dask.threaded keeps one executor per process in these module globals, public and
    # unchanged for years, and its get() makes a new executor whenever default_pool is
    # None; a child must not submit to the parent's thread-less executors, nor wait on a
    # lock a parent thread held at the fork.
    threaded.pools_lock = threading.Lock()
    threaded.default_pool = None
    threaded.pools.clear()


def _after_fork_in_child() -> None:
    global _FORKED
    _FORKED = True
    for cache in list(_caches.values()):
        cache.clear()
    for pool in list(_pools):
        pool._forget()
    _reset_dask_threaded()


os.register_at_fork(after_in_child=_after_fork_in_child)
