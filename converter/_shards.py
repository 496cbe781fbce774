"""Shards of the per-trial variables written by the converter itself, their inner chunks
in C order (format version 6, ``FormatSpec.c_order_shards``).

zarr-python writes a shard's inner chunks in Morton order, which interleaves the trials of
a shard: one trial's 117 response chunks then lie in as many separate byte ranges, one
system call each on disk and a ranged GET each (or a read of the whole shard) in a bucket.
In C order, with the trial axis first, each trial's chunks are one byte range. The bytes
of each inner chunk and of the index are what the array's codecs say (``bytes``, Blosc,
``crc32c``, or from version 7 ``bytes``, ``crc32c`` alone; the index ``bytes``,
``crc32c``, at the end), so every Zarr reader reads the
shard as before: only the order of the chunks in the file differs, which the index states.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import google_crc32c
import numcodecs.blosc
import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from sensorium_zarr._native import layout_of

#: Blosc's shuffles by the names ``BloscCodec`` gives them.
BLOSC_SHUFFLES = {"noshuffle": numcodecs.blosc.NOSHUFFLE, "shuffle": numcodecs.blosc.SHUFFLE,
                  "bitshuffle": numcodecs.blosc.BITSHUFFLE}


def write_shards(array: zarr.Array[Any], start: int, stop: int, block: np.ndarray) -> bool:
    """Write ``block``, trials ``start:stop`` with every other axis whole, into the sharded
    ``array`` as whole shards, inner chunks in C order. False, writing nothing, if the
    array or the block's extent is not one this writes (then zarr-python writes it)."""
    metadata: dict[str, Any] = dict(array.metadata.to_dict())
    # The layouts the reader's own engine reads (``bytes``, Blosc, ``crc32c``; index
    # ``bytes``, ``crc32c``): exactly what this writes.
    layout = layout_of(metadata, array.fill_value)
    if layout is None or not layout.sharded or not layout.index_at_end:
        return False
    blosc: dict[str, Any] | None = None
    if layout.compressed:
        blosc = dict(metadata["codecs"][0]["configuration"]["codecs"][1].get("configuration") or {})
    outer, inner, separator = layout.outer, layout.inner, layout.separator
    if (
        (blosc is not None and blosc.get("shuffle") not in BLOSC_SHUFFLES)
        or block.shape != (stop - start, *array.shape[1:])
        or start % outer[0] or (stop % outer[0] and stop != array.shape[0])
    ):
        return False
    block = np.ascontiguousarray(block, dtype=array.dtype)
    grids = [range(-(-n // o)) for n, o in zip(array.shape[1:], outer[1:], strict=True)]
    for s0 in range(start // outer[0], -(-stop // outer[0])):
        for rest in itertools.product(*grids):
            shard = (s0, *rest)
            data = _encode_shard(block, start, shard, outer, inner, blosc, array.fill_value)
            key = "/".join(filter(None, [array.path, "c" + separator + separator.join(map(str, shard))]))
            sync(array.store.set(key, default_buffer_prototype().buffer.from_bytes(data)))
    return True


def _encode_shard(
    block: np.ndarray, start: int, shard: tuple[int, ...], outer: tuple[int, ...], inner: tuple[int, ...],
    blosc: Mapping[str, Any] | None, fill: Any,
) -> bytes:
    """The bytes of ``shard`` (its grid position) of an array whose trials from ``start``
    are ``block``: every inner chunk (fill-only ones too, as format version 3 requires),
    Blosc-coded with the options ``blosc`` (None: uncoded), each followed by its CRC32C,
    in C order, then the index and its CRC32C."""
    per_shard = [o // i for o, i in zip(outer, inner, strict=True)]
    encode = _blosc_encoder(blosc, block.itemsize) if blosc is not None else _uncoded
    scratch: np.ndarray | None = None
    parts: list[bytes] = []
    index = np.empty((math.prod(per_shard), 2), "<u8")
    offset = 0
    for number, within in enumerate(itertools.product(*(range(k) for k in per_shard))):
        # The chunk's extent in the array, then in the block (the trial axis from ``start``).
        lo = [(s * o + w * i) for s, o, w, i in zip(shard, outer, within, inner, strict=True)]
        lo[0] -= start
        cut = tuple(slice(a, min(a + i, n)) for a, i, n in zip(lo, inner, block.shape, strict=True))
        inside = all(c.start < c.stop for c in cut)
        values = block[cut]
        if not inside or values.shape != inner:
            # Beyond the array's edge: the fill value, as Zarr pads a boundary chunk.
            if scratch is None:
                scratch = np.empty(inner, block.dtype)
            scratch.fill(fill)
            if inside:
                scratch[tuple(slice(0, n) for n in values.shape)] = values
            values = scratch
        encoded = encode(np.ascontiguousarray(values))
        parts.append(encoded)
        parts.append(google_crc32c.value(encoded).to_bytes(4, "little"))
        index[number] = (offset, len(encoded) + 4)
        offset += len(encoded) + 4
    raw = index.tobytes()
    parts.append(raw)
    parts.append(google_crc32c.value(raw).to_bytes(4, "little"))
    return b"".join(parts)


def _uncoded(values: np.ndarray) -> bytes:
    return values.tobytes()


def _blosc_encoder(blosc: Mapping[str, Any], itemsize: int) -> Callable[[np.ndarray], bytes]:
    """Blosc-coding of one chunk's values with the codec options ``blosc``."""
    cname = str(blosc["cname"]).encode()
    clevel, shuffle = int(blosc["clevel"]), BLOSC_SHUFFLES[blosc["shuffle"]]
    blocksize, typesize = int(blosc.get("blocksize") or 0), int(blosc.get("typesize") or itemsize)

    def encode(values: np.ndarray) -> bytes:
        encoded: bytes = numcodecs.blosc.compress(values, cname, clevel, shuffle, blocksize, typesize=typesize)
        return encoded

    return encode
