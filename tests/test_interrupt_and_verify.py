"""Interrupted conversions never look complete and re-running finishes the job;
``verify`` catches corrupted chunks and changed sources."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, small_spec

from sensorium_zarr._store import open_store
from sensorium_zarr.converter import convert_mouse, verify
from sensorium_zarr.converter._cli import main as cli_main
from sensorium_zarr.errors import IncompleteStoreError, StoreFormatError
from sensorium_zarr.testing import write_mouse


@pytest.fixture(scope="module")
def slow_mouse(tmp_path_factory) -> Path:
    """Large enough that converting it takes a few seconds, to interrupt it midway."""
    spec = small_spec("dynamic00002-1-1-Video-slow", n_neurons=1500, n_trials=64, t_pad=120, height=18, width=32)
    return write_mouse(spec, tmp_path_factory.mktemp("slow"))


def _midway(source: Path, out: Path) -> tuple[Path, subprocess.Popen]:
    """A conversion of ``source`` into ``out`` in a child process, once it has written a
    few shards: its hidden partial store, and the still running process."""
    command = [sys.executable, str(REPO / "scripts/convert_sensorium.py"), str(source), "--out", str(out),
               "--trials-per-shard", "1", "--workers", "1", "--no-progress"]
    # A shell's background job inherits SIGINT ignored, and Python then leaves it ignored
    # (no KeyboardInterrupt): the child gets the default disposition, as under a terminal.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_default_sigint)
    partial = out / f".{source.name}.zarr.partial"
    _wait_for_shards(partial, process)
    return partial, process


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_shards(partial: Path, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shards = list((partial / "responses" / "c").glob("*/*/*")) if partial.exists() else []
        if len(shards) >= 3:
            return
        if process.poll() is not None:
            pytest.fail(f"conversion ended before it could be interrupted: {process.communicate()}")
        time.sleep(0.02)
    pytest.fail("no shard written in time")


def test_kill_9_leaves_an_incomplete_store_and_rerun_finishes(slow_mouse, tmp_path):
    out = tmp_path / "out"
    partial, process = _midway(slow_mouse, out)
    process.send_signal(signal.SIGKILL)
    process.wait()
    final = out / f"{slow_mouse.name}.zarr"
    assert not final.exists()
    with pytest.raises(IncompleteStoreError, match="never finished"):
        open_store(partial)
    assert cli_main(["convert", str(slow_mouse), "--out", str(out), "--no-progress"]) == 0
    assert final.exists() and not partial.exists()
    assert verify(slow_mouse, final) == []


def test_ctrl_c_removes_the_partial_store(slow_mouse, tmp_path):
    out = tmp_path / "out"
    partial, process = _midway(slow_mouse, out)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert not partial.exists()
    assert list(out.iterdir()) == []


@pytest.fixture
def converted(folder_mouse, tmp_path) -> tuple[Path, Path]:
    source = Path(shutil.copytree(folder_mouse, tmp_path / "src" / folder_mouse.name))
    return source, convert_mouse(source, tmp_path / "out", progress=False)


def _flip_one_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("variable", ["responses", "videos", "behavior"])
def test_verify_catches_a_flipped_byte(converted, variable):
    source, store = converted
    chunk = sorted(p for p in (store / variable / "c").rglob("*") if p.is_file())[0]
    _flip_one_byte(chunk, chunk.stat().st_size // 2)
    problems = verify(source, store)
    assert problems and all(variable in p for p in problems)
    assert any("unreadable" in p and "checksum" in p for p in problems)


def test_verify_catches_a_flipped_byte_in_a_shard_index(converted):
    source, store = converted
    shard = sorted(p for p in (store / "responses" / "c").rglob("*") if p.is_file())[0]
    _flip_one_byte(shard, shard.stat().st_size - 6)  # the index sits at the end of a shard
    assert any("responses" in p for p in verify(source, store))


def test_verify_catches_a_flipped_byte_in_statistics(converted):
    source, store = converted
    chunk = next((store / "statistics/train/responses/trials/mean/c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    _flip_one_byte(chunk, 3)
    assert any("statistics/train/responses/trials/mean" in p for p in verify(source, store))


def test_verify_catches_a_changed_source_file(converted, capsys):
    source, store = converted
    trial = min(int(p.stem) for p in (source / "data/pupil_center").glob("*.npy"))
    path = source / f"data/pupil_center/{trial}.npy"
    values = np.load(path)
    values[0, 0] += 1.0
    np.save(path, values)
    problems = verify(source, store)
    assert f"pupil_center trial {trial}: 1 values differ" in problems[0]
    # The trial is a train trial: the statistics recomputed from the source differ too.
    assert problems[1:] and all(p.startswith("statistics/train/pupil_center/") for p in problems[1:]), problems
    assert cli_main(["verify", str(source), str(store)]) == 1
    assert f"{len(problems)} mismatches" in capsys.readouterr().out


def test_verify_passes_and_cli_says_ok(converted, capsys):
    source, store = converted
    assert cli_main(["verify", str(source), str(store)]) == 0
    assert "OK" in capsys.readouterr().out


def test_verify_compares_the_consolidated_metadata_with_the_arrays(converted, tmp_path):
    source, store = converted
    changed = shutil.copytree(store, tmp_path / store.name)
    shutil.rmtree(changed / "has_responses")
    meta = json.loads((changed / "tier" / "zarr.json").read_text())
    meta["attributes"] = {"edited": True}
    (changed / "tier" / "zarr.json").write_text(json.dumps(meta))
    problems = verify(source, changed)
    assert "has_responses: in the consolidated metadata, not in the store" in problems
    assert "tier: its consolidated metadata differs from its zarr.json" in problems
    root = json.loads((changed / "zarr.json").read_text())
    del root["consolidated_metadata"]
    (changed / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(StoreFormatError, match="no consolidated metadata"):
        verify(source, changed)
