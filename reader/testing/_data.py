"""The per-trial arrays of a generated mouse: videos, responses (dense or sparse),
behavior and pupil center, deterministic from the spec's seed and the trial id.

Entry points: ``MouseParams`` (per-mouse constants) and ``trial_arrays`` (one trial's
four arrays, NaN-padded, in the spec's dtype).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from ..format import BEHAVIOR, PUPIL_CENTER, RESPONSES, VIDEOS
from ._spec import SPARSE, SampleSpec

#: Value of the tiny negative responses the deconvolution leaves behind.
_TINY_NEGATIVE = -3e-7
#: Sparse responses: share of the non-zero values that are tiny negatives, not events.
_NEGATIVE_SHARE = 0.02
#: Sparse responses: an event's value at its onset and the frames after, relative to
#: its amplitude; the dense traces decay alike.
_EVENT_DECAY = (1.0, 0.6, 0.3)


class MouseParams:
    """Per-mouse constants: neuron identities and firing, eye and pupil baselines."""

    def __init__(self, spec: SampleSpec) -> None:
        self.mouse_key = zlib.crc32(spec.name.encode())
        rng = np.random.default_rng([spec.seed, self.mouse_key, 0])
        n = spec.n_neurons
        if spec.unit_ids is None:
            # Real unit ids are ascending but skip numbers.
            self.unit_ids = np.sort(rng.choice(np.arange(1, 2 * n + 1), n, replace=False))
        else:
            self.unit_ids = np.array(spec.unit_ids, dtype=np.int64)
        if spec.coordinates is None:
            xy = rng.uniform((-1400.0, -720.0), (-700.0, -350.0), (n, 2))
            z = rng.choice(np.arange(200.0, 450.0, 25.0), n)
            self.coordinates = np.column_stack([xy.round(), z])
        else:
            self.coordinates = np.array(spec.coordinates, dtype=np.float64).reshape(n, 3)
        self.event_rate = rng.uniform(0.03, 0.15, (n, 1)).astype(np.float32)
        self.event_scale = rng.lognormal(np.log(4.0), 0.6, (n, 1)).astype(np.float32)
        self.pupil_base = rng.uniform(15.0, 40.0)
        self.eye_center = rng.uniform((150.0, 100.0), (300.0, 200.0))

    def trial_rng(self, seed: int, trial: int) -> np.random.Generator:
        # Keyed by trial id, not position, so a trial's data do not depend on which other
        # trials a (scaled) spec keeps.
        return np.random.default_rng([seed, self.mouse_key, 1, trial])


def trial_arrays(
    spec: SampleSpec,
    params: MouseParams,
    trial: int,
    label: str,
    valid: dict[str, int],
    dtype: np.dtype,
) -> dict[str, np.ndarray]:
    rng = params.trial_rng(spec.seed, trial)
    t = spec.t_pad
    arrays = {
        VIDEOS: _video(rng, label, spec.height, spec.width, t),
        RESPONSES: (
            np.zeros((spec.n_neurons, t), dtype=np.float32)
            if spec.is_withheld(trial)
            else _sparse_responses(rng, params, t, spec.active_fraction, valid[RESPONSES])
            if spec.responses == SPARSE
            else _responses(rng, params, t)
        ),
        BEHAVIOR: _behavior(rng, params, t),
        PUPIL_CENTER: params.eye_center[:, None] + 8.0 * _smooth_walk(rng, 2, t),
    }
    out = {}
    for var, array in arrays.items():
        array = array.astype(dtype, copy=False)
        if not (var == RESPONSES and spec.is_withheld(trial)):
            array[..., valid[var] :] = np.nan
        out[var] = array
    return out




def _video(rng: np.random.Generator, label: str, height: int, width: int, t_pad: int) -> np.ndarray:
    """Integer-valued 0..255 frames (height, width, time) that compress like real video:
    smooth drifting patterns plus a little sensor noise, not white noise."""
    y = np.arange(height, dtype=np.float32)[:, None, None]
    x = np.arange(width, dtype=np.float32)[None, :, None]
    t = np.arange(t_pad, dtype=np.float32)[None, None, :]
    if label == "GaussianDot":
        # One blob, bright or dark, jumping every 9 frames on a gray screen.
        n_pos = -(-t_pad // 9)
        cy = np.repeat(rng.uniform(0, height, n_pos), 9)[:t_pad].astype(np.float32)
        cx = np.repeat(rng.uniform(0, width, n_pos), 9)[:t_pad].astype(np.float32)
        sign = np.repeat(rng.choice([-1.0, 1.0], n_pos), 9)[:t_pad].astype(np.float32)
        frames = 128 + 110 * sign * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 32)
    else:
        frames = np.zeros((height, width, t_pad), dtype=np.float32)
        n_waves = 1 if label == "Gabor" else 3
        for amplitude in (60.0, 35.0, 20.0)[:n_waves]:
            theta = float(rng.uniform(0, 2 * np.pi))
            freq = float(rng.uniform(0.015, 0.08))  # cycles per pixel
            speed = float(rng.uniform(-0.05, 0.05))  # cycles per frame
            # Python floats keep the float32 grids float32 (numpy scalars would upcast).
            spatial = freq * (math.cos(theta) * x + math.sin(theta) * y) + float(rng.uniform())
            frames += amplitude * np.cos(2 * np.pi * (spatial - speed * t))
        if label == "Gabor":
            gy, gx = float(rng.uniform(0, height)), float(rng.uniform(0, width))
            frames *= np.exp(-((y - gy) ** 2 + (x - gx) ** 2) / (2 * 10.0**2))
        frames += 128
    frames += 2 * rng.standard_normal(frames.shape, dtype=np.float32)
    return np.clip(np.rint(frames, out=frames), 0, 255, out=frames)


def _responses(rng: np.random.Generator, params: MouseParams, t_pad: int) -> np.ndarray:
    """Dense deconvolved-like traces (neuron, time): non-negative events with a short
    decay on a small positive baseline, so almost no value is exactly zero, and a few
    exact tiny negatives as deconvolution leaves.

    One uniform draw per value decides all three: below the neuron's event rate it is an
    event (its rescaled value is exponential), else it is rescaled to the baseline, and the
    lowest sliver of that becomes a tiny negative. Vectorised over the trial: a full-size
    trial (8000 x 324) takes a few tens of milliseconds.
    """
    n = params.event_rate.shape[0]
    u = rng.random((n, t_pad), dtype=np.float32)
    rate = np.broadcast_to(params.event_rate, u.shape)
    scale = np.broadcast_to(params.event_scale, u.shape)
    event = u < rate
    on_event = u[event]
    # In place where possible: a fresh 10 MB temporary costs as much as the arithmetic.
    rest = np.subtract(u, rate, out=u)
    rest /= 1 - params.event_rate  # uniform on [0, 1) where not an event
    negative = (rest >= 0) & (rest < 0.002)
    tiny = _TINY_NEGATIVE * (0.75 + 125 * rest[negative])
    trace = rest
    for _ in range(3):  # rest**8: mostly near zero
        np.square(trace, out=trace)
    trace *= 0.05 * params.event_scale
    # Below the rate, u / rate is uniform again, so its -log is exponential.
    trace[event] = -scale[event] * np.log(np.maximum(on_event / rate[event], 1e-12))
    decayed = trace.copy()
    decayed[:, 1:] += 0.6 * trace[:, :-1]
    decayed[:, 2:] += 0.3 * trace[:, :-2]
    decayed[negative] = tiny
    return decayed


def _sparse_responses(
    rng: np.random.Generator, params: MouseParams, t_pad: int, active_fraction: float, real: int
) -> np.ndarray:
    """Deconvolved-like traces (neuron, time) that are exactly zero but for about
    ``active_fraction`` of the values: events (an exponential onset decaying over the
    next frames, overlapping events add up) and a few tiny negatives between them.

    Each neuron's share of non-zero values is the target scaled by its firing rate over
    the mean rate, capped at 1, so neurons differ but their mean share is the target.
    Onsets are drawn over the frames just before the trial too, so frame 0 is as likely to
    be non-zero as any other. The first ``real`` frames (those not NaN-padded later) hold
    at least one event.
    """
    n = params.event_rate.shape[0]
    lags = len(_EVENT_DECAY)
    share = np.minimum(1, active_fraction * params.event_rate / params.event_rate.mean())
    in_events = share * (1 - _NEGATIVE_SHARE)
    # A value is zero when none of the last ``lags`` frames had an onset, so the onset
    # rate q solves 1 - (1 - q) ** lags = in_events.
    onset_rate = 1 - (1 - in_events) ** (1 / lags)
    u = rng.random((n, t_pad + lags - 1), dtype=np.float32)
    onset = u < onset_rate
    amplitude = np.zeros_like(u)
    # Below the rate, u / rate is uniform again, so its -log is exponential.
    rate = np.broadcast_to(onset_rate, u.shape)[onset]
    scale = np.broadcast_to(params.event_scale, u.shape)[onset]
    amplitude[onset] = -scale * np.log(np.maximum(u[onset] / rate, 1e-12))
    trace = np.zeros((n, t_pad), dtype=np.float32)
    for lag, weight in enumerate(_EVENT_DECAY):
        start = lags - 1 - lag
        trace += weight * amplitude[:, start : start + t_pad]
    # Tiny negatives make up the rest of the share, among the values events left zero
    # (in_events < 1, so the rate is at most 1).
    negative_rate = share * _NEGATIVE_SHARE / (1 - in_events)
    v = rng.random((n, t_pad), dtype=np.float32)
    negative = (trace == 0) & (v < negative_rate)
    depth = (v / negative_rate)[negative]  # uniform on [0, 1)
    trace[negative] = _TINY_NEGATIVE * (0.75 + 0.25 * depth)
    if not trace[:, :real].any():
        # Only in tiny specs; an all-zero trial is what withheld responses look like, and
        # a converter rightly reads it so. The likeliest onset of frame 0 becomes one.
        neuron = int(np.argmin(u[:, lags - 1] / onset_rate[:, 0]))
        trace[neuron, 0] = params.event_scale[neuron, 0]
    return trace


def _smooth_walk(rng: np.random.Generator, rows: int, t_pad: int) -> np.ndarray:
    """Smooth random traces (rows, time) of order 1, for eye and body signals."""
    walk = np.cumsum(rng.standard_normal((rows, t_pad + 14)), axis=1) / 4
    kernel = np.hanning(15)
    kernel /= kernel.sum()
    return np.stack([np.convolve(r, kernel, mode="valid") for r in walk])


def _behavior(rng: np.random.Generator, params: MouseParams, t_pad: int) -> np.ndarray:
    walk = _smooth_walk(rng, 2, t_pad)
    pupil = params.pupil_base * (1 + 0.3 * np.tanh(walk[0]))
    speed = 4.0 * np.abs(walk[1])
    return np.stack([pupil, speed])


