"""The format spec: docs/FORMAT.md names everything reader/format/ defines, and stores
written by earlier releases stay readable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import REPO, chunk_codecs, inner_chunks_per_shard, shard_index

import sensorium_zarr as reader
from sensorium_zarr import format as fmt

DATA = Path(__file__).parent / "data"


def test_format_doc_names_every_format_constant():
    doc = (REPO / "docs" / "FORMAT.md").read_text()
    names = [
        fmt.ATTRS_KEY, fmt.SOURCE_DTYPE_KEY, fmt.INDEX_GROUP, fmt.META_NEURONS, fmt.META_TRIALS,
        fmt.META_STATISTICS, fmt.STATISTICS_GROUP, *fmt.VARIABLES, *fmt.TRIAL_ARRAYS, *fmt.GRANULARITIES,
        *fmt.STATISTICS, *fmt.TIERS, *fmt.SPLITS, fmt.META_TIERS,
        *{c for channels in fmt.CHANNELS.values() for c in channels},
        # Every dimension name of every version's table, "<tier>_position" included.
        *{d for table in (fmt.ARRAYS, fmt.ARRAYS_V2) for row in table if isinstance(row.dims, tuple) for d in row.dims},
    ]
    missing = [n for n in names if f"`{n}`" not in doc and f"`{n}/" not in doc and f"/{n}`" not in doc]
    assert not missing, f"docs/FORMAT.md does not mention {missing}"
    assert f"Current format version: **{fmt.FORMAT_VERSION}**" in doc
    for key in fmt.MouseAttrs.__dataclass_fields__:
        assert f"| `{key}` |" in doc, key
    assert set(fmt.PARSERS) == set(fmt.MouseAttrs.__dataclass_fields__)
    # The array tables: every row's path, and every chunk option a rule names.
    for row in (*fmt.ARRAYS, *fmt.ARRAYS_V2):
        assert f"`{row.path}`" in doc, row.path
        if isinstance(row.chunks, fmt.TrialShards):
            time = f', "{row.chunks.time_option}"' if row.chunks.time_option else ""
            assert f'TrialShards("{row.chunks.axis}", "{row.chunks.option}"{time})' in doc, row.path


@pytest.mark.parametrize("version", fmt.SUPPORTED_FORMAT_VERSIONS)
def test_golden_store_stays_readable(version):
    """A store written by each supported format version, committed (tests/data/make_golden.py
    writes one per version); future readers must still read every one."""
    store = DATA / f"golden-v{version}.zarr"
    expected = json.loads((DATA / f"golden-v{version}.json").read_text())
    mouse = reader.open_mouse(store)
    assert mouse.attrs.format_version == version
    raw = mouse.split(list(fmt.TIERS[:-1]), standardize=False)
    assert raw.trial_ids.tolist() == expected["trial_id"]
    assert [str(t) for t in raw.tiers] == expected["tier"]
    assert raw.valid_frames.tolist() == expected["valid_frames"]
    assert raw.has_responses.tolist() == expected["has_responses"]
    for variable in fmt.VARIABLES:
        values = raw.array(variable).compute().astype(np.float64)
        assert float(np.nansum(values)) == pytest.approx(expected[variable]["nansum"], rel=1e-12)
        assert int(np.isnan(values).sum()) == expected[variable]["nan"]
    stats = mouse.statistics()["responses"]["trials_time"]["std"]
    np.testing.assert_allclose(stats, expected["train_responses_std"], rtol=1e-12)


@pytest.mark.parametrize("version", fmt.SUPPORTED_FORMAT_VERSIONS)
def test_golden_store_has_the_documented_layout_in_plain_zarr(version):
    root = zarr.open_group(str(DATA / f"golden-v{version}.zarr"), mode="r")
    attrs = root.attrs[fmt.ATTRS_KEY]
    assert attrs["format_version"] == version and attrs["complete"] is True
    spec = fmt.spec(version)
    for variable, dims in spec.dimensions.items():
        assert root[variable].metadata.dimension_names == dims
    ids = root[fmt.TRIAL_ID][:]
    for tier in attrs["tiers"]:
        index = root[f"index/{tier}"]
        assert index.metadata.dimension_names == (("position",) if version < 3 else (f"{tier}_position",))
        positions = index[:]
        assert np.all(np.diff(positions) > 0) and np.all(np.diff(ids[positions]) > 0)
    if version == 1:
        assert np.all(np.diff(ids) > 0)  # ascending trial id throughout
    else:
        # Tier-major: the tiers' ranges follow one another in the order of the attribute.
        starts = [int(root[f"index/{tier}"][0]) for tier in attrs["tiers"]]
        lengths = [root[f"index/{tier}"].shape[0] for tier in attrs["tiers"]]
        assert starts == [sum(lengths[:k]) for k in range(len(lengths))]
    # From version 7 a variable Blosc barely shrinks is stored uncoded: the golden store's
    # responses (its tiny chunks do not shrink) are, its videos are not.
    if spec.uncoded_chunks:
        assert [c["name"] for c in chunk_codecs(root["responses"])] == ["bytes", "crc32c"]
        assert attrs["chunking"]["min_blosc_saving"] == 10
    # From version 6 a shard's inner chunks follow one another in C order (trial axis
    # first); zarr-python's Morton order, before, interleaves the trials of a shard.
    if not spec.c_order_shards:
        return
    shard = (DATA / f"golden-v{version}.zarr" / "responses" / "c" / "0" / "0" / "0").read_bytes()
    offsets = shard_index(shard, inner_chunks_per_shard(root["responses"]))[:, 0]
    assert np.all(np.diff(offsets.astype(np.int64)) > 0)


def test_current_version_has_a_golden_store():
    assert (DATA / f"golden-v{fmt.FORMAT_VERSION}.zarr").is_dir(), "run tests/data/make_golden.py"


@pytest.mark.parametrize("version", fmt.SUPPORTED_FORMAT_VERSIONS)
def test_one_size_per_dimension_name_from_version_3(version):
    root = zarr.open_group(str(DATA / f"golden-v{version}.zarr"), mode="r", use_consolidated=False)
    arrays = [(p, a.metadata.dimension_names, a.shape) for p, a in root.members(max_depth=None)
              if isinstance(a, zarr.Array)]
    conflicts = fmt.dimension_conflicts(arrays)
    if version >= 3:
        assert conflicts == []
        assert zarr.open_group(str(DATA / f"golden-v{version}.zarr"), mode="r").metadata.consolidated_metadata
    else:
        # What version 3 fixed: one 'position' name for tier indexes of different lengths.
        assert any(c.startswith("dimension 'position' has size") for c in conflicts), conflicts


def test_bundle_bytes_round_trip_and_start_with_the_magic():
    values = {
        "trial_id": np.array([3, 1, 2], np.int64),
        "tier": np.array(["train", "oracle", "final_test_bonus"]),
        "valid_frames": np.arange(12, dtype=np.int32).reshape(3, 4),
        "has_responses": np.array([True, False, True]),
        "empty": np.zeros((0, 5), np.float64),
    }
    data, members = fmt.pack_bundle(values)
    assert data.dtype == np.uint8 and data[: len(fmt.MAGIC)].tobytes() == fmt.MAGIC
    assert all(m["offset"] % fmt.ALIGN == 0 for m in members)
    got = fmt.unpack_bundle("here", data, members)
    assert list(got) == list(values)
    for path, want in values.items():
        np.testing.assert_array_equal(got[path], want)
        assert got[path].shape == want.shape


def _bundle_refused(data, members, match):
    with pytest.raises(reader.StoreFormatError, match=match) as e:
        fmt.unpack_bundle("here", data, members)
    assert "\n" not in str(e.value) and str(e.value).startswith("here: ")


def test_bundle_bytes_that_do_not_fit_their_members_are_refused():
    data, members = fmt.pack_bundle({"a": np.arange(3, dtype=np.int64), "b": np.ones(2, np.float32)})
    _bundle_refused(np.zeros_like(data), members, r"chunk c/0 of 'bundle' is missing \(its chunk reads as the fill")
    other = data.copy()
    other[0] ^= 1
    _bundle_refused(other, members, "does not start with its magic")
    _bundle_refused(data[:-1], members, "member 'b' overlaps another or runs past")
    _bundle_refused(np.concatenate([data, np.zeros(8, np.uint8)]), members, "its members end at")
    overlapping = [members[0], {**members[1], "offset": members[0]["offset"] + 8}]
    _bundle_refused(data, overlapping, "member 'b' overlaps another")
    for bad in ({**members[0], "dtype": "|O"}, {**members[0], "dtype": ">i8"}, {**members[0], "shape": [-1]},
                {**members[0], "offset": 0}, {"path": "a"}):
        _bundle_refused(data, [bad, members[1]], "lists a malformed member")
    _bundle_refused(data, None, "has no sensorium_zarr.members list")


def test_bundle_holds_every_array_opening_and_standardizing_read():
    root = zarr.open_group(str(DATA / "golden-v5.zarr"), mode="r")
    bundle = root[fmt.BUNDLE]
    assert bundle.metadata.dimension_names == (fmt.BUNDLE_DIM,) and bundle.dtype == np.uint8
    members = fmt.unpack_bundle("golden", bundle[...], bundle.attrs[fmt.ATTRS_KEY][fmt.MEMBERS_KEY])
    attrs = fmt.MouseAttrs.from_dict(root.attrs[fmt.ATTRS_KEY], "golden")
    # The golden mouse's provided statistics are small: both statistics sources are in.
    assert list(members) == fmt.bundle_required(attrs) + fmt.bundle_optional()
    for path, values in members.items():
        stored = root[path][...]
        if values.dtype.kind == "U":
            stored = np.asarray(stored.tolist(), dtype=str)
        np.testing.assert_array_equal(values, stored)
