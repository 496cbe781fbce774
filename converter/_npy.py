"""Safe `.npy` reading from any binary file object: headers alone, or whole arrays.

The header is parsed here, not by numpy, so that nothing in it is trusted: its length
field, its dictionary text, the shape (non-negative, at most ``MAX_DIMS`` axes, at most
``MAX_BYTES`` of data) and the dtype (numbers or fixed-width text, never objects, never
empty). Never unpickles. Data is read in pieces, so memory grows only with bytes that
really arrive, never with what a header merely claims. Every failure becomes a one-line
``SourceError`` naming the file.
"""

from __future__ import annotations

import ast
import math
import struct
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from sensorium_zarr.errors import SourceError

from ._zip import reason

__all__ = ["NpyHeader", "check_size", "read_array", "read_header"]

_MAGIC = b"\x93NUMPY"
#: Header length field: 2 bytes in version 1.0, 4 in 2.0 and 3.0; text latin-1, or UTF-8 in 3.0.
_VERSIONS = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"), (3, 0): ("<I", "utf8")}
#: numpy's own default limit on header text (``max_header_size``).
MAX_HEADER_BYTES = 10_000
MAX_DIMS = 32
#: Data bytes one file may declare: far above any real trial, far below what int64 counts.
MAX_BYTES = 2**48
#: dtype kinds read: booleans, integers, floats, complex, bytes and unicode text.
_KINDS = "biufcSU"
_KEYS = {"descr", "fortran_order", "shape"}
#: Bytes read per call, so a header's claim is never allocated before the data is there.
_PIECE = 16 * 2**20


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_header(fp: BinaryIO, where: str) -> NpyHeader:
    """Read and check the header of the `.npy` file open at ``fp`` (left after the header)."""
    prefix = _read_bytes(fp, len(_MAGIC) + 2, where)
    if prefix[: len(_MAGIC)] != _MAGIC:
        raise SourceError(f"{where}: not a readable .npy file (no .npy magic at its start)")
    version = (prefix[-2], prefix[-1])
    if version not in _VERSIONS:
        raise SourceError(f"{where}: not a readable .npy file (unsupported .npy version {version[0]}.{version[1]})")
    length_format, encoding = _VERSIONS[version]
    (length,) = struct.unpack(length_format, _read_bytes(fp, struct.calcsize(length_format), where))
    if length > MAX_HEADER_BYTES:
        raise SourceError(f"{where}: not a readable .npy file (header of {length} bytes, limit {MAX_HEADER_BYTES})")
    text = _read_bytes(fp, length, where)
    try:
        fields = ast.literal_eval(text.decode(encoding))
    except (ValueError, SyntaxError, TypeError, UnicodeDecodeError, MemoryError, RecursionError) as e:
        raise SourceError(f"{where}: not a readable .npy file (header is not a Python literal: {reason(e)})") from e
    if not isinstance(fields, dict) or set(fields) != _KEYS:
        raise SourceError(f"{where}: not a readable .npy file (header must be a dict of descr, fortran_order, shape)")
    shape = _parse_shape(fields["shape"], where)
    dtype = _parse_dtype(fields["descr"], where)
    fortran_order = fields["fortran_order"]
    if not isinstance(fortran_order, bool):
        raise SourceError(f"{where}: not a readable .npy file (fortran_order {fortran_order!r} is not True or False)")
    header = NpyHeader(shape, dtype, fortran_order)
    if header.nbytes > MAX_BYTES:
        raise SourceError(
            f"{where}: header declares {header.nbytes} data bytes (shape {shape}, dtype {dtype}), "
            f"more than the {MAX_BYTES} one file may hold"
        )
    return header


def _parse_shape(shape: object, where: str) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
        raise SourceError(f"{where}: not a readable .npy file (shape {shape!r} is not a tuple of integers)")
    if len(shape) > MAX_DIMS:
        raise SourceError(f"{where}: not a readable .npy file ({len(shape)} dimensions, at most {MAX_DIMS})")
    if any(n < 0 for n in shape):
        raise SourceError(f"{where}: not a readable .npy file (negative dimension in shape {shape})")
    return shape


def _parse_dtype(descr: object, where: str) -> np.dtype:
    if not isinstance(descr, str):
        raise SourceError(
            f"{where}: dtype {descr!r} is structured; only plain numeric or text arrays are read"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy deprecates some spellings; still parse them
            dtype = np.dtype(descr)
    except (TypeError, ValueError, SyntaxError, KeyError, OverflowError, RecursionError, MemoryError) as e:
        raise SourceError(f"{where}: not a readable .npy file (dtype {descr!r}: {reason(e)})") from e
    if dtype.hasobject:
        raise SourceError(
            f"{where}: holds Python objects (a pickled array, dtype {dtype}); "
            "refusing to unpickle it, re-save it as a numeric array"
        )
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind not in _KINDS:
        raise SourceError(
            f"{where}: dtype {descr!r} is not supported; only plain numeric or text arrays are read"
        )
    if dtype.itemsize == 0:
        raise SourceError(f"{where}: dtype {descr!r} has zero-sized elements; not a readable .npy file")
    return dtype


def check_size(header: NpyHeader, data_offset: int, file_size: int, where: str) -> None:
    """Catch a truncated or overlong file from its size alone, before any data is read."""
    expected = data_offset + header.nbytes
    if file_size < expected:
        raise SourceError(f"{where}: truncated: {file_size} bytes, its header needs {expected}")
    if file_size > expected:
        raise SourceError(
            f"{where}: {file_size} bytes, {file_size - expected} more than its header (shape "
            f"{header.shape}, dtype {header.dtype}) implies; damaged or not one .npy array"
        )


def read_array(
    fp: BinaryIO, where: str, expect: NpyHeader | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Read the whole `.npy` array at ``fp``; if ``expect`` is given, the header must match it.

    ``out``: a C-contiguous array to read into when it has the file's shape, dtype and
    order, which saves allocating (and page-faulting) a fresh buffer per file; otherwise
    it is ignored and a new array is returned. A file holding more bytes than its header
    implies is refused (reading one byte past the data also makes a zip member check its CRC).
    """
    header = read_header(fp, where)
    if expect is not None and header != expect:
        raise SourceError(
            f"{where}: changed while converting: shape {header.shape} dtype {header.dtype}, "
            f"scanned as shape {expect.shape} dtype {expect.dtype}"
        )
    if out is not None and (
        out.shape == header.shape and out.dtype == header.dtype
        and not header.fortran_order and out.flags.c_contiguous and out.flags.writeable
    ):
        _read_into(fp, out.reshape(-1).view(np.uint8).data, where)
        result = out
    else:
        data = _read_bytes(fp, header.nbytes, where, what="data bytes")
        flat = np.frombuffer(data, dtype=header.dtype, count=math.prod(header.shape))
        result = flat.reshape(header.shape, order="F" if header.fortran_order else "C")
    if _read_some(fp, 1, where):
        raise SourceError(
            f"{where}: holds more bytes than its header (shape {header.shape}, dtype {header.dtype}) implies"
        )
    return result


def _read_some(fp: BinaryIO, n: int, where: str) -> bytes:
    try:
        return fp.read(n)
    except SourceError:
        raise
    except (OSError, EOFError, ValueError) as e:
        raise SourceError(f"{where}: could not be read ({reason(e)})") from e


def _read_bytes(fp: BinaryIO, nbytes: int, where: str, what: str = "header bytes") -> bytearray:
    """Exactly ``nbytes`` from ``fp``, gathered piece by piece as they arrive."""
    buffer = bytearray()
    while len(buffer) < nbytes:
        piece = _read_some(fp, min(_PIECE, nbytes - len(buffer)), where)
        if not piece:
            if what == "header bytes":
                raise SourceError(f"{where}: not a readable .npy file (ends inside its header)")
            raise SourceError(f"{where}: truncated: {len(buffer)} of {nbytes} {what} present")
        buffer += piece
    return buffer


def _read_into(fp: BinaryIO, view: memoryview, where: str) -> None:
    got = 0
    while got < len(view):
        try:
            n = fp.readinto(view[got : got + _PIECE])  # type: ignore[attr-defined]
        except SourceError:
            raise
        except (OSError, EOFError, ValueError) as e:
            raise SourceError(f"{where}: could not be read ({reason(e)})") from e
        if not n:
            raise SourceError(f"{where}: truncated: {got} of {len(view)} data bytes present")
        got += n
