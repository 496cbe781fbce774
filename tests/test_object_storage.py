"""Stores in object storage, against a real S3 server (SeaweedFS on 127.0.0.1, the
session's ``s3_server``): convert into a bucket, read back, the completion protocol
(interruption, overwrite, the lock), bad credentials, a missing bucket."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, inner_chunks_per_shard, shard_index, small_spec

import sensorium_zarr as reader
from sensorium_zarr._location import Remote
from sensorium_zarr.converter import Chunking, convert_mouse, verify
from sensorium_zarr.errors import IncompleteStoreError, OutputError, StoreExistsError, StoreNotFoundError
from sensorium_zarr.testing import write_mouse

obstore = pytest.importorskip("obstore", reason="object storage needs the s3 extra (pip install 'sensorium-zarr[s3]')")

CLI = [sys.executable, "-c", "from sensorium_zarr.converter import entry; entry()"]


@pytest.fixture(scope="module")
def mouse_zip(tmp_path_factory):
    return write_mouse(small_spec(), tmp_path_factory.mktemp("s3-src"), as_zip=True)


def _objects(url, s3_server):
    return Remote.of(url, s3_server.storage_options()).objects()


def _keys(url, s3_server):
    return sorted(m["path"] for batch in obstore.list(_objects(url, s3_server)) for m in batch)


def test_convert_to_a_bucket_reads_back_what_the_local_store_holds(mouse_zip, bucket_url, s3_server, tmp_path):
    options = s3_server.storage_options()
    remote = convert_mouse(mouse_zip, bucket_url, progress=False, storage_options=options)
    local = convert_mouse(mouse_zip, tmp_path / "out", progress=False)
    assert isinstance(remote, Remote) and remote.url == f"{bucket_url}/{local.name}"
    assert not (REPO / "s3:").exists() and not (tmp_path / "s3:").exists()
    assert verify(mouse_zip, remote.url, storage_options=options) == []

    in_bucket = reader.open_mouse(remote.url, storage_options=options)
    on_disk = reader.open_mouse(local)
    assert in_bucket.url == remote.url and in_bucket.path is None
    np.testing.assert_array_equal(in_bucket.trial_ids, on_disk.trial_ids)
    for split in ("train", "validation", "test"):
        a, b = in_bucket.split(split), on_disk.split(split)
        for variable in ("responses", "videos", "behavior", "pupil_center"):
            np.testing.assert_array_equal(
                getattr(a, variable).compute(), getattr(b, variable).compute(), err_msg=f"{split} {variable}"
            )
    # A Mouse pickles as its URL and options (Dask and DataLoader workers reopen it).
    again = pickle.loads(pickle.dumps(in_bucket))
    np.testing.assert_array_equal(again.split("train").responses[0].compute(), on_disk.split("train").responses[0])
    assert sorted(reader.open_sensorium(bucket_url, storage_options=options)) == [on_disk.name]


def test_videos_uint8_cannot_hold_are_written_again_in_the_bucket_in_their_float_dtype(
    bucket_url, s3_server, tmp_path
):
    """Format version 8's fallback in a bucket: the videos array, first written as uint8,
    is replaced there by its float32 one, and nothing of the first attempt is left."""
    options = s3_server.storage_options()
    source = write_mouse(small_spec(n_trials=14, t_pad=40, seed=5), tmp_path / "src")
    ninth = sorted(int(p.stem) for p in (source / "data/videos").glob("*.npy"))[9]
    path = source / "data/videos" / f"{ninth}.npy"
    video = np.load(path, allow_pickle=False)
    video[2, 3, 4] = 17.5
    np.save(path, video)
    store = convert_mouse(source, bucket_url, progress=False, storage_options=options,
                          chunking=Chunking(trials_per_shard=4), workers=2)
    opened = reader.open_mouse(store.url, storage_options=options)
    assert opened.attrs.uint8_variables == ()
    assert opened._handle.node("videos").dtype == np.float32
    assert verify(source, store.url, storage_options=options) == []
    local = reader.open_mouse(convert_mouse(source, tmp_path / "out", progress=False))
    for split in ("train", "test"):
        raw = opened.split(split, standardize=False).videos.compute()
        np.testing.assert_array_equal(raw, local.split(split, standardize=False).videos.compute())
    videos = [k for k in _keys(store.url, s3_server) if k.startswith("videos/")]
    assert len(videos) == 1 + -(-14 // 4), videos  # its zarr.json and one shard per 4 trials, no more


def test_a_complete_store_is_not_replaced_without_overwrite(mouse_zip, bucket_url, s3_server):
    options = s3_server.storage_options()
    store = convert_mouse(mouse_zip, bucket_url, progress=False, storage_options=options)
    before = obstore.head(_objects(store.url, s3_server), "zarr.json")["e_tag"]
    with pytest.raises(StoreExistsError, match="--overwrite"):
        convert_mouse(mouse_zip, bucket_url, progress=False, storage_options=options)
    assert obstore.head(_objects(store.url, s3_server), "zarr.json")["e_tag"] == before
    opened = reader.open_mouse(store.url, storage_options=options)
    convert_mouse(mouse_zip, bucket_url, progress=False, storage_options=options, overwrite=True)
    # A reader that opened the replaced store is told so, not handed another store's data.
    with pytest.raises(reader.StoreReplacedError):
        opened.split("train").responses.compute()
    assert verify(mouse_zip, store.url, storage_options=options) == []
    # Nothing but the store and no lock left beside it.
    parent = _keys(bucket_url, s3_server)
    assert all(k.startswith(f"{store.name}/") for k in parent), parent


def test_an_interrupted_conversion_is_refused_by_readers_and_completed_by_a_rerun(mouse_zip, bucket_url, s3_server):
    options = s3_server.storage_options()
    name = mouse_zip.stem
    env = {**os.environ, **s3_server.env(), "PYTHONUNBUFFERED": "1"}
    # A real CLI process, killed (SIGKILL: no cleanup at all) once chunks are in the bucket.
    child = subprocess.Popen(
        [*CLI, "convert", str(mouse_zip), "--out", bucket_url, "--no-progress", "--workers", "1",
         "--trials-per-shard", "1"],
        env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )
    store_url = f"{bucket_url}/{name}.zarr"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.poll() is None:
            keys = _keys(store_url, s3_server)
            if any(k.startswith("responses/c/") for k in keys):
                break
            time.sleep(0.05)
        assert child.poll() is None, "the conversion ended before it could be interrupted"
        child.kill()
    finally:
        child.kill()
        child.communicate(timeout=30)
    with pytest.raises(IncompleteStoreError):
        reader.open_mouse(store_url, storage_options=options)
    with pytest.raises(StoreNotFoundError, match="incomplete"):
        reader.open_sensorium(bucket_url, storage_options=options)
    # The killed run's lock names a dead process of this host: taken over, not waited for.
    store = convert_mouse(mouse_zip, bucket_url, progress=False, storage_options=options)
    assert verify(mouse_zip, store.url, storage_options=options) == []


def test_a_second_conversion_of_the_same_store_is_refused_while_the_first_holds_the_lock(
    mouse_zip, bucket_url, s3_server
):
    from sensorium_zarr.converter._remote import remote_lock

    options = s3_server.storage_options()
    final = Remote.of(f"{bucket_url}/{mouse_zip.stem}.zarr", options)
    with remote_lock(final):
        with pytest.raises(OutputError, match="another conversion"):
            convert_mouse(mouse_zip, bucket_url, progress=False, storage_options=options)
    assert _keys(bucket_url, s3_server) == []


def test_bad_credentials_fail_with_one_clear_line(mouse_zip, bucket_url, s3_server):
    options = {**s3_server.storage_options(), "secret_access_key": "wrong"}
    with pytest.raises(OutputError, match="SignatureDoesNotMatch: the credentials were refused") as caught:
        convert_mouse(mouse_zip, bucket_url, progress=False, storage_options=options)
    assert "\n" not in str(caught.value)
    with pytest.raises(StoreNotFoundError, match="credentials were refused") as caught:
        reader.open_mouse(f"{bucket_url}/x.zarr", storage_options=options)
    assert "\n" not in str(caught.value)


def test_a_missing_bucket_or_store_is_named(s3_server, bucket_url):
    import obstore

    options = s3_server.storage_options()
    with pytest.raises(StoreNotFoundError, match="NoSuchBucket"):
        reader.open_mouse("s3://no-such-bucket-here/m.zarr", storage_options=options)
    # The bucket exists (buckets are made by their first write; this test may run before
    # any other has written to it), the store in it does not.
    obstore.put(_objects(bucket_url, s3_server), "other.txt", b"not a store")
    with pytest.raises(StoreNotFoundError, match="no store there"):
        reader.open_mouse(f"{bucket_url}/nothing-here.zarr", storage_options=options)
    with pytest.raises(StoreNotFoundError, match="NoSuchBucket"):
        reader.open_sensorium("s3://no-such-bucket-here/prefix", storage_options=options)


def test_the_command_line_takes_urls_and_credentials_from_the_environment(mouse_zip, bucket_url, s3_server):
    env = {**os.environ, **s3_server.env()}
    run = CLI
    done = subprocess.run([*run, "convert", str(mouse_zip), "--out", bucket_url, "--no-progress", "--verify"],
                          env=env, capture_output=True, text=True, timeout=240, cwd=mouse_zip.parent)
    assert done.returncode == 0, done.stderr
    store_url = f"{bucket_url}/{mouse_zip.stem}.zarr"
    assert f"{store_url}: OK, identical to" in done.stdout, done.stdout[-2000:]
    assert not (mouse_zip.parent / "s3:").exists()
    info = subprocess.run([*run, "info", store_url], env=env, capture_output=True, text=True, timeout=120)
    assert info.returncode == 0, info.stderr
    assert "20 trials, 23 neurons" in info.stdout and "in the store" in info.stdout, info.stdout[-2000:]
    bad = {**env, "AWS_SECRET_ACCESS_KEY": "wrong"}
    refused = subprocess.run([*run, "info", store_url], env=bad, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.count("\n") == 1 and "credentials were refused" in refused.stderr, refused.stderr[-2000:]


#: HTTP requests opening a format version 5 store may cost, whatever its trials and tiers:
#: the replaced-store check's HEAD before and after, the root's zarr.json (consolidated
#: metadata) and the bundle's one chunk.
OPEN_REQUESTS = 5


def _only_tiers(source, keep: str) -> None:
    """Relabel every trial of the source whose tier is not train as ``keep``, so its store
    has two tiers instead of the sample's six."""
    path = source / "meta/trials/tiers.npy"
    tiers = np.load(path, allow_pickle=False)
    known = (tiers != "none")
    np.save(path, np.where(known & (tiers != "train"), keep, tiers).astype(tiers.dtype), allow_pickle=False)


def test_opening_is_a_few_requests_whatever_the_trials_and_tiers_and_split_adds_none(
    s3_server, bucket_url, tmp_path
):
    """Counted where the server receives them (the benchmark's counting proxy): opening is
    the same few requests for 20 trials in 6 tiers and 60 in 2, and ``split`` with
    standardization (either statistics source: the sample's provided statistics are small
    enough to be in the bundle) then sends none, its parameters included."""
    from benchmarks.s3 import CountingProxy, request_keys

    options = s3_server.storage_options()
    stores = {}
    for n_trials, tiers in ((20, None), (60, "oracle")):
        source = write_mouse(small_spec(n_trials=n_trials), tmp_path / f"src-{n_trials}")
        if tiers:
            _only_tiers(source, tiers)
        local = convert_mouse(source, tmp_path / f"local-{n_trials}", progress=False)
        remote = convert_mouse(source, f"{bucket_url}/{n_trials}", progress=False, storage_options=options)
        stores[n_trials] = (local, remote.url)
    opened = {}
    with CountingProxy(options["endpoint"]) as proxy:
        via = {**options, "endpoint": proxy.endpoint}
        for n_trials, (local, url) in stores.items():
            with proxy.counting() as got:
                mouse = reader.open_mouse(url, storage_options=via)
            opened[n_trials] = request_keys(got, url.rsplit("/", 1)[-1])
            assert mouse.n_trials == n_trials
            on_disk = reader.open_mouse(local)
            for statistics in ("recomputed", "provided"):
                with proxy.counting() as got:
                    split = mouse.split("train", statistics=statistics)
                    params = {v: split.standardization_params(v) for v in ("videos", "responses", "behavior",
                                                                             "pupil_center")}
                assert request_keys(got, "") == [], (statistics, request_keys(got, ""))
                want = on_disk.split("train", statistics=statistics)
                for variable, got_params in params.items():
                    np.testing.assert_array_equal(got_params.scale, want.standardization_params(variable).scale)
                # Unpickled (as in a worker process), a split reopens the root and reads the
                # bundle once again: three requests for every variable's parameters.
                clone = pickle.loads(pickle.dumps(split))
                with proxy.counting() as got:
                    for variable in params:
                        clone.standardization_params(variable)
                reopened = request_keys(got, url.rsplit("/", 1)[-1])
                assert reopened == ["GET zarr.json", "GET bundle/c/0", "HEAD zarr.json"], reopened
    assert len(reader.open_mouse(stores[20][0]).tiers) == 6 and len(reader.open_mouse(stores[60][0]).tiers) == 2
    assert opened[20] == opened[60], opened
    assert len(opened[20]) <= OPEN_REQUESTS, opened[20]
    assert sum(key.startswith("GET bundle/") for key in opened[20]) == 1, opened[20]


def test_a_local_cluster_converts_several_mice_into_the_bucket_as_one_workload(s3_server, bucket_url, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    from sensorium_zarr.converter import Chunking, convert_all

    options = s3_server.storage_options()
    names = [f"dynamic0000{i}-1-1-Video-test" for i in (1, 2, 3)]
    for i, name in enumerate(names):
        write_mouse(small_spec(name, n_trials=12 + 4 * i, seed=i), tmp_path / "src", as_zip=True)
    sources = sorted((tmp_path / "src").glob("*.zip"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster, timeout="60s") as client:
        with get_task_stream(client) as stream:
            # Shards of 2 trials: 24 blocks, enough that one worker cannot take them all
            # while the other is busy (with the default 8, 7 blocks sometimes could).
            stores = convert_all([tmp_path / "src"], bucket_url, client=client, progress=False,
                                 storage_options=options, chunking=Chunking(trials_per_shard=2))
        assert [s.url for s in stores] == [f"{bucket_url}/{p.stem}.zarr" for p in sources]
        # Both workers wrote blocks: the mice were spread over the cluster.
        writers = {t["worker"] for t in stream.data if str(t["key"]).startswith("write_block")}
        assert len(writers) == 2, writers
    for source, store in zip(sources, stores, strict=True):
        assert verify(source, store.url, storage_options=options) == []
    # A re-run skips what is complete and redoes only a missing mouse.
    from sensorium_zarr.converter._remote import clear_store

    clear_store(stores[1])
    kept = obstore.head(_objects(stores[0].url, s3_server), "zarr.json")["e_tag"], \
        obstore.head(_objects(stores[0].url, s3_server), "zarr.json")["last_modified"]
    again = convert_all([tmp_path / "src"], bucket_url, progress=False, storage_options=options, skip_existing=True)
    assert [s.url for s in again] == [s.url for s in stores]
    head = obstore.head(_objects(stores[0].url, s3_server), "zarr.json")
    assert (head["e_tag"], head["last_modified"]) == kept
    assert verify(sources[1], stores[1].url, storage_options=options) == []


def test_the_default_engine_reads_a_bucket_by_ranged_gets_as_the_disk_store_reads(mouse_zip, bucket_url, s3_server,
                                                                                   tmp_path):
    from sensorium_zarr._remote import RemoteArray

    options = s3_server.storage_options()
    remote = convert_mouse(mouse_zip, bucket_url, progress=False, storage_options=options)
    local = convert_mouse(mouse_zip, tmp_path / "out", progress=False)
    in_bucket, on_disk = reader.open_mouse(remote.url, storage_options=options), reader.open_mouse(local)
    for variable in ("responses", "videos", "behavior", "pupil_center"):
        assert isinstance(in_bucket._handle.array(variable), RemoteArray), variable
    a, b = in_bucket.split("train"), on_disk.split("train")
    for k in range(a.n_trials):
        got, want = a.trial(k), b.trial(k)
        for variable in want:
            np.testing.assert_array_equal(got[variable], want[variable], err_msg=f"trial {k} {variable}")
    np.testing.assert_array_equal(a.trial(3, frames=slice(4, 9))["videos"], b.trial(3, frames=slice(4, 9))["videos"])
    for select in (lambda s: s.responses[:, 3:9, 2:7], lambda s: s.responses[[0, 2, 5]][:, [1, 5, 17]],
                   lambda s: s.videos[1::2, 5], lambda s: s.behavior[-1]):
        np.testing.assert_array_equal(select(a).compute(), select(b).compute())


def _shifted(shard: bytes, n_inner: int, by: int) -> bytes:
    """The same shard (index at the end) with ``by`` bytes before its chunks: every offset
    of its index moved, its checksum made again."""
    import google_crc32c

    index = shard_index(shard, n_inner).copy()
    index[index[:, 0] != 2**64 - 1, 0] += by
    body = index.tobytes()
    return bytes(by) + shard[: -(16 * n_inner + 4)] + body + google_crc32c.value(body).to_bytes(4, "little")


def test_a_shard_rewritten_after_its_index_was_read_is_read_with_its_new_index(bucket_url, s3_server, tmp_path):
    """A cached shard index is used only with the object it was read from (its chunk GETs
    are conditional on that object's ETag): a shard replaced by another store's, its chunks
    moved, reads as the new object holds, not as garbage through the old index."""
    options = s3_server.storage_options()
    first, second = (
        convert_mouse(write_mouse(small_spec(seed=seed), tmp_path / f"src-{seed}"), f"{bucket_url}/{seed}",
                      progress=False, storage_options=options)
        for seed in (1, 2)
    )
    # Every tier, so trial 0 is store position 0 (in the first shard) of both stores.
    split, other = (
        mouse.split(list(mouse.tiers), standardize=False)
        for mouse in (reader.open_mouse(store.url, storage_options=options) for store in (first, second))
    )
    assert split.positions[0] == other.positions[0] == 0
    before = split.trial(0)["responses"]
    key = "responses/c/0/0/0"
    objects = _objects(first.url, s3_server)
    n_inner = int(np.prod(split.source("responses").handle.array("responses").layout.per_shard))
    replacement = _shifted(bytes(obstore.get(_objects(second.url, s3_server), key).bytes()), n_inner, 4096)
    obstore.put(objects, key, replacement)
    after = split.trial(0)["responses"]
    np.testing.assert_array_equal(after, other.trial(0)["responses"])
    assert not np.array_equal(after, before, equal_nan=True)


def _trial_nbytes(shard: Path, n_inner: int, trials_per_shard: int, within: int) -> int:
    """The bytes of the inner chunks of the ``within``-th trial of the local shard file."""
    lengths = shard_index(shard.read_bytes(), n_inner)[:, 1]
    per_trial = n_inner // trials_per_shard
    return int(lengths[within * per_trial : (within + 1) * per_trial].sum())


def test_one_trial_from_a_bucket_is_one_get_per_variable_of_only_its_chunks(s3_server, bucket_url, tmp_path):
    """Format version 6 stores a shard's inner chunks in C order, trial axis first: once
    its shards' indexes are cached, ``split.trial(k)`` is one GET per sharded variable, of
    exactly that trial's chunks' bytes, and the replaced-store check's HEAD, all three at
    once; behavior and pupil_center (plain chunks, kept since the first read) ask for
    nothing. (In Morton order the trials of a shard interleave, and a run takes in other
    trials' chunks.)"""
    import zarr

    from benchmarks.s3 import CountingProxy, most_in_flight, request_keys
    from sensorium_zarr.converter import Chunking

    options = s3_server.storage_options()
    source = write_mouse(small_spec(), tmp_path / "src")
    chunking = Chunking(trials_per_shard=4, neurons_per_chunk=5, frames_per_video_chunk=8)
    local = convert_mouse(source, tmp_path / "local", progress=False, chunking=chunking)
    url = convert_mouse(source, f"{bucket_url}/c-order", progress=False, storage_options=options,
                        chunking=chunking).url
    with CountingProxy(options["endpoint"]) as proxy:
        split = reader.open_mouse(url, storage_options={**options, "endpoint": proxy.endpoint}).split("train")
        positions = split.source("responses").positions
        k = next(k for k in range(1, len(positions)) if positions[k] // 4 == positions[k - 1] // 4)
        split.trial(k - 1)  # reads the indexes of the shards trial k is in
        proxy.delay = 0.2  # requests made at once overlap for certain
        with proxy.counting() as got:
            values = split.trial(k)
        # A Dask read checks for itself, its HEAD too in flight with its GET.
        with proxy.counting() as sliced:
            np.testing.assert_array_equal(split.responses[k].compute(), values["responses"])
    assert most_in_flight(got) == 3, [(r.method, r.start, r.end) for r in got]
    assert sorted(r.method for r in sliced) == ["GET", "HEAD"], sliced
    assert most_in_flight(sliced) == 2, [(r.method, r.start, r.end) for r in sliced]
    shard, within = divmod(int(positions[k]), 4)
    expected = {"HEAD zarr.json": 0}
    for variable, key in (("responses", f"{shard}/0/0"), ("videos", f"{shard}/0/0/0")):
        n_inner = inner_chunks_per_shard(zarr.open_array(str(local / variable), mode="r"))
        assert n_inner > 4, variable  # more than one chunk per trial, so Morton order would interleave
        expected[f"GET {variable}/c/{key}"] = _trial_nbytes(local / variable / "c" / key, n_inner, 4, within)
    keys = request_keys(got, url.rsplit("/", 1)[-1])
    assert sorted(keys) == sorted(expected), keys
    assert {key: r.nbytes for key, r in zip(keys, got, strict=True)} == expected
    want = reader.open_mouse(local).split("train").trial(k)
    for variable, array in want.items():
        np.testing.assert_array_equal(values[variable], array, err_msg=variable)


def test_after_a_first_read_no_read_from_a_bucket_waits_for_a_shard_index(s3_server, bucket_url, tmp_path):
    """The first read of a variable fetches every shard's index at once (and of a small
    array of plain chunks, every chunk), so a trial of any other shard is then one GET per
    sharded variable and the HEAD, with no index GET before them."""
    from benchmarks.s3 import CountingProxy, request_kinds
    from sensorium_zarr.converter import Chunking

    options = s3_server.storage_options()
    source = write_mouse(small_spec(), tmp_path / "src")
    url = convert_mouse(source, f"{bucket_url}/every-index", progress=False, storage_options=options,
                        chunking=Chunking(trials_per_shard=4)).url
    with CountingProxy(options["endpoint"]) as proxy:
        split = reader.open_mouse(url, storage_options={**options, "endpoint": proxy.endpoint}).split("train")
        positions = split.source("responses").positions
        with proxy.counting() as first:
            split.trial(0)
        later = [k for k in range(len(positions)) if positions[k] // 4 != positions[0] // 4]
        assert len({int(positions[k]) // 4 for k in later[-2:]}) == 2  # two other shards
        for k in later[-2:]:
            with proxy.counting() as got:
                split.trial(k)
            assert request_kinds(got) == "2 GET chunk, 1 HEAD zarr.json", (k, request_kinds(got))
    # The first read asked for both sharded variables' indexes of every shard at once, and
    # for every plain chunk of behavior and pupil_center, whole.
    index_gets = [r for r in first if r.method == "GET" and (r.range or "").startswith("bytes=-")]
    n_shards = -(-reader.open_mouse(url, storage_options=options).n_trials // 4)
    assert len(index_gets) == 2 * n_shards, request_kinds(first)
    for variable in ("behavior", "pupil_center"):
        wholes = {r.target for r in first if r.method == "GET" and f"/{variable}/c/" in r.target and r.range is None}
        assert len(wholes) == n_shards, (variable, request_kinds(first))


def test_a_store_replaced_while_a_trial_is_read_is_refused_never_mixed(s3_server, bucket_url, tmp_path):
    """The replaced-store check's HEAD goes out while a trial's chunk GETs are under way. A
    store replaced after that HEAD found the old one, before a GET reaches the server: the
    GET, conditional on the old shard's ETag, is refused; the read takes the new shard's
    index and data, and so checks again: StoreReplacedError, never the new store's values
    handed out as the old one's. And a read after the replacement (everything it needs
    kept from earlier reads, no chunk request refused) is refused by its own HEAD."""
    from benchmarks.s3 import CountingProxy

    options = s3_server.storage_options()
    old, new = (write_mouse(small_spec(seed=seed), tmp_path / f"src-{seed}") for seed in (1, 2))
    url = convert_mouse(old, bucket_url, progress=False, storage_options=options).url
    with CountingProxy(options["endpoint"]) as proxy:
        split = reader.open_mouse(url, storage_options={**options, "endpoint": proxy.endpoint}).split("train")
        split.trial(0)  # every index and plain chunk kept: a trial is now its GETs and the HEAD
        head_sent = threading.Event()
        swapped: list[bool] = []

        def hold(method: str, target: str) -> None:
            if method == "HEAD":
                head_sent.set()
            elif method == "GET" and "/responses/c/" in target and not swapped:
                # The HEAD left with this GET; let it find the old store, then replace it.
                swapped.append(head_sent.wait(timeout=10))
                time.sleep(0.3)
                convert_mouse(new, bucket_url, progress=False, storage_options=options, overwrite=True)

        proxy.hold = hold
        with pytest.raises(reader.StoreReplacedError, match="was replaced since it was opened"):
            split.trial(1)
        assert swapped == [True], "the HEAD did not go out while the trial's GETs were under way"
        proxy.hold = None
        # Trial 0's shards are kept from before: no chunk request, and still refused.
        with pytest.raises(reader.StoreReplacedError):
            split.trial(0)
        with pytest.raises(reader.StoreReplacedError):
            split.responses[:2].compute()
    fresh = reader.open_mouse(url, storage_options=options).split("train").trial(1)
    expected = reader.open_mouse(convert_mouse(new, tmp_path / "local", progress=False)).split("train").trial(1)
    for variable, values in expected.items():
        np.testing.assert_array_equal(fresh[variable], values, err_msg=variable)


def test_a_large_array_of_plain_chunks_is_fetched_per_read_not_kept(s3_server, bucket_url, tmp_path, monkeypatch):
    """Only an array of plain chunks of at most ``_KEEP_PLAIN`` bytes is kept whole after
    its first read; a larger one costs a GET per chunk a read needs, every read, with the
    same values."""
    from benchmarks.s3 import CountingProxy
    from sensorium_zarr import _remote

    options = s3_server.storage_options()
    source = write_mouse(small_spec(), tmp_path / "src")
    local = reader.open_mouse(convert_mouse(source, tmp_path / "local", progress=False)).split("train")
    url = convert_mouse(source, bucket_url, progress=False, storage_options=options).url
    monkeypatch.setattr(_remote, "_KEEP_PLAIN", 0)
    with CountingProxy(options["endpoint"]) as proxy:
        split = reader.open_mouse(url, storage_options={**options, "endpoint": proxy.endpoint}).split("train")
        split.trial(0)
        for k in (1, 0):
            with proxy.counting() as got:
                values = split.trial(k)
            plain = [r.target for r in got if r.method == "GET" and "/behavior/c/" in r.target]
            assert len(plain) == 1, [r.target for r in got]
            for variable, array in local.trial(k).items():
                np.testing.assert_array_equal(values[variable], array, err_msg=variable)
