"""Which chunks an array has in its store: the keys its chunk grid defines, which of them
exist, and which inner chunks a shard's index marks empty. Entry points:
``chunk_keys``, ``missing_chunks`` and ``require_chunks``.

Zarr reads a chunk that is not in the store as the fill value, silently. From format
version 3 every chunk is written (``FormatSpec.every_chunk_present``), so a missing one is
damage; the reader checks the one chunk of each small array it reads (``require_chunks``),
and ``verify`` every chunk and every inner chunk of the store.

Read from the array's own metadata (``zarr.json`` as a dict): regular chunk grid, default
chunk key encoding, and the ``sharding_indexed`` codec of Zarr v3, whose index is
``(offset, nbytes)`` as little-endian uint64 per inner chunk in C order, both all ones for
an empty inner chunk, followed by a CRC32C checksum when its index codecs say so.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import zarr
from zarr.abc.store import ByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from .errors import StoreFormatError

__all__ = ["Chunk", "Sharding", "chunk_keys", "missing_chunks", "require_chunks", "sharding"]

#: Both fields of an empty inner chunk's entry in a shard index.
EMPTY = 2**64 - 1


@dataclass(frozen=True)
class Chunk:
    """One chunk (a shard, if sharded) of an array: its key below the array's folder and
    the region of the array it covers (clipped to the array's shape)."""

    key: str
    region: tuple[slice, ...]


@dataclass(frozen=True)
class Sharding:
    """The layout of a shard: inner chunk shape, where the index sits, and whether the
    index ends in a CRC32C checksum."""

    inner: tuple[int, ...]
    index_at_end: bool
    index_checksum: bool


def _chunk_shape(metadata: Mapping[str, Any]) -> tuple[int, ...]:
    grid = metadata.get("chunk_grid") or {}
    if grid.get("name") != "regular":
        raise ValueError(f"chunk grid {grid.get('name')!r}, expected 'regular'")
    return tuple(int(c) for c in grid["configuration"]["chunk_shape"])


def _key(coords: tuple[int, ...], metadata: Mapping[str, Any]) -> str:
    encoding = metadata.get("chunk_key_encoding") or {"name": "default"}
    default = "/" if encoding["name"] == "default" else "."
    separator = str((encoding.get("configuration") or {}).get("separator", default))
    if encoding["name"] == "default":
        return separator.join(["c", *map(str, coords)])
    return separator.join(map(str, coords)) if coords else "0"


def chunk_keys(metadata: Mapping[str, Any]) -> Iterator[Chunk]:
    """Every chunk (shard) the array's chunk grid defines; none for an array without
    elements."""
    shape = tuple(int(s) for s in metadata["shape"])
    chunks = _chunk_shape(metadata)
    if any(s == 0 for s in shape):
        return
    grid = [range(math.ceil(s / c)) for s, c in zip(shape, chunks, strict=True)]
    for coords in itertools.product(*grid):
        region = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(coords, chunks, shape, strict=True))
        yield Chunk(_key(coords, metadata), region)


def sharding(metadata: Mapping[str, Any]) -> Sharding | None:
    """The shard layout of a sharded array, else None."""
    for codec in metadata.get("codecs", ()):
        if codec.get("name") == "sharding_indexed":
            config = codec.get("configuration", {})
            names = [c.get("name") for c in config.get("index_codecs", ())]
            return Sharding(
                tuple(int(c) for c in config["chunk_shape"]),
                config.get("index_location", "end") == "end",
                "crc32c" in names,
            )
    return None


def missing_chunks(array: zarr.Array[Any]) -> Iterator[tuple[str, tuple[slice, ...]]]:
    """What of ``array`` is not in its store, as (what, region): ``"chunk c/0/1"`` for a
    chunk or shard file that is not there, ``"inner chunk at [...] of shard c/0/1"`` for an
    inner chunk its shard's index marks empty, ``"shard c/0/1 (...)"`` for a shard whose
    index cannot be read."""
    metadata = array.metadata.to_dict()
    layout = sharding(metadata)
    store, prefix = array.store_path.store, array.store_path.path
    shard_shape = _chunk_shape(metadata)
    for chunk in chunk_keys(metadata):
        key = f"{prefix}/{chunk.key}" if prefix else chunk.key
        if layout is None:
            if not _exists(store, key):
                yield f"chunk {chunk.key}", chunk.region
            continue
        full = tuple(s // c for s, c in zip(shard_shape, layout.inner, strict=True))
        size = 16 * math.prod(full) + (4 if layout.index_checksum else 0)
        span = SuffixByteRequest(size) if layout.index_at_end else RangeByteRequest(0, size)
        data = _get(store, key, span)
        if data is None:
            yield f"chunk {chunk.key}", chunk.region
            continue
        try:
            empty = _empty_inner_chunks(data, layout, full, chunk.region)
        except ValueError as e:
            yield f"shard {chunk.key} ({e})", chunk.region
            continue
        for region in empty:
            where = ", ".join(f"{s.start}:{s.stop}" for s in region)
            yield f"inner chunk [{where}] of shard {chunk.key}", region


def _empty_inner_chunks(
    raw: bytes, layout: Sharding, full: tuple[int, ...], region: tuple[slice, ...]
) -> list[tuple[slice, ...]]:
    """The regions (array coordinates) of the inner chunks of the shard covering
    ``region`` that its index ``raw`` (``full`` inner chunks per axis) marks empty;
    ValueError if the index is unreadable."""
    n = math.prod(full)
    size = 16 * n + (4 if layout.index_checksum else 0)
    if len(raw) != size:
        raise ValueError(f"its index is {len(raw)} bytes, expected {size}")
    body = raw[: 16 * n]
    if layout.index_checksum and google_crc32c.value(body) != int.from_bytes(raw[16 * n:], "little"):
        raise ValueError("its index fails its CRC32C checksum")
    index = np.frombuffer(body, dtype="<u8").reshape(*full, 2)
    # Inner chunks wholly past the array's edge (an edge shard's padding) are not expected.
    within = [range(math.ceil((s.stop - s.start) / c)) for s, c in zip(region, layout.inner, strict=True)]
    empty = []
    for coords in itertools.product(*within):
        if index[coords][0] == EMPTY and index[coords][1] == EMPTY:
            empty.append(tuple(
                slice(s.start + i * c, min(s.start + (i + 1) * c, s.stop))
                for s, i, c in zip(region, coords, layout.inner, strict=True)
            ))
    return empty


def _local_root(store: Store) -> Path | None:
    root = getattr(store, "root", None)
    return Path(root) if root is not None and isinstance(store, zarr.storage.LocalStore) else None


def _exists(store: Store, key: str) -> bool:
    root = _local_root(store)
    if root is not None:
        return os.path.isfile(root / key)
    return bool(sync(store.exists(key)))


def _get(store: Store, key: str, span: ByteRequest) -> bytes | None:
    buffer = sync(store.get(key, prototype=default_buffer_prototype(), byte_range=span))
    return None if buffer is None else buffer.to_bytes()


def require_chunks(array: zarr.Array[Any], where: str) -> None:
    """StoreFormatError naming the first chunk of ``array`` (an unsharded array: the small
    ones the reader reads whole) that is not in the store: one existence check per chunk,
    a stat on a local folder."""
    metadata = array.metadata.to_dict()
    store, prefix = array.store_path.store, array.store_path.path
    for chunk in chunk_keys(metadata):
        if not _exists(store, f"{prefix}/{chunk.key}" if prefix else chunk.key):
            raise StoreFormatError(
                f"{where}: chunk {chunk.key} of {prefix} is missing; the store is damaged, convert the source again"
            )
