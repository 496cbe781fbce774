"""The same conversion graph on a dask.distributed cluster of separate processes (so
every task argument really is pickled), and reader arrays computed there."""

from __future__ import annotations

import numpy as np
import zarr
from distributed import Client, LocalCluster
from helpers import small_spec

import sensorium_zarr as reader
from sensorium_zarr.converter import convert_mouse, verify
from sensorium_zarr.testing import write_mouse


def test_convert_and_read_on_a_distributed_cluster(tmp_path):
    source = write_mouse(small_spec(dtype="float64"), tmp_path / "src", as_zip=True)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        store = convert_mouse(source, tmp_path / "out", client=client, progress=False)
        assert verify(source, store) == []
        train = reader.open_mouse(store).split("train", standardize=False)
        on_cluster = client.compute(train.responses).result()
    local = zarr.open_group(str(store), mode="r")["responses"][:][train.positions]
    np.testing.assert_array_equal(on_cluster, local)
