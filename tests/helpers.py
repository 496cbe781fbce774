"""Helpers the tests share: paths of the repository, a small spec, source-file access.

Fixtures live in conftest.py, which may use these; tests import them from here
(``from helpers import ...``), never from conftest.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import zarr

from sensorium_zarr.testing import SampleSpec, sample_spec

REPO = Path(__file__).resolve().parents[1]
REAL_METADATA = REPO.parent / "shared" / "real-metadata"


def small_spec(name: str = "dynamic00001-1-1-Video-test", **options) -> SampleSpec:
    defaults = dict(n_neurons=23, n_trials=20, t_pad=30, height=6, width=8)
    return sample_spec(name, **{**defaults, **options})


def load_source(mouse_dir: Path, variable: str, trial_id: int) -> np.ndarray:
    return np.load(mouse_dir / "data" / variable / f"{trial_id}.npy", allow_pickle=False)


def source_ids(mouse_dir: Path) -> list[int]:
    names = glob.glob(os.path.join(mouse_dir, "data", "responses", "*.npy"))
    return sorted(int(Path(n).stem) for n in names)


def reconsolidate(store: Path) -> None:
    """Rewrite a store's consolidated metadata after a test changed its arrays, so the store
    stands for one written that way (a reader trusts the consolidated copy, as opening
    is one metadata read; ``verify`` compares it with the arrays' own metadata)."""
    import warnings

    rebundle(store)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(str(store), zarr_format=3)


def rebundle(store: Path) -> None:
    """Rewrite a format version 5 store's bundle from the arrays it duplicates, as the
    converter writes it, after a test changed them (so the reader, which reads the
    bundle instead, sees the change); nothing for a store without a bundle or whose
    attributes a test broke."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    from sensorium_zarr import format as fmt
    from sensorium_zarr.converter._writer import bundle_values

    root = zarr.open_group(str(store), mode="r+", use_consolidated=False)
    if fmt.BUNDLE not in root:
        return
    try:
        attrs = fmt.MouseAttrs.from_dict(root.attrs[fmt.ATTRS_KEY], str(store))
        values = bundle_values(root, attrs)
    except (ValueError, KeyError):
        return
    data, members = fmt.pack_bundle(values)
    old = root[fmt.BUNDLE]
    array = root.create_array(
        fmt.BUNDLE, shape=data.shape, dtype=np.uint8, overwrite=True, dimension_names=old.metadata.dimension_names,
        compressors=[ZstdCodec(level=3), Crc32cCodec()], attributes={fmt.ATTRS_KEY: {fmt.MEMBERS_KEY: members}},
    )
    array[...] = data


def inner_chunks_per_shard(array: zarr.Array) -> int:
    """How many inner chunks one shard of the sharded ``array`` holds (its index's rows)."""
    return int(np.prod([s // c for s, c in zip(array.shards, array.chunks, strict=True)]))


def shard_index(data: bytes, n_inner: int) -> np.ndarray:
    """The (offset, nbytes) rows of the index at the end of the shard file ``data`` of
    ``n_inner`` inner chunks (its CRC32C, the last 4 bytes, not checked)."""
    return np.frombuffer(data[-(16 * n_inner + 4) : -4], "<u8").reshape(n_inner, 2)


def chunk_codecs(array: zarr.Array) -> list[dict]:
    """The codec chain of ``array``'s chunks as metadata: a sharded array's inner chunks'."""
    codecs: list[dict] = array.metadata.to_dict()["codecs"]
    if codecs[0]["name"] == "sharding_indexed":
        codecs = codecs[0]["configuration"]["codecs"]
    return codecs


def stored_values(root: zarr.Group, variable: str, position: int) -> np.ndarray:
    """Trial ``position`` of ``variable`` as read with plain Zarr, then as the format says a
    reader gets it back: a variable of the ``uint8_variables`` attribute (format version 8)
    in its ``stored_dtypes`` dtype, NaN from its ``valid_frames`` count on. Written out
    here, not taken from the package, so the tests check the reader's rule against it."""
    attrs = root.attrs["sensorium_zarr"]
    value = np.asarray(root[variable][position])
    if variable not in attrs.get("uint8_variables", []):
        return value
    assert value.dtype == np.uint8, f"{variable} is listed as uint8 but stored as {value.dtype}"
    column = ["videos", "responses", "behavior", "pupil_center"].index(variable)
    real = int(root["valid_frames"][position, column])
    time_axis = {"videos": 0}.get(variable, value.ndim - 1)
    restored = np.moveaxis(value.astype(attrs["stored_dtypes"][variable]), time_axis, 0)
    assert not np.moveaxis(value, time_axis, 0)[real:].any(), f"{variable}: padding frames hold non-zero bytes"
    restored[real:] = np.nan
    return np.moveaxis(restored, 0, time_axis)
