"""Parsing what a caller selects: frame windows, neurons, variables, block sizes. Each
``parse_*`` returns the checked selection or raises ``SelectionError`` naming the store."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import format as fmt
from .errors import SelectionError

__all__ = ["parse_frames", "parse_neurons", "parse_variable", "parse_trials_per_block", "count"]


def parse_frames(frames: slice | None, t_pad: int, where: str) -> slice:
    """``frames`` as ``slice(start, stop)`` with ``0 <= start < stop <= t_pad``, or raise."""
    if frames is None:
        return slice(0, t_pad)
    if not isinstance(frames, slice):
        raise SelectionError(f"{where}: frames={frames!r}; expected slice(start, stop) or None")
    if frames.step not in (None, 1):
        raise SelectionError(
            f"{where}: frames={frames!r} has step {frames.step}; only contiguous windows "
            "(step 1) are supported"
        )
    start = 0 if frames.start is None else frames.start
    stop = t_pad if frames.stop is None else frames.stop
    for bound in (start, stop):
        if isinstance(bound, bool) or not isinstance(bound, (int, np.integer)):
            raise SelectionError(f"{where}: frames={frames!r}; start and stop must be integers")
    if not 0 <= start < stop <= t_pad:
        raise SelectionError(
            f"{where}: frames={frames!r} selects frames {start}..{stop}; "
            f"expected 0 <= start < stop <= t_pad={t_pad}"
        )
    return slice(int(start), int(stop))


def parse_neurons(neurons: slice | Sequence[int] | np.ndarray | None, n_neurons: int, where: str) -> slice | np.ndarray:
    """``neurons`` as ``slice(start, stop)`` (contiguous) or an int index array, or raise."""
    if neurons is None:
        return slice(0, n_neurons)
    if isinstance(neurons, slice):
        start, stop, step = neurons.indices(n_neurons)
        if step != 1 or start >= stop:
            raise SelectionError(
                f"{where}: neurons={neurons!r}; expected a non-empty slice with step 1 within 0..{n_neurons}"
            )
        return slice(start, stop)
    index = np.asarray(neurons)
    if index.ndim != 1 or not len(index) or index.dtype.kind not in "iu":
        raise SelectionError(f"{where}: neurons={neurons!r}; expected a slice or a non-empty list of integers")
    if index.min() < 0 or index.max() >= n_neurons:
        raise SelectionError(f"{where}: neurons={neurons!r} outside 0..{n_neurons - 1}")
    if len(index) > 1 and np.all(np.diff(index) == 1):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index.astype(np.int64)


def count(selection: slice | np.ndarray) -> int:
    """How many neurons ``selection`` (from ``parse_neurons``) selects."""
    return selection.stop - selection.start if isinstance(selection, slice) else len(selection)


def parse_variable(variable: str, where: str) -> str:
    """``variable`` if it is one of the four per-trial variables, or raise."""
    if variable not in fmt.VARIABLES:
        raise SelectionError(f"{where}: unknown variable {variable!r}; valid: {', '.join(fmt.VARIABLES)}")
    return variable


def parse_trials_per_block(trials_per_block: int, where: str) -> int:
    """``trials_per_block`` as a positive int, or raise."""
    valid = isinstance(trials_per_block, (int, np.integer)) and not isinstance(trials_per_block, bool)
    if not valid or trials_per_block < 1:
        raise SelectionError(f"{where}: trials_per_block={trials_per_block!r}; expected a positive integer")
    return int(trials_per_block)
