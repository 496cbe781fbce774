"""Root attributes: strict parsing (one clear line per bad field), a lossless round trip
through JSON, and one completion rule shared by every way of opening a store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensorium_zarr import IncompleteStoreError, StoreFormatError, open_mouse, open_sensorium
from sensorium_zarr import format as fmt
from sensorium_zarr._store import is_complete_store
from sensorium_zarr.errors import FormatVersionError

WHERE = "/data/mouse.zarr"

GOOD = json.loads((Path(__file__).parent / "data" / "golden-v2.zarr" / "zarr.json").read_text())["attributes"][
    fmt.ATTRS_KEY
]

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
dtype_names = st.sampled_from(["float32", "float64", "uint8", "int16"])
tier_names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(lambda t: t not in (".", ".."))
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text


@st.composite
def attrs(draw: st.DrawFn) -> fmt.MouseAttrs:
    tiers = draw(st.sets(st.sampled_from(fmt.TIERS) | tier_names, max_size=8))
    return fmt.MouseAttrs(
        format_version=draw(st.sampled_from(fmt.SUPPORTED_FORMAT_VERSIONS)),
        complete=draw(st.booleans()),
        mouse=draw(text.filter(bool)),
        n_trials=draw(st.integers(0, 10**6)),
        n_neurons=draw(st.integers(0, 10**5)),
        t_pad=draw(st.integers(1, 10**4)),
        source=draw(text),
        source_dtypes={v: draw(dtype_names) for v in fmt.VARIABLES},
        stored_dtypes={v: draw(dtype_names) for v in fmt.VARIABLES},
        tiers=fmt.ordered_tiers(tiers),
        converter_version=draw(text),
        config=draw(st.none() | st.dictionaries(text, json_scalars, max_size=4)),
        frame_rate=draw(st.integers(1, 1000)),
        lossy=tuple(draw(st.lists(text, max_size=3))),
        chunking=draw(st.dictionaries(text, st.integers(1, 1000) | text, max_size=4)),
    )


@given(attrs())
def test_attributes_round_trip_through_json(value):
    data = json.loads(json.dumps(value.to_dict()))
    assert fmt.MouseAttrs.from_dict(data, WHERE, complete_only=False) == value


def test_golden_attributes_parse():
    parsed = fmt.MouseAttrs.from_dict(GOOD, WHERE)
    assert parsed.to_dict() == GOOD


# (attribute, bad value, what the message says is expected, error class if not StoreFormatError)
BAD = [
    ("format_version", "2", "an integer", None),
    ("format_version", True, "an integer", None),
    ("format_version", 2.0, "an integer", None),
    ("complete", "false", "true or false", None),
    ("complete", 1, "true or false", None),
    ("mouse", "", "a non-empty string", None),
    ("mouse", 7, "a non-empty string", None),
    ("n_trials", 2.9, "an integer >= 0", None),
    ("n_trials", True, "an integer >= 0", None),
    ("n_trials", -1, "an integer >= 0", None),
    ("n_trials", "8", "an integer >= 0", None),
    ("n_neurons", 3.0, "an integer >= 0", None),
    ("t_pad", 0, "an integer >= 1", None),
    ("source", None, "a string", None),
    ("source_dtypes", {"videos": "float32"}, "an object with keys videos, responses, behavior, pupil_center", None),
    ("source_dtypes", ["float32"], "an object of strings", None),
    ("stored_dtypes", {**GOOD["stored_dtypes"], "videos": 32}, "an object of strings", None),
    ("stored_dtypes", {**GOOD["stored_dtypes"], "videos": "float99"}, "numpy dtype names", None),
    ("tiers", "train", "a list of strings", None),
    ("tiers", ["train", 3], "a list of strings", None),
    ("tiers", ["oracle", "train"], "distinct tier names in experiment order ['train', 'oracle']", None),
    ("tiers", ["train", "train"], "distinct tier names in experiment order", None),
    ("tiers", ["train", "a/b"], "tier names usable as a path segment", None),
    ("tiers", ["train", ""], "tier names usable as a path segment", None),
    ("converter_version", 1, "a string", None),
    ("config", [1, 2], "an object or null", None),
    ("frame_rate", "30", "an integer >= 1", None),
    ("variables", "videos", "a list of strings", None),
    ("variables", ["responses", "videos", "behavior", "pupil_center"], "the list ['videos', 'responses'", None),
    ("statistics_tier", "oracle", "'train'", None),
    ("lossy", "float32", "a list of strings", None),
    ("chunking", {"trials_per_shard": 8.5}, "an object of integers and strings", None),
    ("chunking", {"trials_per_shard": True}, "an object of integers and strings", None),
]


@pytest.mark.parametrize("key, value, expected, error", BAD, ids=[f"{k}={v!r}" for k, v, _, _ in BAD])
def test_one_bad_attribute_one_line(key, value, expected, error):
    with pytest.raises(error or StoreFormatError) as e:
        fmt.MouseAttrs.from_dict({**GOOD, key: value}, WHERE)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{WHERE}: attribute 'sensorium_zarr.{key}' must be {expected}"), message
    found = message.split(", found ", 1)[1]
    assert found.startswith(repr(value)[:20]) and found.endswith(f"({type(value).__name__})"), message


@pytest.mark.parametrize("key", [k for k, (_, default) in fmt.PARSERS.items() if repr(default) == "<missing>"])
def test_missing_required_attribute(key):
    data = {k: v for k, v in GOOD.items() if k != key}
    message = rf"attribute 'sensorium_zarr.{key}' must be .*found nothing \(missing\)"
    with pytest.raises(StoreFormatError, match=message):
        fmt.MouseAttrs.from_dict(data, WHERE)


def test_unsupported_version_is_judged_before_the_rest():
    future = fmt.FORMAT_VERSION + 1
    with pytest.raises(FormatVersionError, match=f"format version {future} is not supported"):
        fmt.MouseAttrs.from_dict({"format_version": future, "complete": "no"}, WHERE)


def test_unknown_keys_are_ignored_and_optional_ones_default():
    data = {k: v for k, v in GOOD.items() if k not in ("frame_rate", "lossy", "config")}
    parsed = fmt.MouseAttrs.from_dict({**data, "added_later": 1}, WHERE)
    assert parsed.frame_rate == fmt.FRAME_RATE_HZ and parsed.lossy == () and parsed.config is None


def test_unknown_tier_names_are_kept_after_the_known_ones():
    parsed = fmt.MouseAttrs.from_dict({**GOOD, "tiers": ["train", "oracle", "extra", "zeta"]}, WHERE)
    assert parsed.tiers == ("train", "oracle", "extra", "zeta")


# -- one completion rule -----------------------------------------------------------------


def _store_with(tmp_path: Path, complete: object) -> Path:
    store = tmp_path / "dynamic00009-1-1-Video-golden.zarr"
    shutil.copytree(Path(__file__).parent / "data" / "golden-v2.zarr", store)
    meta = json.loads((store / "zarr.json").read_text())
    if complete is None:
        del meta["attributes"][fmt.ATTRS_KEY]["complete"]
    else:
        meta["attributes"][fmt.ATTRS_KEY]["complete"] = complete
    (store / "zarr.json").write_text(json.dumps(meta))
    return store


@pytest.mark.parametrize(
    "complete, outcome",
    [(True, "opens"), (False, IncompleteStoreError), ("false", StoreFormatError), ("true", StoreFormatError),
     (None, StoreFormatError)],
    ids=["true", "false", "string-false", "string-true", "missing"],
)
def test_open_mouse_open_sensorium_and_is_complete_store_agree(tmp_path, complete, outcome):
    store = _store_with(tmp_path, complete)
    assert is_complete_store(store) == (outcome == "opens")
    if outcome == "opens":
        assert open_mouse(store).name == next(iter(open_sensorium(tmp_path)))
        return
    with pytest.raises(outcome) as mouse_error:
        open_mouse(store)
    assert "\n" not in str(mouse_error.value)
    if outcome is IncompleteStoreError:
        # Incomplete stores are skipped, and named when none is left.
        with pytest.raises(FileNotFoundError, match=rf"no complete \*\.zarr store \(1 incomplete: {store.name}\)"):
            open_sensorium(tmp_path)
    else:
        # A malformed store is refused with the very error open_mouse gives.
        with pytest.raises(outcome) as folder_error:
            open_sensorium(tmp_path)
        assert str(folder_error.value) == str(mouse_error.value)
