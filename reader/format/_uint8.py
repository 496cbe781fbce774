"""Variables stored as ``uint8`` (format version 8, the ``uint8_variables`` attribute):
what a read does to get their values back.

Such a variable's real frames hold integers 0..255 (SENSORIUM.md: videos), so their
values are exact in ``uint8``, a quarter of float32's bytes; the NaN padding after a
trial's real frames has no ``uint8`` value, so it is stored as 0 and restored from
``valid_frames`` (every frame at or after a trial's count for the variable is padding).
"""

from __future__ import annotations

import numpy as np

__all__ = ["restore_padding", "padding_frames"]


def padding_frames(valid: np.ndarray, frames: slice | np.ndarray) -> np.ndarray:
    """(trials, frames) bool: which of ``frames`` (store frame indices, a step-1 slice or an
    array) are padding of each trial whose real frame count is in ``valid``."""
    index = np.arange(frames.start, frames.stop) if isinstance(frames, slice) else np.asarray(frames)
    padding: np.ndarray = index[None, :] >= np.asarray(valid)[:, None]
    return padding


def restore_padding(values: np.ndarray, valid: np.ndarray, frames: slice | np.ndarray, time_axis: int) -> np.ndarray:
    """``values`` (float, trial axis first, ``time_axis`` the stored time axis, holding the
    store frames ``frames``) with NaN written in place at every padding frame of each
    trial (``valid``: its real frame count), and returned."""
    padding = padding_frames(valid, frames)
    if padding.any():
        np.moveaxis(values, time_axis, 1)[padding] = np.nan
    return values
