"""A PyTorch ``Dataset`` over one split of one mouse. Entry point: ``MouseDataset``.

A sample is a window of a trial (``_windows``), read with ``Split.trial(k, frames=...)``,
so only the window's chunks are read and decoded, standardized by the reader's rules, and
returned as a plain dict of tensors (it pickles, so DataLoader workers can send it). The
dataset keeps no data between samples: its memory stays flat however long it runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import _standardize as std_
from .. import format as fmt
from .._mouse import Mouse, open_mouse
from ..errors import SelectionError
from ._windows import Windows

__all__ = ["MouseDataset", "EXTRA_CHANNELS", "Key"]

#: Variables that ``video_channels`` can add to the video as extra channels (the starter
#: kit's ``AddBehaviorAsChannels`` and ``AddPupilCenterAsChannels``), in this order.
EXTRA_CHANNELS: tuple[str, ...] = (fmt.BEHAVIOR, fmt.PUPIL_CENTER)
#: A sample's index: its position in the dataset, or (position, first frame) as the batch
#: samplers give it, so the random window was drawn in the main process from their seed.
Key = int | tuple[int, int]
_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class MouseDataset(Dataset[dict[str, Any]]):
    """Windows of the trials of one split of one mouse, standardized, as tensors.

    ``mouse`` is a ``Mouse`` or a store path; ``split`` a split or tier name (or a list,
    as ``Mouse.split`` takes). ``windows`` picks the frames of each sample:

    - ``"random"`` (training): ``frames`` frames at a random start inside the trial's real
      frames, drawn anew for every sample (from torch's random generator when indexed by
      position, as a DataLoader with ``shuffle=True`` does, or by ``MouseBatchSampler``
      from its seed);
    - ``"fixed"``: the window starting at frame ``offset`` of every trial;
    - ``"all"``: every window of every trial, ``stride`` frames apart (default: adjacent,
      not overlapping), one sample each;
    - ``"trial"``: all real frames of each trial (``frames=None``); lengths differ, so
      batch them one at a time.

    ``every`` keeps every ``every``-th frame of a window (``frames`` counts the kept ones).
    Trials whose real frames (the fewest of their four variables) cannot hold one window
    are left out; ``trial_ids`` lists those kept. ``neurons`` selects responses' neurons
    (as ``Mouse.split``), ``statistics`` the standardization's source, ``dtype`` the
    tensors' dtype (``torch.float16`` or ``torch.bfloat16`` halve the bytes).

    A sample is a dict: ``videos`` (channel, time, height, width): one channel, then the
    ``video_channels`` variables (``"behavior"``, ``"pupil_center"``), each channel
    constant over the frame, as the Sensorium 2023 starter kit feeds its models;
    ``responses`` (neuron, time), ``behavior`` and ``pupil_center`` (2, time);
    ``trial_id``, ``start`` (first frame of the window, in the trial) and ``mouse``.
    Responses the release withheld (test tiers) are NaN.
    """

    def __init__(
        self,
        mouse: Mouse | str | os.PathLike[str],
        split: str | Sequence[str] = "train",
        *,
        frames: int | None = 50,
        windows: str = "random",
        offset: int = 0,
        stride: int | None = None,
        every: int = 1,
        neurons: slice | Sequence[int] | np.ndarray | None = None,
        statistics: str = std_.RECOMPUTED,
        standardize: bool = True,
        dtype: torch.dtype = torch.float32,
        video_channels: Sequence[str] = (),
        engine: str | None = None,
    ) -> None:
        if not isinstance(mouse, Mouse):
            mouse = open_mouse(mouse, engine=engine)
        where = mouse._handle.where
        self.windows = Windows.parse(windows, frames, every, offset, stride, where)
        if dtype not in _DTYPES:
            raise SelectionError(f"{where}: dtype={dtype!r}; expected one of {', '.join(map(str, _DTYPES))}")
        channels = tuple(video_channels)
        unknown = [c for c in channels if c not in EXTRA_CHANNELS]
        if unknown or len(set(channels)) != len(channels):
            raise SelectionError(
                f"{where}: video_channels={channels!r}; expected distinct names among {', '.join(EXTRA_CHANNELS)}"
            )
        self.video_channels = tuple(c for c in EXTRA_CHANNELS if c in channels)
        self.dtype = dtype
        self.mouse = mouse.name
        self.split = mouse.split(split, standardize=standardize, statistics=statistics, neurons=neurons)
        #: Real frames of each trial of the split: the fewest of its four variables.
        self.real_frames: np.ndarray = self.split.valid_frames.min(axis=1).astype(np.int64)
        kept, starts = [], []
        for k, real in enumerate(self.real_frames.tolist()):
            for start in self.windows.starts(real):
                kept.append(k)
                starts.append(start)
        #: For each sample position: the trial (index into the split) and its window's start.
        self.trials = np.asarray(kept, dtype=np.int64)
        self.starts = np.asarray(starts, dtype=np.int64)

    @property
    def trial_ids(self) -> np.ndarray:
        """Trial ids that hold at least one sample, ascending."""
        return np.unique(self.split.trial_ids[self.trials])

    @property
    def n_neurons(self) -> int:
        responses = self.split.neurons
        return int(responses.stop - responses.start) if isinstance(responses, slice) else len(responses)

    def __len__(self) -> int:
        return len(self.trials)

    def __repr__(self) -> str:
        w = self.windows
        how = "whole trials" if w.mode == "trial" else f"{w.mode} windows of {w.frames} frames (every {w.every})"
        return f"<MouseDataset {self.mouse} {'+'.join(self.split.tiers_selected)}: {len(self)} samples, {how}>"

    def __getitem__(self, key: Key) -> dict[str, Any]:
        if isinstance(key, tuple):
            position, start = key
        else:
            position, start = key, None
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or not 0 <= position < len(self):
            raise IndexError(f"{self.mouse}: sample {position!r} outside 0..{len(self) - 1}")
        k = int(self.trials[position])
        real = int(self.real_frames[k])
        if start is None:
            start = int(self.starts[position])
            if self.windows.mode == "random":
                # torch's generator: seeded per worker and per epoch by the DataLoader.
                start = int(torch.randint(0, real - self.windows.span + 1, ()).item())
        elif not 0 <= start <= real - self.windows.span:
            raise IndexError(f"{self.mouse}: window at frame {start} of {self.windows.span} frames does not fit "
                             f"the {real} real frames of trial {int(self.split.trial_ids[k])}")
        return self.sample(k, int(start))

    def sample(self, k: int, start: int) -> dict[str, Any]:
        """The sample of the ``k``-th trial of the split whose window starts at ``start``."""
        window = self.windows.frames_of(start, int(self.real_frames[k]))
        arrays = self.split.trial(k, frames=window)
        every = self.windows.every
        out: dict[str, Any] = {}
        for variable in fmt.VARIABLES:
            x = arrays[variable]
            if every > 1:
                index: list[Any] = [slice(None)] * x.ndim
                index[fmt.time_axis(variable, with_trial_axis=False)] = slice(None, None, every)
                x = np.ascontiguousarray(x[tuple(index)])
            out[variable] = torch.from_numpy(x).to(self.dtype)
        video = out[fmt.VIDEOS].unsqueeze(0)
        if self.video_channels:
            _, time, height, width = video.shape
            extra = [out[c][:, :, None, None].expand(-1, time, height, width) for c in self.video_channels]
            video = torch.cat([video, *extra], dim=0)
        out[fmt.VIDEOS] = video
        out["trial_id"] = int(self.split.trial_ids[k])
        out["start"] = start
        out["mouse"] = self.mouse
        return out
