"""Which codec pipeline decodes and encodes chunks: zarr-python's own (``"zarr"``), or the
Rust ``zarrs`` pipeline (``"zarrs"``, the optional extra ``sensorium-zarr[fast]``).

Both read and write the same format. zarrs is several times faster per call, because
zarr-python's per-chunk overhead, not decompression, dominates reads of one trial
(``scripts/bench.py`` measures both). The default, ``None``, takes zarrs when it is
installed. Entry points: ``parse_engine`` and ``open_array``.

Zarr fixes an array's pipeline when the array is opened, from its global config; this
module sets that config only for the moment of opening, under a lock, so other zarr users
in the process are not affected.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import zarr

from .errors import SensoriumZarrError

__all__ = ["ZARR", "ZARRS", "ENGINES", "parse_engine", "open_array"]

ZARR = "zarr"
ZARRS = "zarrs"
ENGINES: tuple[str, ...] = (ZARR, ZARRS)

_PIPELINES = {ZARRS: "zarrs.ZarrsCodecPipeline"}
_lock = threading.Lock()


def parse_engine(engine: str | None) -> str:
    """``engine`` checked, or the default: zarrs if it is installed, else zarr."""
    if engine is None:
        return ZARRS if importlib.util.find_spec("zarrs") is not None else ZARR
    if engine not in ENGINES:
        raise SensoriumZarrError(f"engine={engine!r}; expected one of {', '.join(ENGINES)} or None")
    if engine == ZARRS and importlib.util.find_spec("zarrs") is None:
        raise SensoriumZarrError(
            "engine='zarrs' needs the zarrs package: pip install 'sensorium-zarr[fast]'"
        )
    return engine


def _opening(engine: str) -> Any:
    if engine == ZARR:
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
