"""The format spec: docs/FORMAT.md names everything reader/format.py defines, and stores
written by earlier releases stay readable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

import reader
from reader import format as fmt

from conftest import REPO

DATA = Path(__file__).parent / "data"


def test_format_doc_names_every_format_constant():
    doc = (REPO / "docs" / "FORMAT.md").read_text()
    names = [
        fmt.ATTRS_KEY, fmt.SOURCE_DTYPE_KEY, fmt.INDEX_GROUP, fmt.META_NEURONS, fmt.META_TRIALS,
        fmt.META_STATISTICS, fmt.STATISTICS_GROUP, *fmt.VARIABLES, *fmt.TRIAL_ARRAYS, *fmt.GRANULARITIES,
        *fmt.STATISTICS, *fmt.TIERS, *fmt.SPLITS, *fmt.INDEX_DIMENSIONS,
        *{d for dims in fmt.DIMENSIONS.values() for d in dims},
        *{d for dims in fmt.TRIAL_ARRAYS.values() for d in dims},
    ]
    missing = [n for n in names if f"`{n}`" not in doc and f"`{n}/" not in doc and f"/{n}`" not in doc]
    assert not missing, f"docs/FORMAT.md does not mention {missing}"
    assert f"Current format version: **{fmt.FORMAT_VERSION}**" in doc
    for key in fmt.MouseAttrs.__dataclass_fields__:
        assert f"| `{key}` |" in doc, key


def test_golden_v1_store_stays_readable():
    """A store written by format version 1, committed; future readers must still read it."""
    store = DATA / "golden-v1.zarr"
    expected = json.loads((DATA / "golden-v1.json").read_text())
    mouse = reader.open_mouse(store)
    assert mouse.attrs.format_version == 1
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


def test_golden_store_has_the_documented_layout_in_plain_zarr():
    root = zarr.open_group(str(DATA / "golden-v1.zarr"), mode="r")
    attrs = root.attrs[fmt.ATTRS_KEY]
    assert attrs["format_version"] == 1 and attrs["complete"] is True
    for variable, dims in fmt.DIMENSIONS.items():
        assert root[variable].metadata.dimension_names == dims
    for tier in attrs["tiers"]:
        assert root[f"index/{tier}"].metadata.dimension_names == fmt.INDEX_DIMENSIONS
