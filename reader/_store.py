"""Opening a store: check that a path is a complete sensorium-zarr store of a supported
format version, and read its attributes. Entry point: ``open_store``."""

from __future__ import annotations

import os
from pathlib import Path

import zarr
import zarr.errors

from . import format as fmt
from .errors import StoreFormatError, StoreNotFoundError

__all__ = ["open_store", "is_complete_store", "store_identity"]


def open_store(path: Path | str) -> tuple[zarr.Group, fmt.MouseAttrs]:
    """Open ``path`` read-only and return its root group and checked attributes."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        what = "no such file or folder" if not path.exists() else "not a Zarr v3 store (no zarr.json)"
        raise StoreNotFoundError(f"{path}: {what}; expected a store written by sensorium-zarr")
    try:
        root = zarr.open_group(store=str(path), mode="r", zarr_format=3)
    except (zarr.errors.NodeTypeValidationError, FileNotFoundError, ValueError) as e:
        raise StoreNotFoundError(f"{path}: not a Zarr v3 group ({e})") from e
    data = root.attrs.get(fmt.ATTRS_KEY)
    if not isinstance(data, dict):
        raise StoreFormatError(
            f"{path}: no '{fmt.ATTRS_KEY}' attributes; not a store written by sensorium-zarr"
        )
    return root, fmt.MouseAttrs.from_dict(data, str(path))


def is_complete_store(path: Path | str) -> bool:
    """Whether ``path`` holds a finished store (of any format version)."""
    try:
        root = zarr.open_group(store=str(path), mode="r", zarr_format=3)
    except (OSError, ValueError, zarr.errors.BaseZarrError):
        return False
    data = root.attrs.get(fmt.ATTRS_KEY)
    return isinstance(data, dict) and data.get("complete") is True


def store_identity(path: Path) -> tuple[int, ...]:
    """What changes when the store at ``path`` is replaced: the identity and modification
    time of its root ``zarr.json``, which a finished store never rewrites."""
    stat = os.stat(path / "zarr.json")
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
