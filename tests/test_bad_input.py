"""Malformed sources: one clear error naming the file, and no store or leftovers."""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sensorium_zarr.converter import convert_mouse, find_sources
from sensorium_zarr.converter._cli import main as cli_main
from sensorium_zarr.errors import SourceError


@pytest.fixture
def mouse(folder_mouse, tmp_path) -> Path:
    """A private copy of the small mouse folder, to break."""
    return Path(shutil.copytree(folder_mouse, tmp_path / "src" / folder_mouse.name))


def _first_id(mouse: Path) -> int:
    return min(int(p.stem) for p in (mouse / "data/responses").glob("*.npy"))


def _assert_fails_cleanly(source: Path, out: Path, match: str) -> SourceError:
    with pytest.raises(SourceError, match=match) as info:
        convert_mouse(source, out, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert not out.exists() or not any(out.iterdir()), "nothing may be left in the output folder"
    return info.value


def test_missing_variable_file(mouse, tmp_path):
    trial = _first_id(mouse)
    (mouse / f"data/behavior/{trial}.npy").unlink()
    error = _assert_fails_cleanly(mouse, tmp_path / "out", rf"behavior/{trial}\.npy: missing")
    assert str(mouse) in str(error)


def test_inconsistent_t_pad(mouse, tmp_path):
    trial = _first_id(mouse)
    path = mouse / f"data/pupil_center/{trial}.npy"
    np.save(path, np.load(path)[:, :-1])
    message = rf"pupil_center/{trial}\.npy: shape \(2, 29\), expected \(2, 30\) like \d+ other"
    _assert_fails_cleanly(mouse, tmp_path / "out", message)


def test_t_pad_differs_between_variables(mouse, tmp_path):
    for path in (mouse / "data/behavior").glob("*.npy"):
        np.save(path, np.load(path)[:, :-2])
    _assert_fails_cleanly(mouse, tmp_path / "out", r"behavior/\d+\.npy: 28 frames .* responses have 30")


def test_inconsistent_neuron_count(mouse, tmp_path):
    trials = sorted(int(p.stem) for p in (mouse / "data/responses").glob("*.npy"))
    path = mouse / f"data/responses/{trials[3]}.npy"
    np.save(path, np.load(path)[:-1])
    message = rf"responses/{trials[3]}\.npy: shape \(22, 30\), expected \(23, 30\)"
    _assert_fails_cleanly(mouse, tmp_path / "out", message)


def test_truncated_npy(mouse, tmp_path):
    trial = _first_id(mouse)
    path = mouse / f"data/videos/{trial}.npy"
    path.write_bytes(path.read_bytes()[:-100])
    _assert_fails_cleanly(mouse, tmp_path / "out", rf"videos/{trial}\.npy: truncated")


def test_corrupt_npy(mouse, tmp_path):
    trial = _first_id(mouse)
    (mouse / f"data/responses/{trial}.npy").write_bytes(b"this is not numpy data at all")
    _assert_fails_cleanly(mouse, tmp_path / "out", rf"responses/{trial}\.npy: not a readable \.npy file")


class _Boom:
    """Unpickling this would run code: it must never be unpickled."""

    def __reduce__(self):
        return (Path("/tmp/sensorium-zarr-was-unpickled").touch, ())


def test_pickled_npy_is_refused_not_unpickled(mouse, tmp_path):
    trial = _first_id(mouse)
    marker = Path("/tmp/sensorium-zarr-was-unpickled")
    marker.unlink(missing_ok=True)
    np.save(mouse / f"data/behavior/{trial}.npy", np.array([_Boom(), _Boom()], dtype=object), allow_pickle=True)
    _assert_fails_cleanly(mouse, tmp_path / "out", rf"behavior/{trial}\.npy: holds Python objects")
    assert not marker.exists()


def test_pickled_meta_file_is_refused(mouse, tmp_path):
    np.save(mouse / "meta/neurons/extra.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _assert_fails_cleanly(mouse, tmp_path / "out", r"meta/neurons/extra\.npy: holds Python objects")


def test_tiers_not_covering_a_trial(mouse, tmp_path):
    tiers = np.load(mouse / "meta/trials/tiers.npy")
    np.save(mouse / "meta/trials/tiers.npy", tiers[:-1])
    _assert_fails_cleanly(mouse, tmp_path / "out", r"tiers\.npy: has \d+ entries but trial \d+ has files")


def test_missing_tiers(mouse, tmp_path):
    (mouse / "meta/trials/tiers.npy").unlink()
    _assert_fails_cleanly(mouse, tmp_path / "out", r"tiers\.npy: missing")


def test_non_integer_file_name(mouse, tmp_path):
    trial = _first_id(mouse)
    shutil.copy(mouse / f"data/videos/{trial}.npy", mouse / "data/videos/12a.npy")
    _assert_fails_cleanly(mouse, tmp_path / "out", r"videos/12a\.npy: file name is not an integer trial id")


def test_invalid_config_json(mouse, tmp_path):
    (mouse / "config.json").write_text("{not json")
    _assert_fails_cleanly(mouse, tmp_path / "out", r"config\.json: not valid JSON")


def test_empty_folder(tmp_path):
    empty = tmp_path / "dynamic-empty"
    empty.mkdir()
    _assert_fails_cleanly(empty, tmp_path / "out", r"dynamic-empty: empty folder")
    with pytest.raises(SourceError, match="holds no Sensorium mouse"):
        find_sources([empty])


def test_zip_without_mouse_folder(mouse, tmp_path):
    archive = tmp_path / "flat.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in mouse.rglob("*"):
            if path.is_file():
                z.write(path, path.relative_to(mouse).as_posix())
    _assert_fails_cleanly(archive, tmp_path / "out", r"flat\.zip: expected exactly one top-level mouse folder")


@pytest.mark.parametrize("entry", ["/etc/evil.npy", "mouse/../../evil.npy"])
def test_zip_with_unsafe_entry(mouse, tmp_path, entry):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in mouse.rglob("*"):
            if path.is_file():
                z.write(path, f"{mouse.name}/{path.relative_to(mouse).as_posix()}")
        z.writestr(entry, b"x")
    _assert_fails_cleanly(archive, tmp_path / "out", r"unsafe zip entry")
    assert not (tmp_path.parent / "evil.npy").exists()


def test_not_a_zip(tmp_path):
    fake = tmp_path / "dynamic-fake.zip"
    fake.write_bytes(b"PK but not really")
    _assert_fails_cleanly(fake, tmp_path / "out", r"dynamic-fake\.zip: not a readable zip archive")


def test_ds_store_is_skipped_with_a_warning(mouse, tmp_path, caplog):
    (mouse / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (mouse / "data/videos/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    with caplog.at_level(logging.WARNING, logger="sensorium_zarr"):
        store = convert_mouse(mouse, tmp_path / "out", progress=False)
    assert store.exists()
    skipped = [r.getMessage() for r in caplog.records if "hidden file skipped" in r.getMessage()]
    assert len(skipped) == 2 and any("data/videos/.DS_Store" in m for m in skipped)


def test_cli_reports_one_line_and_exit_status(mouse, tmp_path, capsys):
    (mouse / f"data/behavior/{_first_id(mouse)}.npy").unlink()
    status = cli_main(["convert", str(mouse), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith("error: ") and "missing" in err[-1]


def test_no_such_source(tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        find_sources([tmp_path / "nope"])


def test_find_sources_prefers_folder_over_same_zip_and_skips_hidden(folder_mouse, tmp_path):
    parent = tmp_path / "all"
    shutil.copytree(folder_mouse, parent / folder_mouse.name)
    shutil.make_archive(str(parent / folder_mouse.name), "zip", parent, folder_mouse.name)
    shutil.copytree(folder_mouse, parent / f".{folder_mouse.name}.partial")
    assert find_sources([parent]) == [parent / folder_mouse.name]


def test_damaged_zip_member_fails_mid_conversion_and_leaves_nothing(folder_mouse, tmp_path):
    spec_zip = tmp_path / f"{folder_mouse.name}.zip"
    with zipfile.ZipFile(spec_zip, "w", zipfile.ZIP_STORED) as z:
        for path in sorted(folder_mouse.rglob("*")):
            if path.is_file():
                z.write(path, f"{folder_mouse.name}/{path.relative_to(folder_mouse).as_posix()}")
    # Flip a byte at the end of the last trial's video (larger than zipfile's 4 kB reads):
    # its header still reads fine, so the error surfaces only while blocks are written.
    last = max(int(p.stem) for p in (folder_mouse / "data/videos").glob("*.npy"))
    with zipfile.ZipFile(spec_zip) as z:
        info = z.getinfo(f"{folder_mouse.name}/data/videos/{last}.npy")
        assert info.file_size > 4096
    raw = bytearray(spec_zip.read_bytes())
    data_start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[data_start + info.compress_size - 8] ^= 0xFF
    spec_zip.write_bytes(bytes(raw))
    _assert_fails_cleanly(spec_zip, tmp_path / "out", rf"videos/{last}\.npy: could not be read \(Bad CRC-32")


def test_reading_into_a_buffer_in_place_or_not(tmp_path):
    """The writer reads responses files straight into its block buffer; a buffer that does
    not match (dtype, shape, order) gets a new array instead, and a short file still fails."""
    from sensorium_zarr.converter._npy import read_array

    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "a.npy"
    np.save(path, values)
    out = np.full((3, 4), np.nan, np.float32)
    with open(path, "rb") as fp:
        assert read_array(fp, str(path), out=out) is out
    np.testing.assert_array_equal(out, values)
    for other in (np.empty((3, 4), np.float64), np.empty((4, 3), np.float32), np.empty((4, 3), np.float32).T):
        with open(path, "rb") as fp:
            got = read_array(fp, str(path), out=other)
        assert got is not other
        np.testing.assert_array_equal(got, values)
    np.save(path, np.asfortranarray(values))
    with open(path, "rb") as fp:
        got = read_array(fp, str(path), out=out)
    assert got is not out and got.flags.f_contiguous
    np.testing.assert_array_equal(got, values)
    path.write_bytes(path.read_bytes()[:-8])
    with open(path, "rb") as fp, pytest.raises(SourceError, match="truncated: 40 of 48 data bytes"):
        read_array(fp, str(path), out=out)
