"""The two sides of the compared rows (3-5, and row 6d's arithmetic): reads through the
reader, and the same values from the per-trial .npy files.

Both sides standardize with one function, ``standardize_like_reader``, which calls the
very functions the reader's read (``sensorium_zarr._reading.SplitVariable._read``) calls, on
the same condition, in the data's own dtype: responses are multiplied in the stored
dtype by the reader's own ``rescaling`` (here in place after ``np.load``; the native
engine does it chunk by chunk as it reads), the other variables take the float64 path.
So the rows compare reading, not arithmetic; tests/test_bench.py records the calls of
both sides to prove it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import google_crc32c
import numpy as np
import zarr

import sensorium_zarr as reader
from sensorium_zarr import _standardize as std_
from sensorium_zarr import format as fmt
from sensorium_zarr._native import _MAX_RUN
from sensorium_zarr._standardize import StandardizationParams

VARIABLES = fmt.VARIABLES
#: The variables row 5 streams (most of the bytes).
STREAMED = (fmt.RESPONSES, fmt.VIDEOS)
#: Frames of row 3w's window (a training sample's length).
WINDOW = 50


def standardize_like_reader(variable: str, data: np.ndarray, params: StandardizationParams) -> np.ndarray:
    """Standardize a block the caller owns exactly as the reader standardizes a decoded block.

    The conditions and the three calls are those of ``SplitVariable._read``; the functions are looked
    up on the module at each call, as the reader does, so both sides always run the same code.
    """
    if data.dtype.kind == "f" and data.flags.writeable:
        if std_.subtracts_mean(variable):
            return std_.standardize_to(variable, data, params, data)
        return std_.standardize_inplace(variable, data, params)
    standardized: np.ndarray = std_.standardize(variable, data, params)
    return standardized


def load_checked(path: Path, piece: int) -> np.ndarray:
    """The array of the .npy file ``path`` (numeric: nothing is unpickled), read a run of
    whole ``piece``-byte pieces (at most the reader's ``_MAX_RUN`` bytes, or one piece) at
    a time into the array, each piece's CRC32C computed right after its run is read;
    ``google_crc32c.value`` looked up at each call (tests count its bytes)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(f)
        if dtype.hasobject:
            raise ValueError(f"{path}: an object array; the benchmark never unpickles")
        x = np.empty(shape, dtype, order="F" if fortran_order else "C")
        data = (x.T if fortran_order else x).reshape(-1).view(np.uint8)  # the file's byte order
        run = max(piece, _MAX_RUN // piece * piece)
        for at in range(0, len(data), run):
            part = data[at : at + run]
            if f.readinto(part) != len(part):
                raise ValueError(f"{path}: cut short")
            for p in range(0, len(part), piece):
                google_crc32c.value(part[p : p + piece])
    return x


def source_file(source: Path, variable: str, trial_id: int) -> Path:
    return source / "data" / variable / f"{int(trial_id)}.npy"


def source_layout_params(params: StandardizationParams, variable: str) -> StandardizationParams:
    """``params`` (stored layout) rearranged to broadcast against a source file (time last)."""
    axes = fmt.SOURCE_TO_STORED_AXES[variable]  # stored axis i is source axis axes[i]
    back = tuple(int(a) for a in np.argsort(axes))
    return StandardizationParams(params.mean.transpose(back), params.scale.transpose(back), axes[params.time_axis])


def to_stored(variable: str, x: np.ndarray) -> np.ndarray:
    """A source-layout array as a view in the stored layout."""
    return x.transpose(fmt.SOURCE_TO_STORED_AXES[variable])


def stream_means(responses: Any, videos: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row 5's reduction: per-neuron and per-pixel nanmean over trials and time (dask threads)."""
    means: tuple[np.ndarray, np.ndarray] = dask.compute(
        da.nanmean(responses, axis=(0, 2)), da.nanmean(videos, axis=(0, 1)), scheduler="threads"
    )
    return means


def _standardize_copy(variable: str, params: StandardizationParams, block: np.ndarray) -> np.ndarray:
    # A fresh copy per block stands in for the decoder's fresh output buffer, which the
    # reader standardizes in place.
    return standardize_like_reader(variable, block[0].copy(), params)[np.newaxis]


class Sides:
    """Our side and the .npy side of the compared rows, computing the same values.

    Every method takes one item (a train trial position, a neuron index, or anything for
    a whole pass) and returns arrays in the stored layout, so the rows table can name
    them and both sides' results compare directly.
    """

    def __init__(self, mouse: reader.Mouse, source: Path) -> None:
        self.mouse = mouse
        self.source = source
        self.train = mouse.split("train")
        # The reader's own parameters, so the .npy side does exactly the same arithmetic.
        self.params = {v: mouse.standardization_params(v) for v in VARIABLES}
        self.source_params = {v: source_layout_params(self.params[v], v) for v in VARIABLES}
        self.has_responses = dict(zip(self.train.trial_ids.tolist(), self.train.has_responses.tolist(), strict=True))

    def method(self, name: str) -> Callable[[Any], Any]:
        """The side ``name`` (a rows table ``ours`` or ``baseline``)."""
        fn: Callable[[Any], Any] = getattr(self, name)
        return fn

    # -- one trial (row 3)
    def our_trial(self, k: int) -> list[np.ndarray]:
        one = self.train.trial(k)  # the numpy spelling, for per-trial loaders
        return [one[v] for v in VARIABLES]

    def our_trial_dask(self, k: int) -> list[np.ndarray]:
        return list(dask.compute(*(self.train.array(v)[k] for v in VARIABLES), scheduler="threads"))

    def npy_trial(self, k: int) -> list[np.ndarray]:
        return self._npy_trial(k, checked=False)

    # -- row 3d's floor (row 3df)
    @functools.cached_property
    def free_arrays(self) -> list[da.Array]:
        """Per variable, a Dask array made as the split's Dask array is made (one
        ``from_array`` layer over one object: the same chunks, dtype and options) over a
        ``FreeReads`` of its shape: Dask's own work for a selection of the split's arrays,
        with reads that cost nothing."""
        made = []
        for v in VARIABLES:
            real = self.train.array(v)
            made.append(da.from_array(  # type: ignore[no-untyped-call]
                FreeReads(real.shape, real.dtype), chunks=real.chunks, name=f"free-{v}-{real.name}",
                lock=False, asarray=False, inline_array=True, meta=np.empty((0,) * real.ndim, real.dtype)))
        return made

    def free_trial_dask(self, k: int) -> list[np.ndarray]:
        """Row 3d's spelling over ``free_arrays``: what Dask alone costs it (values garbage)."""
        return list(dask.compute(*(a[k] for a in self.free_arrays), scheduler="threads"))

    # -- row 3's floor (row 3f)
    def npy_trial_checked(self, k: int) -> list[np.ndarray]:
        """``npy_trial`` with every byte checked as a reader of the store must check it, and
        as cheaply as it can be: each file read into its array a run of at most the reader's
        ``_MAX_RUN`` bytes at a time, each piece of the store's chunk size checked with
        CRC32C (google_crc32c, the reader's) right after its run is read, while it is in the
        cache, in this thread. No chunk lookups, decoding or copies out of a buffer: what
        no reader that returns only checked bytes can do without."""
        return self._npy_trial(k, checked=True)

    @functools.cached_property
    def piece_nbytes(self) -> dict[str, int]:
        """Per variable, the bytes of one decoded inner chunk of the store (on local disk)."""
        if self.mouse.path is None:
            raise ValueError("row 3f's pieces are those of a store on local disk")
        arrays = {v: zarr.open_array(self.mouse.path / v, mode="r") for v in VARIABLES}
        return {v: math.prod(a.chunks) * a.dtype.itemsize for v, a in arrays.items()}

    def _npy_trial(self, k: int, checked: bool) -> list[np.ndarray]:
        trial = int(self.train.trial_ids[k])
        out = []
        for v in VARIABLES:
            path = source_file(self.source, v, trial)
            x = load_checked(path, self.piece_nbytes[v]) if checked else np.load(path)
            x = standardize_like_reader(v, x, self.source_params[v])
            if v == fmt.RESPONSES and not self.has_responses[trial]:
                x[...] = np.nan  # the reader's rule for withheld responses
            out.append(to_stored(v, x))
        return out

    # -- a training window of one trial (row 3w)
    def window(self, k: int) -> slice:
        """The ``WINDOW``-frame window row 3w reads of train trial ``k`` (placed by ``k``)."""
        n_frames = self.train.frames.stop - self.train.frames.start
        length = min(WINDOW, n_frames)
        start = (7 * k) % (n_frames - length + 1)
        return slice(start, start + length)

    def our_trial_window(self, k: int) -> list[np.ndarray]:
        one = self.train.trial(k, frames=self.window(k))
        return [one[v] for v in VARIABLES]

    def npy_trial_window(self, k: int) -> list[np.ndarray]:
        """A .npy reader can only load the whole trial's files, then cut the window."""
        window = self.window(k)
        out = []
        for v, x in zip(VARIABLES, self.npy_trial(k), strict=True):
            cut: list[Any] = [slice(None)] * x.ndim
            cut[fmt.time_axis(v, with_trial_axis=False)] = window
            out.append(x[tuple(cut)])
        return out

    # -- one neuron (row 4)
    def our_neuron_slice(self, n: int) -> np.ndarray:
        result: np.ndarray = self.train.responses[:, n, :].compute(scheduler="threads")
        return result

    def our_neuron_split(self, n: int) -> np.ndarray:
        result: np.ndarray = self.mouse.split("train", neurons=[n]).responses.compute(scheduler="threads")
        return result[:, 0, :]

    def npy_neuron(self, n: int, mmap_mode: Literal["r"] | None = None) -> np.ndarray:
        rows = []
        for trial in self.train.trial_ids.tolist():
            row = np.array(np.load(source_file(self.source, fmt.RESPONSES, trial), mmap_mode=mmap_mode)[n])
            rows.append(row if self.has_responses[trial] else np.full_like(row, np.nan))
        return standardize_like_reader(fmt.RESPONSES, np.stack(rows), self.params[fmt.RESPONSES].neurons(np.array([n])))

    def npy_neuron_mmap(self, n: int) -> np.ndarray:
        """Row 4m: a smarter .npy reader, mmap reads one row per file."""
        return self.npy_neuron(n, mmap_mode="r")

    # -- streaming (row 5)
    def our_stream(self, _: object = None) -> tuple[np.ndarray, np.ndarray]:
        return stream_means(self.train.responses, self.train.videos)

    def npy_stream(self, _: object = None) -> tuple[np.ndarray, np.ndarray]:
        sums: dict[str, Any] = {}
        counts: dict[str, Any] = {}
        for trial in self.train.trial_ids.tolist():
            for v in STREAMED:
                if v == fmt.RESPONSES and not self.has_responses[trial]:
                    continue  # NaN for the reader: adds nothing to a nanmean
                x = standardize_like_reader(v, np.load(source_file(self.source, v, trial)), self.source_params[v])
                # Time is the last axis of every source file.
                s = np.nansum(x, axis=-1, dtype=np.float64)
                c = np.count_nonzero(~np.isnan(x), axis=-1)
                sums[v] = s if v not in sums else sums[v] + s
                counts[v] = c if v not in counts else counts[v] + c
        with np.errstate(invalid="ignore", divide="ignore"):
            means = {v: sums[v] / counts[v] for v in STREAMED}
        # Per pixel: the source's (height, width) already is the stored layout without time.
        return means[fmt.RESPONSES], means[fmt.VIDEOS]

    def streamed_bytes(self) -> int:
        return int(self.train.responses.nbytes + self.train.videos.nbytes)

    # -- row 5's arithmetic alone (row 6d)
    def decoded_arithmetic(self, n_trials: int) -> tuple[Callable[[], tuple[np.ndarray, np.ndarray]], int]:
        """Row 5's standardize + reduce on the first ``n_trials`` train trials, decoded
        into memory first: the function computing it, and the bytes it goes through."""
        raw = self.mouse.split("train", standardize=False)
        decoded = [raw.trial(k) for k in range(n_trials)]
        arrays = {}
        for v in STREAMED:
            stack = np.stack([d[v] for d in decoded])
            arrays[v] = da.from_array(stack, chunks=(1, *stack.shape[1:])).map_blocks(
                partial(_standardize_copy, v, self.params[v]), dtype=np.result_type(stack.dtype, np.float32))
        nbytes = sum(a.nbytes for a in arrays.values())
        return partial(stream_means, arrays[fmt.RESPONSES], arrays[fmt.VIDEOS]), int(nbytes)

    def files(self) -> list[Path]:
        return [source_file(self.source, v, t) for t in self.train.trial_ids.tolist() for v in VARIABLES]


class FreeReads:
    """An array-like of ``shape`` and ``dtype`` whose every selection is a new, unwritten
    array of the selection's shape: a read that costs nothing, for row 3df."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), len(shape)
        # A zero-stride view of one value: indexing it gives a selection's shape at no cost.
        self._shape_of = np.broadcast_to(np.zeros((), self.dtype), shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.empty(self._shape_of[key].shape, self.dtype)


def as_arrays(result: Any) -> list[np.ndarray]:
    """A side's result as a list of arrays (sides return one array or several)."""
    return [result] if isinstance(result, np.ndarray) else list(result)


def check_same(what: str, ours: Any, base: Any, rtol: float = 1e-6, atol: float = 0.0) -> None:
    """Both sides must compute the same values before their times mean anything (to a few
    float32 roundings; means also differ in summation order)."""
    a_list, b_list = as_arrays(ours), as_arrays(base)
    if len(a_list) != len(b_list):
        raise AssertionError(f"{what}: {len(a_list)} arrays vs {len(b_list)}")
    for a, b in zip(a_list, b_list, strict=True):
        if a.shape != b.shape:
            raise AssertionError(f"{what}: shapes {a.shape} vs {b.shape}")
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def random_trials(rng: np.random.Generator, n_train: int, count: int) -> list[int]:
    """``count`` train positions, all different while there are enough trials."""
    picks: list[int] = rng.permutation(n_train)[:count].tolist()
    while len(picks) < count:
        picks.append(int(rng.integers(n_train)))
    return picks

