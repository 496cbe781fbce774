"""Standardization, defined once: the forward and inverse operations and the parameters
behind both. Entry points: ``standardize``, ``destandardize``, ``recomputed_params``,
``provided_params``.

The rules are those of neuralpredictors' ``NeuroNormalizer``, which is what users of this
data mean by "standardized":

- videos: ``(x - mean) / std``;
- responses: ``x / std``, where a std at or below ``0.01 * nanmean(std)`` (or NaN) is
  replaced by that threshold, so silent neurons are never divided by ~0;
- behavior: ``x / std`` (no mean subtraction);
- pupil_center: ``(x - mean) / std``.

Parameters are kept in the stored layout of one trial (no trial axis) with the time axis
present, of length 1 when the statistics pool time, so they broadcast against one trial
or a stack of trials alike. Padded (NaN) frames stay NaN through both operations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import format as fmt
from .errors import SelectionError

__all__ = [
    "RECOMPUTED",
    "PROVIDED",
    "STATISTICS_SOURCES",
    "RESPONSE_THRESHOLD_FRACTION",
    "StandardizationParams",
    "standardize",
    "standardize_inplace",
    "standardize_to",
    "standardize_codes",
    "subtracts_mean",
    "destandardize",
    "recomputed_params",
    "provided_params",
    "pool_pixels",
    "required_statistics",
    "parse_statistics_source",
]

#: Statistics recomputed by the converter from the train tier (pooled over trials and time).
RECOMPUTED = "recomputed"
#: Statistics the dataset ships in ``meta/statistics`` (over trials, per frame).
PROVIDED = "provided"
STATISTICS_SOURCES: tuple[str, ...] = (RECOMPUTED, PROVIDED)

#: A response std below this fraction of the mean std is replaced by it (NeuroNormalizer).
RESPONSE_THRESHOLD_FRACTION = 0.01

# Behavior and responses are only rescaled: their zero means "no running", "no activity".
_SUBTRACTS_MEAN: dict[str, bool] = {
    fmt.VIDEOS: True,
    fmt.RESPONSES: False,
    fmt.BEHAVIOR: False,
    fmt.PUPIL_CENTER: True,
}


@dataclass(frozen=True, eq=False)
class StandardizationParams:
    """``mean`` and ``scale`` (the divisor, threshold already applied) of one variable,
    float64, shaped like one stored trial with the time axis kept (length 1 if pooled)."""

    mean: np.ndarray
    scale: np.ndarray
    time_axis: int

    def window(self, frames: slice) -> StandardizationParams:
        """The parameters of the frames in ``frames`` (a no-op for time-pooled ones)."""
        if self.mean.shape[self.time_axis] == 1:
            return self
        index: list[Any] = [slice(None)] * self.mean.ndim
        index[self.time_axis] = frames
        return self.select(lambda x: x[tuple(index)])

    def in_dtype(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """``mean`` and ``1 / scale`` cast to ``dtype``, computed once per dtype, so the read
        path can rescale in the stored dtype, in place (NeuroNormalizer's ``x * precision``)
        instead of promoting every value to float64 and back."""
        cache: dict[str, tuple[np.ndarray, np.ndarray]] = self.__dict__.setdefault("_in_dtype", {})
        key = np.dtype(dtype).str
        if key not in cache:
            with np.errstate(divide="ignore"):
                cache[key] = (self.mean.astype(dtype), (1.0 / self.scale).astype(dtype))
        return cache[key]

    def select(self, pick: Callable[[np.ndarray], np.ndarray]) -> StandardizationParams:
        """These parameters with ``pick`` (an elementwise-safe selection: slicing, taking)
        applied to ``mean`` and ``scale``, and to the copies ``in_dtype`` has cast so far:
        a read's cut of per-frame parameters then costs a view, not a cast of the cut."""
        selected = StandardizationParams(pick(self.mean), pick(self.scale), self.time_axis)
        cast = self.__dict__.get("_in_dtype")
        if cast:
            selected.__dict__["_in_dtype"] = {key: (pick(m), pick(p)) for key, (m, p) in cast.items()}
        return selected

    def neurons(self, selection: slice | np.ndarray) -> StandardizationParams:
        """The parameters of some neurons (responses: axis 0 is the neuron axis)."""
        return self.select(lambda x: x[selection])


def standardize(variable: str, x: Any, params: StandardizationParams) -> Any:
    """Standardized ``x`` (one trial or a stack of trials, numpy or dask), same float dtype."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.size > _BLOCK:
        return _standardize_blocked(variable, x, params)
    out = x - params.mean if _SUBTRACTS_MEAN[variable] else x
    return _keep_dtype(out / params.scale, x)


#: Codes per block of ``standardize_codes``' lookup (its intp indices: 512 kB).
_LOOKUP_BLOCK = 65536
#: Elements per float64 block of ``_standardize_blocked`` (256 kB: stays in a core's cache).
_BLOCK = 32 * 1024


def _standardize_blocked(
    variable: str, x: np.ndarray, params: StandardizationParams, out: np.ndarray | None = None
) -> np.ndarray:
    """``standardize`` of a float numpy array, value for value the same (the same float64
    subtraction and division, then one rounding to ``x``'s dtype), computed a cache-sized
    block at a time: the whole-array expression makes and fills two float64 temporaries of
    twice ``x``'s size, which costs several times the arithmetic itself."""
    centred = _SUBTRACTS_MEAN[variable]
    if np.broadcast_shapes(x.shape, params.mean.shape, params.scale.shape) != x.shape:
        # Parameters with more axes than x (not the reader's case): the plain expression.
        plain: np.ndarray = _keep_dtype(((x - params.mean) if centred else x) / params.scale, x)
        return plain
    dtype = np.result_type(x.dtype, params.mean.dtype, params.scale.dtype) if centred else np.result_type(
        x.dtype, params.scale.dtype
    )
    if out is None:
        out = np.empty(x.shape, x.dtype)
    mean = np.broadcast_to(params.mean, x.shape)
    scale = np.broadcast_to(params.scale, x.shape)
    # Blocks of whole trailing axes (the first axis whose trailing axes fit), or of one row.
    axis = next(a for a in range(x.ndim) if math.prod(x.shape[a + 1 :]) <= _BLOCK)
    step = max(1, _BLOCK // math.prod(x.shape[axis + 1 :]))
    scratch = np.empty(_BLOCK, dtype)
    for lead in np.ndindex(*x.shape[:axis]):
        for start in range(0, x.shape[axis], step):
            at = (*lead, slice(start, start + step))
            block = x[at]
            tmp = scratch[: block.size].reshape(block.shape)
            if centred:
                np.subtract(block, mean[at], out=tmp)
                np.divide(tmp, scale[at], out=tmp)
            else:
                np.divide(block, scale[at], out=tmp)
            out[at] = tmp
    return out


def subtracts_mean(variable: str) -> bool:
    return _SUBTRACTS_MEAN[variable]


def standardize_inplace(variable: str, x: np.ndarray, params: StandardizationParams) -> np.ndarray:
    """``standardize`` for a float numpy array the caller owns, overwriting it (no
    temporaries): ``x * (1 / scale)`` in the array's dtype, within one rounding of
    ``standardize``; only for variables that are rescaled, not centred."""
    out: np.ndarray = np.multiply(x, rescaling(variable, params, x.dtype), out=x)
    return out


def rescaling(variable: str, params: StandardizationParams, dtype: np.dtype) -> np.ndarray:
    """What ``standardize_inplace`` multiplies an array of ``dtype`` by: ``1 / scale`` in
    that dtype (the native engine multiplies by the same as it places a chunk's values)."""
    if _SUBTRACTS_MEAN[variable]:
        raise ValueError(f"{variable} subtracts a mean: it cannot be rescaled in place; use standardize")
    return params.in_dtype(dtype)[1]


def standardize_into(variable: str, x: np.ndarray, params: StandardizationParams) -> np.ndarray:
    """``standardize`` of a float numpy array the caller owns, written back into it: the
    same float64 arithmetic and one rounding to its dtype, value for value, without a new
    array of ``x``'s size (fresh memory costs a page fault per 4 kB on first write)."""
    if x.dtype.kind != "f":
        raise ValueError(f"standardize_into: {variable} is {x.dtype}, not a float array")
    return standardize_to(variable, x, params, x)


def standardize_to(variable: str, x: np.ndarray, params: StandardizationParams, out: np.ndarray) -> np.ndarray:
    """``standardize`` of the numpy array ``x`` written into the float array ``out`` (which
    may be ``x``): the same float64 arithmetic and one rounding to ``out``'s dtype, value
    for value as ``standardize(variable, x.astype(out.dtype), params)`` where that dtype
    holds ``x``'s values exactly (a float array's own, a ``uint8`` variable's)."""
    if out.dtype.kind != "f" or out.shape != x.shape:
        raise ValueError(f"standardize_to: {variable} into {out.dtype} {out.shape}, for values {x.dtype} {x.shape}")
    if x.size > _BLOCK:
        return _standardize_blocked(variable, x, params, out=out)
    centred = (x - params.mean) if _SUBTRACTS_MEAN[variable] else x
    out[...] = centred / params.scale
    return out


def standardize_codes(
    variable: str, codes: np.ndarray, params: StandardizationParams, dtype: np.dtype
) -> np.ndarray | None:
    """``standardize_to`` of ``codes`` (a ``uint8`` variable's stored values) cast to the
    float ``dtype``, value for value, by a table of the 256 standardized values: one lookup
    a value instead of a cast and the float64 arithmetic. Only for parameters pooled over
    every axis (one mean, one scale: the recomputed statistics of videos) with a finite,
    positive scale; None otherwise (then the caller takes ``standardize_to``)."""
    if codes.dtype != np.uint8 or params.mean.size != 1 or params.scale.size != 1:
        return None
    if not (np.isfinite(params.mean).all() and np.isfinite(params.scale).all() and (params.scale > 0).all()):
        return None
    # Through standardize_to itself, so the table holds exactly what the arithmetic gives.
    values = np.arange(256, dtype=dtype).reshape((256,) + (1,) * (params.mean.ndim - 1))
    table = standardize_to(variable, values, params, np.empty_like(values)).reshape(-1)
    out = np.empty(codes.shape, dtype)
    flat, values_of = out.reshape(-1), np.ascontiguousarray(codes).reshape(-1)
    # A block at a time: np.take casts its indices to intp, a temporary of 8 bytes a code,
    # which for a whole trial costs more than the lookup. "wrap" skips the bounds check,
    # which uint8 codes cannot fail.
    for start in range(0, flat.size, _LOOKUP_BLOCK):
        block = slice(start, start + _LOOKUP_BLOCK)
        np.take(table, values_of[block], out=flat[block], mode="wrap")
    return out


def destandardize(variable: str, x: Any, params: StandardizationParams) -> Any:
    """The inverse of ``standardize``: raw values back from standardized ``x``."""
    out = x * params.scale
    if _SUBTRACTS_MEAN[variable]:
        out = out + params.mean
    return _keep_dtype(out, x)


def _keep_dtype(out: Any, x: Any) -> Any:
    # float64 parameters would otherwise promote a float32 store's values.
    dtype = getattr(x, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind == "f" and out.dtype != dtype:
        return out.astype(dtype)
    return out


def parse_statistics_source(statistics: str, where: str) -> str:
    """``statistics`` if it names a source of parameters (``STATISTICS_SOURCES``), or raise."""
    if statistics not in STATISTICS_SOURCES:
        raise SelectionError(
            f"{where}: statistics={statistics!r}; expected one of {', '.join(STATISTICS_SOURCES)}"
        )
    return statistics


def required_statistics(variable: str) -> tuple[str, ...]:
    """Which provided statistics ``variable``'s rule needs."""
    return ("mean", "std") if _SUBTRACTS_MEAN[variable] else ("std",)


def recomputed_params(variable: str, statistics: Mapping[str, np.ndarray]) -> StandardizationParams:
    """Parameters from the ``trials_time`` statistics of ``variable`` (stored layout, no time
    axis; videos need ``count`` too, to pool the pixels into one mean and std)."""
    mean = np.asarray(statistics["mean"], dtype=np.float64)
    std = np.asarray(statistics["std"], dtype=np.float64)
    time_axis = fmt.time_axis(variable, with_trial_axis=False)
    if variable == fmt.VIDEOS:
        pooled_mean, pooled_std = pool_pixels(mean, std, np.asarray(statistics["count"]))
        # One scalar for the whole video, broadcast over (time, height, width).
        shape = (1,) * (len(fmt.DIMENSIONS[variable]) - 1)
        mean, std = np.full(shape, pooled_mean), np.full(shape, pooled_std)
    else:
        mean, std = np.expand_dims(mean, time_axis), np.expand_dims(std, time_axis)
    return _params(variable, mean, std, time_axis)


def provided_params(variable: str, mean: np.ndarray | None, std: np.ndarray) -> StandardizationParams:
    """Parameters from the dataset's own statistics, given in the source layout (time last)."""
    axes = fmt.SOURCE_TO_STORED_AXES[variable]
    # Contiguous in the stored layout: a read's window of them is then a contiguous block,
    # not a strided view each arithmetic call would first copy.
    std = np.ascontiguousarray(np.asarray(std, dtype=np.float64).transpose(axes))
    mean = np.zeros_like(std) if mean is None else np.ascontiguousarray(
        np.asarray(mean, dtype=np.float64).transpose(axes)
    )
    return _params(variable, mean, std, fmt.time_axis(variable, with_trial_axis=False))


def _params(variable: str, mean: np.ndarray, std: np.ndarray, time_axis: int) -> StandardizationParams:
    scale = std
    if variable == fmt.RESPONSES:
        with np.errstate(invalid="ignore"):
            threshold = RESPONSE_THRESHOLD_FRACTION * _nanmean(std)
            # `>` is False for NaN, so a neuron with no statistics gets the threshold too,
            # exactly as NeuroNormalizer's precision does.
            scale = np.where(std > threshold, std, threshold)
    if not _SUBTRACTS_MEAN[variable]:
        mean = np.zeros_like(scale)
    return StandardizationParams(mean, scale, time_axis)


def _nanmean(x: np.ndarray) -> float:
    finite = x[~np.isnan(x)]
    return float(finite.mean()) if finite.size else float("nan")


def pool_pixels(mean: np.ndarray, std: np.ndarray, count: np.ndarray) -> tuple[float, float]:
    """One mean and population std over every value behind per-pixel (mean, std, count),
    exactly as if they had been computed over all values at once."""
    count = np.asarray(count, dtype=np.float64)
    seen = count > 0
    total = count[seen].sum()
    if total == 0:
        return float("nan"), float("nan")
    c, m, s = count[seen], mean[seen], std[seen]
    pooled_mean = float((c * m).sum() / total)
    variance = float((c * (s**2 + (m - pooled_mean) ** 2)).sum() / total)
    return pooled_mean, float(np.sqrt(variance))
