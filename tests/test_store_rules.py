"""The reader enforces docs/FORMAT.md's MUSTs on open, from metadata and the small index
arrays: each test breaks one rule in a real store and gets one line naming it. Also the
table itself: the arrays a converted store holds are exactly those it defines."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from helpers import reconsolidate

from sensorium_zarr import StoreFormatError, open_mouse
from sensorium_zarr import format as fmt
from sensorium_zarr.converter import verify

DATA = Path(__file__).parent / "data"
GOLDEN_ATTRS = json.loads((DATA / "golden-v2.zarr" / "zarr.json").read_text())["attributes"][fmt.ATTRS_KEY]


def _edit(store: Path, path: str, change: Callable[[dict[str, Any]], None]) -> None:
    meta_file = store / path / "zarr.json"
    meta = json.loads(meta_file.read_text())
    change(meta)
    meta_file.write_text(json.dumps(meta))


def _attrs(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda meta: meta["attributes"][fmt.ATTRS_KEY].update(changes)


def _drop_inner_checksum(meta: dict[str, Any]) -> None:
    sharding = meta["codecs"][0]["configuration"]
    sharding["codecs"] = [c for c in sharding["codecs"] if c["name"] != "crc32c"]


def _drop_index_checksum(meta: dict[str, Any]) -> None:
    sharding = meta["codecs"][0]["configuration"]
    sharding["index_codecs"] = [c for c in sharding["index_codecs"] if c["name"] != "crc32c"]


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda meta: meta.__setitem__(key, value)


BROKEN = [
    ("responses", _drop_inner_checksum, "'responses' has chunks without a crc32c checksum"),
    ("videos", _drop_index_checksum, "'videos' has chunks without a crc32c checksum"),
    ("trial_id", lambda m: m.__setitem__("codecs", [c for c in m["codecs"] if c["name"] != "crc32c"]),
     "'trial_id' has chunks without a crc32c checksum"),
    ("responses", _set("dimension_names", ["trial", "time", "neuron"]),
     r"'responses' has dimension_names \('trial', 'time', 'neuron'\), expected \('trial', 'neuron', 'time'\)"),
    ("behavior", _set("dimension_names", None), r"'behavior' has dimension_names None, expected one per axis"),
    ("index/oracle", _set("dimension_names", ["trial"]), r"'index/oracle' has dimension_names \('trial',\)"),
    ("", _attrs(stored_dtypes={v: "float64" for v in fmt.VARIABLES}),
     "'videos' has data type float32, expected float64"),
    ("", _attrs(n_neurons=4), r"'responses' has shape \(8, 3, 6\), expected \(8, 4, 6\)"),
    ("", _attrs(t_pad=7), r"'videos' has shape \(8, 6, 4, 5\), expected \(8, 7, \?, \?\)"),
    ("", _attrs(n_trials=9), r"'videos' has shape \(8, 6, 4, 5\), expected \(9, 6, \?, \?\)"),
    ("valid_frames", _set("attributes", {}),
     r"'valid_frames' has attribute sensorium_zarr.variables = None, expected \['videos'"),
    ("pupil_center", _set("fill_value", 0.0), "'pupil_center' has fill value 0.0, expected NaN"),
    ("has_responses", _set("data_type", "int8"), "'has_responses' has data type int8, expected bool"),
    ("", _attrs(tiers=["train", "oracle", "live_test_main", "live_test_bonus", "final_test_main"]),
     "the tier index arrays cover 6 of the 8 trials"),
    ("", _attrs(format_version=1), "'trial_id' is not ascending, as format version 1 requires"),
]


@pytest.mark.parametrize("path, change, match", BROKEN, ids=[f"{p or 'root'}-{m[:30]}" for p, _, m in BROKEN])
def test_a_broken_rule_is_refused_on_open(tmp_path, path, change, match):
    store = tmp_path / "golden.zarr"
    shutil.copytree(DATA / "golden-v2.zarr", store)
    _edit(store, path, change)
    with pytest.raises(StoreFormatError, match=match) as e:
        open_mouse(store)
    assert "\n" not in str(e.value) and str(store) in str(e.value)


V3_BROKEN = [
    ("responses", _drop_inner_checksum, "'responses' has chunks without a crc32c checksum"),
    ("index/oracle", _set("dimension_names", ["position"]),
     r"'index/oracle' has dimension_names \('position',\), expected \('oracle_position',\)"),
    ("behavior", _set("dimension_names", ["trial", "channel", "time"]),
     r"'behavior' has dimension_names \('trial', 'channel', 'time'\), expected \('trial', 'behavior_channel'"),
    ("pupil_center", _set("fill_value", 0.0), "'pupil_center' has fill value 0.0, expected NaN"),
]


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("path, change, match", V3_BROKEN, ids=[p for p, _, _ in V3_BROKEN])
def test_a_broken_rule_of_a_version_3_store_is_refused_from_its_consolidated_metadata(
    tmp_path, path, change, match, version
):
    store = tmp_path / "golden.zarr"
    shutil.copytree(DATA / f"golden-v{version}.zarr", store)
    _edit(store, path, change)
    reconsolidate(store)
    with pytest.raises(StoreFormatError, match=match) as e:
        open_mouse(store)
    assert "\n" not in str(e.value) and str(store) in str(e.value)


def test_a_version_1_store_relabelled_2_breaks_the_tier_major_rule(tmp_path):
    store = tmp_path / "golden.zarr"
    shutil.copytree(DATA / "golden-v1.zarr", store)
    _edit(store, "", _attrs(format_version=2))
    with pytest.raises(StoreFormatError, match="is not one consecutive range of trials, as format version 2"):
        open_mouse(store)


def test_statistics_are_checked_when_first_used(tmp_path):
    store = tmp_path / "golden.zarr"
    shutil.copytree(DATA / "golden-v2.zarr", store)
    path = fmt.statistics_path("responses", fmt.OVER_TRIALS_AND_TIME, "std")
    _edit(store, path, _set("dimension_names", ["channel"]))
    mouse = open_mouse(store)  # opening reads no statistic
    message = rf"'{path}' has dimension_names \('channel',\), expected \('neuron',\)"
    with pytest.raises(StoreFormatError, match=message):
        mouse.split("train")
    with pytest.raises(StoreFormatError, match=message):
        mouse.statistics()
    assert mouse.split("train", standardize=False).responses.compute().shape[0] == 2


def _check(positions: dict[str, list[int]], ids: list[int], tiers: list[str], version: int = 2) -> None:
    fmt.spec(version).check_tier_index(
        "store", len(ids), np.array(ids), np.array(tiers), {t: np.array(p, np.int64) for t, p in positions.items()}
    )


def test_tier_index_rules_per_version():
    ids, tiers = [1, 4, 2, 3], ["train", "train", "oracle", "oracle"]
    _check({"train": [0, 1], "oracle": [2, 3]}, ids, tiers)
    with pytest.raises(StoreFormatError, match="do not follow one another in the order of the tiers attribute"):
        _check({"train": [2, 3], "oracle": [0, 1]}, [2, 3, 1, 4], ["oracle", "oracle", "train", "train"])
    with pytest.raises(StoreFormatError, match=r"'index/oracle' points at trials whose 'tier' is not 'oracle'"):
        _check({"train": [0, 1], "oracle": [2, 3]}, ids, ["train", "train", "oracle", "train"])
    with pytest.raises(StoreFormatError, match="'index/oracle' is empty"):
        _check({"train": [0, 1, 2, 3], "oracle": []}, [1, 2, 3, 4], ["train"] * 4)
    with pytest.raises(StoreFormatError, match="cover 3 of the 4 trials"):
        _check({"train": [0, 1], "oracle": [2]}, [1, 2, 3, 4], ["train", "train", "oracle", "oracle"], version=1)
    with pytest.raises(StoreFormatError, match="repeats a trial id"):
        _check({"train": [0, 1], "oracle": [2, 3]}, [1, 2, 2, 4], tiers)
    # Version 1: ascending trial id throughout, tiers interleaved.
    _check({"train": [0, 2], "oracle": [1, 3]}, [1, 2, 3, 4], ["train", "oracle", "train", "oracle"], version=1)
    with pytest.raises(StoreFormatError, match="not one consecutive range"):
        _check({"train": [0, 2], "oracle": [1, 3]}, [1, 2, 3, 4], ["train", "oracle", "train", "oracle"])


# -- the table --------------------------------------------------------------------------


@pytest.mark.parametrize("version", fmt.SUPPORTED_FORMAT_VERSIONS)
def test_golden_stores_hold_exactly_the_tables_arrays(version):
    root = zarr.open_group(str(DATA / f"golden-v{version}.zarr"), mode="r")
    attrs = fmt.MouseAttrs.from_dict(root.attrs[fmt.ATTRS_KEY], "golden")
    spec = fmt.spec(version)
    shapes = {v: tuple(root[v].shape) for v in fmt.VARIABLES}
    present: dict[str, Any] = {}

    def walk(group: zarr.Group, prefix: str = "") -> None:
        for name, node in group.members():
            if isinstance(node, zarr.Array):
                present[prefix + name] = node
            else:
                walk(node, prefix + name + "/")

    walk(root)
    required = {e.path for e in spec.required(attrs, shapes)}
    assert required <= set(present)
    assert {p for p in present if not p.startswith("meta/")} == required
    for path, array in present.items():
        expected = spec.expected(path, attrs, shapes, source_shape=tuple(array.shape))
        assert fmt.array_problems(expected, array.metadata.to_dict()) == [], path
        assert expected.shape is None or None in expected.shape or expected.shape == array.shape, path


def test_table_lookup():
    spec = fmt.spec(fmt.FORMAT_VERSION)
    row, fields = spec.lookup("statistics/train/videos/trials_time/median")
    assert row.fill == fmt.NAN_IF_FLOAT and fields == {"tier": "train", "variable": "videos",
                                                       "granularity": "trials_time", "stat": "median"}
    # Versions 1 and 2 created the medians with Zarr's default fill value.
    row, fields = fmt.spec(2).lookup("statistics/train/videos/trials_time/median")
    assert row.fill == fmt.ZARR_DEFAULT and "stat" not in fields
    row, fields = spec.lookup("statistics/train/videos/trials/count")
    assert row.fill == fmt.NAN_IF_FLOAT and fields["stat"] == "count"
    with pytest.raises(KeyError):
        spec.lookup("statistics/train/speed/trials/mean")
    with pytest.raises(KeyError):
        spec.lookup("extra")
    golden = fmt.MouseAttrs.from_dict(GOLDEN_ATTRS, "golden")
    assert spec.expected("index/oracle", golden).shape == (None,)
    for undefined in ("index/bogus", "statistics/oracle/videos/trials/mean"):
        with pytest.raises(KeyError):
            spec.expected(undefined, golden)
    assert spec.lookup("meta/anything/below")[1] == {"path": "anything/below"}
    v2, sizes = fmt.spec(2), {"neuron": 3}
    assert v2.meta_dimensions("meta/statistics/videos/all/mean", (4, 5, 6), sizes) == ("height", "width", "time")
    assert v2.meta_dimensions("meta/neurons/unit_ids", (3,), sizes) == ("neuron",)
    assert v2.meta_dimensions("meta/trials/tiers", (10,), sizes) == ("trial_id",)
    assert v2.meta_dimensions("meta/other/x", (2, 2), sizes) == ("dim_0", "dim_1")
    # Version 3: a shared name only at that name's size in the store, else the array's own.
    sizes = {"neuron": 3, "height": 4, "width": 5, "time": 6, "trial_id": 10, "behavior_channel": 2}
    assert spec.meta_dimensions("meta/statistics/videos/all/mean", (4, 5, 6), sizes) == ("height", "width", "time")
    assert spec.meta_dimensions("meta/statistics/videos/all/mean", (4, 5, 7), sizes) == (
        "height", "width", "statistics_videos_all_mean_dim_2")
    assert spec.meta_dimensions("meta/statistics/behavior/all/std", (2, 6), sizes) == ("behavior_channel", "time")
    assert spec.meta_dimensions("meta/neurons/unit_ids", (3,), sizes) == ("neuron",)
    assert spec.meta_dimensions("meta/neurons/cell_motor_coordinates", (3, 3), sizes) == (
        "neuron", "neurons_cell_motor_coordinates_dim_1")
    assert spec.meta_dimensions("meta/trials/tiers", (10,), sizes) == ("trial_id",)
    assert spec.meta_dimensions("meta/trials/other", (9,), sizes) == ("trials_other_dim_0",)
    assert spec.meta_dimensions("meta/other/x", (2, 2), sizes) == ("other_x_dim_0", "other_x_dim_1")


def test_verify_walks_the_table(folder_mouse, folder_store, tmp_path):
    assert verify(folder_mouse, folder_store) == []
    store = tmp_path / folder_store.name
    shutil.copytree(folder_store, store)
    shutil.rmtree(store / fmt.statistics_path("behavior", fmt.OVER_TRIALS, "max"))
    _edit(store, fmt.statistics_path("videos", fmt.OVER_TRIALS, "mean"), _set("dimension_names", ["a", "b", "c"]))
    extra = zarr.open_group(str(store), mode="r+").create_array("extra", shape=(1,), dtype="int8")
    extra[...] = 1
    _edit(store, "behavior", lambda m: m["chunk_grid"]["configuration"].__setitem__("chunk_shape", [1, 2, 30]))
    problems = verify(folder_mouse, store)
    assert "statistics/train/behavior/trials/max: missing from the store" in problems
    assert any(p.startswith("'statistics/train/videos/trials/mean' has dimension_names ('a', 'b', 'c')")
               for p in problems), problems
    assert "extra: an array the format does not define" in problems
    expected = "behavior: chunks (1, 2, 30) in shards None, the chunking attribute says (8, 2, 30)"
    assert any(p.startswith(expected) for p in problems), problems
