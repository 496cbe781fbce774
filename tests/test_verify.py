"""A store or verify that lies: every chunk is written (format version 3), a lost chunk,
shard file or inner chunk is reported by ``verify`` and refused by the reader where it
reads small arrays, and ``verify`` checks the root attributes and every derived array
against the source. Real stores converted from the sample generator, real files edited."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import zarr
from helpers import chunk_codecs, small_spec

from sensorium_zarr import _chunks, open_mouse
from sensorium_zarr import format as fmt
from sensorium_zarr.converter import Chunking, convert_mouse, verify
from sensorium_zarr.converter._cli import main as cli_main
from sensorium_zarr.converter._cli import summarize
from sensorium_zarr.errors import StoreFormatError
from sensorium_zarr.testing import sample_spec, write_mouse

ENGINES = ["zarr", "zarrs"]
STD = fmt.statistics_path("responses", fmt.OVER_TRIALS_AND_TIME, "std")
GOLDEN_V4 = Path(__file__).parent / "data" / "golden-v4.zarr"


@pytest.fixture
def converted(folder_mouse, tmp_path) -> tuple[Path, Path]:
    source = Path(shutil.copytree(folder_mouse, tmp_path / "src" / folder_mouse.name))
    return source, convert_mouse(source, tmp_path / "out", progress=False)


def _arrays(group: zarr.Group, prefix: str = ""):
    for name, node in group.members():
        if isinstance(node, zarr.Array):
            yield prefix + name, node
        else:
            yield from _arrays(node, prefix + name + "/")


@pytest.mark.parametrize("engine", ENGINES)
def test_every_chunk_is_written_even_one_holding_only_the_fill_value(folder_mouse, tmp_path, engine):
    # Small video chunks, so the padding frames of the sample's short trials fill some.
    store = convert_mouse(folder_mouse, tmp_path, progress=False, engine=engine,
                          chunking=Chunking(frames_per_video_chunk=4))
    root = zarr.open_group(str(store), mode="r")
    assert root.attrs[fmt.ATTRS_KEY]["format_version"] == fmt.FORMAT_VERSION
    for path, array in _arrays(root):
        assert list(_chunks.missing_chunks(array)) == [], path
    # Padding frames: some inner chunks of videos hold only the fill value (NaN, or in a
    # version 8 store's uint8 videos 0), and are there all the same.
    videos = root["videos"]
    assert videos.dtype == np.uint8 and videos.fill_value == 0
    inner = videos.chunks
    fill_chunks = [
        (k, t) for k in range(videos.shape[0]) for t in range(0, videos.shape[1], inner[1])
        if not videos[k, t:t + inner[1]].any()
    ]
    assert fill_chunks, "the sample should have an all-padding inner chunk"


def test_every_chunk_present_is_the_rule_from_version_3():
    versions = (1, 2, 3, 4, 5, 6, 7, 8)
    assert [fmt.spec(v).every_chunk_present for v in versions] == [False] * 2 + [True] * 6
    assert [fmt.spec(v).bundle for v in versions] == [False] * 4 + [True] * 4
    assert [fmt.spec(v).c_order_shards for v in versions] == [False] * 5 + [True] * 3
    assert [fmt.spec(v).uncoded_chunks for v in versions] == [False] * 6 + [True] * 2
    assert [fmt.spec(v).uint8_values for v in versions] == [False] * 7 + [True]
    assert fmt.FORMAT_VERSION == 8 and fmt.SUPPORTED_FORMAT_VERSIONS == versions


@pytest.fixture
def golden_v4(tmp_path) -> Path:
    """A copy of the committed version 4 store (no bundle: opening reads each small array)."""
    return Path(shutil.copytree(GOLDEN_V4, tmp_path / GOLDEN_V4.name))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_lost_tier_index_chunk_of_a_version_4_store_is_refused_on_open(golden_v4, engine):
    (golden_v4 / "index/oracle/c/0").unlink()
    with pytest.raises(StoreFormatError, match="chunk c/0 of index/oracle is missing; the store is damaged"):
        open_mouse(golden_v4, engine=engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_lost_tier_index_chunk_is_reported_and_the_bundle_still_opens(converted, engine):
    """Version 5 opens from the bundle, which duplicates the index: the lost chunk of the
    array itself (which plain Zarr would read as zeros) is damage only ``verify`` finds."""
    source, store = converted
    expected = open_mouse(store, engine=engine).tiers
    (store / "index/oracle/c/0").unlink()
    got = open_mouse(store, engine=engine).tiers
    assert got.keys() == expected.keys() and all(np.array_equal(got[t], expected[t]) for t in expected)
    assert "index/oracle: chunk c/0 is missing" in "\n".join(verify(source, store, engine=engine))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_lost_bundle_chunk_is_refused_on_open_and_reported(converted, engine):
    source, store = converted
    (store / fmt.BUNDLE / "c/0").unlink()
    with pytest.raises(StoreFormatError, match="chunk c/0 of 'bundle' is missing .*; the store is damaged") as e:
        open_mouse(store, engine=engine)
    assert "\n" not in str(e.value) and str(store) in str(e.value)
    problems = "\n".join(verify(source, store, engine=engine))
    assert "bundle: chunk c/0 is missing" in problems, problems


@pytest.mark.parametrize("engine", ENGINES)
def test_a_lost_statistics_chunk_of_a_version_4_store_is_refused_by_a_standardized_read(golden_v4, engine):
    (golden_v4 / STD / "c/0").unlink()
    mouse = open_mouse(golden_v4, engine=engine)  # raw reads need no statistics
    assert mouse.split("train", standardize=False).responses.compute().shape[0] > 0
    with pytest.raises(StoreFormatError, match=f"chunk c/0 of {STD} is missing"):
        mouse.split("train")
    with pytest.raises(StoreFormatError, match=f"chunk c/0 of {STD} is missing"):
        mouse.standardization_params("responses")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_lost_statistics_chunk_is_reported_and_standardization_reads_the_bundle(converted, engine):
    source, store = converted
    params = open_mouse(store, engine=engine).standardization_params("responses")
    (store / STD / "c/0").unlink()
    mouse = open_mouse(store, engine=engine)
    np.testing.assert_array_equal(mouse.standardization_params("responses").scale, params.scale)
    assert mouse.split("train").responses.compute().shape[0] > 0
    problems = verify(source, store, engine=engine)
    assert f"{STD}: chunk c/0 is missing" in "\n".join(problems)


def _rewrite_bundle(store: Path, edit) -> None:
    """Rewrite the bundle's chunk (valid magic and checksum) with ``edit`` applied to its
    members, as a converter that got them wrong would."""
    root = zarr.open_group(str(store), mode="r+")
    array = root[fmt.BUNDLE]
    members = fmt.unpack_bundle(str(store), array[...], array.attrs[fmt.ATTRS_KEY][fmt.MEMBERS_KEY])
    edit(members)
    data, listed = fmt.pack_bundle(members)
    assert data.shape == array.shape
    array[...] = data


def test_a_bundle_that_differs_from_its_arrays_is_reported(converted, capsys):
    source, store = converted
    assert verify(source, store) == []

    def flip(members):
        members["has_responses"][0] = not members["has_responses"][0]

    _rewrite_bundle(store, flip)
    problems = verify(source, store)
    assert problems == [f"bundle: member 'has_responses' differs from the array it duplicates (in {store})"]
    assert cli_main(["verify", str(source), str(store)]) == 1
    out = capsys.readouterr().out
    assert f"mismatch: bundle: member 'has_responses' differs from the array it duplicates (in {store})" in out


def test_a_lost_shard_file_is_reported(converted):
    source, store = converted
    shard = store / "responses/c/1/0/0"
    shard.unlink()
    problems = verify(source, store)
    assert any(p.startswith("responses: chunk c/1/0/0 is missing") for p in problems), problems
    # Zarr itself reads the lost shard as NaN, which is why verify lists chunk keys.
    assert np.isnan(zarr.open_array(str(store), path="responses", mode="r")[8]).all()


def _empty_inner_chunk(shard: Path, entry: int) -> None:
    """Mark inner chunk ``entry`` empty in the shard's index (at the end, then its CRC32C),
    with a valid checksum, as a writer that lost it would."""
    raw = bytearray(shard.read_bytes())
    n = 8  # the sample's responses shard: 8 trials of one neuron chunk
    start = len(raw) - (16 * n + 4)
    raw[start + 16 * entry:start + 16 * entry + 16] = b"\xff" * 16
    raw[-4:] = google_crc32c.value(bytes(raw[start:start + 16 * n])).to_bytes(4, "little")
    shard.write_bytes(bytes(raw))


@pytest.mark.parametrize("engine", ENGINES)
def test_an_inner_chunk_missing_from_a_shard_index_is_reported(converted, engine):
    source, store = converted
    array = zarr.open_array(str(store), path="responses", mode="r")
    assert array.shards[0] == 8 and array.shards[1] == array.chunks[1] == array.shape[1]  # one inner chunk a trial
    _empty_inner_chunk(store / "responses/c/0/0/0", 3)
    # Both pipelines read it as NaN without a word: the index is valid.
    assert np.isnan(zarr.open_array(str(store), path="responses", mode="r")[3]).all()
    problems = verify(source, store, engine=engine)
    assert any(p.startswith("responses: inner chunk [3:4, 0:") and "of shard c/0/0/0 is missing" in p
               for p in problems), problems


def _edit_attrs(store: Path, **changes) -> None:
    path = store / "zarr.json"
    meta = json.loads(path.read_text())
    meta["attributes"][fmt.ATTRS_KEY].update(changes)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(("key", "value"), [
    ("n_trials", 19),
    ("tiers", ["train", "live_test_main", "live_test_bonus", "final_test_main", "final_test_bonus"]),
    ("config", {"seed": -1}),
    ("mouse", "dynamic00002-1-1-Video-other"),
    ("source_dtypes", {"videos": "uint8", "responses": "float64", "behavior": "float32", "pupil_center": "float32"}),
    ("lossy", ["float64 stored as float32"]),
    ("chunking", {"trials_per_shard": 8, "neurons_per_chunk": 7, "frames_per_video_chunk": 64}),
])
def test_a_tampered_root_attribute_is_reported(converted, key, value):
    source, store = converted
    before = json.loads((store / "zarr.json").read_text())["attributes"][fmt.ATTRS_KEY]
    assert before[key] != value
    _edit_attrs(store, **{key: value})
    problems = verify(source, store)
    assert any(p.startswith(f"attribute {key}") or f"the {key} attribute" in p for p in problems), problems


def test_tampered_derived_arrays_are_reported(converted):
    source, store = converted
    root = zarr.open_group(str(store), mode="r+")
    root["has_responses"][0] = not root["has_responses"][0]
    root[fmt.statistics_path("behavior", fmt.OVER_TRIALS, "median")][0, 0] += 1.0
    root[fmt.statistics_path("videos", fmt.OVER_TRIALS_AND_TIME, "mean")][0, 0] += 1e-6
    problems = "\n".join(verify(source, store))
    assert "has_responses: differs from the source" in problems
    assert "statistics/train/behavior/trials/median: differs" in problems
    assert "statistics/train/videos/trials_time/mean: differs" in problems


@pytest.fixture
def lossy(tmp_path) -> tuple[Path, Path]:
    source = write_mouse(small_spec(dtype="float64"), tmp_path / "src")
    return source, convert_mouse(source, tmp_path / "out", progress=False, float32=True)


def test_a_float32_store_is_equal_within_the_lossy_option_never_identical(lossy, capsys):
    source, store = lossy
    assert verify(source, store) == []
    assert cli_main(["verify", str(source), str(store)]) == 0
    out = capsys.readouterr().out
    assert "equal to" in out and "within the lossy option float32" in out and "identical" not in out
    assert "LOSSY: float32" in summarize(store)


def test_a_lossless_store_is_identical_and_info_says_lossless(converted, capsys):
    source, store = converted
    assert cli_main(["verify", str(source), str(store)]) == 0
    assert "OK, identical to" in capsys.readouterr().out
    assert "lossless" in summarize(store) and "LOSSY" not in summarize(store)


GOLDEN_V2 = Path(__file__).parent / "data" / "golden-v2.zarr"


@pytest.fixture
def golden_v2(tmp_path) -> tuple[Path, Path]:
    """The committed version 2 store and the source it was converted from, written again."""
    spec = sample_spec("dynamic00009-1-1-Video-golden", n_neurons=3, n_trials=8, t_pad=6, height=4, width=5, seed=9)
    source = write_mouse(spec, tmp_path / "src")
    return source, Path(shutil.copytree(GOLDEN_V2, tmp_path / GOLDEN_V2.name))


def test_a_version_2_store_missing_a_chunk_that_held_values_is_reported(golden_v2):
    source, store = golden_v2
    assert verify(source, store) == []
    (store / "valid_frames/c/0/0").unlink()
    (store / "behavior/c/0/0/0").unlink()
    problems = "\n".join(verify(source, store))
    assert "valid_frames: chunk c/0/0 is missing though the source holds values there" in problems
    assert "behavior: chunk c/0/0/0 is missing though the source holds values there" in problems
    # A version 2 reader cannot tell: zarr reads it as the fill value.
    assert open_mouse(store).valid_frames.max() == 0


def _blosc(array: zarr.Array) -> dict | None:
    return next((c["configuration"] for c in chunk_codecs(array) if c["name"] == "blosc"), None)


@pytest.mark.parametrize("store", ["converted", *(f"golden-v{v}" for v in fmt.SUPPORTED_FORMAT_VERSIONS)])
def test_the_chunking_attribute_records_each_variables_blosc_shuffle(converted, store):
    """From version 5, responses are stored without byte shuffle by default and everything
    else with it; stores written before ``response_shuffle`` existed shuffled both, and
    read as recording that."""
    path = converted[1] if store == "converted" else Path(__file__).parent / "data" / f"{store}.zarr"
    root = zarr.open_group(str(path), mode="r")
    chunking = Chunking.recorded(root.attrs[fmt.ATTRS_KEY].get("chunking", {}))
    version = root.attrs[fmt.ATTRS_KEY]["format_version"]
    expected = ("shuffle", "noshuffle") if version >= 5 else ("shuffle", "shuffle")
    assert (chunking.shuffle, chunking.response_shuffle) == expected
    coded = [v for v in fmt.VARIABLES if _blosc(root[v]) is not None]
    if version < 8:  # from version 7 a variable Blosc barely shrinks is uncoded
        assert "videos" in coded  # and from version 8 this sample's uint8 videos are
    for variable in coded:
        assert _blosc(root[variable])["shuffle"] == (  # type: ignore[index]
            chunking.response_shuffle if variable == "responses" else chunking.shuffle
        ), variable


def test_verify_reports_an_uncoded_variable_the_chunking_attribute_does_not_allow(converted):
    source, store = converted
    root = zarr.open_group(str(store), mode="r")
    uncoded = [v for v in fmt.VARIABLES if _blosc(root[v]) is None]
    assert "responses" in uncoded  # the test mouse's dense traces: Blosc saves under 10%
    assert [c["name"] for c in chunk_codecs(root["responses"])] == ["bytes", "crc32c"]
    assert verify(source, store) == []
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"][fmt.ATTRS_KEY]["chunking"]["min_blosc_saving"] = 0
    meta_path.write_text(json.dumps(meta))
    problems = "\n".join(verify(source, store))
    assert "responses: stored uncoded, but the chunking attribute's min_blosc_saving is 0 (always Blosc)" in problems


def test_verify_reports_a_codec_the_chunking_attribute_does_not_record(folder_mouse, tmp_path):
    source = Path(shutil.copytree(folder_mouse, tmp_path / "src" / folder_mouse.name))
    store = convert_mouse(source, tmp_path / "out", progress=False, chunking=Chunking(min_blosc_saving=0))
    assert verify(source, store) == []
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"][fmt.ATTRS_KEY]["chunking"]["response_shuffle"] = "bitshuffle"
    meta_path.write_text(json.dumps(meta))
    problems = "\n".join(verify(source, store))
    assert "responses: Blosc lz4 level 5, noshuffle; the chunking attribute says lz4 level 5, bitshuffle" in problems
