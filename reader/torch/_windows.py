"""Which frames of a trial one sample holds. Entry point: ``Windows``.

A window is ``frames`` output frames taken every ``every``-th frame, so it spans
``(frames - 1) * every + 1`` stored frames, always inside the trial's real frames (the
shortest of its four variables' ``valid_frames``), never into the NaN padding. Trials too
short for one window hold no window and are left out of a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import SelectionError

__all__ = ["MODES", "Mode", "Windows"]

Mode = Literal["random", "fixed", "all", "trial"]
#: ``random``: a random window per sample (training); ``fixed``: the window at ``offset``;
#: ``all``: every window of the trial, ``stride`` frames apart, one sample each;
#: ``trial``: all real frames of the trial (one sample per trial, lengths differ).
MODES: tuple[str, ...] = ("random", "fixed", "all", "trial")


def _positive(name: str, value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SelectionError(f"{where}: {name}={value!r}; expected a positive integer")
    return int(value)


@dataclass(frozen=True)
class Windows:
    """How samples are cut from trials (see the module docstring)."""

    mode: str = "random"
    frames: int | None = 50
    every: int = 1
    offset: int = 0
    stride: int | None = None

    @classmethod
    def parse(
        cls, mode: str, frames: int | None, every: int, offset: int, stride: int | None, where: str
    ) -> Windows:
        """Checked windows, or SelectionError naming ``where`` and the bad option."""
        if mode not in MODES:
            raise SelectionError(f"{where}: windows={mode!r}; expected one of {', '.join(MODES)}")
        every = _positive("every", every, where)
        if mode == "trial":
            if frames is not None:
                raise SelectionError(f"{where}: windows='trial' takes whole trials; pass frames=None")
        else:
            frames = _positive("frames", frames, where)
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
            raise SelectionError(f"{where}: offset={offset!r}; expected an integer >= 0")
        if stride is not None:
            stride = _positive("stride", stride, where)
        return cls(mode, frames, every, int(offset), stride)

    @property
    def span(self) -> int:
        """Stored frames one window covers (for ``trial``: one)."""
        return 1 if self.frames is None else (self.frames - 1) * self.every + 1

    def first_start(self) -> int:
        return self.offset if self.mode == "fixed" else 0

    def fits(self, real: int) -> bool:
        """Whether a trial with ``real`` real frames holds a window."""
        return real >= self.first_start() + self.span

    def starts(self, real: int) -> list[int]:
        """The deterministic window starts of a trial with ``real`` real frames (``random``:
        the first, a placeholder the sampler replaces)."""
        if not self.fits(real):
            return []
        if self.mode == "all":
            step = self.stride if self.stride is not None else self.span
            return list(range(0, real - self.span + 1, step))
        return [self.first_start()]

    def random_start(self, real: int, rng: np.random.Generator) -> int:
        """A start drawn uniformly from every start whose window lies in the real frames."""
        return int(rng.integers(0, real - self.span + 1))

    def frames_of(self, start: int, real: int) -> slice:
        """The stored frames a window starting at ``start`` reads (``trial``: every real one)."""
        if self.mode == "trial":
            return slice(0, real)
        return slice(start, start + self.span)
