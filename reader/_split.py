"""The trials of one selection of tiers, as lazy Dask arrays. Entry point: ``Split``
(made by ``Mouse.split``).

Each variable is one Dask graph layer of one getter task per block of trials over a
split-level ``SplitVariable`` (``_reading``), which reads exactly what a task indexes.
Dask fuses any slicing of the array into those tasks' keys, so ``responses[:, n]``,
``videos[k, t0:t1]`` or one trial read only the chunks holding the selection, then
standardize it and mask withheld responses. Tasks carry
the store handle, which pickles as the store location, so graphs run in other processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _fork
from . import _standardize as std_
from . import format as fmt
from ._native import NativeArray
from ._reading import SplitVariable
from ._remote import Check, taking_part
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
        uint8_variables: tuple[str, ...] = (),
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
        #: Variables whose arrays hold ``uint8`` (format version 8): reads restore padding.
        self.uint8_variables = uint8_variables

    def __getstate__(self) -> dict[str, Any]:
        # The Dask arrays are rebuilt on demand; only the small state travels.
        return {k: v for k, v in self.__dict__.items() if k not in (*fmt.VARIABLES, "_sources", "_arrays")}

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
        """Trials per Dask block of ``variable``: ``trials_per_block``, or by default as
        many as fit in Dask's ``array.chunk-size`` (128 MiB unless configured)."""
        if self.trials_per_block is not None:
            return self.trials_per_block
        from ._daskarray import trials_per_block

        return trials_per_block(self.source(variable))

    def trial(self, index: int, frames: slice | None = None) -> dict[str, np.ndarray]:
        """Every variable of the ``index``-th trial of this split as numpy, without Dask;
        ``frames`` (a step-1 slice along this split's time axis, as in
        ``split.videos[k, t0:t1]``) reads only those frames' chunks.

        The same read and standardization as the Dask arrays' tasks, for per-trial
        consumers (a PyTorch ``Dataset.__getitem__``) where building and scheduling a
        graph per item would cost more than the read. ``frames`` (a slice, counted within
        this split's frames) reads only that window's chunks.
        """
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(self) <= index < len(self):
            raise SelectionError(f"{self._handle.where}: trial index {index!r} outside 0..{len(self) - 1}")
        index = int(index) % len(self)
        window = parse_frames(frames, self.frames.stop - self.frames.start, self._handle.where)
        keys = {}
        for variable in fmt.VARIABLES:
            key: list[Any] = [index] + [slice(None)] * (len(self.shapes[variable]) - 1)
            key[fmt.time_axis(variable)] = window
            keys[variable] = tuple(key)
        arrays = [self._handle.array(v) for v in fmt.VARIABLES]
        if all(isinstance(a, NativeArray) and a.local_files for a in arrays):
            # Local files through the native engine: the reads are CPU-bound, and one after
            # another in this thread cost less than in the pool's, where four threads
            # contend for two cores (and for a DataLoader worker's one).
            sources = {v: self.source(v) for v in fmt.VARIABLES}
            if sources[fmt.RESPONSES].cached(keys[fmt.RESPONSES]) is False:
                # Out of the page cache: the disk fetches the four variables' bytes at once,
                # not one read's after the other's. Never when cached: advising bytes
                # already there costs more than it could save.
                for v in fmt.VARIABLES:
                    sources[v].will_need(keys[v])
            values = {v: sources[v].read(keys[v], False) for v in fmt.VARIABLES}
            check = None
        else:
            # From a bucket, or through zarr or zarrs: the four reads wait on requests or on
            # the engine's own threads, so they overlap; the largest starts first. From a
            # bucket, the check's HEAD goes out while they read.
            check = self._handle.overlapped_check(len(fmt.VARIABLES))
            largest = sorted(fmt.VARIABLES, key=lambda v: -math.prod(self.shapes[v][1:]) * self.dtypes[v].itemsize)
            reads = {v: _POOL.get().submit(_taking_part, check, self.source(v).read, keys[v]) for v in largest}
            values = {variable: reads[variable].result() for variable in fmt.VARIABLES}
        # One check that the store was not replaced, after all four reads (or overlapping them).
        self._handle.check_unchanged(check)
        return values

    def source(self, variable: str) -> SplitVariable:
        """``variable`` of this split as the object its Dask array's tasks index: shaped
        like the array, and ``source(variable)[key]`` reads (and standardizes) only what
        ``key`` selects, as numpy."""
        variable = parse_variable(variable, self._handle.where)
        cached = self.__dict__.setdefault("_sources", {})
        if variable not in cached:
            shape = list(self.shapes[variable])
            shape[0] = self.n_trials
            shape[fmt.time_axis(variable)] = self.frames.stop - self.frames.start
            neurons = self.neurons if variable == fmt.RESPONSES else None
            if neurons is not None:
                shape[1] = _count(neurons)
            mode = self.statistics if self.standardized else None
            cached[variable] = SplitVariable(
                self._handle,
                variable,
                positions=self.positions,
                frames=self.frames,
                statistics=mode,
                withheld=~self.has_responses if variable == fmt.RESPONSES and mode else None,
                neurons=neurons,
                shape=tuple(shape),
                dtype=self.dtypes[variable],
                valid=(
                    self.valid_frames[:, fmt.VARIABLES.index(variable)] if variable in self.uint8_variables else None
                ),
            )
        source: SplitVariable = cached[variable]
        return source

    def array(self, variable: str) -> dask.array.Array:
        """``variable`` of this split's trials as a Dask array (``_daskarray.build``), one
        graph layer of one ``getter`` task per block over ``source(variable)``, so that
        Dask's slice fusion hands any slicing of the array down to the read."""
        from ._daskarray import build

        source = self.source(variable)
        built = self.__dict__.setdefault("_arrays", {})
        if source.variable in built:
            # Building costs milliseconds (tokenizing, chunk checks): more than reading a trial.
            cached: dask.array.Array = built[source.variable]
            return cached
        array: dask.array.Array = build(source, self.trials_per_block)
        built[source.variable] = array
        return array


def _taking_part(check: Check | None, read: Callable[[Any, bool], np.ndarray], key: Any) -> np.ndarray:
    """``read(key, False)`` (the caller checks the store), a part of ``check`` if any."""
    with taking_part(check):
        return read(key, False)


#: Threads for ``Split.trial`` where its four reads wait on requests or on an engine's
#: own threads: they overlap.
_POOL = _fork.PerProcessPool(len(fmt.VARIABLES), "sensorium-zarr-trial")
