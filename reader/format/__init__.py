"""The sensorium-zarr on-disk format, defined once for the converter and the reader.

Pure data and validation, no I/O: the converter writes what this package names and the
reader checks what it finds against it. ``docs/FORMAT.md`` is the prose version; keep
both in step (a test checks that every name here appears there).

- ``_names``: attribute keys, variables, tiers and splits, group paths, trial order;
- ``_attrs``: the root attributes (``MouseAttrs``), one strict ``parse_<field>`` each,
  and the one completion rule (``is_complete``);
- ``_arrays``: the table of every array (``ARRAYS``), bound per version by ``spec``
  (``FormatSpec``); everything that differs between versions lives there;
- ``_bundle``: the bundle of version 5, its members and its bytes (``pack_bundle``,
  ``unpack_bundle``);
- ``_uint8``: how a read restores a ``uint8`` variable of version 8 (``restore_padding``).

Format versions (each entry is its changelog):

- 1: first release. One Zarr v3 group per mouse: the four per-trial variables stacked on a
  ``trial`` axis, per-trial index arrays, per-tier index arrays, the source ``meta/``
  arrays as they were, and statistics recomputed from the ``train`` tier.
- 2: trials are stored tier-major (``stored_trial_order``): grouped by tier in experiment
  order, ascending trial id within a tier, so every tier is one contiguous range of the
  ``trial`` axis. Reading a tier then decodes no chunk of another tier (one neuron across
  the ``train`` trials decoded 720 chunks in version 1, 350 now). Nothing else changed;
  version 1 stores (ascending trial id throughout) stay readable.
- 3: every dimension name has one size in the whole store, so xarray opens it
  (``open_zarr``, ``open_datatree``): ``index/<tier>`` has dimension ``<tier>_position``
  (was ``position`` for all), behavior and pupil_center have ``behavior_channel`` and
  ``pupil_center_channel`` (were both ``channel``), and a ``meta/`` axis takes a shared
  name only at that name's size, else one named after its array (was ``dim_<i>``). The
  root holds consolidated metadata (written before ``complete: true``), so opening a
  store is one metadata read. Medians are filled with NaN like every float array (were
  0). Every chunk is written, inner chunks of shards included, even one holding only the
  fill value (``every_chunk_present``), so a missing chunk is damage. Version 1 and 2
  stores stay readable (``ARRAYS_V2``).
- 4: a response chunk may cut the time axis as well as the neuron axis: the chunking
  option ``frames_per_response_chunk`` (absent: every frame, as in version 3), so a
  training window of frames decodes only its frames' chunks. Nothing else changed;
  version 3 stores stay readable (``ARRAYS_V3``).
- 5: the bundle (``BUNDLE``): one small array whose one chunk duplicates the per-trial
  arrays, every tier index and the pooled statistics standardization uses (the provided
  ones too, when small), so opening a store reads one chunk instead of checking and
  reading each of those arrays (two requests each in a bucket). Its bytes start with
  ``MAGIC``, so a lost chunk (read as zeros) is never taken for values. Nothing else
  changed; version 4 stores stay readable (``ARRAYS_V4``).
- 6: the inner chunks of every shard are stored in C order (``c_order_shards``), the
  trial axis first, so one trial's chunks of a shard are one byte range (zarr-python
  writes Morton order, which interleaves the trials of a shard). Only the order of the
  chunks in a shard's file changed, which its index states: every Zarr reader reads
  version 5 and 6 stores alike.
- 7: a per-trial variable whose values Blosc barely compresses is stored uncoded
  (``uncoded_chunks``: inner chunks coded ``bytes`` and ``crc32c`` only, still
  checksummed), so a read copies them into place instead of decoding them; the chunking
  option ``min_blosc_saving`` (percent) draws the line. Every Zarr reader reads both
  chains; version 6 stores stay readable.
- 8: a variable whose real frames hold only integers 0..255 and whose padding frames
  only NaN in every trial (videos, as released) is stored as ``uint8`` and listed in the
  ``uint8_variables`` attribute (``MouseAttrs.array_dtype``): a quarter of float32's
  bytes to read, check and decode. Padding frames are stored as 0 and a read restores
  them as NaN from ``valid_frames`` (``restore_padding``), and the values in
  ``stored_dtypes``' dtype, so readers return what they returned before. Version 7
  stores stay readable.
"""

from ._arrays import (
    ARRAYS,
    ARRAYS_V2,
    ARRAYS_V3,
    ARRAYS_V4,
    AS_SOURCE,
    BY_STAT,
    DIMENSIONS,
    META_DIMS,
    META_TIERS,
    NAN_IF_FLOAT,
    SPECS,
    STATISTIC_DIMS,
    STORED,
    STRING,
    TRIAL_ARRAYS,
    ZARR_DEFAULT,
    ArraySpec,
    ChunkRule,
    Expected,
    FormatSpec,
    TrialBlocks,
    TrialShards,
    Whole,
    array_problems,
    check_array,
    dimension_conflicts,
    spec,
    time_axis,
)
from ._attrs import PARSERS, MouseAttrs, is_complete, parse_format_version, require_complete
from ._bundle import (
    ALIGN,
    BUNDLE,
    BUNDLE_DIM,
    BUNDLE_PROVIDED_BYTES,
    MAGIC,
    MEMBERS_KEY,
    POOLED,
    PROVIDED_IN_BUNDLE,
    bundle_optional,
    bundle_required,
    listed_members,
    pack_bundle,
    require_members,
    unpack_bundle,
)
from ._names import (
    ATTRS_KEY,
    BEHAVIOR,
    CHANNELS,
    FORMAT_VERSION,
    FRAME_RATE_HZ,
    GRANULARITIES,
    HAS_RESPONSES,
    INDEX_GROUP,
    META_GROUP,
    META_NEURONS,
    META_STATISTICS,
    META_TRIALS,
    NONE_TIER,
    ORACLE,
    OVER_TRIALS,
    OVER_TRIALS_AND_TIME,
    PUPIL_CENTER,
    RESPONSES,
    SOURCE_DTYPE_KEY,
    SOURCE_TO_STORED_AXES,
    SPLITS,
    STATISTICS,
    STATISTICS_GROUP,
    STATISTICS_TIER,
    SUPPORTED_FORMAT_VERSIONS,
    TEST_TIERS,
    TIER,
    TIERS,
    TRAIN,
    TRIAL_ID,
    VALID_FRAMES,
    VARIABLES,
    VIDEOS,
    ordered_tiers,
    parse_tiers,
    provided_statistics_path,
    statistics_path,
    stored_trial_order,
)
from ._uint8 import padding_frames, restore_padding

__all__ = [
    "ARRAYS", "ARRAYS_V2", "ARRAYS_V3", "ARRAYS_V4", "AS_SOURCE", "BY_STAT", "DIMENSIONS", "META_DIMS", "META_TIERS",
    "NAN_IF_FLOAT",
    "SPECS", "STATISTIC_DIMS", "STORED", "STRING", "TRIAL_ARRAYS", "ZARR_DEFAULT", "ArraySpec", "ChunkRule",
    "Expected", "FormatSpec", "TrialBlocks", "TrialShards", "Whole", "array_problems", "check_array",
    "dimension_conflicts", "spec", "time_axis",
    "ALIGN", "BUNDLE", "BUNDLE_DIM", "BUNDLE_PROVIDED_BYTES", "MAGIC", "MEMBERS_KEY", "POOLED", "PROVIDED_IN_BUNDLE",
    "bundle_optional", "bundle_required", "listed_members", "pack_bundle", "require_members", "unpack_bundle",
    "PARSERS", "MouseAttrs", "is_complete", "parse_format_version", "require_complete",
    "ATTRS_KEY", "BEHAVIOR", "CHANNELS", "FORMAT_VERSION", "FRAME_RATE_HZ", "GRANULARITIES", "HAS_RESPONSES",
    "INDEX_GROUP", "META_GROUP", "META_NEURONS", "META_STATISTICS", "META_TRIALS", "NONE_TIER", "ORACLE", "OVER_TRIALS",
    "OVER_TRIALS_AND_TIME", "PUPIL_CENTER", "RESPONSES", "SOURCE_DTYPE_KEY", "SOURCE_TO_STORED_AXES", "SPLITS",
    "STATISTICS", "STATISTICS_GROUP", "STATISTICS_TIER", "SUPPORTED_FORMAT_VERSIONS", "TEST_TIERS", "TIER",
    "TIERS", "TRAIN", "TRIAL_ID", "VALID_FRAMES", "VARIABLES", "VIDEOS", "ordered_tiers", "parse_tiers",
    "provided_statistics_path", "statistics_path", "stored_trial_order",
    "padding_frames", "restore_padding",
]
