"""Blosc decompression by address, for the native engine's per-chunk loop.

``numcodecs.blosc.decompress`` checks and wraps both of its buffers on every call, which
costs more than decoding a chunk of a few kB. The Blosc library numcodecs ships exports
``blosc_decompress_ctx`` (the context API: no global state, no threads of its own), so
``decompress`` calls it through ctypes with the addresses the caller already holds, the
GIL released. It is None where the library does not export the function, or where a
round trip through it does not give numcodecs' own result; callers then use numcodecs.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numcodecs.blosc
import numpy as np

__all__ = ["decompress"]


def _load() -> Callable[[int, int, int, int], int] | None:
    try:
        function = ctypes.CDLL(numcodecs.blosc.__file__).blosc_decompress_ctx
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    # A round trip against numcodecs, so a library whose function differs is never used.
    expected = np.arange(4096, dtype=np.float32)
    packed = np.frombuffer(
        numcodecs.blosc.compress(expected.tobytes(), b"lz4", 5, numcodecs.blosc.NOSHUFFLE, 4), np.uint8
    )
    got = np.empty_like(expected)
    try:
        decoded = function(packed.ctypes.data, got.ctypes.data, got.nbytes, 1)
    except Exception:  # noqa: BLE001 - any failure of the foreign call means: do not use it
        return None
    if decoded != expected.nbytes or not np.array_equal(got, expected):
        return None
    decode: Callable[[int, int, int, int], int] = function
    return decode


#: ``decompress(source address, destination address, destination bytes, threads)``: the
#: bytes decoded, negative on a malformed buffer; None where it cannot be used.
decompress = _load()
