"""Both codec pipelines (zarr-python's and the Rust zarrs one) write and read the same
stores, catch the same corruption, and leave zarr's global config alone."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from helpers import small_spec

import sensorium_zarr as reader
from sensorium_zarr._engine import parse_engine
from sensorium_zarr._native import NativeArray
from sensorium_zarr.converter import convert_mouse, verify
from sensorium_zarr.errors import SensoriumZarrError
from sensorium_zarr.testing import write_mouse

PIPELINE = {"zarr": "BatchedCodecPipeline", "zarrs": "ZarrsCodecPipeline"}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    source = write_mouse(small_spec(), tmp_path_factory.mktemp("src"))
    out = {e: convert_mouse(source, tmp_path_factory.mktemp(e), engine=e, progress=False) for e in PIPELINE}
    return source, out


@pytest.mark.parametrize("write", list(PIPELINE))
@pytest.mark.parametrize("read", list(PIPELINE))
def test_stores_written_by_either_engine_verify_with_either(stores, write, read):
    source, out = stores
    assert verify(source, out[write], engine=read) == []


def test_both_engines_write_the_same_values(stores):
    _, out = stores
    a, b = (zarr.open_group(str(out[e]), mode="r") for e in PIPELINE)
    for _, array in a.members(max_depth=None):
        if isinstance(array, zarr.Array):
            np.testing.assert_array_equal(array[...], b[array.path][...], err_msg=array.path)


@pytest.mark.parametrize("engine", [*PIPELINE, "native"])
def test_reader_engines_give_identical_splits(stores, engine):
    _, out = stores
    before = zarr.config.get("codec_pipeline.path")
    mouse = reader.open_mouse(out["zarr"], engine=engine)
    split = mouse.split(["train", "test"])
    array = mouse._handle.array("responses")
    if engine == "native":
        assert isinstance(array, NativeArray)
    else:
        assert type(array.async_array.codec_pipeline).__name__ == PIPELINE[engine]
    reference = reader.open_mouse(out["zarr"], engine="zarr").split(["train", "test"])
    for variable in ("videos", "responses", "behavior", "pupil_center"):
        np.testing.assert_array_equal(split.array(variable).compute(), reference.array(variable).compute())
    assert zarr.config.get("codec_pipeline.path") == before, "the global zarr config is untouched"


@pytest.mark.parametrize("engine", list(PIPELINE))
def test_each_engine_catches_a_flipped_byte(stores, tmp_path, engine):
    import shutil

    source, out = stores
    store = shutil.copytree(out["zarr"], tmp_path / out["zarr"].name)
    shard = sorted(p for p in (store / "videos" / "c").rglob("*") if p.is_file())[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    shard.write_bytes(bytes(raw))
    assert any("videos" in p and "checksum" in p for p in verify(source, store, engine=engine))


def test_unknown_engine():
    with pytest.raises(SensoriumZarrError, match="engine='rust'; expected one of native, zarr, zarrs"):
        parse_engine("rust")
    assert parse_engine(None) == "native"
