"""One variable of a split as an indexable object that reads exactly what it is indexed
with. Entry point: ``SplitVariable``.

``SplitVariable[key]`` takes any orthogonal numpy-style key relative to the split (trial
axis: rows of the split; time: frames of the split's window; neurons: the split's neuron
selection), maps it to the store's coordinates, reads that selection in one engine call
(so only the chunks holding it are decoded), standardizes the values read with the
parameters cut by the same key, and masks withheld responses.

The Dask arrays of a ``Split`` are graphs of ``dask.array.core.getter`` tasks over one
``SplitVariable``; Dask's slice fusion composes any slicing of the array with the block's
own key, so ``split.responses[:, n]`` reaches this object as one neuron of each block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _engine as engine_
from . import _standardize as std_
from . import format as fmt
from ._native import NativeArray
from ._native import empty_axis as _empty
from ._remote import current_check, taking_part
from ._store import StoreHandle

__all__ = ["SplitVariable"]

# Per axis: what to read (a step-1 slice or an ascending array of distinct indices) and how
# to pick the key's values from what was read (an int drops the axis; an array picks rows).
Read = slice | np.ndarray
Local = int | slice | np.ndarray


class SplitVariable:
    """``variable`` of a split's trials, shaped like the split's Dask array, read on indexing."""

    def __init__(
        self,
        handle: StoreHandle,
        variable: str,
        *,
        positions: np.ndarray,
        frames: slice,
        statistics: str | None,
        withheld: np.ndarray | None,
        neurons: slice | np.ndarray | None,
        shape: tuple[int, ...],
        dtype: np.dtype,
        valid: np.ndarray | None = None,
    ) -> None:
        self.handle = handle
        self.variable = variable
        self.positions = positions
        self.frames = frames
        self.statistics = statistics
        self.withheld = withheld
        self.neurons = neurons
        self.shape = shape
        self.dtype = dtype
        self.ndim = len(shape)
        self.time_axis = fmt.time_axis(variable)
        #: For a variable stored as uint8 (format version 8): each trial's real frame
        #: count, from which a read restores the NaN padding; else None.
        self.valid = valid

    def __dask_tokenize__(self) -> Any:
        from dask.base import normalize_token

        # Normalized here, arrays by their values: Dask hashes the str() of what this
        # returns, as it is, and numpy abbreviates an array of over 1000 values in its str()
        # ("[0 1 2 ... 1097 1098 1099]"), so two subsets of as many neurons, alike at both
        # ends, would share a graph name and one would be computed for the other.
        return normalize_token((
            "sensorium-zarr-split-variable", self.handle, self.variable, self.positions, self.frames.start,
            self.frames.stop, self.statistics, self.withheld,
            repr(self.neurons) if isinstance(self.neurons, slice) else self.neurons,
        ))

    def __repr__(self) -> str:
        return f"<SplitVariable {self.variable} {self.shape} of {self.handle.where}>"

    def subset(self, axis: int, indices: np.ndarray) -> SplitVariable:
        """This variable at the ascending distinct ``indices`` of ``axis``: the trial axis,
        or the neuron axis of ``responses``."""
        shape = list(self.shape)
        shape[axis] = len(indices)
        positions, withheld, neurons, valid = self.positions, self.withheld, self.neurons, self.valid
        if axis == 0:
            positions = positions[indices]
            withheld = None if withheld is None else withheld[indices]
            valid = None if valid is None else valid[indices]
        elif axis == 1 and self.variable == fmt.RESPONSES:
            neurons = indices if neurons is None else _within(neurons, indices)
        else:
            raise ValueError(f"{self.variable}: no subset along axis {axis}")
        return SplitVariable(
            self.handle, self.variable, positions=positions, frames=self.frames, statistics=self.statistics,
            withheld=withheld, neurons=neurons, shape=tuple(shape), dtype=self.dtype, valid=valid,
        )

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read(key)

    def read(self, key: Any, check: bool = True) -> np.ndarray:
        """``self[key]``; without ``check``, the caller checks that the store was not
        replaced during the read (``StoreHandle.check_unchanged``), once for several reads."""
        axes = [_axis(k, n) for k, n in zip(_expand(key, self.ndim), self.shape, strict=True)]
        reads = [read for read, _ in axes]
        data = self._read(reads, check)
        locals_ = [local for _, local in axes]
        return _orthogonal(data, locals_)

    def cached(self, key: Any) -> bool | None:
        """Whether ``self[key]``'s first stored chunk is in the page cache, where the
        native engine reads local files (``NativeArray.cached``); else None."""
        found = self._native_selection(key)
        return None if found is None else found[0].cached(found[1])

    def will_need(self, key: Any) -> None:
        """Advise the kernel of the bytes ``self[key]`` will read, where the native engine
        reads local files (``NativeArray.will_need``)."""
        found = self._native_selection(key)
        if found is not None:
            found[0].will_need(found[1])

    def _native_selection(self, key: Any) -> tuple[NativeArray, tuple[Read, ...]] | None:
        """The native array and the store selection ``self[key]`` reads, if it is one
        read of local files by the native engine."""
        array = self.handle.array(self.variable)
        if not isinstance(array, NativeArray) or not array.local_files:
            return None
        reads = [read for read, _ in (_axis(k, n) for k, n in zip(_expand(key, self.ndim), self.shape, strict=True))]
        trials, store = self._store_selection(reads)
        if not len(trials) or any(_empty(s) for s in store[1:]):
            return None
        first: Read = trials if len(trials) > 1 else slice(int(trials[0]), int(trials[0]) + 1)
        return array, (first, *store[1:])

    def _store_selection(self, reads: list[Read]) -> tuple[np.ndarray, list[Read]]:
        """The store positions of the trials of ``reads`` (split-relative, every axis kept),
        and the store selection of every axis (the trial axis as ``reads`` has it)."""
        store = list(reads)
        trials = self.positions[reads[0]]
        store[self.time_axis] = _shift(reads[self.time_axis], self.frames.start)
        if self.neurons is not None:
            store[1] = _within(self.neurons, reads[1])
        return trials, store

    def _read(self, reads: list[Read], check: bool = True) -> np.ndarray:
        """The split-relative selection ``reads`` (every axis kept), standardized."""
        trials, store = self._store_selection(reads)
        if not len(trials) or any(_empty(s) for s in store[1:]):
            return np.zeros(tuple(_length(r, n) for r, n in zip(reads, self.shape, strict=True)), self.dtype)
        if self.statistics is None:
            data = self._read_store(trials, store[1:], check)
            return data if self.valid is None else self._decoded(data, self.valid[reads[0]], store[self.time_axis])
        full = self.handle.params(self.variable, self.statistics)
        rescaled = self.dtype.kind == "f" and not std_.subtracts_mean(self.variable)
        if rescaled:
            full.in_dtype(self.dtype)  # cast once per process; every cut below keeps it
        params = _cut(full, store[1:])
        scale = self._rescaled_as_read(params) if rescaled else None
        data = self._read_store(trials, store[1:], check, scale)
        # With a scale, the native engine has rescaled each chunk's values as it placed them.
        if self.valid is not None:
            data = self._decoded(data, self.valid[reads[0]], store[self.time_axis], params)
        elif scale is None and data.dtype.kind == "f" and data.flags.writeable:
            # Into the array just read. Responses (most of the bytes) are only rescaled: one
            # in-place multiply, within one rounding of the float64 path. A mean subtraction
            # in float32 could cancel digits, so videos and pupil positions keep the float64
            # path, written back.
            if std_.subtracts_mean(self.variable):
                data = std_.standardize_to(self.variable, data, params, data)
            else:
                data = std_.standardize_inplace(self.variable, data, params)
        elif scale is None:
            data = std_.standardize(self.variable, data, params)
        if self.withheld is not None:
            withheld = self.withheld[reads[0]]
            if withheld.any():
                # Zeros stand in for responses the release withheld; standardized, they
                # must not pass for real silence.
                data[withheld] = np.nan
        return data

    def _decoded(
        self, data: np.ndarray, valid: np.ndarray, frames: Read, params: std_.StandardizationParams | None = None
    ) -> np.ndarray:
        """``data``, the ``uint8`` values read of a variable stored so (format version 8),
        in this variable's dtype with NaN at the padding frames of each trial (``valid``:
        their real frame counts; ``frames``: the store frames read), then standardized by
        ``params`` if given."""
        looked_up = None if params is None else std_.standardize_codes(self.variable, data, params, self.dtype)
        if looked_up is not None:
            # Padding after the lookup: NaN, as the arithmetic would have left it.
            return fmt.restore_padding(looked_up, valid, frames, self.time_axis)
        out = fmt.restore_padding(data.astype(self.dtype), valid, frames, self.time_axis)
        # Padding restored first, so the arithmetic sees what it sees in a float store (NaN,
        # which divides by a zero scale without a warning), into the array just made.
        return out if params is None else std_.standardize_to(self.variable, out, params, out)

    def _rescaled_as_read(self, params: std_.StandardizationParams) -> np.ndarray | None:
        """``standardize_inplace``'s multiplier for ``params`` if the native engine reads this
        variable and can apply it to each chunk as it places the chunk's values (one pass
        over the values less, while they are in the cache); else None. Fill values of
        absent chunks are not multiplied, so only where the multiplier keeps them."""
        array = self.handle.array(self.variable)
        if not isinstance(array, NativeArray) or array.dtype != self.dtype:
            return None
        precision = std_.rescaling(self.variable, params, self.dtype)
        fill = array.layout.fill_value
        if array.every_chunk_present or np.isnan(fill) or (fill == 0 and np.isfinite(precision).all()):
            return precision
        return None

    def _read_store(
        self, trials: np.ndarray, rest: list[Read], check: bool = True, scale: np.ndarray | None = None
    ) -> np.ndarray:
        array = self.handle.array(self.variable)
        runs = np.split(trials, np.flatnonzero(np.diff(trials) != 1) + 1)
        # The native engine decodes only an index array's chunks, in one call. zarr-python's
        # integer-array (orthogonal) indexing costs about 1 ms a trial, a slice a fraction
        # of that: one slice per run of consecutive trials.
        if len(runs) == 1:
            firsts: list[Read] = [slice(int(trials[0]), int(trials[-1]) + 1)]
        elif isinstance(array, NativeArray):
            firsts = [trials]
        else:
            firsts = [slice(int(run[0]), int(run[-1]) + 1) for run in runs]
        # A read that checks for itself sends its check's HEAD while it reads, where it can.
        own = self.handle.overlapped_check(1) if check and current_check() is None else None
        try:
            with taking_part(own):
                parts = [
                    engine_.read(
                        array, (first, *rest), self.handle.where, f"reading store positions {_positions(first)}",
                        scale,
                    )
                    for first in firsts
                ]
        except Exception:
            self.handle.check_unchanged()  # a store replaced under the read: say so, not zarr's error
            raise
        if check:
            self.handle.check_unchanged(own)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _positions(read: Read) -> str:
    return f"{read.start}..{read.stop - 1}" if isinstance(read, slice) else str(read.tolist())


def _expand(key: Any, ndim: int) -> list[Any]:
    """``key`` as one entry per axis (Ellipsis expanded, missing axes whole)."""
    entries = list(key) if isinstance(key, tuple) else [key]
    if any(k is None for k in entries):
        raise IndexError("SplitVariable: new axes (None) are Dask's to add, not the reader's")
    if any(k is Ellipsis for k in entries):
        at = next(i for i, k in enumerate(entries) if k is Ellipsis)
        entries[at : at + 1] = [slice(None)] * (ndim - len(entries) + 1)
    if len(entries) > ndim:
        raise IndexError(f"SplitVariable: {len(entries)} indices for {ndim} axes")
    return entries + [slice(None)] * (ndim - len(entries))


def _axis(key: Any, size: int) -> tuple[Read, Local]:
    """What to read along an axis of ``size`` for ``key``, and how to pick ``key`` from it."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        i = int(key) + size if key < 0 else int(key)
        if not 0 <= i < size:
            raise IndexError(f"index {int(key)} is out of bounds for an axis of size {size}")
        return slice(i, i + 1), 0
    if isinstance(key, slice):
        start, stop, step = key.indices(size)
        if step == 1:
            return slice(start, max(start, stop)), slice(None)
        key = np.arange(start, stop, step)
    index = np.asarray(key)
    if index.dtype == bool:
        if index.shape != (size,):
            raise IndexError(f"boolean index of shape {index.shape} for an axis of size {size}")
        index = np.flatnonzero(index)
    if index.ndim != 1 or (len(index) and index.dtype.kind not in "iu"):
        raise IndexError(f"SplitVariable: unsupported index {key!r}")
    index = index.astype(np.int64)
    index = np.where(index < 0, index + size, index)
    if len(index) and (index.min() < 0 or index.max() >= size):
        raise IndexError(f"index {key!r} is out of bounds for an axis of size {size}")
    unique, inverse = np.unique(index, return_inverse=True)
    if not len(unique):
        return slice(0, 0), slice(None)
    read: Read = unique
    if int(unique[-1] - unique[0]) + 1 == len(unique):
        read = slice(int(unique[0]), int(unique[-1]) + 1)
    return read, slice(None) if len(unique) == len(index) else inverse


def _shift(read: Read, offset: int) -> Read:
    return slice(read.start + offset, read.stop + offset) if isinstance(read, slice) else read + offset


def _within(selection: slice | np.ndarray, read: Read) -> Read:
    """Store indices of ``read``, given relative to the neuron ``selection``."""
    if isinstance(selection, slice):
        return _shift(read, selection.start)
    picked = selection[read]
    if len(picked) > 1 and np.all(np.diff(picked) == 1):
        # Consecutive neurons as a slice, which zarr indexes faster than an integer array.
        return slice(int(picked[0]), int(picked[-1]) + 1)
    return picked


def _length(read: Read, size: int) -> int:
    return len(range(*read.indices(size))) if isinstance(read, slice) else len(read)


def _cut(params: std_.StandardizationParams, store: list[Read]) -> std_.StandardizationParams:
    """``params`` (one stored trial's layout) at the store selection ``store`` of every axis
    but the trial axis; axes the parameters broadcast along (length 1) stay whole."""
    keep = [slice(None) if n == 1 else s for n, s in zip(params.mean.shape, store, strict=True)]
    return params.select(lambda x: _orthogonal(x, keep))


def _orthogonal(x: np.ndarray, index: Sequence[Local]) -> np.ndarray:
    """``x`` indexed one axis at a time (arrays pick along their own axis, as zarr's
    orthogonal selection does; ints drop their axis)."""
    basic = tuple(i if isinstance(i, slice) else slice(None) for i in index)
    out = x[basic] if any(i != slice(None) for i in basic) else x
    for axis, i in enumerate(index):
        if isinstance(i, np.ndarray):
            out = np.take(out, i, axis=axis)
    dropped = tuple(i if isinstance(i, int) else slice(None) for i in index)
    return out[dropped] if any(isinstance(i, int) for i in index) else out


