"""A split variable as a Dask array: ``build`` (used by ``Split.array``).

One graph layer of one ``getter`` task per block of trials over a ``SplitVariable``, so
Dask's slice fusion hands any slicing down to the read. Blocks hold as many trials as fit
in ``BLOCK_BYTES`` (16 MiB), so a selection across many trials of a narrow array
(``responses[:, n]``) is a few tasks, not one per trial: Dask's per-task cost is larger
than reading one neuron's chunk of a trial.

Large blocks would make an index array (``x[idx]``, ``responses[:, [a, b]]``) read whole
blocks: Dask takes from every block it touches after reading it. So the array returned is
a ``SplitArray``, whose indexing with one index array on the trial axis (or on the neuron
axis of ``responses``) builds the array of just those trials (or neurons) over the same
read and then applies the rest of the key. So does an integer or a step-1 slice of some
neurons of ``responses`` (``responses[:, n]``, ``[:, a:b]``): the array of those neurons
has blocks of many more trials, so Dask schedules a task or two, not one per block of
whole trials. Everything else is Dask's own indexing.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.utils import parse_bytes

from . import format as fmt
from ._reading import SplitVariable

__all__ = ["SplitArray", "build", "trials_per_block"]


#: A block's bytes by default (less if Dask's ``array.chunk-size`` is less). Dask's own 128
#: MiB makes the temporaries of a reduction over a block (``nanmean``'s float64 sums and NaN
#: masks) too large for the allocator to reuse: each is fresh memory, paid in page faults.
#: From a bucket, blocks of 16 to 128 MiB streamed alike (README, "Reading").
BLOCK_BYTES = 16 * 2**20


def trials_per_block(source: SplitVariable) -> int:
    """Trials of ``source`` that fit in one block of ``BLOCK_BYTES``, or of Dask's
    ``array.chunk-size`` if that is smaller (at least one)."""
    budget = min(BLOCK_BYTES, parse_bytes(dask.config.get("array.chunk-size")))
    per_trial = int(np.prod(source.shape[1:], dtype=np.int64)) * source.dtype.itemsize
    return max(1, budget // max(1, per_trial))


class SplitArray(da.Array):
    """A Dask array over a ``SplitVariable`` whose index arrays read only what they index."""

    _source: SplitVariable
    _step: int | None

    def __getitem__(self, index: Any) -> Any:
        taken = _take(self._source, self._step, index)
        return super().__getitem__(index) if taken is None else taken  # type: ignore[no-untyped-call]

    def __reduce__(self) -> tuple[Any, ...]:
        return build, (self._source, self._step)


def build(source: SplitVariable, step: int | None = None) -> SplitArray:
    """``source`` as a ``SplitArray`` of ``step`` trials per block (by default,
    ``trials_per_block``)."""
    plain = _plain(source, step)
    array: SplitArray = da.Array.__new__(  # type: ignore[no-untyped-call]
        SplitArray, plain.dask, plain.name, plain.chunks, meta=plain._meta
    )
    array._source = source
    array._step = step
    return array


def _plain(source: SplitVariable, step: int | None) -> da.Array:
    per_block = step if step is not None else trials_per_block(source)
    n = source.shape[0]
    sizes = tuple(min(per_block, n - lo) for lo in range(0, n, per_block)) or (0,)
    name = f"{source.variable}-{'standardized' if source.statistics else 'raw'}-{tokenize(source, per_block)}"
    # inline_array: one layer of getter tasks holding the (small, picklable) source;
    # asarray=False, lock=False: it already returns numpy, and blocks may read at once.
    array: da.Array = da.from_array(  # type: ignore[no-untyped-call]
        source,
        chunks=(sizes, *((k,) for k in source.shape[1:])),
        name=name,
        lock=False,
        asarray=False,
        inline_array=True,
        meta=np.empty((0,) * source.ndim, source.dtype),
    )
    return array


def _take(source: SplitVariable, step: int | None, index: Any) -> Any:
    """``index`` of ``source`` through an array of only the trials (or neurons) it indexes
    with its one index array, or None for Dask's own indexing."""
    entries = list(index) if isinstance(index, tuple) else [index]
    if any(e is None or isinstance(e, da.Array) for e in entries) or sum(e is Ellipsis for e in entries) > 1:
        return None
    if any(e is Ellipsis for e in entries):
        at = next(i for i, e in enumerate(entries) if e is Ellipsis)
        entries[at : at + 1] = [slice(None)] * (source.ndim - len(entries) + 1)
    fancy = [i for i, e in enumerate(entries) if isinstance(e, (list, np.ndarray)) and np.ndim(e) > 0]
    if not fancy and source.variable == fmt.RESPONSES and len(entries) > 1:
        return _take_neurons(source, step, entries)
    axes = (0, 1) if source.variable == fmt.RESPONSES else (0,)
    if len(fancy) != 1 or fancy[0] not in axes or len(entries) > source.ndim:
        return None
    axis = fancy[0]
    wanted = np.asarray(entries[axis])
    size = source.shape[axis]
    if wanted.ndim != 1 or not len(wanted):
        return None
    if wanted.dtype == bool:
        if wanted.shape != (size,):
            return None
        wanted = np.flatnonzero(wanted)
    elif wanted.dtype.kind not in "iu":
        return None
    wanted = np.where(wanted < 0, wanted + size, wanted).astype(np.int64)
    if wanted.min() < 0 or wanted.max() >= size:
        raise IndexError(f"index {entries[axis]!r} is out of bounds for axis {axis} with size {size}")
    unique, inverse = np.unique(wanted, return_inverse=True)
    subset = _plain(source.subset(axis, unique), step)
    entries[axis] = slice(None) if np.array_equal(unique, wanted) else inverse
    return subset[tuple(entries)]


def _take_neurons(source: SplitVariable, step: int | None, entries: list[Any]) -> Any:
    """``entries`` of responses whose neuron entry is an integer or a step-1 slice of some
    neurons, through the array of just those neurons (so its blocks hold many trials:
    ``responses[:, n]`` is one task, as ``split(neurons=[n])``), or None for Dask's own
    indexing."""
    key, size = entries[1], source.shape[1]
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        n = int(key) + size if key < 0 else int(key)
        if not 0 <= n < size:
            raise IndexError(f"index {int(key)} is out of bounds for axis 1 with size {size}")
        neurons, entries[1] = np.array([n]), 0
    elif isinstance(key, slice):
        start, stop, stride = key.indices(size)
        if stride != 1 or stop <= start or (start, stop) == (0, size):
            return None
        neurons, entries[1] = np.arange(start, stop), slice(None)
    else:
        return None
    return _plain(source.subset(1, neurons), step)[tuple(entries)]
