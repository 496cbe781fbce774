"""The arrays of a store, as one declarative table, and the per-version rules.

``ARRAYS`` lists every array the format defines: its path (or path pattern), dimension
names, dtype rule, chunk rule, fill value rule, required array attributes and whether it
must exist. ``FormatSpec`` (one per version, ``spec(version)``) binds the table to a
store's attributes and holds what differs between versions (the trial order). The
converter creates arrays from it, ``verify`` walks it, and the reader checks what it opens
against it, all through ``Expected`` (one array's rules with the store's sizes filled in)
and ``array_problems`` (what an array's Zarr metadata breaks). Pure data and validation:
the metadata is the JSON-like dict of ``zarr.Array.metadata.to_dict()``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import StoreFormatError
from ._attrs import MouseAttrs
from ._bundle import BUNDLE, BUNDLE_DIM
from ._names import (
    ATTRS_KEY,
    BEHAVIOR,
    GRANULARITIES,
    HAS_RESPONSES,
    INDEX_GROUP,
    META_GROUP,
    META_NEURONS,
    META_STATISTICS,
    META_TRIALS,
    OVER_TRIALS_AND_TIME,
    PUPIL_CENTER,
    RESPONSES,
    SOURCE_TO_STORED_AXES,
    STATISTICS,
    STATISTICS_GROUP,
    TIER,
    TRIAL_ID,
    VALID_FRAMES,
    VARIABLES,
    VIDEOS,
)

__all__ = [
    "ARRAYS", "ARRAYS_V4", "ARRAYS_V3", "ARRAYS_V2",
    "AS_SOURCE", "BY_STAT", "STORED", "STRING", "NAN_IF_FLOAT", "ZARR_DEFAULT", "STATISTIC_DIMS",
    "META_DIMS", "META_TIERS", "TrialShards", "TrialBlocks", "Whole", "ArraySpec", "Expected", "FormatSpec", "SPECS",
    "spec", "DIMENSIONS", "TRIAL_ARRAYS", "time_axis", "dimension_conflicts", "array_problems", "check_array",
]

# -- rules -----------------------------------------------------------------------------

#: dtype rule: the stored dtype of the array's variable (``stored_dtypes``).
STORED = "<stored dtype of the variable>"
#: dtype (and shape, and dimension) rule: as the source file it mirrors.
AS_SOURCE = "<as the source>"
#: dtype rule of a statistic: ``min`` and ``max`` the variable's stored dtype (they are
#: source values, exact), ``count`` int64, the rest float64.
BY_STAT = "<by statistic>"
#: Zarr's variable-length text data type.
STRING = "string"
#: Fill value rules: NaN for a float array, so a chunk never written reads as NaN, never
#: as plausible zeros (Zarr's default for other dtypes); or Zarr's default (0) whatever
#: the dtype, which only the median statistics of versions 1 and 2 have (they were created
#: empty and written whole after the other statistics; version 3 fills them with NaN too).
NAN_IF_FLOAT = "NaN if float"
ZARR_DEFAULT = "Zarr's default"
#: Dimension rules: the variable's stored dimensions without ``trial`` (and without
#: ``time`` for ``trials_time``); the source mirror's (see ``meta_dimensions``).
STATISTIC_DIMS = "<variable's dimensions, reduced>"
META_DIMS = "<named from the source path>"


@dataclass(frozen=True)
class TrialShards:
    """Shards of ``trials_per_shard`` trials (the ``chunking`` options); an inner chunk is
    one trial, with axis ``axis`` cut into pieces of the option ``option``, the ``time``
    axis cut by the option ``time_option`` where the row has one and the store's
    ``chunking`` sets it (else whole), and every other axis whole."""

    axis: str
    option: str
    time_option: str | None = None


@dataclass(frozen=True)
class TrialBlocks:
    """No shards; one chunk per ``trials_per_shard`` trials, every other axis whole."""


@dataclass(frozen=True)
class Whole:
    """One chunk holding the whole array."""


ChunkRule = TrialShards | TrialBlocks | Whole


@dataclass(frozen=True)
class ArraySpec:
    """One row of the table. ``path`` may hold placeholders: ``<variable>``, ``<tier>``,
    ``<granularity>``, ``<stat>`` and ``<path>`` (any path below it). A path belongs to the
    first row that matches it."""

    path: str
    dims: tuple[str, ...] | str
    dtype: str
    chunks: ChunkRule
    required: bool = True
    fill: str = NAN_IF_FLOAT
    #: Array attributes under ``ATTRS_KEY`` that must hold these values.
    attributes: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""

    def pattern(self) -> re.Pattern[str]:
        parts = {
            "<variable>": "(?P<variable>" + "|".join(VARIABLES) + ")",
            "<tier>": "(?P<tier>[^/]+)",
            "<granularity>": "(?P<granularity>" + "|".join(GRANULARITIES) + ")",
            "<stat>": "(?P<stat>" + "|".join(STATISTICS) + ")",
            "<path>": "(?P<path>.+)",
        }
        regex = re.escape(self.path)
        for placeholder, group in parts.items():
            regex = regex.replace(re.escape(placeholder), group)
        return re.compile(regex + "$")


def _stat_dtype(stat: str) -> str:
    return {"min": STORED, "max": STORED, "count": "int64"}.get(stat, "float64")


def _table(
    channels: Mapping[str, str],
    index_dim: str,
    *,
    zero_filled_medians: bool,
    response_frames: str | None = None,
    bundle: bool = False,
) -> tuple[ArraySpec, ...]:
    """The rows of one version's table; what differs between versions is passed in."""
    medians = (
        ArraySpec(f"{STATISTICS_GROUP}/<tier>/<variable>/<granularity>/median", STATISTIC_DIMS, "float64", Whole(),
                  fill=ZARR_DEFAULT, doc="exact median over the statistics_tier trials"),
    ) if zero_filled_medians else ()
    bundles = (
        ArraySpec(BUNDLE, (BUNDLE_DIM,), "uint8", Whole(), fill=ZARR_DEFAULT,
                  doc="the small arrays opening and standardizing read, duplicated in one chunk"),
    ) if bundle else ()
    return (
        ArraySpec(VIDEOS, ("trial", "time", "height", "width"), STORED, TrialShards("time", "frames_per_video_chunk"),
                  doc="data/videos/<id>.npy (height, width, time), time moved first"),
        ArraySpec(RESPONSES, ("trial", "neuron", "time"), STORED,
                  TrialShards("neuron", "neurons_per_chunk", response_frames),
                  doc="data/responses/<id>.npy (neuron, time)"),
        ArraySpec(BEHAVIOR, ("trial", channels[BEHAVIOR], "time"), STORED, TrialBlocks(),
                  doc="data/behavior/<id>.npy; channel 0 pupil dilation, 1 running speed"),
        ArraySpec(PUPIL_CENTER, ("trial", channels[PUPIL_CENTER], "time"), STORED, TrialBlocks(),
                  doc="data/pupil_center/<id>.npy; channel 0 horizontal, 1 vertical"),
        ArraySpec(TRIAL_ID, ("trial",), "int64", Whole(), doc="trial id, unique, ascending within each tier"),
        ArraySpec(TIER, ("trial",), STRING, Whole(), doc="tier of each trial"),
        ArraySpec(VALID_FRAMES, ("trial", "variable"), "int32", Whole(), attributes={"variables": list(VARIABLES)},
                  doc="real frames per trial and variable"),
        ArraySpec(HAS_RESPONSES, ("trial",), "bool", Whole(), doc="false where responses are withheld"),
        ArraySpec(f"{INDEX_GROUP}/<tier>", (index_dim,), "int64", Whole(),
                  doc="positions along the trial axis of each tier in the tiers attribute"),
        *medians,
        ArraySpec(f"{STATISTICS_GROUP}/<tier>/<variable>/<granularity>/<stat>", STATISTIC_DIMS, BY_STAT, Whole(),
                  doc="statistics recomputed from the statistics_tier trials"),
        ArraySpec(f"{META_GROUP}/<path>", META_DIMS, AS_SOURCE, Whole(), required=False,
                  doc="every meta/**.npy of the source, values and shape unchanged"),
        *bundles,
    )


_CHANNELS_V3 = {BEHAVIOR: "behavior_channel", PUPIL_CENTER: "pupil_center_channel"}
#: Every array of the current format (version 5). The placeholder rows are expanded per
#: store by ``FormatSpec.required``; ``<tier>`` in a dimension name stands for the row's
#: tier. Each dimension name has one size in the whole store: the two-channel variables
#: name their channel axes apart, and each tier index its own axis. A response chunk may
#: cut the time axis too (``frames_per_response_chunk``), so a window of frames decodes
#: only its frames' chunks. The bundle (``_bundle``) duplicates the small arrays opening
#: reads, so opening is one read of them.
ARRAYS: tuple[ArraySpec, ...] = _table(
    _CHANNELS_V3, "<tier>_position", zero_filled_medians=False, response_frames="frames_per_response_chunk",
    bundle=True,
)
#: The table of version 4: no bundle.
ARRAYS_V4: tuple[ArraySpec, ...] = _table(
    _CHANNELS_V3, "<tier>_position", zero_filled_medians=False, response_frames="frames_per_response_chunk"
)
#: The table of version 3: a response chunk holds every frame of its trial.
ARRAYS_V3: tuple[ArraySpec, ...] = _table(_CHANNELS_V3, "<tier>_position", zero_filled_medians=False)
#: The table of versions 1 and 2: one ``channel`` name for both two-channel variables, one
#: ``position`` name for every tier index (so ``index/`` held one name at several sizes),
#: and medians created with Zarr's default fill value, 0.
ARRAYS_V2: tuple[ArraySpec, ...] = _table(
    {BEHAVIOR: "channel", PUPIL_CENTER: "channel"}, "position", zero_filled_medians=True
)

#: Dimension names of each stored variable in the current version. The source keeps time
#: last in every file; the store puts videos frame-major so one frame is contiguous. The
#: axes' order is the same in every version (only names changed), so axis positions can
#: be taken from here for any store.
DIMENSIONS: dict[str, tuple[str, ...]] = {
    s.path: s.dims for s in ARRAYS if s.path in VARIABLES and isinstance(s.dims, tuple)
}
#: Dimension names of the per-trial arrays (length n_trials, in stored trial order; the
#: same in every version).
TRIAL_ARRAYS: dict[str, tuple[str, ...]] = {
    s.path: s.dims
    for s in ARRAYS
    if s.path in (TRIAL_ID, TIER, VALID_FRAMES, HAS_RESPONSES) and isinstance(s.dims, tuple)
}
#: The ``meta/`` array whose length names the ``trial_id`` axis under ``meta/trials``.
META_TIERS = f"{META_TRIALS}/tiers"


def time_axis(variable: str, *, with_trial_axis: bool = True) -> int:
    """Position of ``time`` among ``variable``'s stored axes: in the stacked array, or
    (``with_trial_axis=False``) in one trial, whose leading trial axis is dropped."""
    axis = DIMENSIONS[variable].index("time")
    return axis if with_trial_axis else axis - 1


def dimension_conflicts(arrays: Iterable[tuple[str, Sequence[str | None], Sequence[int]]]) -> list[str]:
    """Every dimension name given more than one size by ``arrays`` (path, dimension names,
    shape), one phrase each naming two arrays that disagree; version 3 allows none."""
    first: dict[str, tuple[int, str]] = {}
    problems = []
    for path, dims, shape in arrays:
        for dim, size in zip(dims, shape, strict=False):
            if dim is None:
                continue
            seen = first.setdefault(dim, (int(size), path))
            if seen[0] != size:
                problems.append(f"dimension '{dim}' has size {size} in '{path}' but {seen[0]} in '{seen[1]}'")
                first[dim] = (int(size), path)  # one phrase per disagreeing pair, not per later array
    return problems


# -- one array, bound to a store --------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What one array of one store must be: ``dims``, ``dtype`` (a Zarr data type name) and
    ``shape`` (None where the store's attributes do not fix a size) are None where the
    source decides (``meta/``)."""

    path: str
    dims: tuple[str, ...] | None
    dtype: str | None
    shape: tuple[int | None, ...] | None
    chunks: ChunkRule
    fill: str
    required: bool
    attributes: Mapping[str, Any]
    variable: str | None = None


def _zarr_dtype(name: str) -> str:
    return STRING if name == STRING else np.dtype(name).name


@dataclass(frozen=True)
class FormatSpec:
    """The table bound to one format version, with that version's rules: the trial order,
    ``tier_major`` (from version 2: each tier one consecutive range, in the order of the
    ``tiers`` attribute) or not (version 1: ascending trial id throughout);
    ``consistent_dimensions`` (from version 3: each dimension name has one size in the
    whole store, so ``meta/`` axes take a shared name only at that name's size); and
    ``consolidated`` (from version 3: the root group holds the consolidated metadata of
    every array, so opening a store is one metadata read); ``every_chunk_present``
    (from version 3: see the field); ``bundle`` (from version 5: see the field); and
    ``c_order_shards`` (from version 6: see the field); ``uncoded_chunks`` (from version
    7: see the field); ``uint8_values`` (from version 8: see the field)."""

    version: int
    arrays: tuple[ArraySpec, ...]
    tier_major: bool
    #: From version 3 every chunk of every array is written, inner chunks of shards
    #: included, even one holding only the fill value; so a chunk file or a shard index
    #: entry that is missing is damage. Before, a chunk equal to the fill value was
    #: legitimately absent (zarr's ``write_empty_chunks=False``), and only the source can
    #: tell an absent chunk from a lost one.
    every_chunk_present: bool = False
    consistent_dimensions: bool = False
    consolidated: bool = False
    #: From version 5 the store holds the bundle (``format._bundle``): the small arrays
    #: opening and standardizing read, duplicated in one chunk, read instead of them.
    bundle: bool = False
    #: From version 6 every shard's inner chunks are stored in C order of the shard's grid
    #: of chunks (the converter writes them: ``converter._shards``), so a trial's chunks
    #: in a shard are one byte range; before, zarr-python's Morton order.
    c_order_shards: bool = False
    #: From version 7 a per-trial variable's chunks may be uncoded (codecs ``bytes`` and
    #: ``crc32c``, no Blosc): the converter stores a variable so when Blosc saves less than
    #: the chunking option ``min_blosc_saving`` percent of its first trial's bytes, and a
    #: read checks and copies such chunks instead of decoding them.
    uncoded_chunks: bool = False
    #: From version 8 a variable of the ``uint8_variables`` attribute is stored as
    #: ``uint8``: the converter stores videos so when every real frame of every trial holds
    #: only integers 0..255 and every padding frame only NaN; a read restores the stored
    #: dtype and the NaN padding (``restore_padding``).
    uint8_values: bool = False

    @property
    def dimensions(self) -> dict[str, tuple[str, ...]]:
        """Dimension names of each stored variable in this version."""
        return {s.path: s.dims for s in self.arrays if s.path in VARIABLES and isinstance(s.dims, tuple)}

    def index_dimensions(self, tier: str) -> tuple[str, ...]:
        """Dimension names of ``index/<tier>``."""
        row, _ = self.lookup(f"{INDEX_GROUP}/{tier}")
        return tuple(d.replace("<tier>", tier) for d in row.dims)

    def statistics_dimensions(self, variable: str, granularity: str) -> tuple[str, ...]:
        """Dimension names of one recomputed statistic of ``variable``."""
        dims = self.dimensions[variable][1:]
        if granularity == OVER_TRIALS_AND_TIME:
            return tuple(d for d in dims if d != "time")
        return dims

    def sizes(
        self, attrs: MouseAttrs, shapes: Mapping[str, tuple[int, ...]], variable: str | None = None
    ) -> dict[str, int]:
        """The size of every dimension name the store's attributes and ``shapes`` (stored
        shapes by path: the variables', and ``meta/trials/tiers``'s where known) fix;
        ``variable``'s own axes first (versions 1 and 2 name both channel axes alike)."""
        sizes = {"trial": attrs.n_trials, "neuron": attrs.n_neurons, "time": attrs.t_pad, "variable": len(VARIABLES)}
        order = [variable] if variable is not None else []
        if self.consistent_dimensions:
            order += list(VARIABLES)
        for name in order:
            if name in shapes:
                # height, width and the channel axes are fixed by the variable's own array.
                for dim, size in zip(self.dimensions[name], shapes[name], strict=False):
                    sizes.setdefault(dim, size)
        if META_TIERS in shapes and shapes[META_TIERS]:
            sizes.setdefault("trial_id", shapes[META_TIERS][0])
        return sizes

    def meta_dimensions(self, path: str, shape: tuple[int, ...], sizes: Mapping[str, int]) -> tuple[str, ...]:
        """Dimension names of the source mirror array at ``path`` (``meta/...``, no ``.npy``):
        ``trial_id`` first under ``meta/trials``, ``neuron`` first under ``meta/neurons`` when
        it has ``n_neurons`` entries, the source layout (time last) of a provided statistic.
        Every other axis is ``dim_<i>`` in versions 1 and 2; from version 3 it is named after
        the array (its path below ``meta/``, ``/`` as ``_``, then ``_dim_<i>``), and so is
        any axis whose size is not its name's size in the store (``sizes``)."""
        names: list[str | None] = [None] * len(shape)
        parts = path.split("/")
        if path.startswith(META_NEURONS + "/") and shape and shape[0] == sizes.get("neuron"):
            names[0] = "neuron"
        elif path.startswith(META_TRIALS + "/") and shape:
            names[0] = "trial_id"
        elif path.startswith(META_STATISTICS + "/") and len(parts) >= 3 and parts[2] in VARIABLES:
            stored = self.dimensions[parts[2]][1:]
            order = SOURCE_TO_STORED_AXES[parts[2]]
            source = [stored[order.index(i)] for i in range(len(order))]
            if len(source) == len(shape):
                names = list(source)
        if not self.consistent_dimensions:
            return tuple(name or f"dim_{i}" for i, name in enumerate(names))
        own = "_".join(parts[1:])
        return tuple(
            name if name is not None and sizes.get(name, size) == size else f"{own}_dim_{i}"
            for i, (name, size) in enumerate(zip(names, shape, strict=True))
        )

    def lookup(self, path: str) -> tuple[ArraySpec, dict[str, str]]:
        """The table row of ``path`` and its placeholders' values; KeyError if none."""
        for row in self.arrays:
            match = row.pattern().match(path)
            if match:
                return row, {k: v for k, v in match.groupdict().items() if v is not None}
        raise KeyError(path)

    def expected(
        self,
        path: str,
        attrs: MouseAttrs,
        shapes: Mapping[str, tuple[int, ...]] | None = None,
        *,
        source_shape: tuple[int, ...] | None = None,
    ) -> Expected:
        """The rules of the array at ``path`` in a store with ``attrs``; ``shapes`` (the
        variables' stored shapes, where known) fixes the sizes attributes do not, and
        ``source_shape`` names the axes of a ``meta/`` array. KeyError if the format
        defines no such array in this store (including an index of a tier not in
        ``tiers``)."""
        row, fields = self.lookup(path)
        tier = fields.get("tier")
        tiers = (attrs.statistics_tier,) if row.path.startswith(STATISTICS_GROUP + "/") else attrs.tiers
        if tier is not None and tier not in tiers:
            raise KeyError(path)  # a tier this store does not have
        variable = path if path in VARIABLES else fields.get("variable")
        sizes = self.sizes(attrs, shapes or {}, variable)
        if isinstance(row.dims, tuple):
            dims: tuple[str, ...] | None = tuple(d.replace("<tier>", tier or "<tier>") for d in row.dims)
        elif row.dims == STATISTIC_DIMS:
            dims = self.statistics_dimensions(fields["variable"], fields["granularity"])
        else:
            dims = None if source_shape is None else self.meta_dimensions(path, source_shape, sizes)
        dtype: str | None
        if row.dtype == STORED:
            dtype = _zarr_dtype(attrs.array_dtype(path))
        elif row.dtype == AS_SOURCE:
            dtype = None
        elif row.dtype == BY_STAT:
            rule = _stat_dtype(fields["stat"])
            dtype = _zarr_dtype(attrs.stored_dtypes[fields["variable"]] if rule == STORED else rule)
        else:
            dtype = _zarr_dtype(row.dtype)
        shape = None
        if row.dims != META_DIMS and dims is not None:
            shape = tuple(sizes.get(d) for d in dims)
        return Expected(path, dims, dtype, shape, row.chunks, row.fill, row.required, row.attributes, variable)

    def required(self, attrs: MouseAttrs, shapes: Mapping[str, tuple[int, ...]] | None = None) -> Iterator[Expected]:
        """Every array a store with ``attrs`` must hold (``meta/`` depends on the source and
        is not listed)."""
        seen: set[str] = set()
        for row in self.arrays:
            if not row.required:
                continue
            for path in _expand(row.path, attrs):
                if path not in seen:
                    seen.add(path)
                    yield self.expected(path, attrs, shapes)

    def check_tier_index(
        self,
        where: str,
        n_trials: int,
        trial_ids: np.ndarray,
        trial_tiers: np.ndarray,
        positions_by_tier: Mapping[str, np.ndarray],
    ) -> None:
        """Raise ``StoreFormatError`` unless the tier index arrays (in ``tiers`` order) hold
        every trial once, of their tier, by ascending position and trial id, in this
        version's order."""
        if len(np.unique(trial_ids)) != len(trial_ids):
            raise StoreFormatError(f"{where}: '{TRIAL_ID}' repeats a trial id; convert the source again")
        for tier, positions in positions_by_tier.items():
            name = f"{INDEX_GROUP}/{tier}"
            if positions.size and (positions.min() < 0 or positions.max() >= n_trials):
                raise StoreFormatError(
                    f"{where}: '{name}' points outside the {n_trials} trials; convert the source again"
                )
            # Both versions store a tier's trials by ascending position and trial id
            # (version 1 sorts all trials by id, version 2 groups them by tier first).
            if np.any(np.diff(positions) <= 0) or np.any(np.diff(trial_ids[positions]) <= 0):
                raise StoreFormatError(
                    f"{where}: '{name}' is not in ascending position and trial id order; convert the source again"
                )
            if self.tier_major and np.any(np.diff(positions) != 1):
                raise StoreFormatError(
                    f"{where}: '{name}' is not one consecutive range of trials, as format version "
                    f"{self.version} requires; convert the source again"
                )
            if not positions.size:
                raise StoreFormatError(
                    f"{where}: '{name}' is empty, but the tiers attribute lists only tiers with trials; "
                    "convert the source again"
                )
            if np.any(trial_tiers[positions] != tier):
                raise StoreFormatError(
                    f"{where}: '{name}' points at trials whose '{TIER}' is not {tier!r}; convert the source again"
                )
        every = np.concatenate(list(positions_by_tier.values())) if positions_by_tier else np.zeros(0, np.int64)
        if len(every) != n_trials or len(np.unique(every)) != n_trials:
            raise StoreFormatError(
                f"{where}: the tier index arrays cover {len(np.unique(every))} of the {n_trials} trials "
                f"({len(every)} positions); each trial must be in exactly one tier; convert the source again"
            )
        if self.tier_major and not np.array_equal(every, np.arange(n_trials)):
            raise StoreFormatError(
                f"{where}: the tiers' ranges do not follow one another in the order of the tiers attribute, "
                f"as format version {self.version} requires; convert the source again"
            )
        if not self.tier_major and np.any(np.diff(trial_ids) <= 0):
            raise StoreFormatError(
                f"{where}: '{TRIAL_ID}' is not ascending, as format version {self.version} requires; "
                "convert the source again"
            )


def _expand(pattern: str, attrs: MouseAttrs) -> Iterator[str]:
    values = {
        "<variable>": attrs.variables,
        "<tier>": attrs.tiers,
        "<granularity>": GRANULARITIES,
        "<stat>": STATISTICS,
    }
    if pattern.startswith(STATISTICS_GROUP + "/"):
        values["<tier>"] = (attrs.statistics_tier,)
    paths = [pattern]
    for placeholder, options in values.items():
        if placeholder in pattern:
            paths = [p.replace(placeholder, o) for p in paths for o in options]
    yield from paths


#: The rules every version from 3 keeps.
_FROM_V3: dict[str, bool] = dict(
    tier_major=True, consistent_dimensions=True, consolidated=True, every_chunk_present=True
)
SPECS: dict[int, FormatSpec] = {
    1: FormatSpec(1, ARRAYS_V2, tier_major=False),
    2: FormatSpec(2, ARRAYS_V2, tier_major=True),
    3: FormatSpec(3, ARRAYS_V3, **_FROM_V3),
    4: FormatSpec(4, ARRAYS_V4, **_FROM_V3),
    5: FormatSpec(5, ARRAYS, **_FROM_V3, bundle=True),
    6: FormatSpec(6, ARRAYS, **_FROM_V3, bundle=True, c_order_shards=True),
    7: FormatSpec(7, ARRAYS, **_FROM_V3, bundle=True, c_order_shards=True, uncoded_chunks=True),
    8: FormatSpec(8, ARRAYS, **_FROM_V3, bundle=True, c_order_shards=True, uncoded_chunks=True, uint8_values=True),
}


def spec(version: int) -> FormatSpec:
    """The rules of format ``version`` (one of ``SUPPORTED_FORMAT_VERSIONS``)."""
    return SPECS[version]


# -- checking an array's metadata --------------------------------------------------------


def _codecs_have_checksum(codecs: Any) -> bool:
    """Whether every chunk the codec chain writes ends in a CRC32C checksum, including the
    inner chunks and the index of a shard."""
    names = [c.get("name") for c in codecs]
    for codec in codecs:
        if codec.get("name") == "sharding_indexed":
            config = codec.get("configuration", {})
            return _codecs_have_checksum(config.get("codecs", ())) and _codecs_have_checksum(
                config.get("index_codecs", ())
            )
    return "crc32c" in names


def _is_nan(value: Any) -> bool:
    if isinstance(value, str):
        return value == "NaN"
    try:
        return bool(math.isnan(value))
    except TypeError:
        return False


def array_problems(expected: Expected, metadata: Mapping[str, Any]) -> list[str]:
    """What the array's Zarr metadata (``zarr.Array.metadata.to_dict()``) breaks of
    ``expected``, one phrase each, starting with the array's path."""
    path = expected.path
    problems = []
    dims = tuple(metadata.get("dimension_names") or ())
    shape = tuple(metadata.get("shape", ()))
    if len(dims) != len(shape) or any(d is None for d in dims):
        problems.append(f"'{path}' has dimension_names {metadata.get('dimension_names')}, expected one per axis")
    elif expected.dims is not None and dims != expected.dims:
        problems.append(f"'{path}' has dimension_names {dims}, expected {expected.dims}")
    if expected.shape is not None and (
        len(shape) != len(expected.shape)
        or any(e is not None and e != s for e, s in zip(expected.shape, shape, strict=True))
    ):
        wanted = tuple("?" if s is None else s for s in expected.shape)
        problems.append(f"'{path}' has shape {shape}, expected {wanted}".replace("'?'", "?"))
    data_type = metadata.get("data_type")
    if expected.dtype is not None and data_type != expected.dtype:
        problems.append(f"'{path}' has data type {data_type}, expected {expected.dtype}")
    if not _codecs_have_checksum(metadata.get("codecs", ())):
        problems.append(f"'{path}' has chunks without a crc32c checksum")
    is_float = isinstance(data_type, str) and data_type.startswith("float")
    if expected.fill == NAN_IF_FLOAT and is_float and not _is_nan(metadata.get("fill_value")):
        problems.append(f"'{path}' has fill value {metadata.get('fill_value')!r}, expected NaN")
    if expected.attributes:
        found = (metadata.get("attributes") or {}).get(ATTRS_KEY) or {}
        for key, value in expected.attributes.items():
            if found.get(key) != value:
                problems.append(f"'{path}' has attribute {ATTRS_KEY}.{key} = {found.get(key)!r}, expected {value!r}")
    return problems


def check_array(where: str, expected: Expected, metadata: Mapping[str, Any]) -> None:
    """Raise ``StoreFormatError`` (one line: the store and the first problem) unless the
    array's metadata follows ``expected``."""
    problems = array_problems(expected, metadata)
    if problems:
        raise StoreFormatError(f"{where}: {problems[0]}; convert the source again")

