"""Which codec pipeline decodes and encodes chunks: zarr-python's own (``"zarr"``, the
default), or the Rust ``zarrs`` pipeline (``"zarrs"``, the optional extra
``sensorium-zarr[fast]``). Entry points: ``parse_engine``, ``open_array`` and ``read``.

Both read and write the same format. zarrs is several times faster per call, because
zarr-python's per-chunk overhead, not decompression, dominates reads of one trial
(``scripts/bench.py`` measures both).

Checksums. Every chunk, and every shard index, ends in a CRC32C checksum. zarr-python
checks it on every read. zarrs checks it only when a read decodes a whole chunk (for a
sharded array, a whole shard): its partial decoder, which a read of some trials of a
shard or chunk goes through, drops the checksum unchecked, so a damaged chunk can come
back as wrong values. That is why zarr, not zarrs, is the default. ``read`` turns a
failed check into one ``StoreFormatError`` line naming the array.

Forked children. zarrs decodes on one Rust (rayon) thread pool per process, started when
the first zarrs pipeline is made and never restartable; a forked child inherits it
without its threads, and its first read of several chunks would wait forever. So in a
forked child ``open_array`` opens ``"zarrs"`` arrays with zarr-python's pipeline instead
(same values, every checksum checked), and ``_fork`` empties the per-process caches of
arrays opened before the fork. A spawned child uses zarrs as asked.

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
from .errors import SensoriumZarrError, StoreFormatError

__all__ = ["ZARR", "ZARRS", "ENGINES", "parse_engine", "open_array", "read"]

ZARR = "zarr"
ZARRS = "zarrs"
ENGINES: tuple[str, ...] = (ZARR, ZARRS)

_PIPELINES = {ZARRS: "zarrs.ZarrsCodecPipeline"}
_lock = threading.Lock()


def parse_engine(engine: str | None) -> str:
    """``engine`` checked, or the default, zarr (the one that checks every checksum)."""
    if engine is None:
        return ZARR
    if engine not in ENGINES:
        raise SensoriumZarrError(f"engine={engine!r}; expected one of {', '.join(ENGINES)} or None")
    if engine == ZARRS and importlib.util.find_spec("zarrs") is None:
        raise SensoriumZarrError(
            "engine='zarrs' needs the zarrs package: pip install 'sensorium-zarr[fast]'"
        )
    return engine


def pipeline_engine(engine: str) -> str:
    """The engine whose pipeline ``open_array`` gives for ``engine`` in this process."""
    return ZARR if engine == ZARRS and _fork.forked() else engine


def _opening(engine: str) -> Any:
    if pipeline_engine(engine) == ZARR:
        return zarr.config.set({})
    import zarrs  # noqa: F401  (registers the pipeline class)

    return zarr.config.set({"codec_pipeline.path": _PIPELINES[engine]})


def open_array(store: Any, path: str, engine: str, mode: str = "r") -> zarr.Array[Any]:
    """Open one array whose chunks ``engine`` will decode and encode."""
    with _lock, _opening(engine):
        return zarr.open_array(store=store, path=path, mode=mode, zarr_format=3)


def read(array: zarr.Array[Any], selection: Any, where: str, context: str = "") -> np.ndarray:
    """``array``'s orthogonal ``selection`` as numpy; a chunk that fails its checksum or
    cannot be decoded raises StoreFormatError naming the store and the array (``context``
    says what was being read)."""
    try:
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
