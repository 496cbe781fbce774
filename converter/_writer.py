"""Writing stage: create a store's arrays, then fill them one block of trials at a time.

Each block task (``write_block``) reads its trials' source files once, writes whole
shards (no two tasks touch one shard, so tasks run in parallel safely), and returns what
the later stages need: real frame counts, withheld-response flags and streaming
statistics of its ``train`` trials.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numcodecs.blosc
import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from sensorium_zarr import _engine as engine_
from sensorium_zarr import format as fmt
from sensorium_zarr._location import Remote
from sensorium_zarr.errors import SourceError

from ._bucket import in_order
from ._chunking import Chunking
from ._shards import BLOSC_SHUFFLES, write_shards
from ._source import SourceLayout
from ._statistics import Moments

__all__ = [
    "Blueprint", "Written", "create_array", "create_store", "finish_store", "open_array", "open_for_writing",
    "release_buffers", "store_shapes", "stored_shape", "write_block", "write_bundle", "bundle_paths", "bundle_values",
    "uncoded_variables", "uint8_codes",
]


def stored_shape(layout: SourceLayout, variable: str) -> tuple[int, ...]:
    source = layout.shapes[variable]
    return (layout.n_trials, *(source[a] for a in fmt.SOURCE_TO_STORED_AXES[variable]))


def store_shapes(layout: SourceLayout) -> dict[str, tuple[int, ...]]:
    """The stored shapes the format's table sizes dimensions from (``FormatSpec.sizes``):
    every variable's, and that of the tier list naming the ``meta/trials`` axis."""
    shapes = {v: stored_shape(layout, v) for v in fmt.VARIABLES}
    tiers = layout.meta_files.get(f"{fmt.META_TIERS}.npy")
    if tiers is not None:
        shapes[fmt.META_TIERS] = tuple(tiers.shape)
    return shapes


@dataclass(frozen=True)
class Blueprint:
    """The format's table (``sensorium_zarr.format``) bound to the store being written:
    its attributes and the variables' stored shapes fix every array's dims, dtype and
    shape, so nothing here restates them."""

    attrs: fmt.MouseAttrs
    shapes: dict[str, tuple[int, ...]]
    chunking: Chunking
    #: The per-trial variables stored uncoded (``FormatSpec.uncoded_chunks``).
    uncoded: frozenset[str] = frozenset()

    @classmethod
    def of(cls, layout: SourceLayout, attrs: fmt.MouseAttrs, chunking: Chunking) -> Blueprint:
        uncoded: frozenset[str] = frozenset()
        if fmt.spec(attrs.format_version).uncoded_chunks:
            uncoded = uncoded_variables(layout, chunking, {v: np.dtype(attrs.array_dtype(v)) for v in fmt.VARIABLES})
        return cls(attrs, store_shapes(layout), chunking, uncoded)

    def expected(self, path: str, source_shape: tuple[int, ...] | None = None) -> fmt.Expected:
        return fmt.spec(self.attrs.format_version).expected(path, self.attrs, self.shapes, source_shape=source_shape)

    def create(
        self,
        root: zarr.Group,
        path: str,
        *,
        shape: tuple[int, ...] | None = None,
        dtype: Any = None,
        attrs: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> zarr.Array[Any]:
        """Create the array at ``path`` as the table says (replacing one there if
        ``overwrite``); ``shape`` and ``dtype`` only where the table leaves them to the
        data (an index's length, a ``meta/`` file)."""
        expected = self.expected(path, source_shape=shape)
        if expected.shape is not None and None not in expected.shape:
            known = tuple(int(s) for s in expected.shape if s is not None)
            if shape is not None and shape != known:
                raise ValueError(f"{path}: writing shape {shape}, the format says {known}")
            shape = known
        if shape is None or expected.dims is None:
            raise ValueError(f"{path}: the format leaves the shape to the data; pass it")
        if expected.dtype is not None:
            dtype = str if expected.dtype == fmt.STRING else np.dtype(expected.dtype)
        chunks: tuple[int, ...] | None = None
        shards: tuple[int, ...] | None = None
        compressors = None
        if not isinstance(expected.chunks, fmt.Whole):
            chunks, shards = self.chunking.layout_rule(expected.chunks, expected.dims, shape)
            compressors = self.chunking.compressors(path, np.dtype(dtype).itemsize, coded=path not in self.uncoded)
        array_attrs = dict(attrs or {})
        if expected.attributes:
            array_attrs[fmt.ATTRS_KEY] = {**array_attrs.get(fmt.ATTRS_KEY, {}), **expected.attributes}
        return create_array(
            root, path, shape, dtype, expected.dims, chunks=chunks, shards=shards, compressors=compressors,
            attrs=array_attrs, nan_fill=expected.fill == fmt.NAN_IF_FLOAT,
            every_chunk=fmt.spec(self.attrs.format_version).every_chunk_present, overwrite=overwrite,
        )


def uncoded_variables(layout: SourceLayout, chunking: Chunking, dtypes: Mapping[str, np.dtype]) -> frozenset[str]:
    """The per-trial variables Blosc (as ``chunking`` sets it) would shrink by less than
    ``chunking.min_blosc_saving`` percent, judged on the mouse's first trial in the stored
    layout and dtype (a full-size trial's responses are megabytes; one file more to read
    from a bucket): decoding them would cost reads much more than the bytes saved."""
    if not chunking.min_blosc_saving or not len(layout.trial_ids):
        return frozenset()
    first = int(layout.trial_ids[0])
    uncoded = set()
    for variable in fmt.VARIABLES:
        dtype = np.dtype(dtypes[variable])
        values = layout.read_trial(variable, first).transpose(fmt.SOURCE_TO_STORED_AXES[variable])
        if dtype == np.uint8:
            # As stored (``uint8_codes``); a trial that does not fit ends the attempt anyway.
            time_axis = fmt.time_axis(variable, with_trial_axis=False)
            codes = np.zeros(values.shape, np.uint8)
            uint8_codes(values, real_frames(values, time_axis), time_axis, codes)
            values = codes
        values = np.ascontiguousarray(values, dtype)
        coded = len(numcodecs.blosc.compress(
            values, chunking.cname.encode(), chunking.clevel, BLOSC_SHUFFLES[chunking.shuffle_of(variable)],
            typesize=dtype.itemsize,
        ))
        if values.nbytes and coded * 100 > values.nbytes * (100 - chunking.min_blosc_saving):
            uncoded.add(variable)
    return frozenset(uncoded)


def create_array(
    root: zarr.Group,
    path: str,
    shape: tuple[int, ...],
    dtype: Any,
    dims: tuple[str, ...],
    *,
    chunks: tuple[int, ...] | None = None,
    shards: tuple[int, ...] | None = None,
    compressors: list[Any] | None = None,
    attrs: dict[str, Any] | None = None,
    nan_fill: bool = True,
    every_chunk: bool = True,
    overwrite: bool = False,
) -> zarr.Array[Any]:
    """Create ``path`` (parent groups included) with a checksum on every chunk; float
    arrays filled with NaN if ``nan_fill``, else with Zarr's default; writes through the
    returned array store every chunk, even one equal to the fill value, if
    ``every_chunk``. Use ``Blueprint.create``, which takes everything but the data from
    the format."""
    parent, _, name = path.rpartition("/")
    group = root
    for part in filter(None, parent.split("/")):
        group = group.require_group(part)
    is_float = isinstance(dtype, np.dtype) and dtype.kind == "f"
    return group.create_array(
        name,
        shape=shape,
        dtype=dtype,
        chunks=chunks if chunks is not None else (shape or "auto"),
        shards=shards,
        compressors=compressors if compressors is not None else [ZstdCodec(level=3), Crc32cCodec()],
        fill_value=np.nan if is_float and nan_fill else None,
        dimension_names=dims,
        attributes=attrs or {},
        config={"write_empty_chunks": every_chunk},
        overwrite=overwrite,
    )


def bundle_paths(root: zarr.Group, attrs: fmt.MouseAttrs) -> list[str]:
    """The arrays the bundle of the store at ``root`` holds, from metadata alone: the
    required members, then the optional ones if the store has all of them and they are
    small enough (``format.BUNDLE_PROVIDED_BYTES``)."""
    paths = fmt.bundle_required(attrs)
    optional = fmt.bundle_optional()
    if all(path in root for path in optional):
        if sum(_whole(root, path).nbytes for path in optional) <= fmt.BUNDLE_PROVIDED_BYTES:
            paths += optional
    return paths


def bundle_values(root: zarr.Group, attrs: fmt.MouseAttrs) -> dict[str, np.ndarray]:
    """What the bundle of the store at ``root`` must hold (``bundle_paths``), read back from
    the arrays it duplicates, so it holds what they hold."""
    return {path: np.asarray(_whole(root, path)[...]) for path in bundle_paths(root, attrs)}


def _whole(root: zarr.Group, path: str) -> zarr.Array[Any]:
    node = root[path]
    if not isinstance(node, zarr.Array):
        raise TypeError(f"{path}: a group where the format has an array")
    return node


def write_bundle(root: zarr.Group, blueprint: Blueprint) -> None:
    """Write the bundle (format version 5) of the store at ``root``, whose every other
    array is written; before ``finish_store``, so the consolidated metadata holds it."""
    data, members = fmt.pack_bundle(bundle_values(root, blueprint.attrs))
    array = blueprint.create(root, fmt.BUNDLE, shape=data.shape, attrs={fmt.ATTRS_KEY: {fmt.MEMBERS_KEY: members}})
    array[...] = data


def writable(store_path: Path | Remote) -> Any:
    """What zarr opens for writing: a local folder's path, or the URL's ObjectStore
    (one client per process, shared by the tasks)."""
    return store_path.store(read_only=False) if isinstance(store_path, Remote) else str(store_path)


def finish_store(store_path: Path | Remote, attrs: fmt.MouseAttrs) -> None:
    """The last writes of a conversion: consolidate every array's metadata into the root,
    then rewrite the root attributes with ``complete: true``. The second write replaces
    the root's one metadata document, consolidated metadata included, so a store that
    says it is complete always holds the metadata of all its arrays, and no reader sees
    consolidated metadata without ``complete: true`` but as an unfinished store."""
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not in the Zarr v3 specification yet; the
        # format requires it (docs/FORMAT.md), and readers without it read the arrays' own.
        warnings.filterwarnings("ignore", "Consolidated metadata", category=UserWarning)
        root = zarr.consolidate_metadata(writable(store_path), zarr_format=3)
    root.attrs[fmt.ATTRS_KEY] = attrs.to_dict()


def open_array(store_path: Path | Remote, path: str, engine: str) -> zarr.Array[Any]:
    """``path`` of the store, opened to be read with ``engine``."""
    return engine_.open_array(writable(store_path), path, engine, mode="r+")


def open_for_writing(store_path: Path | Remote, path: str, engine: str, every_chunk: bool) -> zarr.Array[Any]:
    """``path`` of the store, opened for writing; with ``every_chunk`` (format version 3)
    every chunk written is stored, inner chunks of shards included, even one holding only
    the fill value. zarrs (0.2) skips such chunks whatever the configuration says, so
    then zarr-python's pipeline encodes, whichever ``engine`` was asked for."""
    if every_chunk:
        return engine_.open_array(writable(store_path), path, engine_.ZARR, mode="r+", write_empty_chunks=True)
    return open_array(store_path, path, engine)


def create_store(store_path: Path | Remote, blueprint: Blueprint) -> zarr.Group:
    """An empty store with every per-trial variable created (no data yet)."""
    root = zarr.open_group(store=writable(store_path), mode="w", zarr_format=3)
    for variable in fmt.VARIABLES:
        blueprint.create(root, variable)
    return root


@dataclass
class Written:
    """What one chain of block writes has gathered: per-block real frame counts and
    withheld flags (keyed by the block's first position) and the train moments."""

    valid_frames: dict[int, np.ndarray] = field(default_factory=dict)
    has_responses: dict[int, np.ndarray] = field(default_factory=dict)
    moments: dict[str, Moments] | None = None
    #: Variables tried as ``uint8`` that a trial did not fit, each with the first such
    #: trial's reason (``uint8_codes``); their blocks were not written.
    not_uint8: dict[str, str] = field(default_factory=dict)

    def merge(self, other: Written) -> Written:
        moments = self.moments
        if moments is None:
            moments = other.moments
        elif other.moments is not None:
            moments = {v: moments[v].merge(other.moments[v]) for v in moments}
        return Written(
            {**self.valid_frames, **other.valid_frames},
            {**self.has_responses, **other.has_responses},
            moments,
            {**other.not_uint8, **self.not_uint8},
        )

    def per_trial(self) -> tuple[np.ndarray, np.ndarray]:
        """``valid_frames`` (trial, variable) and ``has_responses`` (trial,), in trial order."""
        starts = sorted(self.valid_frames)
        return (
            np.concatenate([self.valid_frames[s] for s in starts]),
            np.concatenate([self.has_responses[s] for s in starts]),
        )


def write_block(
    layout: SourceLayout,
    store_path: Path | Remote,
    start: int,
    stop: int,
    dtypes: dict[str, np.dtype],
    train: np.ndarray,
    engine: str,
    written: Written | None = None,
    uint8: frozenset[str] = frozenset(),
    variables: tuple[str, ...] = fmt.VARIABLES,
) -> Written:
    """Copy trials ``start:stop`` (positions along the trial axis) of ``variables`` into
    the store and fold them into ``written`` (updated in place and returned: a chain of
    these tasks keeps one set of running statistics, so memory does not grow with the
    number of blocks). A variable of ``uint8`` is stored as ``uint8`` (format version 8);
    a trial whose values do not fit (``uint8_codes``) ends that: the variable is noted in
    ``written.not_uint8`` and no more of its blocks are written (its statistics still
    are), for the caller to write it again in its stored dtype."""
    written = written if written is not None else Written()
    rules = fmt.spec(fmt.FORMAT_VERSION)
    every_chunk = rules.every_chunk_present
    trial_ids = layout.trial_ids[start:stop]
    n = len(trial_ids)
    valid = np.zeros((n, len(fmt.VARIABLES)), np.int32)
    has_responses = np.zeros(n, bool)
    in_train = train[start:stop]
    if written.moments is None and in_train.any():
        written.moments = {v: Moments.empty(stored_shape(layout, v)[1:]) for v in fmt.VARIABLES}
    for variable in variables:
        column = fmt.VARIABLES.index(variable)
        buffer = _scratch(f"block-{variable}", (n, *stored_shape(layout, variable)[1:]), dtypes[variable])
        time_axis = fmt.time_axis(variable, with_trial_axis=False)
        axes = fmt.SOURCE_TO_STORED_AXES[variable]
        # Where the stored layout is the source's (responses: most of the bytes), files are
        # read straight into the block; otherwise into a reused buffer, then transposed.
        direct = axes == tuple(range(len(axes)))
        landing = None if direct else _scratch(f"file-{variable}", layout.shapes[variable], layout.dtypes[variable])
        sources: Iterator[np.ndarray]
        if layout.tree.is_remote:
            # Trials in flight at once, each a round trip; each into its own row or array.
            read = functools.partial(_read_row, layout, variable, trial_ids, buffer if direct else None)
            sources = in_order(read, range(n))
        else:
            sources = (layout.read_trial(variable, t, out=buffer[i] if direct else landing)
                       for i, t in enumerate(trial_ids))
        for i, (trial_id, source) in enumerate(zip(trial_ids, sources, strict=True)):
            row = buffer[i]
            if source is not row:  # not read in place: transposed, or cast, or Fortran-ordered
                row[...] = source.transpose(axes)
            valid[i, column] = checked_real_frames(row, time_axis, layout, variable, trial_id)
            if variable == fmt.RESPONSES:
                has_responses[i] = not responses_withheld(row)
        if written.moments is not None and variable in written.moments:
            written.moments[variable].add_block(buffer if in_train.all() else buffer[in_train])
        stored = buffer
        if variable in uint8:
            if variable in written.not_uint8:
                continue
            stored = _scratch(f"uint8-{variable}", buffer.shape, np.dtype(np.uint8))
            for i, trial_id in enumerate(trial_ids):
                problem = uint8_codes(buffer[i], int(valid[i, column]), time_axis, stored[i])
                if problem is not None:
                    written.not_uint8[variable] = f"trial {int(trial_id)} {problem}"
                    break
            if variable in written.not_uint8:
                continue
        array = open_for_writing(store_path, variable, engine, every_chunk)
        if not (rules.c_order_shards and write_shards(array, start, stop, stored)):
            array[start:stop] = stored
    written.valid_frames[start] = valid
    written.has_responses[start] = has_responses
    return written


def _read_row(
    layout: SourceLayout, variable: str, trial_ids: np.ndarray, rows: np.ndarray | None, i: int
) -> np.ndarray:
    return layout.read_trial(variable, trial_ids[i], out=None if rows is None else rows[i])


_BUFFERS: dict[tuple[int, str, np.dtype], np.ndarray] = {}
_BUFFERS_LOCK = threading.Lock()


def _scratch(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A buffer of the calling thread, reused from block to block until
    ``release_buffers``: a fresh 77 MB block per task costs page faults and zeroing on
    every one (perf: a fifth of the conversion's CPU went to page faults). Contents are
    garbage until written."""
    key = (threading.get_ident(), name, np.dtype(dtype))
    size = int(np.prod(shape, dtype=np.int64))
    with _BUFFERS_LOCK:
        flat = _BUFFERS.get(key)
    if flat is None or flat.size < size:
        flat = np.empty(size, dtype)
        with _BUFFERS_LOCK:
            _BUFFERS[key] = flat
    return flat[:size].reshape(shape)


def release_buffers() -> None:
    """Free every thread's block buffers (the writing stage is over)."""
    with _BUFFERS_LOCK:
        _BUFFERS.clear()


def real_frames(trial: np.ndarray, time_axis: int) -> int:
    """Frames before the first one holding a NaN (the reference loader cuts trials there)."""
    other = tuple(a for a in range(trial.ndim) if a != time_axis)
    nan_frames = np.isnan(trial).any(axis=other) if trial.dtype.kind == "f" else np.zeros(trial.shape[time_axis], bool)
    return int(np.argmax(nan_frames)) if nan_frames.any() else int(trial.shape[time_axis])


def checked_real_frames(
    trial: np.ndarray, time_axis: int, layout: SourceLayout, variable: str, trial_id: int
) -> int:
    """``real_frames``, refusing infinities on the way: NaN is the format's padding, but one
    inf in a train trial would make every standardized value NaN. Costs no extra pass over
    the data: the one NaN scan becomes a non-finite scan, and only frames holding a
    non-finite value are looked at again."""
    if trial.dtype.kind != "f":
        return int(trial.shape[time_axis])
    other = tuple(a for a in range(trial.ndim) if a != time_axis)
    bad_frames = np.flatnonzero((~np.isfinite(trial)).any(axis=other))
    if bad_frames.size and np.isinf(np.take(trial, bad_frames, axis=time_axis)).any():
        where = layout.tree.where(layout.trial_file(variable, trial_id))
        raise SourceError(
            f"{where}: {variable} holds an infinite value; only finite values and NaN (padding) are valid"
        )
    return int(bad_frames[0]) if bad_frames.size else int(trial.shape[time_axis])


def uint8_codes(trial: np.ndarray, valid: int, time_axis: int, out: np.ndarray) -> str | None:
    """Write into ``out`` (``uint8``) the stored values of ``trial`` (float, stored layout,
    ``valid`` real frames) as format version 8 stores a ``uint8`` variable: its real
    frames' values, 0 in the padding frames. None if that holds every value (real frames
    of integers 0..255, padding frames all NaN), else what does not fit."""
    real = [slice(None)] * trial.ndim
    real[time_axis] = slice(0, valid)
    padding = list(real)
    padding[time_axis] = slice(valid, None)
    values, rest = trial[tuple(real)], trial[tuple(padding)]
    with np.errstate(invalid="ignore"):
        codes = values.astype(np.uint8)
    # A value survives the round trip through uint8 only if it is an integer 0..255.
    if not np.array_equal(codes, values) or np.signbit(values).any():
        return "holds a value other than an integer 0..255 in its real frames"
    if not np.isnan(rest).all():
        return "holds a value after its first padding (NaN) frame"
    out[tuple(real)] = codes
    out[tuple(padding)] = 0
    return None


def responses_withheld(trial: np.ndarray) -> bool:
    """Competition releases replace withheld responses by zeros: no non-zero real value."""
    if trial.dtype.kind != "f":
        return not np.count_nonzero(trial)
    # NaN counts as non-zero: withheld means every non-zero element is a NaN.
    return bool(np.count_nonzero(trial) == np.count_nonzero(np.isnan(trial)))
