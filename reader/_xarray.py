"""The labelled view of a split: ``to_dataset`` (``Split.to_xarray``), an ``xarray.Dataset``
over the split's own lazy Dask arrays. Needs the ``xarray`` extra; imported only when a
view is asked for, so the reader itself never imports xarray.

The variables keep the stored dimension names (format version 3's, whatever the store's
version), and the labels come from what the split and the store already hold: trial ids
(the ``trial`` index), tiers, withheld flags and real frame counts per trial, neuron
indices along the store's neuron axis (the ``neuron`` index) with the source's unit ids
and cell coordinates, time in seconds (the ``time`` index) and channel names. Selecting
with ``.sel`` / ``.isel`` slices the Dask arrays, so only the selected blocks are read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import format as fmt
from ._store import StoreHandle, root_attributes
from .errors import SensoriumZarrError

if TYPE_CHECKING:
    import dask.array
    import xarray

__all__ = ["to_dataset"]


class SplitView(Protocol):
    """What the view takes from a ``Split`` (named here, so this module does not import
    the one that imports it)."""

    mouse: str
    tiers_selected: tuple[str, ...]
    trial_ids: np.ndarray
    tiers: np.ndarray
    valid_frames: np.ndarray
    has_responses: np.ndarray
    shapes: dict[str, tuple[int, ...]]
    standardized: bool
    statistics: str
    frames: slice
    neurons: slice | np.ndarray

    def array(self, variable: str) -> dask.array.Array: ...

#: The source's per-neuron arrays the view labels neurons with, by coordinate name.
UNIT_IDS = f"{fmt.META_NEURONS}/unit_ids"
CELL_COORDINATES = f"{fmt.META_NEURONS}/cell_motor_coordinates"


def to_dataset(split: SplitView, handle: StoreHandle) -> xarray.Dataset:
    """``split`` as an ``xarray.Dataset`` (see the module docstring); reads no array data
    but the small per-neuron source arrays, where the store has them."""
    try:
        import xarray as xr
    except ImportError as e:
        raise SensoriumZarrError("Split.to_xarray needs xarray: pip install 'sensorium-zarr[xarray]'") from e
    attrs = fmt.MouseAttrs.from_dict(root_attributes(handle.root, handle.where), handle.where)
    dims = fmt.spec(fmt.FORMAT_VERSION).dimensions
    data_vars = {variable: (dims[variable], split.array(variable)) for variable in fmt.VARIABLES}

    frames = np.arange(split.frames.start, split.frames.stop)
    neurons = np.arange(split.shapes[fmt.RESPONSES][1])[split.neurons]
    coords: dict[str, Any] = {
        "trial": ("trial", split.trial_ids, {"long_name": "trial id (source file name)"}),
        fmt.TIER: ("trial", split.tiers.astype(str)),
        fmt.HAS_RESPONSES: ("trial", split.has_responses),
        **{
            f"{fmt.VALID_FRAMES}_{variable}": (
                "trial", split.valid_frames[:, column], {"long_name": f"real frames of {variable} from the trial start"}
            )
            for column, variable in enumerate(fmt.VARIABLES)
        },
        "time": ("time", frames / attrs.frame_rate, {"units": "s", "long_name": "time from the trial start"}),
        "frame": ("time", frames),
        "neuron": ("neuron", neurons, {"long_name": "index along the store's neuron axis"}),
        **{dims[variable][1]: (dims[variable][1], list(names)) for variable, names in fmt.CHANNELS.items()},
    }
    coords.update(_neuron_labels(handle, attrs.n_neurons, neurons))
    dataset_attrs = {
        "mouse": split.mouse,
        "tiers": list(split.tiers_selected),
        "standardized": bool(split.standardized),
        "statistics": split.statistics if split.standardized else "none (raw values)",
        "frame_rate_hz": attrs.frame_rate,
        "format_version": attrs.format_version,
    }
    return xr.Dataset(data_vars, coords=coords, attrs=dataset_attrs)


def _neuron_labels(handle: StoreHandle, n_neurons: int, neurons: np.ndarray) -> dict[str, Any]:
    """``unit_id`` and ``cell_motor_coordinates`` of the selected neurons, where the source
    had them with one row per neuron."""
    labels: dict[str, Any] = {}
    if _has_rows(handle, UNIT_IDS, n_neurons, ndim=1):
        labels["unit_id"] = ("neuron", handle.read(UNIT_IDS)[neurons])
    if _has_rows(handle, CELL_COORDINATES, n_neurons, ndim=2):
        values = handle.read(CELL_COORDINATES)[neurons]
        labels["cell_motor_coordinates"] = (("neuron", "cell_motor_axis"), values)
    return labels


def _has_rows(handle: StoreHandle, path: str, n_neurons: int, *, ndim: int) -> bool:
    if not handle.exists(path):
        return False
    shape = tuple(handle.node(path).shape)
    return len(shape) == ndim and shape[0] == n_neurons

