"""Safe `.npy` reading from any binary file object: headers alone, or whole arrays.

Never unpickles: object arrays are refused from their header, before any data is read.
Every failure becomes a one-line ``SourceError`` naming the file.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npformat

from sensorium_zarr.errors import SourceError


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool


def read_header(fp: BinaryIO, where: str) -> NpyHeader:
    """Read and check the header of the `.npy` file open at ``fp`` (left after the header)."""
    try:
        version = npformat.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile, zlib.error) as e:
        raise SourceError(f"{where}: not a readable .npy file ({_reason(e)})") from e
    if dtype.hasobject:
        raise SourceError(
            f"{where}: holds Python objects (a pickled array, dtype {dtype}); "
            "refusing to unpickle it, re-save it as a numeric array"
        )
    return NpyHeader(tuple(int(n) for n in shape), dtype, bool(fortran))


def check_size(header: NpyHeader, data_offset: int, file_size: int, where: str) -> None:
    """Catch a truncated file from its size alone, before any data is read."""
    expected = data_offset + int(np.prod(header.shape, dtype=np.int64)) * header.dtype.itemsize
    if file_size < expected:
        raise SourceError(f"{where}: truncated: {file_size} bytes, its header needs {expected}")


def read_array(
    fp: BinaryIO, where: str, expect: NpyHeader | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Read the whole `.npy` array at ``fp``; if ``expect`` is given, the header must match it.

    ``out``: a C-contiguous array to read into when it has the file's shape, dtype and
    order, which saves allocating (and page-faulting) a fresh buffer per file; otherwise
    it is ignored and a new array is returned.
    """
    header = read_header(fp, where)
    if expect is not None and (header.shape, header.dtype) != (expect.shape, expect.dtype):
        raise SourceError(
            f"{where}: changed while converting: shape {header.shape} dtype {header.dtype}, "
            f"scanned as shape {expect.shape} dtype {expect.dtype}"
        )
    count = int(np.prod(header.shape, dtype=np.int64))
    nbytes = count * header.dtype.itemsize
    fits = (
        out is not None and out.shape == header.shape and out.dtype == header.dtype
        and not header.fortran_order and out.flags.c_contiguous and out.flags.writeable
    )
    if fits:
        _read_exactly(fp, nbytes, where, memoryview(out.reshape(-1).view(np.uint8)))
        return out
    data = _read_exactly(fp, nbytes, where)
    array = np.frombuffer(data, dtype=header.dtype, count=count)
    order = "F" if header.fortran_order else "C"
    return array.reshape(header.shape, order=order)


def _read_exactly(fp: BinaryIO, nbytes: int, where: str, into: memoryview | None = None) -> bytearray | memoryview:
    buffer = bytearray(nbytes) if into is None else into
    view = memoryview(buffer)
    got = 0
    try:
        while got < nbytes:
            n = fp.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                break
            got += n
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        # A damaged zip member fails only here, when its CRC is checked at the end.
        raise SourceError(f"{where}: could not be read ({_reason(e)})") from e
    if got != nbytes:
        raise SourceError(f"{where}: truncated: {got} of {nbytes} data bytes present")
    return buffer


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
