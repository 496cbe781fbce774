"""Timing on a shared, noisy machine: medians of repetitions, the two sides interleaved."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_START = time.perf_counter()


def restart_clock() -> None:
    global _START
    _START = time.perf_counter()


def log(message: str) -> None:
    """Progress, to stderr, with the time since the run started."""
    print(f"[bench +{time.perf_counter() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def paired(
    ours: Callable[[Any], Any],
    base: Callable[[Any], Any],
    items: Sequence[Any],
    before: Callable[[], None] | None = None,
    warm_up: bool = False,
) -> tuple[float, float, Any, Any]:
    """Median seconds of ``ours(item)`` and ``base(item)`` over ``items``, and their results
    for the last item.

    The two sides alternate which goes first, so a burst of load from other tenants or
    a cache warming up hits both about equally. ``before`` runs untimed before each call
    (e.g. evicting the page cache for a cold repetition). ``warm_up`` first runs both sides
    once over every item, untimed, so the pages the timed calls read are in the page cache.
    """
    t_ours: list[float] = []
    t_base: list[float] = []
    r_ours = r_base = None
    if warm_up:
        for item in items:
            ours(item)
            base(item)
    for k, item in enumerate(items):
        sides = [(ours, t_ours), (base, t_base)]
        for fn, times in sides if k % 2 == 0 else sides[::-1]:
            if before is not None:
                before()
            start = time.perf_counter()
            result = fn(item)
            times.append(time.perf_counter() - start)
            if fn is ours:
                r_ours = result
            else:
                r_base = result
    return statistics.median(t_ours), statistics.median(t_base), r_ours, r_base


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def memcpy_rate(repeats: int) -> float:
    """Bytes/s of one thread copying 256 MiB: the yardstick for decode rates."""
    a = np.ones(256 << 20, np.uint8)
    b = np.ones_like(a)  # touched, so page faults are not timed

    def copy() -> None:
        np.copyto(b, a)

    return a.nbytes / median_time(copy, max(3, repeats))
