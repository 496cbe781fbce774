"""The sensorium-zarr on-disk format, defined once for the converter and the reader.

Pure data and validation, no I/O: the converter writes what this module names and the
reader checks what it finds against it. ``docs/FORMAT.md`` is the prose version; keep
both in step (a test checks that every name here appears there).

Format versions (each entry is its changelog):

- 1: first release. One Zarr v3 group per mouse: the four per-trial variables stacked on a
  ``trial`` axis, per-trial index arrays, per-tier index arrays, the source ``meta/``
  arrays as they were, and statistics recomputed from the ``train`` tier.
- 2: trials are stored tier-major (``stored_trial_order``): grouped by tier in experiment
  order, ascending trial id within a tier, so every tier is one contiguous range of the
  ``trial`` axis. Reading a tier then decodes no chunk of another tier (one neuron across
  the ``train`` trials decoded 720 chunks in version 1, 350 now). Nothing else changed;
  version 1 stores (ascending trial id throughout) stay readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import FormatVersionError, IncompleteStoreError, SelectionError, StoreFormatError

FORMAT_VERSION = 2
SUPPORTED_FORMAT_VERSIONS: tuple[int, ...] = (1, 2)

#: Root group attribute holding every format-level attribute.
ATTRS_KEY = "sensorium_zarr"
#: Per-array attribute (under ATTRS_KEY) with the numpy dtype of a ``meta/`` source array,
#: set where the stored Zarr dtype differs from it (fixed-width unicode is stored as text).
SOURCE_DTYPE_KEY = "source_dtype"

FRAME_RATE_HZ = 30

# Per-trial variables, in the order used by every per-variable axis (e.g. ``valid_frames``).
VIDEOS = "videos"
RESPONSES = "responses"
BEHAVIOR = "behavior"
PUPIL_CENTER = "pupil_center"
VARIABLES: tuple[str, ...] = (VIDEOS, RESPONSES, BEHAVIOR, PUPIL_CENTER)

#: Dimension names of each stored variable. The source keeps time last in every file; the
#: store puts videos frame-major so one frame is contiguous.
DIMENSIONS: dict[str, tuple[str, ...]] = {
    VIDEOS: ("trial", "time", "height", "width"),
    RESPONSES: ("trial", "neuron", "time"),
    BEHAVIOR: ("trial", "channel", "time"),
    PUPIL_CENTER: ("trial", "channel", "time"),
}
#: Axis order that turns one source trial array (time last) into the stored layout
#: (without the leading trial axis).
SOURCE_TO_STORED_AXES: dict[str, tuple[int, ...]] = {
    VIDEOS: (2, 0, 1),
    RESPONSES: (0, 1),
    BEHAVIOR: (0, 1),
    PUPIL_CENTER: (0, 1),
}

# Per-trial arrays (length n_trials, in stored trial order: ``stored_trial_order``).
TRIAL_ID = "trial_id"
TIER = "tier"
VALID_FRAMES = "valid_frames"
HAS_RESPONSES = "has_responses"
TRIAL_ARRAYS: dict[str, tuple[str, ...]] = {
    TRIAL_ID: ("trial",),
    TIER: ("trial",),
    VALID_FRAMES: ("trial", "variable"),
    HAS_RESPONSES: ("trial",),
}

#: Group of per-tier index arrays: ``index/<tier>`` holds positions along the trial axis.
INDEX_GROUP = "index"
INDEX_DIMENSIONS = ("position",)

#: Group holding the source ``meta/`` tree, array for ``.npy`` file, same relative paths.
META_GROUP = "meta"
META_NEURONS = "meta/neurons"
META_TRIALS = "meta/trials"
META_STATISTICS = "meta/statistics"

#: Recomputed statistics: ``statistics/<tier>/<variable>/<granularity>/<stat>``.
STATISTICS_GROUP = "statistics"
STATISTICS_TIER = "train"
#: Over trials, keeping time (and every other axis); over trials and time.
OVER_TRIALS = "trials"
OVER_TRIALS_AND_TIME = "trials_time"
GRANULARITIES: tuple[str, ...] = (OVER_TRIALS, OVER_TRIALS_AND_TIME)
STATISTICS: tuple[str, ...] = ("mean", "std", "min", "max", "median", "count")

# Tiers, in the order the experiment ran them, and the named splits over them.
TRAIN = "train"
ORACLE = "oracle"
TEST_TIERS: tuple[str, ...] = (
    "live_test_main",
    "live_test_bonus",
    "final_test_main",
    "final_test_bonus",
)
NONE_TIER = "none"
TIERS: tuple[str, ...] = (TRAIN, ORACLE, *TEST_TIERS, NONE_TIER)
SPLITS: dict[str, tuple[str, ...]] = {
    "train": (TRAIN,),
    "validation": (ORACLE,),
    "test": TEST_TIERS,
}


def time_axis(variable: str, *, with_trial_axis: bool = True) -> int:
    """Position of ``time`` among ``variable``'s stored axes: in the stacked array, or
    (``with_trial_axis=False``) in one trial, whose leading trial axis is dropped."""
    axis = DIMENSIONS[variable].index("time")
    return axis if with_trial_axis else axis - 1


def statistics_dimensions(variable: str, granularity: str) -> tuple[str, ...]:
    """Dimension names of one recomputed statistic of ``variable``."""
    dims = DIMENSIONS[variable][1:]
    if granularity == OVER_TRIALS_AND_TIME:
        return tuple(d for d in dims if d != "time")
    return dims


def statistics_path(variable: str, granularity: str, stat: str, tier: str = STATISTICS_TIER) -> str:
    """Path of one recomputed statistic inside the store."""
    return f"{STATISTICS_GROUP}/{tier}/{variable}/{granularity}/{stat}"


def provided_statistics_path(variable: str, stat: str) -> str:
    """Path of one statistic the dataset itself provides (source layout, time last)."""
    return f"{META_STATISTICS}/{variable}/all/{stat}"


def parse_tiers(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Expand split and tier names into tier names; raise listing the valid ones."""
    tiers: list[str] = []
    for name in names:
        if name in SPLITS:
            tiers.extend(SPLITS[name])
        elif name in TIERS:
            tiers.append(name)
        else:
            valid = ", ".join([*SPLITS, *TIERS])
            raise SelectionError(f"unknown split or tier {name!r}; valid names: {valid}")
    return tuple(dict.fromkeys(tiers))


def ordered_tiers(present: set[str] | frozenset[str]) -> tuple[str, ...]:
    """Tiers in experiment order (``TIERS``), then any other tier by name."""
    return tuple(t for t in TIERS if t in present) + tuple(sorted(set(present) - set(TIERS)))


def stored_trial_order(trial_ids: Any, trial_tiers: Any) -> np.ndarray:
    """The permutation of trials into stored order (format version 2): by tier in
    ``ordered_tiers`` order, then by ascending trial id, so each tier is contiguous."""
    ids = np.asarray(trial_ids, dtype=np.int64)
    names = [str(t) for t in trial_tiers]
    rank = {tier: i for i, tier in enumerate(ordered_tiers(set(names)))}
    return np.lexsort((ids, np.array([rank[t] for t in names], dtype=np.int64)))


@dataclass(frozen=True)
class MouseAttrs:
    """The root attributes of a store, under ``attrs[ATTRS_KEY]``.

    The converter writes them with ``complete=False`` when it starts and rewrites them with
    ``complete=True`` as its very last step, so a reader can tell a finished store.
    """

    format_version: int
    complete: bool
    mouse: str
    n_trials: int
    n_neurons: int
    t_pad: int
    source: str
    source_dtypes: dict[str, str]
    stored_dtypes: dict[str, str]
    tiers: tuple[str, ...]
    converter_version: str
    config: dict[str, Any] | None = None
    frame_rate: int = FRAME_RATE_HZ
    variables: tuple[str, ...] = VARIABLES
    statistics_tier: str = STATISTICS_TIER
    lossy: tuple[str, ...] = ()
    chunking: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "complete": self.complete,
            "mouse": self.mouse,
            "n_trials": self.n_trials,
            "n_neurons": self.n_neurons,
            "t_pad": self.t_pad,
            "source": self.source,
            "source_dtypes": dict(self.source_dtypes),
            "stored_dtypes": dict(self.stored_dtypes),
            "tiers": list(self.tiers),
            "converter_version": self.converter_version,
            "config": self.config,
            "frame_rate": self.frame_rate,
            "variables": list(self.variables),
            "statistics_tier": self.statistics_tier,
            "lossy": list(self.lossy),
            "chunking": dict(self.chunking),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> MouseAttrs:
        """Check the attributes of the store at ``where`` and return them.

        Raises ``StoreFormatError`` (or a subclass) naming ``where`` when anything is off.
        """
        version = parse_format_version(data, where)
        try:
            attrs = cls(
                format_version=version,
                complete=bool(data["complete"]),
                mouse=str(data["mouse"]),
                n_trials=int(data["n_trials"]),
                n_neurons=int(data["n_neurons"]),
                t_pad=int(data["t_pad"]),
                source=str(data["source"]),
                source_dtypes=dict(data["source_dtypes"]),
                stored_dtypes=dict(data["stored_dtypes"]),
                tiers=tuple(data["tiers"]),
                converter_version=str(data["converter_version"]),
                config=data.get("config"),
                frame_rate=int(data.get("frame_rate", FRAME_RATE_HZ)),
                variables=tuple(data.get("variables", VARIABLES)),
                statistics_tier=str(data.get("statistics_tier", STATISTICS_TIER)),
                lossy=tuple(data.get("lossy", ())),
                chunking=dict(data.get("chunking", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise StoreFormatError(f"{where}: malformed '{ATTRS_KEY}' attributes ({e!r})") from e
        if not attrs.complete:
            raise IncompleteStoreError(
                f"{where}: the conversion that wrote this store never finished; "
                "run the converter again on the source"
            )
        return attrs


def parse_format_version(data: Mapping[str, Any], where: str) -> int:
    """Return the store's format version, or raise if it is missing or unsupported."""
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StoreFormatError(f"{where}: '{ATTRS_KEY}.format_version' is missing or not an integer")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_FORMAT_VERSIONS))
        raise FormatVersionError(
            f"{where}: format version {version} is not supported by this reader "
            f"(supported: {supported}); upgrade sensorium-zarr or re-convert the source"
        )
    return version
