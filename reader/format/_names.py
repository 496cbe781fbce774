"""The names of the format: attribute keys, variables, tiers and splits, group paths, and
the tier-major trial order. Pure data, imported by every other part of ``format``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SelectionError

FORMAT_VERSION = 8
SUPPORTED_FORMAT_VERSIONS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)

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

#: Axis order that turns one source trial array (time last) into the stored layout
#: (without the leading trial axis).
SOURCE_TO_STORED_AXES: dict[str, tuple[int, ...]] = {
    VIDEOS: (2, 0, 1),
    RESPONSES: (0, 1),
    BEHAVIOR: (0, 1),
    PUPIL_CENTER: (0, 1),
}

#: What each channel of the two-channel variables is, in stored order (the source's rows).
CHANNELS: dict[str, tuple[str, ...]] = {
    BEHAVIOR: ("pupil_dilation", "running_speed"),
    PUPIL_CENTER: ("horizontal", "vertical"),
}

# Per-trial arrays (length n_trials, in stored trial order: ``stored_trial_order``).
TRIAL_ID = "trial_id"
TIER = "tier"
VALID_FRAMES = "valid_frames"
HAS_RESPONSES = "has_responses"

#: Group of per-tier index arrays: ``index/<tier>`` holds positions along the trial axis.
INDEX_GROUP = "index"

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
