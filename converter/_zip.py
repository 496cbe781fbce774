"""The zip layer: list and read the members of a mouse zip, trusting none of its fields.

Python's ``zipfile`` believes the sizes, flags and methods an archive declares and, on
malformed input, raises an open-ended set of exception types from deep inside. Here every
member is checked from the central directory before anything is read (method, encryption,
declared size against compressed size), and every read goes through ``Member``, which
turns whatever ``zipfile`` raises into a one-line ``SourceError`` naming the member.
"""

from __future__ import annotations

import io
import struct
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Any

from sensorium_zarr.errors import SourceError

__all__ = ["ZIP_ERRORS", "Member", "ZipReader", "list_members", "reason"]

#: What ``zipfile`` raises on damaged archives: its own BadZipFile, the codec's errors,
#: the generic errors of its struct and seek calls, NotImplementedError for a "zip version"
#: it does not know (these five found by tests/test_fuzz.py), and RuntimeError, its
#: documented error for an encrypted member.
ZIP_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    NotImplementedError,
    RuntimeError,
)

#: Methods read. bzip2 and LZMA are refused: ``zipfile`` decompresses them with no bound
#: on the output of one call, so a small member could expand without limit.
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
#: Deflate's largest possible expansion: one 258-byte match per 2-bit code is 1032 to 1.
DEFLATE_MAX_RATIO = 1032
#: Slack for the deflate bound on tiny members (block headers, final bits).
DEFLATE_SLACK = 1024
_ENCRYPTED = 0x1
_STRONG_ENCRYPTION = 0x40


def reason(e: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def list_members(path: Path) -> list[zipfile.ZipInfo]:
    """Every entry of the zip at ``path``, as its central directory describes them."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.infolist()
    except ZIP_ERRORS as e:
        raise SourceError(f"{path}: not a readable zip archive ({reason(e)})") from e


def check_member(info: zipfile.ZipInfo, where: str) -> None:
    """Refuse a member that cannot be read safely, from its directory entry alone."""
    if info.flag_bits & (_ENCRYPTED | _STRONG_ENCRYPTION):
        raise SourceError(f"{where}: encrypted zip member; re-zip the mouse without a password")
    if info.compress_type not in METHODS:
        names = " or ".join(METHODS.values())
        raise SourceError(
            f"{where}: zip compression method {info.compress_type} is not supported "
            f"(only {names}); re-zip the mouse with a standard zip tool"
        )
    declared, packed = info.file_size, info.compress_size
    if info.compress_type == zipfile.ZIP_STORED and declared != packed:
        raise SourceError(
            f"{where}: stored zip member declares {declared} bytes but occupies {packed}; damaged archive"
        )
    if declared > packed * DEFLATE_MAX_RATIO + DEFLATE_SLACK:
        raise SourceError(
            f"{where}: zip member declares {declared} bytes from {packed} compressed, more than "
            f"deflate can expand ({DEFLATE_MAX_RATIO}:1); damaged archive or zip bomb"
        )


class ZipReader:
    """Opens members of one zip; one ``ZipFile`` per thread, each with its own position."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def open(self, name: str, where: str) -> Member:
        try:
            archive = getattr(self._local, "zip", None)
            if archive is None:
                archive = self._local.zip = zipfile.ZipFile(self.path)
            check_member(archive.getinfo(name), where)
            return Member(archive.open(name), where)
        except SourceError:
            raise
        except ZIP_ERRORS as e:
            raise SourceError(f"{where}: could not be opened ({reason(e)})") from e

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._local = threading.local()


class Member(io.RawIOBase):
    """A readable zip member whose every failure is a ``SourceError`` naming it."""

    def __init__(self, raw: Any, where: str) -> None:
        super().__init__()
        self._raw = raw
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return int(self._raw.readinto(buffer))
        except ZIP_ERRORS as e:
            # A damaged member often fails only here, when its CRC is checked at its end.
            raise SourceError(f"{self._where}: could not be read ({reason(e)})") from e

    def tell(self) -> int:
        return int(self._raw.tell())

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
