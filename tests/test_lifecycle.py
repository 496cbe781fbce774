"""A conversion's life as a process: its options, its output folder, its memory, the
lock between two conversions, signals, and ``--overwrite``'s swap as readers see it.

Every failure here must end as the CLI's one ``error:`` line with exit status 2 (143 for
SIGTERM), and leave neither a store nor a partial folder behind.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, small_spec

from sensorium_zarr import open_mouse
from sensorium_zarr._store import is_complete_store, open_store
from sensorium_zarr.converter import Chunking, convert_mouse, verify
from sensorium_zarr.errors import OptionError, OutputError, StoreNotFoundError, StoreReplacedError
from sensorium_zarr.testing import write_mouse

SCRIPT = REPO / "scripts/convert_sensorium.py"
CLI = [sys.executable, "-c", "from sensorium_zarr.converter import entry; entry()"]
TIMEOUT = 120


@pytest.fixture(scope="module")
def slow_mouse(tmp_path_factory) -> Path:
    """Large enough (67 MB) that converting it a shard at a time takes a few seconds."""
    spec = small_spec("dynamic00003-1-1-Video-slow", n_neurons=1500, n_trials=64, t_pad=120, height=18, width=32)
    return write_mouse(spec, tmp_path_factory.mktemp("slow"))


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def _convert(source: Path, out: Path | str, *options: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return _run([sys.executable, str(SCRIPT), str(source), "--out", str(out), "--no-progress", *options], cwd=cwd)


def _one_error_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The error line of a failed run, checked: exit status 2, one line, no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _nothing_left(out: Path) -> None:
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left == [], f"left behind in {out}: {left}"


def _start(source: Path, out: Path, *options: str) -> subprocess.Popen:
    command = [sys.executable, str(SCRIPT), str(source), "--out", str(out), "--no-progress",
               "--trials-per-shard", "1", "--workers", "1", *options]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_shards(source: Path, out: Path, process: subprocess.Popen, count: int = 3) -> None:
    """Until the partial store of ``process`` holds ``count`` response shards."""
    partial = out / f".{source.name}.zarr.partial"
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if partial.exists() and len(list((partial / "responses" / "c").glob("*/*/*"))) >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"conversion ended before it could be caught midway: {process.communicate()}")
        time.sleep(0.02)
    process.kill()
    pytest.fail("no shard written in time")


@contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real, small file system at ``where`` (tmpfs), or a skip where none can be mounted."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True, timeout=TIMEOUT)


# Options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option", ["--trials-per-shard", "--neurons-per-chunk", "--frames-per-response-chunk", "--workers"]
)
@pytest.mark.parametrize("value", ["0", "-1", "eight"])
def test_numeric_option_out_of_range_is_one_line_at_parse_time(folder_mouse, tmp_path, option, value):
    out = tmp_path / "out"
    line = _one_error_line(_convert(folder_mouse, out, option, value), option, repr(value))
    assert "at least 1" in line
    assert not out.exists()


@pytest.mark.parametrize("value", ["101", "-1", "ten"])
def test_min_blosc_saving_out_of_range_is_one_line_at_parse_time(folder_mouse, tmp_path, value):
    out = tmp_path / "out"
    line = _one_error_line(_convert(folder_mouse, out, "--min-blosc-saving", value), "--min-blosc-saving", repr(value))
    assert "from 0 to 100" in line
    assert not out.exists()


def test_verify_workers_zero_is_one_line(folder_mouse, folder_store):
    _one_error_line(_run([*CLI, "verify", str(folder_mouse), str(folder_store), "--workers", "0"]), "--workers")


@pytest.mark.parametrize("field, value", [
    ("trials_per_shard", 0), ("neurons_per_chunk", -2), ("frames_per_video_chunk", 0), ("frames_per_response_chunk", 0),
    ("frames_per_response_chunk", 1.5),
    ("trials_per_shard", 2.5), ("trials_per_shard", True), ("clevel", 10), ("cname", "gzip"), ("shuffle", "yes"),
    ("response_shuffle", "bitshuffles"), ("min_blosc_saving", 101), ("min_blosc_saving", -1),
    ("min_blosc_saving", 2.5), ("min_blosc_saving", True),
])
def test_chunking_refuses_out_of_range(field, value):
    with pytest.raises(OptionError, match=f"Chunking.{field} must be"):
        Chunking(**{field: value})


def test_api_refuses_zero_workers_before_writing(folder_mouse, tmp_path):
    with pytest.raises(OptionError, match="workers must be at least 1, got 0"):
        convert_mouse(folder_mouse, tmp_path / "out", workers=0, progress=False)
    assert not (tmp_path / "out").exists()


# The output folder -----------------------------------------------------------------------


def test_out_naming_a_file(folder_mouse, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    _one_error_line(_convert(folder_mouse, target), str(target), "not a folder")
    assert target.read_text() == "not a folder"


def test_https_out_is_refused_as_read_only_and_no_local_folder_is_made(folder_mouse, tmp_path):
    url = "https://example.org/x"
    _one_error_line(_convert(folder_mouse, url, cwd=tmp_path), url, "read-only")
    assert list(tmp_path.iterdir()) == [], "no local folder named after the URL"
    with pytest.raises(OutputError, match="read-only"):
        convert_mouse(folder_mouse, url, progress=False)


def test_a_url_folded_by_pathlib_is_refused_not_made_a_local_folder(folder_mouse, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="folded"):
        convert_mouse(folder_mouse, Path("s3://bucket/stores"), progress=False)
    assert list(tmp_path.iterdir()) == [], "no local folder named s3:"


def test_a_source_in_a_bucket_without_the_s3_extra_names_the_extra(tmp_path):
    # A real process in which obstore cannot be imported, as without the s3 extra.
    without_obstore = [sys.executable, "-c", "import sys; sys.modules['obstore'] = None; "
                       "from sensorium_zarr.converter import entry; entry()"]
    result = _run([*without_obstore, "convert", "s3://bucket/mouse.zip", "--out", str(tmp_path / "out")], cwd=tmp_path)
    _one_error_line(result, "s3://bucket/mouse.zip", "pip install 'sensorium-zarr[s3]'")
    assert list(tmp_path.iterdir()) == []


def test_a_source_url_folded_by_pathlib_is_refused(tmp_path):
    result = _run([*CLI, "convert", "s3:/bucket/mouse.zip", "--out", str(tmp_path / "out")], cwd=tmp_path)
    _one_error_line(result, "s3:/bucket/mouse.zip", "folded")
    assert list(tmp_path.iterdir()) == []


def test_read_only_output_folder(folder_mouse, tmp_path):
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as out:
        _one_error_line(_convert(folder_mouse, out), str(out), "cannot write there", "Read-only file system")
        _nothing_left(out)
        _one_error_line(_convert(folder_mouse, out / "sub"), "Read-only file system")


@pytest.mark.parametrize("engine", ["zarr", "zarrs"])
def test_disk_full_fails_cleanly(slow_mouse, tmp_path, engine):
    with _tmpfs(tmp_path / "small", "size=4m") as out:
        _one_error_line(_convert(slow_mouse, out, "--engine", engine), str(out), "no space left on device")
        _nothing_left(out)


def test_source_file_deleted_mid_run(slow_mouse, tmp_path):
    source = Path(shutil.copytree(slow_mouse, tmp_path / "src" / slow_mouse.name))
    out = tmp_path / "out"
    process = _start(source, out)
    _wait_for_shards(source, out, process)
    shutil.rmtree(source / "data" / "videos")
    _, err = process.communicate(timeout=TIMEOUT)
    result = subprocess.CompletedProcess(process.args, process.returncode, "", err)
    _one_error_line(result, str(source / "data" / "videos"), "could not be read", "No such file")
    _nothing_left(out)


# Memory ----------------------------------------------------------------------------------


# Runs a command and prints its peak RSS. A child forked from this test process would
# count the pages it shares with it (hundreds of MiB by the end of the suite) until it
# execs; forked from this small wrapper it starts from a few MiB.
_PEAK_RSS = """
import resource, subprocess, sys
status = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(status, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_mib(command: list[str]) -> tuple[int, float, str]:
    """Exit status and peak resident memory (MiB) of ``command``, and its stderr."""
    result = _run([sys.executable, "-c", _PEAK_RSS, *command])
    status, peak_kib = result.stdout.split()
    return int(status), int(peak_kib) / 1024, result.stderr


def test_huge_trials_per_shard_memory_is_bounded_by_the_source(slow_mouse, tmp_path):
    out = tmp_path / "out"
    source_mib = sum(p.stat().st_size for p in slow_mouse.rglob("*") if p.is_file()) / 2**20
    command = [sys.executable, str(SCRIPT), str(slow_mouse), "--out", str(out), "--no-progress",
               "--trials-per-shard", "100000", "--neurons-per-chunk", "100000"]
    status, peak, err = _peak_rss_mib(command)
    assert status == 0, err
    # The interpreter, numpy, zarr and dask take about 150 MiB; a shard of 100000 trials
    # would take 100 GB. Generous: the source's size five times over, on top.
    assert peak < 250 + 5 * source_mib, f"peak RSS {peak:.0f} MiB for a {source_mib:.0f} MiB source"
    _, attrs = open_store(out / f"{slow_mouse.name}.zarr")
    assert attrs.chunking["trials_per_shard"] == attrs.n_trials


def _sparse_npy(path: Path, shape: tuple[int, ...], dtype: str) -> None:
    """A real .npy file of ``shape`` whose data is a hole: its full size, no disk used."""
    with open(path, "wb") as fp:
        np.lib.format.write_array_header_1_0(fp, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
        fp.truncate(fp.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize)


def test_shards_beyond_the_machines_memory_are_refused_before_writing(folder_mouse, tmp_path):
    """A source whose trials are so large that one shard of them cannot fit in memory."""
    source = Path(shutil.copytree(folder_mouse, tmp_path / "src" / folder_mouse.name))
    files = sorted((source / "data/responses").glob("*.npy"))
    t_pad = np.load(files[0]).shape[1]
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    n_neurons = physical // (len(files) * t_pad * 4) + 1  # all trials together: the machine's memory
    for path in files:
        _sparse_npy(path, (n_neurons, t_pad), "float32")
    # The provided statistics are optional; they would no longer match the widened trials.
    shutil.rmtree(source / "meta/statistics/responses")
    out = tmp_path / "out"
    _one_error_line(_convert(source, out, "--trials-per-shard", "100000", "--workers", "1"),
                    str(source), "GiB of memory", "smaller --trials-per-shard")
    _nothing_left(out)


# Two conversions, signals, --overwrite's swap ---------------------------------------------


def test_second_conversion_into_the_same_folder_fails_and_the_first_finishes(slow_mouse, tmp_path):
    out = tmp_path / "out"
    first = _start(slow_mouse, out)
    try:
        _wait_for_shards(slow_mouse, out, first)
        second = _convert(slow_mouse, out, "--overwrite")
        _one_error_line(second, f"{slow_mouse.name}.zarr", f"another conversion (pid {first.pid})")
        _, err = first.communicate(timeout=TIMEOUT)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, err
    store = out / f"{slow_mouse.name}.zarr"
    assert sorted(p.name for p in out.iterdir()) == [store.name], "no partial store, no lock file"
    assert verify(slow_mouse, store) == []


def test_kill_9_releases_the_lock(slow_mouse, tmp_path):
    out = tmp_path / "out"
    process = _start(slow_mouse, out)
    _wait_for_shards(slow_mouse, out, process)
    process.kill()
    process.wait()
    assert (out / f".{slow_mouse.name}.zarr.lock").exists()  # the file stays, its lock does not
    assert _convert(slow_mouse, out).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{slow_mouse.name}.zarr"]


def test_sigterm_removes_the_partial_store_and_exits_143(slow_mouse, tmp_path):
    out = tmp_path / "out"
    process = _start(slow_mouse, out)
    _wait_for_shards(slow_mouse, out, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "terminated: no store was left half-written"
    _nothing_left(out)


@pytest.fixture
def published(folder_mouse, tmp_path) -> tuple[Path, Path]:
    """A converted store, and its source."""
    return folder_mouse, convert_mouse(folder_mouse, tmp_path / "out", progress=False)


def _crash_between_the_renames(store: Path) -> Path:
    """The folder as --overwrite leaves it when it dies between its two renames: the old
    store moved aside, the new one complete but still partial."""
    old = store.with_name(f".{store.name}.old")
    partial = store.with_name(f".{store.name}.partial")
    shutil.copytree(store, partial)
    store.rename(old)
    return old


def test_overwrite_crashed_between_renames_is_put_back(published):
    source, store = published
    _crash_between_the_renames(store)
    _one_error_line(_convert(source, store.parent), "a complete store is already there")
    assert sorted(p.name for p in store.parent.iterdir()) == [store.name]
    assert is_complete_store(store) and verify(source, store) == []


def test_overwrite_crashed_between_renames_then_overwrite_again(published):
    source, store = published
    _crash_between_the_renames(store)
    result = _convert(source, store.parent, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in store.parent.iterdir()) == [store.name]
    assert verify(source, store) == []


def test_kill_9_between_the_renames_of_overwrite_then_rerun(published):
    """strace kills the converter (SIGKILL) as it enters its second rename, the one that
    moves the new store into place: the real crash, at exactly that point."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("needs strace to kill the process at the rename")
    source, store = published
    partial = store.with_name(f".{store.name}.partial")
    renames = "rename,renameat,renameat2"
    # Only the main thread is traced (no -f): it is the one that renames, and tracing the
    # worker threads too would slow the conversion several times over.
    kill_at_rename = [strace, "-qq", "-o", os.devnull, "-P", str(partial),
                      "-e", f"trace={renames}", "-e", f"inject={renames}:signal=KILL:when=1"]
    crashed = _run([*kill_at_rename, sys.executable, str(SCRIPT), str(source), "--out", str(store.parent),
                    "--overwrite", "--no-progress"])
    if "ptrace" in crashed.stderr.lower() or "strace:" in crashed.stderr:
        pytest.skip(f"strace cannot trace here: {crashed.stderr.strip()}")
    assert crashed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), crashed.stderr
    names = sorted(p.name for p in store.parent.iterdir())
    assert names == [f".{store.name}.lock", f".{store.name}.old", partial.name], "killed between the renames"
    _one_error_line(_convert(source, store.parent), "a complete store is already there")
    assert sorted(p.name for p in store.parent.iterdir()) == [store.name]
    assert verify(source, store) == []


def test_overwrite_crashed_while_deleting_the_old_store_is_cleaned(published):
    """Even by a run that then refuses to overwrite: the half-deleted copy is garbage."""
    source, store = published
    old = store.with_name(f".{store.name}.old")
    shutil.copytree(store, old)
    shutil.rmtree(old / "responses")  # half deleted, as rmtree leaves it when killed
    _one_error_line(_convert(source, store.parent), "a complete store is already there")
    assert sorted(p.name for p in store.parent.iterdir()) == [store.name]
    assert verify(source, store) == []


def _changed_copy(source: Path, where: Path) -> Path:
    """``source`` with other responses, so a replaced store holds other values."""
    copy = Path(shutil.copytree(source, where / source.name))
    for path in (copy / "data/responses").glob("*.npy"):
        np.save(path, np.load(path) + 1)
    return copy


def test_reader_refuses_to_read_a_store_replaced_since_it_was_opened(published, tmp_path):
    source, store = published
    mouse = open_mouse(store)
    train = mouse.split("train")
    before = train.trial(0)["responses"]
    pickled = pickle.dumps(train)
    convert_mouse(_changed_copy(source, tmp_path / "changed"), store.parent, overwrite=True, progress=False)
    with pytest.raises(StoreReplacedError, match="was replaced since it was opened; open it again"):
        train.trial(0)
    with pytest.raises(StoreReplacedError):
        train.responses.compute()
    with pytest.raises(StoreReplacedError):
        pickle.loads(pickled).trial(0)
    after = open_mouse(store).split("train").trial(0)["responses"]
    assert not np.array_equal(before, after, equal_nan=True)


def test_reader_during_the_swap_gets_a_clear_error(published):
    _, store = published
    mouse = open_mouse(store)
    aside = store.with_name(f".{store.name}.old")
    store.rename(aside)  # the moment between --overwrite's two renames
    try:
        with pytest.raises(StoreReplacedError, match="is being replaced or was removed since it was opened"):
            mouse.split("train").trial(0)
        with pytest.raises(StoreNotFoundError, match="no such file or folder"):
            open_mouse(store)
    finally:
        aside.rename(store)
    assert mouse.split("train").trial(0)["responses"].shape[0] == mouse.n_neurons


def test_store_moved_away_while_being_opened(published):
    """What open_mouse meets when the swap starts between reading the attributes and the
    trial index: a clear StoreReplacedError, not 'no array trial_id'."""
    from sensorium_zarr._mouse import Mouse, StoreHandle
    from sensorium_zarr._store import store_identity

    _, store = published
    identity = store_identity(store)
    root, attrs = open_store(store)
    aside = store.with_name(f".{store.name}.old")
    store.rename(aside)
    try:
        with pytest.raises(StoreReplacedError, match="since it was opened"):
            Mouse(StoreHandle(store, root, identity=identity), attrs)
    finally:
        aside.rename(store)
