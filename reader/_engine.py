"""Which code decodes chunks: the reader's own read path (``"native"``, the default),
zarr-python's codec pipeline (``"zarr"``), or the Rust ``zarrs`` pipeline (``"zarrs"``,
the optional extra ``sensorium-zarr[fast]``). Entry points: ``parse_engine``,
``open_array`` (for writing, and for the converter), ``open_reader`` and ``read``.

All read the same format. zarr-python's per-chunk overhead, not decompression, dominates
reads of one trial (``scripts/bench.py`` measures the engines); zarrs and the native path
do not have it.

Checksums. Every chunk, and every shard index, ends in a CRC32C checksum. The native
path and zarr-python check it on every read. zarrs checks it only when a read decodes a
whole chunk (for a sharded array, a whole shard): its partial decoder, which a read of
some trials of a shard or chunk goes through, drops the checksum unchecked, so a damaged
chunk can come back as wrong values; it is never the default. ``read`` turns a failed
check into one ``StoreFormatError`` line naming the array.

The native path reads only the layouts the converter writes, from a local folder
(``_native``) or from object storage (``_remote``: ranged GETs, the same checks and
decoding); ``open_reader`` gives zarr-python's array for anything else (another codec
chain, a Zarr store given by hand), and every write goes through zarr-python.

Forked children. zarrs decodes on one Rust (rayon) thread pool per process, started when
the first zarrs pipeline is made and never restartable; a forked child inherits it
without its threads, and its first read of several chunks would wait forever. So in a
forked child ``open_array`` opens ``"zarrs"`` arrays with zarr-python's pipeline instead
(same values, every checksum checked), and ``_fork`` empties the per-process caches of
arrays opened before the fork. A spawned child uses zarrs as asked. The native path's shard
index cache is made again in a forked child (on local disk it starts no threads). Object storage
cannot be read at all in a child forked after its parent made an obstore client, whatever
the engine (``_location.require_usable`` says so rather than let the request hang).

Zarr fixes an array's pipeline when the array is opened, from its global config; this
module sets that config only for the moment of opening, under a lock, so other zarr users
in the process are not affected.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import Any

import numpy as np
import zarr

from . import _fork
from ._location import Remote
from ._native import NativeArray, open_native
from ._remote import open_remote
from .errors import SensoriumZarrError, StoreFormatError

__all__ = ["NATIVE", "ZARR", "ZARRS", "ENGINES", "parse_engine", "open_array", "open_reader", "read"]

NATIVE = "native"
ZARR = "zarr"
ZARRS = "zarrs"
ENGINES: tuple[str, ...] = (NATIVE, ZARR, ZARRS)

#: What ``open_reader`` gives: both read orthogonal selections and ``[...]`` alike.
Readable = zarr.Array[Any] | NativeArray

_PIPELINES = {ZARRS: "zarrs.ZarrsCodecPipeline"}
_lock = threading.Lock()


def parse_engine(engine: str | None) -> str:
    """``engine`` checked, or the default, native (fast, and checks every checksum)."""
    if engine is None:
        return NATIVE
    if engine not in ENGINES:
        raise SensoriumZarrError(f"engine={engine!r}; expected one of {', '.join(ENGINES)} or None")
    if engine == ZARRS and importlib.util.find_spec("zarrs") is None:
        raise SensoriumZarrError(
            "engine='zarrs' needs the zarrs package: pip install 'sensorium-zarr[fast]'"
        )
    return engine


def pipeline_engine(engine: str) -> str:
    """The engine whose pipeline ``open_array`` gives for ``engine`` in this process (the
    native engine only reads; it writes, and reads what it does not recognise, with zarr)."""
    return ZARR if engine == NATIVE or (engine == ZARRS and _fork.forked()) else engine


def _opening(engine: str) -> Any:
    if pipeline_engine(engine) == ZARR:
        return zarr.config.set({})
    import zarrs  # noqa: F401  (registers the pipeline class)

    return zarr.config.set({"codec_pipeline.path": _PIPELINES[engine]})


def open_array(
    store: Any, path: str, engine: str, mode: str = "r", *, write_empty_chunks: bool = False
) -> zarr.Array[Any]:
    """Open one array whose chunks ``engine`` will decode and encode; with
    ``write_empty_chunks``, a write stores a chunk equal to the fill value too (zarr
    skips it by default)."""
    with _lock, _opening(engine), zarr.config.set({"array.write_empty_chunks": write_empty_chunks}):
        return zarr.open_array(store=store, path=path, mode=mode, zarr_format=3)


def open_reader(
    store: Any, path: str, engine: str, every_chunk_present: bool = False, remote: Remote | None = None
) -> Readable:
    """One array opened read-only for reading data with ``engine``: for ``"native"``, the
    reader's own path when it recognises the array's layout and store (``_native`` for a
    local folder; ``_remote`` for ``remote``, the location ``store`` was opened from), else
    zarr-python's. ``every_chunk_present``: an absent chunk is damage, not fill values
    (native only; zarr and zarrs read it as the fill value)."""
    array = open_array(store, path, engine)
    if engine == NATIVE:
        native = open_native(array, every_chunk_present) if remote is None else open_remote(
            array, remote, every_chunk_present
        )
        if native is not None:
            return native
    return array


def read(
    array: Readable, selection: Any, where: str, context: str = "", scale: np.ndarray | None = None
) -> np.ndarray:
    """``array``'s orthogonal ``selection`` as numpy; a chunk that fails its checksum or
    cannot be decoded raises StoreFormatError naming the store and the array (``context``
    says what was being read). ``scale``: a native array's values multiplied as they are
    read (``NativeArray.get_orthogonal_selection``)."""
    try:
        if scale is not None:
            if not isinstance(array, NativeArray):
                raise TypeError("only the native engine multiplies values as it reads them")
            return array.get_orthogonal_selection(selection, scale)
        return np.asarray(array[...] if selection is Ellipsis else array.get_orthogonal_selection(selection))
    except SensoriumZarrError:
        raise
    except (ValueError, RuntimeError) as e:
        detail = " ".join(str(e).split())
        checksum = "checksum" in detail.lower()
        problem = "a chunk fails its CRC32C checksum" if checksum else f"a chunk cannot be decoded ({detail})"
        at = f" ({context})" if context else ""
        raise StoreFormatError(
            f"{where}: '{array.path}' is damaged: {problem}{at}; convert the source again"
        ) from e
    except Exception as e:
        e.add_note(f"{where}: reading '{array.path}'" + (f", {context}" if context else ""))
        raise


def _forget_lock() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_lock)
