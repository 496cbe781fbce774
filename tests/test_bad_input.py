"""Malformed sources: one clear error naming the file, and no store or leftovers."""

from __future__ import annotations

import logging
import os
import re
import shutil
import struct
import subprocess
import sys
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


# --- Hardening: every bad input below once escaped as a traceback (exit 1) or passed silently.


def _cli_error(source: Path, out: Path) -> str:
    """Run the real command line in a child process (a hang fails by timeout): it must
    exit 2 with one ``error:`` line naming the problem, and leave nothing in ``out``."""
    code = "import sys; from sensorium_zarr.converter import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", code, "convert", str(source), "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert not out.exists() or not any(out.iterdir()), "nothing may be left in the output folder"
    return errors[0]


def _npy_bytes(header: str, version: tuple[int, int] = (1, 0), data: bytes = b"") -> bytes:
    text = header.encode("latin1")
    text += b" " * (63 - (12 + len(text)) % 64) + b"\n"
    length = struct.pack("<H" if version == (1, 0) else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + length + text + data


def _header(descr: str = "<f4", shape: str = "(23, 30)") -> bytes:
    return _npy_bytes(f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")


_BAD_HEADERS = {
    "overflowing dimensions": _header(shape="(4611686018427387904, 4)"),
    "negative dimension": _header(shape="(-1, 30)"),
    "too many dimensions": _header(shape="(" + "1, " * 70 + ")"),
    "V0 dtype": _header("|V0"),
    "U0 dtype": _header("<U0"),
    "short header length field": b"\x93NUMPY\x01\x00\x05",
}


@pytest.mark.parametrize("where", ["trial", "meta"])
@pytest.mark.parametrize("case", sorted(_BAD_HEADERS))
def test_bad_npy_header_is_one_error_line(mouse, tmp_path, case, where):
    rel = f"data/responses/{_first_id(mouse)}.npy" if where == "trial" else "meta/neurons/bad.npy"
    (mouse / rel).write_bytes(_BAD_HEADERS[case])
    line = _cli_error(mouse, tmp_path / "out")
    assert f"{mouse / rel}: " in line
    with pytest.raises(SourceError, match=re.escape(str(mouse / rel))):
        convert_mouse(mouse, tmp_path / "out", progress=False)


def _copy_trial(mouse: Path, trial: int, name: str, move: bool = False) -> None:
    for variable in ("videos", "responses", "behavior", "pupil_center"):
        source = mouse / f"data/{variable}/{trial}.npy"
        (shutil.move if move else shutil.copy)(source, mouse / f"data/{variable}/{name}")


@pytest.mark.parametrize(
    "name, move",
    [("99999999999999999999.npy", False), ("004.npy", True), ("\u0664.npy", True), ("0{trial}.npy", False)],
    ids=["huge id", "leading zeros", "arabic-indic digit", "04 beside 4"],
)
def test_trial_file_names_must_be_canonical_decimal(mouse, tmp_path, name, move):
    trial = _first_id(mouse)
    name = name.format(trial=trial)
    _copy_trial(mouse, trial, name, move)
    line = _cli_error(mouse, tmp_path / "out")
    assert re.search(rf"data/\w+/{name}: file name is not an integer trial id \(<id>\.npy, <id> in ASCII digits", line)


def test_deeply_nested_config_json(mouse, tmp_path):
    (mouse / "config.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "config.json: nested deeper than 64 levels" in _cli_error(mouse, tmp_path / "out")
    (mouse / "config.json").write_text('{"a": ' + "[" * 100 + "]" * 100 + "}")
    _assert_fails_cleanly(mouse, tmp_path / "out", r"config\.json: nested deeper than 64 levels")


def test_oversized_config_json(mouse, tmp_path):
    (mouse / "config.json").write_text('{"links": {}, "pad": "' + "x" * (2**20) + '"}')
    _assert_fails_cleanly(mouse, tmp_path / "out", r"config\.json: larger than 1048576 bytes")


def test_config_json_with_nan_constant(mouse, tmp_path):
    (mouse / "config.json").write_text('{"links": {}, "x": NaN}')
    _assert_fails_cleanly(mouse, tmp_path / "out", r"config\.json: not valid JSON \(NaN is not a JSON value\)")


def _set_tier(mouse: Path, label: str, of: str = "train") -> int:
    tiers = np.load(mouse / "meta/trials/tiers.npy")
    ids = sorted(int(p.stem) for p in (mouse / "data/responses").glob("*.npy"))
    trial = next(i for i in ids if tiers[i] == of)
    tiers = tiers.astype(f"<U{max(tiers.dtype.itemsize // 4, len(label), 1)}")
    tiers[trial] = label
    np.save(mouse / "meta/trials/tiers.npy", tiers)
    return trial


@pytest.mark.parametrize("label", ["", "..", "zarr.json", "validation", "Train"])
def test_unknown_tier_label(mouse, tmp_path, label):
    trial = _set_tier(mouse, label)
    line = _cli_error(mouse, tmp_path / "out")
    valid = "one of the tiers train, oracle, live_test_main"
    assert f"tiers.npy: unknown tier {label!r} (trial {trial}); every trial with files must have {valid}" in line


def test_mouse_without_train_trials(mouse, tmp_path):
    tiers = np.load(mouse / "meta/trials/tiers.npy")
    np.save(mouse / "meta/trials/tiers.npy", np.where(tiers == "train", "oracle", tiers))
    _assert_fails_cleanly(mouse, tmp_path / "out", r"tiers\.npy: no trial of tier 'train' has files")


def test_provided_statistics_of_the_wrong_shape(mouse, tmp_path):
    path = mouse / "meta/statistics/responses/all/std.npy"
    np.save(path, np.load(path)[:1])
    message = r"responses/all/std\.npy: provided statistic of shape \(1, 30\) .* expected .* \(23, 30\)"
    _assert_fails_cleanly(mouse, tmp_path / "out", message)


def test_infinite_value_in_a_train_trial(mouse, tmp_path):
    trial = _set_tier(mouse, "train")  # the label is unchanged: this finds a train trial
    path = mouse / f"data/videos/{trial}.npy"
    video = np.load(path)
    video[1, 2, 0] = np.inf
    np.save(path, video)
    _assert_fails_cleanly(mouse, tmp_path / "out", rf"videos/{trial}\.npy: videos holds an infinite value")


@pytest.mark.parametrize("kind", ["trial", "config"])
def test_fifo_is_refused_not_read(mouse, tmp_path, kind):
    rel = f"data/behavior/{_first_id(mouse)}.npy" if kind == "trial" else "config.json"
    (mouse / rel).unlink()
    os.mkfifo(mouse / rel)
    assert f"{mouse / rel}: a FIFO (named pipe), not a regular file" in _cli_error(mouse, tmp_path / "out")


def test_convert_dot_inside_a_mouse_folder_names_the_store_after_it(mouse, tmp_path, monkeypatch):
    monkeypatch.chdir(mouse)
    assert cli_main(["convert", ".", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"{mouse.name}.zarr"]


def _zip_mouse(mouse: Path, archive: Path, top: str | None = None, compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(archive, "w", compression) as z:
        for path in sorted(mouse.rglob("*")):
            if path.is_file():
                z.write(path, f"{top or mouse.name}/{path.relative_to(mouse).as_posix()}")
    return archive


@pytest.mark.parametrize("top", [".hidden", "..\\..\\x", "mouse:1", "tab\tname"])
def test_zip_top_folder_must_be_a_safe_mouse_name(mouse, tmp_path, top):
    archive = _zip_mouse(mouse, tmp_path / "m.zip", top)
    assert f"mouse name {top!r} is not usable" in _cli_error(archive, tmp_path / "out")


def _patch_member(archive: Path, member: str, **fields: int) -> None:
    """Rewrite fields of ``member``'s local and central headers in place (what a damaged
    or hostile archive holds): flag, method, usize (uncompressed size), or crc."""
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo(member)
    local = info.header_offset
    name = member.encode()
    central = raw.index(b"PK\x01\x02")
    while (
        struct.unpack_from("<H", raw, central + 28)[0] != len(name)
        or raw[central + 46 : central + 46 + len(name)] != name
    ):
        central = raw.index(b"PK\x01\x02", central + 4)
    offsets = {"flag": (6, 8, "<H"), "method": (8, 10, "<H"), "crc": (14, 16, "<I"), "usize": (22, 24, "<I")}
    for name, value in fields.items():
        in_local, in_central, code = offsets[name]
        struct.pack_into(code, raw, local + in_local, value)
        struct.pack_into(code, raw, central + in_central, value)
    archive.write_bytes(bytes(raw))


def _member(mouse: Path, rel: str) -> str:
    return f"{mouse.name}/{rel}"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"flag": 1}, "encrypted zip member"),
        ({"method": 9}, "zip compression method 9 is not supported"),
        ({"method": 12}, "zip compression method 12 is not supported"),
        ({"usize": 4_000_000_000}, "stored zip member declares 4000000000 bytes but occupies"),
    ],
    ids=["encrypted", "deflate64", "bzip2", "claims 4 GB"],
)
def test_unreadable_zip_member(mouse, tmp_path, fields, message):
    archive = _zip_mouse(mouse, tmp_path / f"{mouse.name}.zip")
    rel = f"data/videos/{_first_id(mouse)}.npy"
    _patch_member(archive, _member(mouse, rel), **fields)
    assert f"{archive}:{_member(mouse, rel)}: {message}" in _cli_error(archive, tmp_path / "out")


def test_deflated_member_claiming_more_than_deflate_can_expand(mouse, tmp_path):
    archive = _zip_mouse(mouse, tmp_path / f"{mouse.name}.zip", compression=zipfile.ZIP_DEFLATED)
    rel = "meta/neurons/unit_ids.npy"
    _patch_member(archive, _member(mouse, rel), usize=4_000_000_000)
    assert "more than deflate can expand (1032:1)" in _cli_error(archive, tmp_path / "out")


def test_zip_bomb_config_json_is_refused_from_its_declared_size(mouse, tmp_path):
    (mouse / "config.json").write_text('{"links": {}}' + " " * 50_000_000)
    archive = _zip_mouse(mouse, tmp_path / f"{mouse.name}.zip", compression=zipfile.ZIP_DEFLATED)
    assert archive.stat().st_size < 1_000_000
    assert "config.json: larger than 1048576 bytes" in _cli_error(archive, tmp_path / "out")


def test_malformed_zip_member_header(mouse, tmp_path):
    archive = _zip_mouse(mouse, tmp_path / f"{mouse.name}.zip")
    rel = f"data/responses/{_first_id(mouse)}.npy"
    with zipfile.ZipFile(archive) as z:
        offset = z.getinfo(_member(mouse, rel)).header_offset
    raw = bytearray(archive.read_bytes())
    raw[offset : offset + 4] = b"XXXX"  # the member's local header signature
    archive.write_bytes(bytes(raw))
    assert f"{_member(mouse, rel)}: could not be opened (Bad magic number for file header)" in _cli_error(
        archive, tmp_path / "out"
    )


def test_bad_crc_in_zipped_config_json(mouse, tmp_path):
    archive = _zip_mouse(mouse, tmp_path / f"{mouse.name}.zip")
    with zipfile.ZipFile(archive) as z:
        crc = z.getinfo(_member(mouse, "config.json")).CRC
    _patch_member(archive, _member(mouse, "config.json"), crc=crc ^ 1)
    assert f"{_member(mouse, 'config.json')}: could not be read (Bad CRC-32" in _cli_error(archive, tmp_path / "out")


def test_duplicate_zip_member(mouse, tmp_path):
    archive = _zip_mouse(mouse, tmp_path / f"{mouse.name}.zip")
    rel = f"data/videos/{_first_id(mouse)}.npy"
    with zipfile.ZipFile(archive, "a") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr(_member(mouse, rel), (mouse / rel).read_bytes())
    assert f"{_member(mouse, rel)}: appears twice in the zip" in _cli_error(archive, tmp_path / "out")


def test_trailing_bytes_after_the_array(mouse, tmp_path):
    path = mouse / f"data/responses/{_first_id(mouse)}.npy"
    path.write_bytes(path.read_bytes() + b"\0" * 16)
    _assert_fails_cleanly(mouse, tmp_path / "out", r"16 more than its header .* implies")
