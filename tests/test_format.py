"""The format spec: docs/FORMAT.md names everything reader/format/ defines, and stores
written by earlier releases stay readable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import REPO

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
