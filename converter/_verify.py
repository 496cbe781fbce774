"""Verification stage: compare every array and attribute of a store with its source.
Entry point: ``verify``.

What the source fixes is compared with it: the root attributes (sizes, tiers, mouse,
dtypes, config, lossy options, chunking), every stored value of the four variables, the
``meta/`` mirror. What the converter derives is derived again from the source and
compared: the per-trial arrays, every ``index/<tier>``, and the recomputed statistics
(mean, std, min, max and count streamed from the source's train trials one block of
trials at a time with the converter's ``Moments``, mean and std equal within
``STATISTICS_RTOL``; medians exactly, with numpy's ``nanmedian`` over blocks of the
verified store, whose values were just compared with the source). The format's table
(``sensorium_zarr.format``) is walked too: every required array present with its dims,
dtype, shape, chunk rule, checksums and fill value, and no array it does not define.

Completeness: every chunk and shard key of every array is listed, and every shard's index
read (its CRC32C checked). In a format version 3 store a missing chunk file or an inner
chunk a shard index marks empty is damage; in a version 1 or 2 store a chunk equal to the
fill value was legitimately not written, so an absent one is reported only where the
source says it holds something else. Reading every chunk checks its checksum too.

The bundle (format version 5) must hold exactly the members the format bundles for the
store, each equal to the array it duplicates (which is compared with the source).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any

import numpy as np
import zarr
from dask.base import compute
from dask.delayed import delayed
from zarr.codecs import BloscCodec, Crc32cCodec

from sensorium_zarr import _chunks
from sensorium_zarr import format as fmt
from sensorium_zarr._engine import ZARR, open_array, parse_engine
from sensorium_zarr._location import Remote, is_url
from sensorium_zarr._store import open_store
from sensorium_zarr.errors import SensoriumZarrError, StoreFormatError

from ._chunking import Chunking
from ._source import SourceLayout, scan_source
from ._statistics import Moments
from ._writer import bundle_paths, real_frames, responses_withheld, store_shapes, stored_shape

__all__ = ["verify", "FLOAT32_OPTION", "STATISTICS_RTOL"]

#: The lossy option ``--float32`` records in the ``lossy`` attribute.
FLOAT32_OPTION = "float64 stored as float32"
#: Relative tolerance of the streamed mean and std: verify adds the train trials in other
#: blocks and another order than the conversion's parallel chains did, which changes the
#: last bits of a float64 sum; min, max, count and the medians are compared exactly.
STATISTICS_RTOL = 1e-9
#: Bytes of float64 train values one median block holds.
MEDIAN_BLOCK_BYTES = 64 * 2**20
#: Along which stored axis (trial axis included) median blocks cut each variable: one
#: that is neither trial nor time, so both granularities come from one block.
_MEDIAN_AXIS = {fmt.VIDEOS: 2, fmt.RESPONSES: 1, fmt.BEHAVIOR: 1, fmt.PUPIL_CENTER: 1}


def verify(
    source: Path | str | Remote,
    store: Path | str | Remote,
    *,
    workers: int | None = None,
    engine: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Every difference between ``source`` (mouse folder or zip, on disk or a URL) and
    ``store`` (a folder, or a URL), URLs read with ``storage_options``, one line each; an empty list means the store
    holds what the source holds (exactly, or rounded as the store's ``lossy`` attribute
    says)."""
    target: Path | Remote
    if isinstance(store, Remote):
        target = store
    elif isinstance(store, str) and is_url(store):
        target = Remote.of(store, storage_options)
    else:
        target = Path(store)
    engine = ZARR if isinstance(target, Remote) and engine is None else parse_engine(engine)
    layout = scan_source(source, storage_options)
    root, attrs = open_store(target)
    spec = fmt.spec(attrs.format_version)
    problems = _attribute_problems(attrs, layout)
    ids, tiers = _expected_order(layout, spec)
    stored_ids = _read(root, fmt.TRIAL_ID, problems)
    if stored_ids is None or not np.array_equal(stored_ids, ids):
        problems.append(f"{fmt.TRIAL_ID}: store holds trials {_ids(stored_ids)}, source has {_ids(ids)}")
        return problems
    problems.extend(_layout_problems(root, attrs, layout))
    present = dict(_arrays(root))
    missing = {path: list(_chunks.missing_chunks(array)) for path, array in present.items()}

    expected: dict[str, np.ndarray] = {fmt.TRIAL_ID: ids, fmt.TIER: tiers}
    for tier in fmt.ordered_tiers(set(tiers)):
        expected[f"{fmt.INDEX_GROUP}/{tier}"] = np.flatnonzero(tiers == tier).astype(np.int64)

    train = np.flatnonzero(tiers == fmt.STATISTICS_TIER)
    step = max(1, int(attrs.chunking.get("trials_per_shard", 8)))
    layout_leaf = delayed(layout, traverse=False)
    tasks = []
    for lo in range(0, len(ids), step):
        hi = min(lo + step, len(ids))
        holes = {v: [m for m in missing.get(v, []) if m[1][0].start < hi and m[1][0].stop > lo] for v in fmt.VARIABLES}
        tasks.append(delayed(_verify_block)(
            layout_leaf, target, ids[lo:hi], lo, train[(train >= lo) & (train < hi)] - lo, engine,
            spec.every_chunk_present, holes, attrs,
        ))
    results: tuple[_Block, ...] = compute(*tasks, scheduler="threads", num_workers=workers)  # type: ignore[no-untyped-call]
    for block in results:
        problems.extend(block.problems)
    if results:
        expected[fmt.VALID_FRAMES] = np.concatenate([b.valid for b in results])
        expected[fmt.HAS_RESPONSES] = np.concatenate([b.has_responses for b in results])
    valid = expected.get(fmt.VALID_FRAMES)
    expected.update(_statistics(layout, results, target, train, engine, problems, {
        v: valid[train, fmt.VARIABLES.index(v)] for v in attrs.uint8_variables if valid is not None
    }))
    meta_paths = []
    for rel in sorted(layout.meta_files):
        path = rel[: -len(".npy")]
        meta_paths.append(path)
        values = layout.read_meta(rel)
        expected[path] = values

    opener = _Opener(target, engine)
    for path, values in expected.items():
        if path not in present:
            if path in meta_paths:
                problems.append(f"{path}: missing from the store")
            continue  # a required array: reported missing by the table's walk
        stored = _read(opener, path, problems)
        if stored is None:
            continue
        problems.extend(_compare(path, stored, values, layout, meta=path in meta_paths))
        problems.extend(_chunk_problems(path, missing.get(path, []), values, spec.every_chunk_present))
    if spec.bundle and fmt.BUNDLE in present:
        lost = missing.get(fmt.BUNDLE, [])
        if lost:
            problems.extend(_chunk_problems(fmt.BUNDLE, lost, np.ones(1, np.uint8), spec.every_chunk_present))
        else:
            problems.extend(_bundle_problems(root, attrs, present[fmt.BUNDLE], str(target)))
    for path in present:
        if path not in expected and path not in fmt.VARIABLES and path != fmt.BUNDLE:
            _read(opener, path, problems)  # not derivable (already reported): still check its checksums
    return problems


def _bundle_problems(root: zarr.Group, attrs: fmt.MouseAttrs, array: zarr.Array[Any], where: str) -> list[str]:
    """What the bundle (format version 5) breaks: unreadable, other members than the
    format bundles for this store, or a member whose values are not those of the array
    it duplicates (which were compared with the source above)."""
    problems: list[str] = []
    data = _read(root, fmt.BUNDLE, problems)
    if data is None:
        return problems
    try:
        members = fmt.unpack_bundle(where, data, fmt.listed_members(array.attrs))
        wanted = bundle_paths(root, attrs)
    except (StoreFormatError, KeyError, TypeError) as e:
        return [f"{fmt.BUNDLE}: {e}"]
    problems += [f"{fmt.BUNDLE}: lacks member '{p}' (in {where})" for p in wanted if p not in members]
    problems += [f"{fmt.BUNDLE}: holds '{p}', which it must not (in {where})" for p in members if p not in wanted]
    for path in wanted:
        if path not in members:
            continue
        stored = _read(root, path, [])  # an unreadable array is reported above
        if stored is not None and not _same(members[path], stored):
            problems.append(f"{fmt.BUNDLE}: member '{path}' differs from the array it duplicates (in {where})")
    return problems


def _same(member: np.ndarray, stored: np.ndarray) -> bool:
    if stored.dtype.kind in "OTU":
        text = np.asarray(stored.tolist() if stored.size else [], dtype=str).reshape(stored.shape)
        return member.dtype.kind == "U" and member.shape == text.shape and bool(np.all(member == text))
    if member.dtype != stored.dtype or member.shape != stored.shape:
        return False
    return bool(np.array_equal(member, stored, equal_nan=stored.dtype.kind in "fc"))


# -- attributes -------------------------------------------------------------------------


def _attribute_problems(attrs: fmt.MouseAttrs, layout: SourceLayout) -> list[str]:
    """What the root attributes say that the source does not."""
    problems = []

    def differs(key: str, stored: Any, source: Any) -> None:
        if stored != source:
            problems.append(f"attribute {key}: store has {stored!r}, source {source!r}")

    differs("mouse", attrs.mouse, layout.name)
    differs("n_trials", attrs.n_trials, layout.n_trials)
    differs("n_neurons", attrs.n_neurons, layout.n_neurons)
    differs("t_pad", attrs.t_pad, layout.t_pad)
    differs("source", attrs.source, layout.tree.path.name)
    differs("source_dtypes", attrs.source_dtypes, layout.source_dtypes)
    differs("tiers", list(attrs.tiers), list(fmt.ordered_tiers(set(str(t) for t in layout.trial_tiers))))
    differs("config", attrs.config, layout.config)
    differs("frame_rate", attrs.frame_rate, fmt.FRAME_RATE_HZ)
    rounded = []
    for variable in fmt.VARIABLES:
        source, stored = np.dtype(layout.dtypes[variable]), attrs.stored_dtypes[variable]
        if stored == source.name:
            continue
        if source == np.float64 and stored == "float32" and FLOAT32_OPTION in attrs.lossy:
            rounded.append(variable)
            continue
        problems.append(
            f"attribute stored_dtypes: {variable} stored as {stored}, the source is {source.name}"
            + ("" if FLOAT32_OPTION in attrs.lossy else " and the lossy attribute lists no option")
        )
    unknown = [o for o in attrs.lossy if o != FLOAT32_OPTION]
    if unknown:
        problems.append(f"attribute lossy: unknown options {unknown}; the only one is {FLOAT32_OPTION!r}")
    if FLOAT32_OPTION in attrs.lossy and not rounded:
        problems.append(f"attribute lossy: lists {FLOAT32_OPTION!r}, but no variable is stored rounded")
    try:
        chunking = Chunking.recorded(attrs.chunking)
    except (TypeError, ValueError) as e:
        problems.append(f"attribute chunking: {e}")
    else:
        if layout.n_trials and chunking.trials_per_shard > layout.n_trials:
            problems.append(
                f"attribute chunking: trials_per_shard {chunking.trials_per_shard} is more than the "
                f"{layout.n_trials} trials (the converter caps it)"
            )
    return problems


def _expected_order(layout: SourceLayout, spec: fmt.FormatSpec) -> tuple[np.ndarray, np.ndarray]:
    """Trial ids and tiers in the order this store's version stores them."""
    ids = np.asarray(layout.trial_ids, dtype=np.int64)
    tiers = np.asarray([str(t) for t in layout.trial_tiers], dtype=str)
    order = fmt.stored_trial_order(ids, tiers) if spec.tier_major else np.argsort(ids, kind="stable")
    return ids[order], tiers[order]


def _layout_problems(root: zarr.Group, attrs: fmt.MouseAttrs, layout: SourceLayout) -> list[str]:
    """What the store's arrays break of the format's table, from their metadata: each
    array's own (``zarr.json``), and the root's consolidated copy where the version has one."""
    spec = fmt.spec(attrs.format_version)
    shapes = store_shapes(layout)
    # The arrays' own metadata, not the consolidated copy the reader trusts: that copy is
    # what is checked against them.
    own = zarr.open_group(root.store, mode="r", zarr_format=3, use_consolidated=False)
    present = dict(_arrays(own))
    problems = []
    if spec.consolidated:
        problems.extend(_consolidated_problems(root, present))
    if spec.consistent_dimensions:
        problems.extend(
            fmt.dimension_conflicts(
                (path, _dimension_names(array), array.shape) for path, array in present.items()
            )
        )
    for expected in spec.required(attrs, shapes):
        if expected.path not in present:
            problems.append(f"{expected.path}: missing from the store")
    try:
        chunking: Chunking | None = Chunking.recorded(attrs.chunking)
    except (TypeError, ValueError):
        chunking = None  # reported with the attributes
    for path, array in present.items():
        try:
            expected = spec.expected(path, attrs, shapes, source_shape=tuple(array.shape))
        except KeyError:
            problems.append(f"{path}: an array the format does not define")
            continue
        problems.extend(f"{p}" for p in fmt.array_problems(expected, array.metadata.to_dict()))
        if isinstance(expected.chunks, fmt.Whole):
            if array.shards is not None or (all(array.shape) and tuple(array.chunks) != tuple(array.shape)):
                problems.append(f"{path}: chunks {array.chunks}, expected one chunk of the whole array")
        elif chunking is not None and expected.dims is not None:
            chunks, shards = chunking.layout_rule(expected.chunks, expected.dims, tuple(array.shape))
            if (tuple(array.chunks), array.shards) != (chunks, shards):
                problems.append(
                    f"{path}: chunks {array.chunks} in shards {array.shards}, "
                    f"the chunking attribute says {chunks} in {shards}"
                )
            problems.extend(_codec_problems(path, array, chunking))
    return problems


def _codec_problems(path: str, array: zarr.Array[Any], chunking: Chunking) -> list[str]:
    """Whether the Blosc options of the per-trial array at ``path`` (of its inner chunks,
    where sharded) are those its store's ``chunking`` attribute records."""
    wanted = chunking.compressors(path, array.dtype.itemsize)[0]
    found = next((c for c in array.compressors if isinstance(c, BloscCodec)), None)
    if found is None:
        if [type(c) for c in array.compressors] == [Crc32cCodec] and not chunking.min_blosc_saving:
            return [f"{path}: stored uncoded, but the chunking attribute's min_blosc_saving is 0 (always Blosc)"]
        return []  # uncoded as the option allows; any other chain the format table's own codec check reports
    if _blosc_options(found) != _blosc_options(wanted):
        return [f"{path}: Blosc {_blosc_options(found)}; the chunking attribute says {_blosc_options(wanted)}"]
    return []


def _blosc_options(codec: BloscCodec) -> str:
    return f"{codec.cname.value} level {codec.clevel}, {codec.shuffle.value}"


def _dimension_names(array: zarr.Array[Any]) -> tuple[str | None, ...]:
    names = array.metadata.to_dict().get("dimension_names")
    return tuple(n if isinstance(n, str) else None for n in names) if isinstance(names, (list, tuple)) else ()


def _consolidated_problems(root: zarr.Group, present: dict[str, zarr.Array[Any]]) -> list[str]:
    consolidated = root.metadata.consolidated_metadata
    if consolidated is None:
        return ["zarr.json: no consolidated metadata, which this format version requires"]
    entries = {path: meta.to_dict() for path, meta in consolidated.flattened_metadata.items()}
    listed = {path: meta for path, meta in entries.items() if meta.get("node_type") == "array"}
    problems = [f"{path}: missing from the consolidated metadata" for path in sorted(set(present) - set(listed))]
    problems += [
        f"{path}: in the consolidated metadata, not in the store" for path in sorted(set(listed) - set(present))
    ]
    problems += [
        f"{path}: its consolidated metadata differs from its zarr.json"
        for path in sorted(set(present) & set(listed))
        if listed[path] != present[path].metadata.to_dict()
    ]
    return problems


# -- the per-trial variables, one block of trials at a time -------------------------------


@dataclass
class _Block:
    problems: list[str] = field(default_factory=list)
    valid: np.ndarray = field(default_factory=lambda: np.zeros((0, len(fmt.VARIABLES)), np.int32))
    has_responses: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    moments: dict[str, Moments] = field(default_factory=dict)


def _verify_block(
    layout: SourceLayout,
    store: Path | Remote,
    trial_ids: np.ndarray,
    lo: int,
    train: np.ndarray,
    engine: str,
    every_chunk: bool,
    holes: dict[str, list[tuple[str, tuple[slice, ...]]]],
    attrs: fmt.MouseAttrs,
) -> _Block:
    """Trials ``lo:lo + len(trial_ids)``: stored values against the source, their real
    frames and withheld flags, the streamed moments of the ``train`` ones (positions
    within the block), and what of the block's chunks is missing. A ``uint8`` variable's
    stored trial is compared as a reader restores it, with the source's real frames."""
    n = len(trial_ids)
    out = _Block(valid=np.zeros((n, len(fmt.VARIABLES)), np.int32), has_responses=np.zeros(n, bool))
    opener = _Opener(store, engine)
    for column, variable in enumerate(fmt.VARIABLES):
        block = _read(opener, variable, out.problems, slice(lo, lo + n))
        time_axis = fmt.time_axis(variable, with_trial_axis=False)
        trials: list[np.ndarray | None] = []
        for i, trial_id in enumerate(trial_ids):
            where = layout.tree.where(layout.trial_file(variable, int(trial_id)))
            try:
                source = layout.read_trial(variable, int(trial_id))
            except SensoriumZarrError as e:
                out.problems.append(str(e))
                trials.append(None)
                continue
            coded = variable in attrs.uint8_variables
            if coded:
                dtype = np.dtype(attrs.stored_dtypes[variable])
            else:
                dtype = block.dtype if block is not None else np.dtype(source.dtype)
            expected = np.ascontiguousarray(source.transpose(fmt.SOURCE_TO_STORED_AXES[variable]).astype(dtype))
            trials.append(expected)
            out.valid[i, column] = real_frames(expected, time_axis)
            if variable == fmt.RESPONSES:
                out.has_responses[i] = not responses_withheld(expected)
            if block is None:
                continue
            stored = block[i]
            if coded:
                real = out.valid[i : i + 1, column]
                frames = slice(0, stored.shape[time_axis])
                if np.moveaxis(stored, time_axis, 0)[fmt.padding_frames(real, frames)[0]].any():
                    out.problems.append(
                        f"{variable} trial {trial_id}: its uint8 padding frames hold values other than 0"
                    )
                stored = fmt.restore_padding(stored[None].astype(dtype), real, frames, time_axis + 1)[0]
            if not np.array_equal(stored, expected, equal_nan=True):
                out.problems.append(
                    f"{variable} trial {trial_id}: {_difference(stored, expected)} vs {where}"
                )
        train_trials = [trials[i] for i in train]
        if len(train_trials) and all(t is not None for t in train_trials):
            moments = Moments.empty(train_trials[0].shape)
            moments.add_block(np.stack(train_trials))
            out.moments[variable] = moments
        for what, region in holes.get(variable, []):
            values = [trials[i - lo] for i in range(region[0].start, region[0].stop)]
            if every_chunk or any(t is None or _holds_values(t[region[1:]]) for t in values):
                out.problems.append(f"{variable}: {what} is missing{_damaged(every_chunk)}")
    return out


def _holds_values(values: np.ndarray) -> bool:
    """Whether ``values`` hold anything but the fill value (NaN if float, else 0)."""
    if values.dtype.kind == "f":
        return not bool(np.isnan(values).all())
    if values.dtype.kind in "OUST":
        return any(str(v) != "" for v in values.ravel())
    return bool(np.any(values != np.zeros((), values.dtype)))


def _damaged(every_chunk: bool) -> str:
    return (" (format version 3 stores every chunk: the store is damaged)" if every_chunk
            else " though the source holds values there")


def _chunk_problems(
    path: str, missing: list[tuple[str, tuple[slice, ...]]], expected: np.ndarray, every_chunk: bool
) -> list[str]:
    problems = []
    for what, region in missing:
        if every_chunk or _holds_values(np.asarray(expected[region])):
            problems.append(f"{path}: {what} is missing{_damaged(every_chunk)}")
    return problems


# -- statistics ---------------------------------------------------------------------------


def _statistics(
    layout: SourceLayout,
    blocks: tuple[_Block, ...],
    store: Path | Remote,
    train: np.ndarray,
    engine: str,
    problems: list[str],
    valid: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Every recomputed statistic derived again: moments from the source blocks, medians
    from the verified store (``valid``: the train trials' real frame counts from the
    source, of each ``uint8`` variable, whose padding they restore)."""
    out: dict[str, np.ndarray] = {}
    for variable in fmt.VARIABLES:
        shape = stored_shape(layout, variable)[1:]
        moments = Moments.empty(shape)
        for block in blocks:
            if variable in block.moments:
                moments = moments.merge(block.moments[variable])
        time_axis = fmt.time_axis(variable, with_trial_axis=False)
        for granularity, result in (
            (fmt.OVER_TRIALS, moments.finalize()),
            (fmt.OVER_TRIALS_AND_TIME, moments.reduce(time_axis).finalize()),
        ):
            for stat, values in result.items():
                out[fmt.statistics_path(variable, granularity, stat)] = values
        try:
            medians = _medians(store, variable, train, engine, valid.get(variable))
        except Exception as e:  # a damaged chunk; reported where the variable is compared
            problems.append(f"statistics/{fmt.STATISTICS_TIER}/{variable}: medians not recomputed ({type(e).__name__})")
            continue
        for granularity, values in medians.items():
            out[fmt.statistics_path(variable, granularity, "median")] = values
    return out


def _medians(
    store: Path | Remote, variable: str, train: np.ndarray, engine: str, valid: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Both medians of ``variable`` over the ``train`` trials, numpy's ``nanmedian`` on
    blocks of the stored values cut along ``_MEDIAN_AXIS``, each within
    ``MEDIAN_BLOCK_BYTES``."""
    data = open_array(_Opener(store, engine).store, variable, engine)
    axis = _MEDIAN_AXIS[variable]
    time_axis = fmt.time_axis(variable)
    shape = tuple(data.shape)
    per_index = 8 * len(train) * math.prod(s for a, s in enumerate(shape) if a not in (0, axis))
    size = max(1, MEDIAN_BLOCK_BYTES // max(per_index, 1))
    over_trials, pooled = [], []
    runs = np.split(train, np.flatnonzero(np.diff(train) != 1) + 1) if len(train) else []
    for lo in range(0, shape[axis], size):
        hi = min(lo + size, shape[axis])
        region: list[slice] = [slice(None)] * len(shape)
        region[axis] = slice(lo, hi)
        parts = []
        done = 0
        for run in runs:
            region[0] = slice(int(run[0]), int(run[-1]) + 1)
            part = np.asarray(data[tuple(region)], dtype=np.float64)
            if valid is not None:
                frames = region[time_axis] if axis == time_axis else slice(0, shape[time_axis])
                fmt.restore_padding(part, valid[done : done + len(run)], frames, time_axis)
            done += len(run)
            parts.append(part)
        block_shape = list(shape)
        block_shape[0], block_shape[axis] = 0, hi - lo
        values = np.concatenate(parts) if parts else np.zeros(block_shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN, as the format says
            over_trials.append(_nanmedian(values, (0,)))
            pooled.append(_nanmedian(values, (0, time_axis)))
    return {
        fmt.OVER_TRIALS: np.concatenate(over_trials, axis=axis - 1),
        fmt.OVER_TRIALS_AND_TIME: np.concatenate(pooled, axis=axis - 1 - int(time_axis < axis)),
    }


def _nanmedian(values: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    if values.shape[0] == 0:
        shape = tuple(s for a, s in enumerate(values.shape) if a not in axes)
        return np.full(shape, np.nan)
    return np.asarray(np.nanmedian(values, axis=axes))


# -- comparing ----------------------------------------------------------------------------


def _compare(path: str, stored: np.ndarray, expected: np.ndarray, layout: SourceLayout, *, meta: bool) -> list[str]:
    where = f"differs from {layout.tree.where(path + '.npy')}" if meta else "differs from the source"
    if expected.dtype.kind in "US" or stored.dtype.kind in "OUT":
        stored = np.asarray([str(s) for s in stored.ravel()], dtype=str).reshape(stored.shape)
        expected = np.asarray(expected).astype(str)
    if stored.shape != expected.shape:
        return [f"{path}: {where}: shape {stored.shape} stored, {expected.shape} expected"]
    stat = path.rsplit("/", 1)[-1] if path.startswith(fmt.STATISTICS_GROUP + "/") else None
    if stat in ("mean", "std"):
        same = np.isclose(stored, expected, rtol=STATISTICS_RTOL, atol=0.0, equal_nan=True)
        if not same.all():
            return [f"{path}: {where} (beyond a relative {STATISTICS_RTOL:g}): {_difference(stored, expected)}"]
        return []
    nan = expected.dtype.kind == "f" and stored.dtype.kind == "f"
    if not np.array_equal(stored, expected, equal_nan=nan):
        return [f"{path}: {where}: {_difference(stored, expected)}"]
    return []


def _difference(stored: np.ndarray, expected: np.ndarray) -> str:
    if stored.shape != expected.shape:
        return f"shape {stored.shape} stored, {expected.shape} in the source"
    if stored.dtype.kind == "f" and expected.dtype.kind == "f":
        both_nan = np.isnan(stored) & np.isnan(expected)
    else:
        both_nan = np.zeros(stored.shape, bool)
    differs = ~((stored == expected) | both_nan)
    if not differs.any():
        return "values differ"
    first = tuple(int(i) for i in np.argwhere(differs)[0])
    return (f"{int(differs.sum())} values differ (first at {first}: stored {stored[first]!r}, "
            f"source {expected[first]!r})")


class _Opener:
    """``opener[path]``: an array of the store, opened for ``engine``."""

    def __init__(self, store: Path | Remote, engine: str) -> None:
        self.store: Any = store.store(read_only=True) if isinstance(store, Remote) else str(store)
        self.engine = engine

    def __getitem__(self, path: str) -> zarr.Array[Any]:
        try:
            return open_array(self.store, path, self.engine)
        except FileNotFoundError as e:
            raise KeyError(path) from e


def _read(
    root: zarr.Group | _Opener, path: str, problems: list[str], selection: slice | EllipsisType = Ellipsis
) -> np.ndarray | None:
    try:
        node = root[path]
        if not isinstance(node, zarr.Array):
            raise KeyError(path)
        return np.asarray(node[selection])
    except KeyError:
        problems.append(f"{path}: missing from the store")
    except Exception as e:  # a failed checksum or a damaged file, whatever zarr raises
        where = f" [{selection.start}:{selection.stop}]" if isinstance(selection, slice) else ""
        problems.append(f"{path}{where}: unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    return None


def _ids(ids: np.ndarray | None) -> str:
    if ids is None:
        return "nothing readable"
    return f"{len(ids)} ids" + (f" {int(ids[0])}..{int(ids[-1])}" if len(ids) else "")


def _arrays(group: zarr.Group, prefix: str = "") -> Iterator[tuple[str, zarr.Array[Any]]]:
    for name, node in group.members():
        path = f"{prefix}{name}"
        if isinstance(node, zarr.Array):
            yield path, node
        else:
            yield from _arrays(node, path + "/")
