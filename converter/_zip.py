"""The zip layer: list and read the members of a mouse zip, trusting none of its fields.

Python's ``zipfile`` believes the sizes, flags and methods an archive declares and, on
malformed input, raises an open-ended set of exception types from deep inside. Here every
member is checked from the central directory before anything is read (method, encryption,
declared size against compressed size), and every read goes through ``Member``, which
turns whatever ``zipfile`` raises into a one-line ``SourceError`` naming the member.

A zip in object storage is the same ``zipfile`` over a ``_bucket.RangedFile``: its end
records and central directory are fetched by range once (and kept), each member's local
header and data by range when it is opened, so the archive is never downloaded whole.
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

from ._bucket import Pins, RangedFile, RemoteObject

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
_UTF8_NAME = 0x800
#: A member's local header before its name and extra field.
_LOCAL_HEADER = 30
#: Member bytes a header-only open of a remote file fetches: numpy writes headers of 128
#: bytes (or a multiple of 64 when longer); a longer one costs one more request.
HEAD_BYTES = 512


def reason(e: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def list_members(path: Path | RemoteObject) -> list[zipfile.ZipInfo]:
    """Every entry of the zip at ``path``, as its central directory describes them."""
    return ZipReader(path).members()


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
    """Opens members of one zip (a file, or an object in a bucket); one ``ZipFile`` per
    thread, each with its own position."""

    def __init__(self, path: Path | RemoteObject) -> None:
        self.path = path
        self._local = threading.local()
        self._pins = _pins(path)

    def _where(self) -> str:
        return self.path.url if isinstance(self.path, RemoteObject) else str(self.path)

    def _archive(self) -> tuple[zipfile.ZipFile, RangedFile | None]:
        """This thread's ``ZipFile``, and the ranged file under it for a remote zip."""
        found: tuple[zipfile.ZipFile, RangedFile | None] | None = getattr(self._local, "zip", None)
        if found is None:
            if isinstance(self.path, RemoteObject):
                file = RangedFile(self.path, self._where(), self._pins)
                file.recording = True  # the end records and directory, kept for every thread
                found = zipfile.ZipFile(file), file
                file.recording = False
            else:
                found = zipfile.ZipFile(self.path), None
            self._local.zip = found
        return found

    def members(self) -> list[zipfile.ZipInfo]:
        """Every entry, as the central directory describes them."""
        try:
            return self._archive()[0].infolist()
        except SourceError:
            raise
        except ZIP_ERRORS as e:
            raise SourceError(f"{self._where()}: not a readable zip archive ({reason(e)})") from e

    def open(self, name: str, where: str, header_only: bool = False) -> Member:
        """Member ``name``; ``header_only``: the caller reads only its first bytes, so a
        remote zip fetches just those (a local one ignores it)."""
        try:
            archive, file = self._archive()
            info = archive.getinfo(name)
            check_member(info, where)
            if file is not None:
                # Where the member's local header and data lie, from the central directory;
                # a local extra field longer than the directory's costs one more request.
                encoding = "utf-8" if info.flag_bits & _UTF8_NAME else "cp437"
                start = info.header_offset
                data = start + _LOCAL_HEADER + len(info.filename.encode(encoding, "replace")) + len(info.extra)
                stop = data + (min(info.compress_size, HEAD_BYTES) if header_only else info.compress_size)
                file.expect(start, stop, short_from=data)
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
        self._pins = _pins(self.path)


def _pins(path: Path | RemoteObject) -> Pins:
    pins = Pins()
    if isinstance(path, RemoteObject) and path.tail:
        pins.add(path.size - len(path.tail), path.tail)
    return pins


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
        except SourceError:
            raise  # a failed request of a remote zip, already naming the archive
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
