"""Read a store in real worker processes, one way per scenario; run as a script by
tests/test_processes.py, which kills it on a timeout (a hang fails, never blocks CI).

    python process_scenarios.py SCENARIO STORE ENGINE

STORE is a folder or a URL (its server and credentials from the AWS_* environment
variables); from a URL, ``pool_fork`` checks that forked workers are refused, not hung.

Each scenario runs twice: first when the parent has only opened the store, then again
after the parent has read every trial (through ``Split.trial`` and threaded Dask
computes). Workers read every trial; the parent checks the values against its own read
and prints one ``ok`` line per round. A mismatch or an error exits non-zero.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

import sensorium_zarr as reader

VARIABLES = ("videos", "responses", "behavior", "pupil_center")
SPLIT: Any = None
STORE = ""
TIMEOUT = 60


def _split(store: str, engine: str) -> Any:
    return reader.open_mouse(store, engine=engine).split(["train", "test"])


def read_both_ways(k: int) -> dict[str, np.ndarray]:
    """Trial ``k`` through ``Split.trial`` and through the Dask arrays (threaded scheduler,
    Dask's default), checked against each other."""
    split = SPLIT
    item = split.trial(k)
    for variable in VARIABLES:
        lazy = getattr(split, variable)[k].compute()
        np.testing.assert_array_equal(item[variable], lazy, err_msg=f"trial {k} {variable}")
    return item


def _check(split: Any, items: list[dict[str, np.ndarray]]) -> None:
    assert len(items) == split.n_trials
    for variable in VARIABLES:
        got = np.stack([item[variable] for item in items])
        np.testing.assert_array_equal(got, getattr(split, variable).compute(), err_msg=variable)


def pool_fork() -> list[dict[str, np.ndarray]]:
    import multiprocessing

    if "://" in STORE:
        return bucket_refused_in_fork()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        return pool.map_async(read_both_ways, range(SPLIT.n_trials)).get(TIMEOUT)


def refused(k: int) -> str:
    """The one line a forked worker's read of trial ``k`` from a bucket raises."""
    try:
        read_both_ways(k)
    except reader.SensoriumZarrError as e:
        return str(e)
    raise AssertionError(f"trial {k}: a forked worker read from a bucket")


def bucket_refused_in_fork() -> list[dict[str, np.ndarray]]:
    """Forked workers of a parent that has opened a bucket's store cannot send requests
    (obstore's runtime does not survive a fork): each read is refused with one line, none
    hangs; the parent reads on (``main`` reads after each round), and its own reads are
    what the round returns."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        messages = pool.map_async(refused, range(SPLIT.n_trials)).get(TIMEOUT)
    for message in messages:
        assert "forked" in message and "spawn" in message and "\n" not in message, message
    return [read_both_ways(k) for k in range(SPLIT.n_trials)]


def _dask_processes(context: str | None) -> list[dict[str, np.ndarray]]:
    import dask

    options = {} if context is None else {"multiprocessing.context": context}
    with dask.config.set(options):
        arrays = dask.compute(*(getattr(SPLIT, v) for v in VARIABLES), scheduler="processes", num_workers=2)
    return [dict(zip(VARIABLES, (a[k] for a in arrays), strict=True)) for k in range(SPLIT.n_trials)]


def dask_processes() -> list[dict[str, np.ndarray]]:
    return _dask_processes(None)


def dask_processes_fork() -> list[dict[str, np.ndarray]]:
    return _dask_processes("fork")


def distributed() -> list[dict[str, np.ndarray]]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        futures = client.map(read_both_ways_of, [SPLIT] * SPLIT.n_trials, range(SPLIT.n_trials))
        items = client.gather(futures)
        arrays = client.compute([getattr(SPLIT, v) for v in VARIABLES], sync=True)
    for variable, array in zip(VARIABLES, arrays, strict=True):
        np.testing.assert_array_equal(np.stack([item[variable] for item in items]), array, err_msg=variable)
    return items


def read_both_ways_of(split: Any, k: int) -> dict[str, np.ndarray]:
    global SPLIT
    SPLIT = split
    return read_both_ways(k)


class TrialDataset:
    """A PyTorch-style map dataset over a split: what a user would write."""

    def __init__(self, split: Any) -> None:
        self.split = split

    def __len__(self) -> int:
        return self.split.n_trials

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        return self.split.trial(k)


def _torch(epochs: int = 1, **options: Any) -> list[dict[str, np.ndarray]]:
    from torch.utils.data import DataLoader

    loader = DataLoader(TrialDataset(SPLIT), batch_size=None, num_workers=2, timeout=TIMEOUT, **options)
    items: list[dict[str, np.ndarray]] = []
    for _ in range(epochs):
        items = [{v: t.numpy() for v, t in item.items()} for item in loader]
    return items


def torch_fork() -> list[dict[str, np.ndarray]]:
    return _torch()


def torch_spawn() -> list[dict[str, np.ndarray]]:
    return _torch(multiprocessing_context="spawn")


def torch_persistent() -> list[dict[str, np.ndarray]]:
    return _torch(epochs=2, persistent_workers=True)


SCENARIOS = {
    f.__name__: f
    for f in (pool_fork, dask_processes, dask_processes_fork, distributed, torch_fork, torch_spawn, torch_persistent)
}


SPAWNED = ("dask_processes", "distributed", "torch_spawn")


def main(scenario: str, store: str, engine: str) -> None:
    global SPLIT, STORE
    STORE = store
    SPLIT = _split(store, engine)
    run = SCENARIOS[scenario]
    if scenario in SPAWNED:
        # A spawned child starts empty whatever the parent did: one round, after a read.
        read_both_ways(0)
    for parent in ("had only opened the store", "had read every trial")[scenario in SPAWNED :]:
        items = run()
        read_both_ways(0)
        _check(SPLIT, items)
        print(f"ok: workers read every trial when the parent {parent}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
