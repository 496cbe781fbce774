"""The bundle (format version 5): one small array duplicating, in one chunk, the values of
the small arrays a reader needs to open a store and standardize its splits, so that is
one read instead of two requests per array. Pure data and byte packing, no I/O.

The bundle is a 1-D ``uint8`` array at ``BUNDLE`` (dimension ``BUNDLE_DIM``), one chunk
ending in a CRC32C checksum like every chunk. Its bytes are ``MAGIC`` followed by each
member's values, C order, little-endian, each starting at a multiple of ``ALIGN``; its
array attribute ``sensorium_zarr.members`` lists each member as
``{"path", "dtype", "shape", "offset"}`` (``path`` names the array it duplicates,
``dtype`` a numpy dtype string). A lost chunk reads as Zarr's fill value, zeros, which
do not start with ``MAGIC``, so it is never taken for values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import StoreFormatError
from ._attrs import MouseAttrs
from ._names import (
    ATTRS_KEY,
    HAS_RESPONSES,
    INDEX_GROUP,
    OVER_TRIALS_AND_TIME,
    TIER,
    TRIAL_ID,
    VALID_FRAMES,
    VARIABLES,
    provided_statistics_path,
    statistics_path,
)

__all__ = [
    "BUNDLE", "BUNDLE_DIM", "MAGIC", "ALIGN", "MEMBERS_KEY", "POOLED", "PROVIDED_IN_BUNDLE", "BUNDLE_PROVIDED_BYTES",
    "bundle_required", "bundle_optional", "pack_bundle", "unpack_bundle", "require_members",
    "listed_members",
]

#: Path and dimension name of the bundle array.
BUNDLE = "bundle"
BUNDLE_DIM = "bundle_byte"
#: The first bytes of every bundle.
MAGIC = b"SZBUNDL\x05"
#: Every member starts at a multiple of this many bytes (the widest dtype, int64).
ALIGN = 8
#: Key under the array attribute ``ATTRS_KEY`` listing the members.
MEMBERS_KEY = "members"
#: The pooled (``trials_time``) statistics the recomputed standardization derives from.
POOLED: tuple[str, ...] = ("mean", "std", "count")
#: The provided statistics a bundle may hold: every one any variable's rule uses.
PROVIDED_IN_BUNDLE: tuple[str, ...] = ("mean", "std")
#: The provided statistics go in only if together they hold at most this many bytes
#: (they keep the time axis: a real mouse's are tens of MB, which would make every open
#: read them).
BUNDLE_PROVIDED_BYTES = 1 << 20
#: Numpy dtype kinds a member may have: no object, no void, nothing that unpickles.
_KINDS = "biufU"


def bundle_required(attrs: MouseAttrs) -> list[str]:
    """The arrays every bundle holds, in its order: the per-trial arrays, every tier's
    index, and the pooled statistics of every variable."""
    return [
        TRIAL_ID, TIER, VALID_FRAMES, HAS_RESPONSES,
        *(f"{INDEX_GROUP}/{tier}" for tier in attrs.tiers),
        *(statistics_path(v, OVER_TRIALS_AND_TIME, s, attrs.statistics_tier) for v in VARIABLES for s in POOLED),
    ]


def bundle_optional() -> list[str]:
    """The arrays a bundle holds if the store has them all and they are small (at most
    ``BUNDLE_PROVIDED_BYTES`` together): the provided statistics standardization uses."""
    return [provided_statistics_path(v, s) for v in VARIABLES for s in PROVIDED_IN_BUNDLE]


def _member_dtype(values: np.ndarray) -> np.dtype:
    dtype = values.dtype
    if dtype.kind not in _KINDS:
        raise ValueError(f"a bundle member cannot have dtype {dtype}")
    return dtype.newbyteorder("<") if dtype.byteorder not in "|<" and dtype.itemsize > 1 else dtype


def pack_bundle(values: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The bundle's bytes (``uint8``) and member list for ``values`` (path -> array, in
    the order to store them). Text arrays (Zarr ``string``) are stored fixed-width."""
    parts = [MAGIC]
    members = []
    size = len(MAGIC)
    for path, array in values.items():
        array = np.asarray(array)
        if array.dtype.kind in "OT":  # Zarr's variable-width strings
            array = np.asarray(array.tolist() if array.size else [], dtype=str).reshape(array.shape)
        array = np.ascontiguousarray(array, dtype=_member_dtype(array))
        pad = -size % ALIGN
        parts.append(b"\0" * pad)
        size += pad
        members.append({"path": path, "dtype": array.dtype.str, "shape": list(array.shape), "offset": size})
        data = array.tobytes()
        parts.append(data)
        size += len(data)
    return np.frombuffer(b"".join(parts), dtype=np.uint8), members


def _members(where: str, listed: Any) -> Iterator[tuple[str, np.dtype, tuple[int, ...], int]]:
    if not isinstance(listed, list):
        raise StoreFormatError(f"{where}: '{BUNDLE}' has no {ATTRS_KEY}.{MEMBERS_KEY} list; convert the source again")
    for entry in listed:
        ok = isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("dtype"), str)
        shape, offset = (entry.get("shape"), entry.get("offset")) if isinstance(entry, dict) else (None, None)
        ok = ok and isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)
        ok = ok and type(offset) is int and offset >= len(MAGIC)
        dtype = None
        if ok:
            try:
                dtype = np.dtype(entry["dtype"])
            except TypeError:
                dtype = None
        if dtype is None or dtype.kind not in _KINDS or dtype.byteorder == ">" or dtype.itemsize == 0:
            raise StoreFormatError(
                f"{where}: '{BUNDLE}' lists a malformed member {entry!r}; convert the source again"
            )
        assert isinstance(shape, list) and isinstance(offset, int)
        yield entry["path"], dtype, tuple(shape), offset


def unpack_bundle(where: str, data: np.ndarray, listed: Any) -> dict[str, np.ndarray]:
    """The members of the bundle ``data`` (its ``uint8`` values) as listed by ``listed``
    (its ``members`` attribute), each a copy; StoreFormatError naming the store
    when the bytes are missing (Zarr's fill value) or do not match the list."""
    raw = np.asarray(data, dtype=np.uint8).reshape(-1)
    if raw.size < len(MAGIC) or raw[: len(MAGIC)].tobytes() != MAGIC:
        what = "is missing (its chunk reads as the fill value)" if not raw.any() else "does not start with its magic"
        raise StoreFormatError(
            f"{where}: chunk c/0 of '{BUNDLE}' {what}; the store is damaged, convert the source again"
        )
    out: dict[str, np.ndarray] = {}
    end = len(MAGIC)
    for path, dtype, shape, offset in _members(where, listed):
        nbytes = math.prod(shape) * dtype.itemsize
        if offset < end or offset + nbytes > raw.size or path in out:
            raise StoreFormatError(
                f"{where}: '{BUNDLE}' member '{path}' overlaps another or runs past its {raw.size} bytes; "
                "convert the source again"
            )
        out[path] = raw[offset : offset + nbytes].view(dtype).reshape(shape).copy()
        end = offset + nbytes
    if end != raw.size:
        raise StoreFormatError(
            f"{where}: '{BUNDLE}' holds {raw.size} bytes, its members end at {end}; convert the source again"
        )
    return out


def listed_members(attributes: Any) -> Any:
    """The members list of a bundle array's attributes (``array.attrs``), None if absent."""
    own = attributes.get(ATTRS_KEY) if isinstance(attributes, Mapping) else None
    return own.get(MEMBERS_KEY) if isinstance(own, Mapping) else None


def require_members(where: str, found: Sequence[str], attrs: MouseAttrs) -> None:
    """StoreFormatError naming the first array every bundle must hold that ``found`` lacks."""
    have = set(found)
    for path in bundle_required(attrs):
        if path not in have:
            raise StoreFormatError(f"{where}: '{BUNDLE}' lacks member '{path}'; convert the source again")
