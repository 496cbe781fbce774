"""Sources in object storage, against a real S3 server (SeaweedFS on 127.0.0.1): a mouse
zip, a mouse folder and a prefix of mice in a bucket convert into the same store as the
local source, by ranged reads that never fetch a zip whole; damaged zips, a missing key
or bucket and bad credentials fail with one line and leave no store."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import small_spec

from sensorium_zarr import format as fmt
from sensorium_zarr._location import Remote
from sensorium_zarr.converter import convert_all, convert_mouse, verify
from sensorium_zarr.errors import SourceError
from sensorium_zarr.testing import write_mouse

obstore = pytest.importorskip("obstore", reason="object storage needs the s3 extra (pip install 'sensorium-zarr[s3]')")

CLI = [sys.executable, "-c", "from sensorium_zarr.converter import entry; entry()"]
#: A mouse whose videos (90 kB a trial) are most of its bytes, as real ones are; its
#: behavior and pupil files (under 1 kB) are fetched whole twice (scan, then conversion).
SPEC = dict(n_neurons=60, n_trials=12, t_pad=40, height=18, width=32)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> tuple[Path, Path]:
    """The same mouse as a folder and as a zip (stored members, as write_mouse makes them;
    no __MACOSX junk, which would be bytes never fetched, flattering the count)."""
    root = tmp_path_factory.mktemp("bucket-src")
    spec = small_spec(**SPEC)
    return write_mouse(spec, root / "folder"), write_mouse(spec, root / "zip", as_zip=True, macosx_junk=False)


@pytest.fixture(scope="module")
def local_store(sources, tmp_path_factory) -> Path:
    return convert_mouse(sources[1], tmp_path_factory.mktemp("bucket-local-out"), progress=False)


def _options(s3_server) -> dict:
    # Every request ends within its timeout: nothing here can hang on the server.
    return {**s3_server.storage_options(), "client_options": {"timeout": "30s", "connect_timeout": "5s"}}


def _put(url: str, key: str, data: bytes, s3_server) -> None:
    obstore.put(Remote.of(url, _options(s3_server)).objects(), key, data)


def _upload_folder(folder: Path, url: str, s3_server) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            _put(url, path.relative_to(folder).as_posix(), path.read_bytes(), s3_server)


def _keys(url: str, s3_server) -> list[str]:
    return sorted(m["path"] for batch in obstore.list(Remote.of(url, _options(s3_server)).objects()) for m in batch)


def _assert_same_store(a: zarr.Group, b: zarr.Group) -> None:
    """Same arrays, values (NaN where NaN) and attributes, group by group."""
    assert dict(a.attrs) == dict(b.attrs)
    arrays_a, arrays_b = dict(a.arrays()), dict(b.arrays())
    assert sorted(arrays_a) == sorted(arrays_b)
    for name, array in arrays_a.items():
        other = arrays_b[name]
        assert dict(array.attrs) == dict(other.attrs), name
        assert array.shape == other.shape and array.dtype == other.dtype, name
        np.testing.assert_array_equal(array[...], other[...], err_msg=name)
    groups_a, groups_b = dict(a.groups()), dict(b.groups())
    assert sorted(groups_a) == sorted(groups_b)
    for name, group in groups_a.items():
        _assert_same_store(group, groups_b[name])


def _convert_counting(url: str, out, s3_server) -> tuple[Path, int, int]:
    """Convert ``url`` into ``out``; the store, and the requests and bytes fetched."""
    from sensorium_zarr.converter._bucket import FETCHED

    before = FETCHED.snapshot()
    store = convert_mouse(url, out, progress=False, storage_options=_options(s3_server))
    requests, fetched = (n - m for n, m in zip(FETCHED.snapshot(), before, strict=True))
    return store, requests, fetched


def _assert_fetched_once(archive: Path, requests: int, fetched: int) -> None:
    """Never the whole object more than once: the scan fetches each member's first 512
    bytes, the conversion each member once, and the first trial's members once more (to
    decide which variables Blosc shrinks enough to code); the rest is the end records and
    directory."""
    size = archive.stat().st_size
    with zipfile.ZipFile(archive) as z:
        infos = z.infolist()
        npy = [i for i in infos if "/data/" in i.filename and i.filename.endswith(".npy")]
        trials = sorted(int(Path(i.filename).stem) for i in npy if "/data/responses/" in i.filename)
        first = [i for i in npy if Path(i.filename).stem == str(trials[0])]
    assert len(first) == len(fmt.VARIABLES)
    again = sum(i.compress_size + 30 + len(i.filename) for i in first)
    assert fetched <= size * 1.1 + again, (fetched, size, again)
    assert requests <= 2 * len(infos) + 10 + 2 * len(first), (requests, len(infos))


def test_a_zip_in_a_bucket_converts_to_the_local_store_by_ranged_reads(
    sources, local_store, bucket_url, s3_server, tmp_path
):
    archive = sources[1]
    _put(bucket_url, archive.name, archive.read_bytes(), s3_server)
    url = f"{bucket_url}/{archive.name}"
    store, requests, fetched = _convert_counting(url, tmp_path / "out", s3_server)
    assert store.name == local_store.name
    _assert_same_store(zarr.open_group(store, mode="r"), zarr.open_group(local_store, mode="r"))
    _assert_fetched_once(archive, requests, fetched)
    assert verify(url, store, storage_options=_options(s3_server)) == []

    # Into the bucket as well, the same store.
    remote = convert_mouse(url, f"{bucket_url}/out", progress=False, storage_options=_options(s3_server))
    _assert_same_store(zarr.open_group(remote.store(), mode="r"), zarr.open_group(local_store, mode="r"))


def test_a_deflated_zip_in_a_bucket_converts_the_same(sources, local_store, bucket_url, s3_server, tmp_path):
    folder = sources[0]
    archive = tmp_path / sources[1].name
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    _put(bucket_url, archive.name, archive.read_bytes(), s3_server)
    store, requests, fetched = _convert_counting(f"{bucket_url}/{archive.name}", tmp_path / "out", s3_server)
    _assert_same_store(zarr.open_group(store, mode="r"), zarr.open_group(local_store, mode="r"))
    _assert_fetched_once(archive, requests, fetched)


def test_a_folder_prefix_in_a_bucket_converts_to_the_local_store(sources, bucket_url, s3_server, tmp_path):
    folder = sources[0]
    _upload_folder(folder, f"{bucket_url}/{folder.name}", s3_server)
    local = convert_mouse(folder, tmp_path / "local", progress=False)
    options = _options(s3_server)
    # With or without the trailing slash.
    for i, url in enumerate((f"{bucket_url}/{folder.name}/", f"{bucket_url}/{folder.name}")):
        store = convert_mouse(url, tmp_path / f"out{i}", progress=False, storage_options=options)
        _assert_same_store(zarr.open_group(store, mode="r"), zarr.open_group(local, mode="r"))
    remote = convert_mouse(f"{bucket_url}/{folder.name}/", f"{bucket_url}/stores", progress=False,
                           storage_options=options)
    _assert_same_store(zarr.open_group(remote.store(), mode="r"), zarr.open_group(local, mode="r"))
    assert verify(f"{bucket_url}/{folder.name}", remote, storage_options=options) == []


def test_a_prefix_of_several_mice_converts_all_of_them_from_the_command_line(s3_server, bucket_url, tmp_path):
    names = [f"dynamic0000{i}-1-1-Video-test" for i in (1, 2, 3)]
    local = tmp_path / "src"
    write_mouse(small_spec(names[0], n_trials=12), local, as_zip=True)
    write_mouse(small_spec(names[1], n_trials=14, seed=1), local)
    write_mouse(small_spec(names[2], n_trials=16, seed=2), local, as_zip=True)
    prefix = f"{bucket_url}/mice"
    for path in sorted(local.iterdir()):
        if path.is_dir():
            _upload_folder(path, f"{prefix}/{path.name}", s3_server)
        else:
            _put(prefix, path.name, path.read_bytes(), s3_server)
    _put(prefix, ".hidden.zip", b"not a mouse", s3_server)  # skipped like a local hidden file
    env = {**os.environ, **s3_server.env()}
    done = subprocess.run([*CLI, "convert", f"{prefix}/", "--out", str(tmp_path / "out"), "--no-progress",
                           "--verify"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in names:
        assert f"{tmp_path / 'out' / name}.zarr: OK, identical to {prefix}/{name}" in done.stdout, done.stdout
    # The API's convert_all names the same mice, in the same order.
    stores = convert_all([prefix], tmp_path / "api", progress=False, storage_options=_options(s3_server))
    assert [s.name for s in stores] == [f"{n}.zarr" for n in names]
    for name in names:
        local_store = convert_mouse(next(local.glob(f"{name}*")), tmp_path / "local", progress=False)
        _assert_same_store(zarr.open_group(tmp_path / "api" / f"{name}.zarr", mode="r"),
                           zarr.open_group(local_store, mode="r"))


def _truncated(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def _bad_central_directory(raw: bytes) -> bytes:
    damaged = bytearray(raw)
    central = damaged.index(b"PK\x01\x02")
    damaged[central : central + 4] = b"XXXX"
    return bytes(damaged)


def _bad_crc(raw: bytes) -> bytes:
    # Flip the last byte of the last trial's video: the CRC fails when it is read.
    damaged = bytearray(raw)
    import io

    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        videos = [i for i in z.infolist() if "/data/videos/" in i.filename and not i.filename.startswith("__MACOSX")]
        info = max(videos, key=lambda i: i.header_offset)
    (name_len, extra_len) = struct.unpack_from("<HH", damaged, info.header_offset + 26)
    end = info.header_offset + 30 + name_len + extra_len + info.compress_size
    damaged[end - 1] ^= 0xFF
    return bytes(damaged)


def _huge_member(raw: bytes) -> bytes:
    # A member whose sizes claim 4 GB, in its local and central headers.
    damaged = bytearray(raw)
    import io

    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(".npy") and "/data/responses/" in i.filename
                    and not i.filename.startswith("__MACOSX"))
    name = info.filename.encode()
    central = damaged.index(b"PK\x01\x02")
    while damaged[central + 46 : central + 46 + len(name)] != name:
        central = damaged.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", damaged, info.header_offset + 22, 4_000_000_000)
    struct.pack_into("<I", damaged, central + 24, 4_000_000_000)
    return bytes(damaged)


@pytest.mark.parametrize("damage", [_truncated, _bad_central_directory, _bad_crc, _huge_member],
                         ids=["truncated", "bad central directory", "bad CRC", "member claims 4 GB"])
def test_a_damaged_zip_in_a_bucket_fails_as_the_local_one_does(sources, damage, bucket_url, s3_server, tmp_path):
    local = tmp_path / sources[1].name
    local.write_bytes(damage(sources[1].read_bytes()))
    with pytest.raises(SourceError) as expected:
        convert_mouse(local, tmp_path / "local-out", progress=False)
    _put(bucket_url, local.name, local.read_bytes(), s3_server)
    url = f"{bucket_url}/{local.name}"
    with pytest.raises(SourceError) as caught:
        convert_mouse(url, tmp_path / "out", progress=False, storage_options=_options(s3_server))
    # The same one line, naming the object instead of the file.
    assert str(caught.value) == str(expected.value).replace(str(local), url)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(SourceError):
        convert_mouse(url, f"{bucket_url}/out", progress=False, storage_options=_options(s3_server))
    assert _keys(f"{bucket_url}/out", s3_server) == []


def test_the_command_line_names_a_damaged_zip_in_one_line(sources, bucket_url, s3_server, tmp_path):
    _put(bucket_url, sources[1].name, _bad_central_directory(sources[1].read_bytes()), s3_server)
    env = {**os.environ, **s3_server.env()}
    done = subprocess.run([*CLI, "convert", f"{bucket_url}/{sources[1].name}", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {bucket_url}/{sources[1].name}: ")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_missing_key_or_bucket_and_bad_credentials_are_named(sources, bucket_url, s3_server, tmp_path):
    options = _options(s3_server)
    cases = [
        (f"{bucket_url}/nothing.zip", options, "nothing.zip: no such object"),
        (f"{bucket_url}/nothing/", options, "nothing: no such object or folder"),
        ("s3://no-such-bucket-here/m.zip", options, "NoSuchBucket: no such bucket"),
        ("s3://no-such-bucket-here/mouse/", options, "NoSuchBucket"),
    ]
    _put(bucket_url, sources[1].name, sources[1].read_bytes(), s3_server)
    wrong = {**options, "secret_access_key": "wrong"}
    cases.append((f"{bucket_url}/{sources[1].name}", wrong, "credentials were refused"))
    cases.append((f"{bucket_url}/", wrong, "credentials were refused"))
    for url, opts, message in cases:
        with pytest.raises(SourceError, match=message) as caught:
            convert_mouse(url, tmp_path / "out", progress=False, storage_options=opts)
        assert "\n" not in str(caught.value) and url.rstrip("/") in str(caught.value), str(caught.value)
        with pytest.raises(SourceError, match=message):
            convert_all([url], tmp_path / "out", progress=False, storage_options=opts)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_storage_options_still_refused_when_nothing_is_a_url(sources, tmp_path):
    from sensorium_zarr.errors import OutputError

    with pytest.raises(OutputError, match="storage_options are for URLs"):
        convert_mouse(sources[1], tmp_path / "out", progress=False, storage_options={"region": "x"})


def test_a_damaged_file_in_a_bucket_folder_fails_as_the_local_one_does(sources, bucket_url, s3_server, tmp_path):
    import shutil

    folder = Path(shutil.copytree(sources[0], tmp_path / "src" / sources[0].name))
    trial = min(int(p.stem) for p in (folder / "data/responses").glob("*.npy"))
    damaged = folder / f"data/responses/{trial}.npy"
    damaged.write_bytes(damaged.read_bytes()[:-7])  # truncated
    with pytest.raises(SourceError, match="truncated") as expected:
        convert_mouse(folder, tmp_path / "local-out", progress=False)
    url = f"{bucket_url}/{folder.name}"
    _upload_folder(folder, url, s3_server)
    with pytest.raises(SourceError) as caught:
        convert_mouse(url, tmp_path / "out", progress=False, storage_options=_options(s3_server))
    assert str(caught.value) == str(expected.value).replace(str(folder), url)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_scanned_bucket_source_pickles_and_an_object_gone_since_is_named(sources, bucket_url, s3_server):
    import pickle

    from sensorium_zarr.converter import scan_source

    archive = sources[1]
    _put(bucket_url, archive.name, archive.read_bytes(), s3_server)
    url = f"{bucket_url}/{archive.name}"
    layout = scan_source(url, _options(s3_server))
    local = scan_source(archive)
    trial = int(layout.trial_ids[0])
    # As Dask's distributed workers get it: they build their own client and zip reader.
    again = pickle.loads(pickle.dumps(layout))
    np.testing.assert_array_equal(again.read_trial("videos", trial), local.read_trial("videos", trial))
    obstore.delete(Remote.of(bucket_url, _options(s3_server)).objects(), archive.name)
    with pytest.raises(SourceError, match=f"{url}:.*no such object") as caught:
        again.read_trial("responses", trial)
    assert "\n" not in str(caught.value)
