"""sensorium-zarr reader: lazy, standardized access to converted Sensorium 2023 stores.

Entry points: ``open_mouse`` (one store) and ``open_sensorium`` (a folder of stores); a
``Mouse``'s ``split`` gives the Dask arrays of a selection of tiers. Dask is imported only
when an array is built.

Layout, each module importing only those before it: ``errors``; ``format`` (the on-disk
format as data: names, root attributes, the array table; no I/O); ``_engine`` (codec
pipelines); ``_standardize``; ``_selection`` (parsing what a caller selects); ``_store``
(opening a store, its attributes and the completion rule, ``StoreHandle``); ``_split``
(``Split``); ``_mouse`` (``Mouse``, ``open_mouse``, ``open_sensorium``); ``_xarray``
(``Split.to_xarray``, imported only when called; the ``xarray`` extra). The converter
(``sensorium_zarr.converter``) builds on these; nothing here imports it.
"""

from ._mouse import Mouse, open_mouse, open_sensorium
from ._split import Split
from ._standardize import (
    PROVIDED,
    RECOMPUTED,
    StandardizationParams,
    destandardize,
    standardize,
)
from .errors import (
    FormatVersionError,
    IncompleteStoreError,
    SelectionError,
    SensoriumZarrError,
    StoreFormatError,
    StoreNotFoundError,
    StoreReplacedError,
)

__all__ = [
    "open_mouse",
    "open_sensorium",
    "Mouse",
    "Split",
    "standardize",
    "destandardize",
    "StandardizationParams",
    "RECOMPUTED",
    "PROVIDED",
    "SensoriumZarrError",
    "StoreNotFoundError",
    "StoreReplacedError",
    "StoreFormatError",
    "IncompleteStoreError",
    "FormatVersionError",
    "SelectionError",
]
