"""The trials of one selection of tiers, as lazy Dask arrays. Entry point: ``Split``
(made by ``Mouse.split``).

Each variable is one Dask graph layer with one task per block of trials; a task reads
its trials (and only the frames of the window) from Zarr, standardizes them and masks
withheld responses, so computing one trial reads only that trial's chunks. Tasks carry
the store handle, which pickles as the store location, so graphs run in other processes.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _engine as engine_
from . import _standardize as std_
from . import format as fmt
from ._selection import count as _count
from ._selection import parse_frames, parse_variable
from ._store import StoreHandle
from .errors import SelectionError

if TYPE_CHECKING:
    import dask.array
    import xarray

__all__ = ["Split"]


class Split:
    """Trials of a selection of tiers, in store order (ascending trial id within a tier).

    ``videos`` (trial, time, height, width), ``responses`` (trial, neuron, time),
    ``behavior`` and ``pupil_center`` (trial, channel, time) are Dask arrays; the per-trial
    ``trial_ids``, ``tiers``, ``valid_frames`` (trial, variable), ``has_responses`` and
    ``positions`` (along the store's trial axis) are numpy arrays. ``valid_frames`` counts
    real frames from the trial start, whatever ``frames`` selects.
    """

    def __init__(
        self,
        handle: StoreHandle,
        *,
        mouse: str,
        tiers_selected: tuple[str, ...],
        positions: np.ndarray,
        trial_ids: np.ndarray,
        tiers: np.ndarray,
        valid_frames: np.ndarray,
        has_responses: np.ndarray,
        shapes: dict[str, tuple[int, ...]],
        dtypes: dict[str, np.dtype],
        standardize: bool,
        statistics: str,
        frames: slice,
        trials_per_block: int | None,
        neurons: slice | np.ndarray | None = None,
    ) -> None:
        self._handle = handle
        self.mouse = mouse
        self.tiers_selected = tiers_selected
        self.positions = positions
        self.trial_ids = trial_ids
        self.tiers = tiers
        self.valid_frames = valid_frames
        self.has_responses = has_responses
        self.shapes = shapes
        self.dtypes = dtypes
        self.standardized = standardize
        self.statistics = statistics
        self.frames = frames
        self.trials_per_block = trials_per_block
        #: Neurons of ``responses`` (a slice or index array along the neuron axis).
        self.neurons = neurons if neurons is not None else slice(0, shapes[fmt.RESPONSES][1])

    def __getstate__(self) -> dict[str, Any]:
        # The Dask arrays are rebuilt on demand; only the small state travels.
        return {k: v for k, v in self.__dict__.items() if k not in fmt.VARIABLES}

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def n_trials(self) -> int:
        return len(self.positions)

    def __repr__(self) -> str:
        how = f"standardized ({self.statistics} statistics)" if self.standardized else "raw"
        return (
            f"<Split {self.mouse} {'+'.join(self.tiers_selected)}: {self.n_trials} trials, "
            f"frames {self.frames.start}:{self.frames.stop}, {how}>"
        )

    @cached_property
    def videos(self) -> dask.array.Array:
        return self.array(fmt.VIDEOS)

    @cached_property
    def responses(self) -> dask.array.Array:
        return self.array(fmt.RESPONSES)

    @cached_property
    def behavior(self) -> dask.array.Array:
        return self.array(fmt.BEHAVIOR)

    @cached_property
    def pupil_center(self) -> dask.array.Array:
        return self.array(fmt.PUPIL_CENTER)

    def to_xarray(self) -> xarray.Dataset:
        """This split as an ``xarray.Dataset`` over the same lazy Dask arrays, labelled:
        ``trial`` (trial ids) with ``tier``, ``has_responses`` and ``valid_frames_<variable>``;
        ``time`` in seconds with ``frame``; ``neuron`` (index along the store's neuron axis)
        with ``unit_id`` and ``cell_motor_coordinates`` where the source has them; channel
        names. ``.sel`` / ``.isel`` read only the selected blocks. Needs the ``xarray``
        extra (``pip install 'sensorium-zarr[xarray]'``)."""
        from ._xarray import to_dataset

        return to_dataset(self, self._handle)

    def standardization_params(self, variable: str) -> std_.StandardizationParams:
        """The parameters this split standardizes ``variable`` with, cut to its frames (reads
        the statistics)."""
        variable = parse_variable(variable, self._handle.where)
        params = self._handle.params(variable, self.statistics).window(self.frames)
        return params.neurons(self.neurons) if variable == fmt.RESPONSES else params

    def destandardize(self, variable: str, x: Any) -> Any:
        """Raw values back from standardized values of ``variable`` of this split."""
        return std_.destandardize(variable, x, self.standardization_params(variable))

    def block_size(self, variable: str) -> int:
        """Trials per Dask block of ``variable``: one trial's worth of data by default."""
        if self.trials_per_block is not None:
            return self.trials_per_block
        if variable == fmt.RESPONSES:
            return max(1, self.shapes[fmt.RESPONSES][1] // _count(self.neurons))
        return 1

    def trial(self, index: int, frames: slice | None = None) -> dict[str, np.ndarray]:
        """Every variable of the ``index``-th trial of this split as numpy, without Dask.

        The same read and standardization as the Dask arrays' tasks, for per-trial
        consumers (a PyTorch ``Dataset.__getitem__``) where building and scheduling a
        graph per item would cost more than the read. ``frames`` (a slice, counted within
        this split's frames) reads only that window's chunks.
        """
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(self) <= index < len(self):
            raise SelectionError(f"{self._handle.where}: trial index {index!r} outside 0..{len(self) - 1}")
        index = int(index) % len(self)
        window = self.frames
        if frames is not None:
            inner = parse_frames(frames, window.stop - window.start, self._handle.where)
            window = slice(window.start + inner.start, window.start + inner.stop)
        positions = self.positions[index : index + 1]
        mode = self.statistics if self.standardized else None
        withheld = None if mode is None else ~self.has_responses[index : index + 1]
        reads = {
            variable: _pool().submit(
                _read_block,
                self._handle,
                variable,
                positions,
                window,
                mode,
                withheld if variable == fmt.RESPONSES else None,
                self.neurons if variable == fmt.RESPONSES else None,
            )
            for variable in fmt.VARIABLES
        }
        return {variable: read.result()[0] for variable, read in reads.items()}

    def array(self, variable: str) -> dask.array.Array:
        """``variable`` of this split's trials as a Dask array, one graph layer."""
        import dask.array as da
        from dask.base import tokenize
        from dask.highlevelgraph import HighLevelGraph

        variable = parse_variable(variable, self._handle.where)
        dtype = self.dtypes[variable]
        time_axis = fmt.time_axis(variable)
        shape = list(self.shapes[variable])
        shape[time_axis] = self.frames.stop - self.frames.start
        neurons = self.neurons if variable == fmt.RESPONSES else None
        if neurons is not None:
            shape[1] = _count(neurons)
        step = self.block_size(variable)
        starts = list(range(0, self.n_trials, step)) or [0]
        blocks = [self.positions[lo : lo + step] for lo in starts]
        withheld = ~self.has_responses
        mode = self.statistics if self.standardized else None
        token = tokenize(
            self._handle, variable, self.positions, self.frames.start, self.frames.stop, mode, step,
            repr(neurons) if isinstance(neurons, slice) else neurons,
        )
        name = f"{variable}-{'standardized' if mode else 'raw'}-{token}"
        rest = (0,) * (len(shape) - 1)
        graph: dict[Any, Any] = {
            (name, i, *rest): (
                _read_block,
                self._handle,
                variable,
                block,
                self.frames,
                mode,
                withheld[lo : lo + step] if variable == fmt.RESPONSES and mode else None,
                neurons,
            )
            for i, (lo, block) in enumerate(zip(starts, blocks, strict=True))
        }
        chunks = (tuple(len(b) for b in blocks), *((n,) for n in shape[1:]))
        return da.Array(  # type: ignore[no-untyped-call]
            HighLevelGraph.from_collections(name, graph, dependencies=()),
            name,
            chunks,
            dtype=dtype,
            meta=np.empty((0,) * len(shape), dtype),
        )


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """Threads for ``Split.trial``: the variables decode and rescale in parallel (zarrs and
    numpy release the GIL), one pool per process, made on first use (and again in a
    forked child, which inherits the parent's pool without its threads)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(len(fmt.VARIABLES), thread_name_prefix="sensorium-zarr-trial")
        return _POOL


def _forget_pool() -> None:
    # Only forgotten, not shut down: shutting down would wait on threads the child lacks.
    global _POOL, _POOL_LOCK
    _POOL = None
    _POOL_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


#: Read a block's whole range of trials when it is at most this many times the trials wanted.
_MAX_SPAN_FACTOR = 3


def _read_block(
    handle: StoreHandle,
    variable: str,
    positions: np.ndarray,
    frames: slice,
    statistics: str | None,
    withheld: np.ndarray | None,
    neurons: slice | np.ndarray | None = None,
) -> np.ndarray:
    """Trials at ``positions``, frames ``frames`` (and ``neurons`` of responses),
    standardized with ``statistics`` (None: raw), ``withheld`` trials' responses NaN."""
    array = handle.array(variable)
    time_axis = fmt.time_axis(variable)
    selection: list[Any] = [slice(None)] * array.ndim
    selection[time_axis] = frames
    if neurons is not None:
        # Only the chunks holding these neurons are read and decoded; consecutive ones as
        # a slice, which zarr indexes faster than an integer array (one neuron across 350
        # train trials: 12.8 ms against 14.2 ms for the raw read).
        if isinstance(neurons, np.ndarray) and len(neurons) and np.all(np.diff(neurons) == 1):
            selection[1] = slice(int(neurons[0]), int(neurons[-1]) + 1)
        else:
            selection[1] = neurons
    span = int(positions[-1] - positions[0] + 1) if len(positions) else 0
    covering = 0 < span <= _MAX_SPAN_FACTOR * len(positions)
    if covering:
        # A slice over the trials' range, then the wanted rows: zarr's integer-array
        # (orthogonal) indexing costs about 1 ms a trial, a slice a fraction of that.
        selection[0] = slice(int(positions[0]), int(positions[0]) + span)
    else:
        selection[0] = positions
    try:
        data = engine_.read(array, tuple(selection), handle.where, f"reading store positions {positions.tolist()}")
    except Exception:
        handle.check_unchanged()  # a store replaced under the read: say so, not zarr's error
        raise
    handle.check_unchanged()
    if covering and span != len(positions):
        data = data[positions - positions[0]]
    if statistics is None:
        return data
    params = handle.params(variable, statistics).window(frames)
    if neurons is not None:
        params = params.neurons(neurons)
    if data.dtype.kind == "f" and data.flags.writeable and not std_.subtracts_mean(variable):
        # Responses (most of the bytes) are only rescaled: one in-place multiply, within
        # one rounding of the float64 path. A mean subtraction in float32 could cancel
        # digits, so videos and pupil positions keep the float64 path.
        data = std_.standardize_inplace(variable, data, params)
    else:
        data = std_.standardize(variable, data, params)
    if withheld is not None and withheld.any():
        # Zeros stand in for responses the release withheld; standardized, they must not
        # pass for real silence.
        data[withheld] = np.nan
    return data
