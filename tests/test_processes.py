"""Splits read in real worker processes: forked (multiprocessing, PyTorch's default, Dask's
processes scheduler set to fork) and spawned (PyTorch spawn, Dask's default processes
scheduler, dask.distributed), with every engine, before and after the parent has read.

Each scenario runs in its own Python process (tests/process_scenarios.py), whose process
group is killed on a timeout, so a hang fails the test instead of blocking the run.
A forked child inherits the parent's thread pools without their threads; the store has
several inner chunks per trial, so each read needs a pool that works. The same store in
a bucket of the real S3 server: spawned workers read it, forked ones are refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import small_spec

from sensorium_zarr.converter import convert_mouse
from sensorium_zarr.converter._chunking import Chunking
from sensorium_zarr.testing import write_mouse

SPAWNED = ("dask_processes", "distributed", "torch_spawn")
SCRIPT = Path(__file__).with_name("process_scenarios.py")
TIMEOUT = 240
ENGINES = ["native", "zarr", "zarrs"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    source = write_mouse(small_spec(), tmp_path_factory.mktemp("src"))
    chunking = Chunking(trials_per_shard=4, neurons_per_chunk=8, frames_per_video_chunk=8)
    return convert_mouse(source, tmp_path_factory.mktemp("out"), chunking=chunking, engine="zarr", progress=False)


def run_scenario(scenario: str, store: Path | str, engine: str, env: dict[str, str] | None = None) -> None:
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), scenario, str(store), engine],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=None if env is None else {**os.environ, **env},
    )
    try:
        out, err = process.communicate(timeout=TIMEOUT)
        hung = False
    except subprocess.TimeoutExpired:
        hung = True
    finally:
        # The scenario's workers too, whether it hung or left one behind.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if hung:
        out, err = process.communicate()
        pytest.fail(f"{scenario} with engine={engine} hung (killed after {TIMEOUT} s); it printed: {out!r}")
    assert process.returncode == 0, f"{scenario} with engine={engine} failed:\n{out}\n{err[-3000:]}"
    assert out.count("ok: ") == (1 if scenario in SPAWNED else 2), out


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("scenario", ["pool_fork", "dask_processes", "dask_processes_fork", "distributed"])
def test_workers_read_every_trial(store, scenario, engine):
    run_scenario(scenario, store, engine)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("scenario", ["torch_fork", "torch_spawn", "torch_persistent"])
def test_torch_dataloader_workers_read_every_trial(store, scenario, engine):
    pytest.importorskip("torch")
    run_scenario(scenario, store, engine)


@pytest.fixture(scope="module")
def bucket_store(store, s3_server) -> str:
    """The same store uploaded to a bucket of the real S3 server."""
    from benchmarks.s3 import upload
    from sensorium_zarr._location import Remote

    url = f"s3://sensorium-test/processes-{uuid.uuid4().hex[:8]}/{store.name}"
    upload(store, Remote.of(url, s3_server.storage_options()))
    return url


@pytest.mark.parametrize("engine", ["native", "zarr"])
@pytest.mark.parametrize("scenario", ["pool_fork", "dask_processes", "torch_spawn"])
def test_workers_read_a_bucket_or_are_refused_when_forked(bucket_store, s3_server, scenario, engine):
    """Spawned workers read the bucket's store; forked ones (after the parent opened it)
    are refused with one line rather than hang, and the parent reads on."""
    if scenario.startswith("torch"):
        pytest.importorskip("torch")
    run_scenario(scenario, bucket_store, engine, env=s3_server.env())
