"""Fuzzing the source readers: random and mutated `.npy` headers and zip archives.

The only allowed outcomes are a value or the project's own ``SourceError``: anything else
escaping (IndexError, struct.error, MemoryError, ...) is a bug, since the command line
would print a traceback for it. Bounded by ``max_examples`` and ``deadline``; the whole
module runs in well under a minute on two cores. ``scripts/fuzz_atheris.py`` fuzzes the
same targets with coverage guidance when the ``fuzz`` extra (atheris) is installed.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
from datetime import timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sensorium_zarr.converter import scan_source
from sensorium_zarr.converter._npy import read_array, read_header
from sensorium_zarr.converter._zip import ZipReader, list_members
from sensorium_zarr.errors import SourceError
from sensorium_zarr.testing import sample_spec, write_mouse

REPO = Path(__file__).resolve().parents[1]

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=5),  # generous: the machine is shared, an example takes ms
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


# --- .npy headers


def _npy(text: bytes, version: bytes = b"\x01\x00", length: int | None = None, data: bytes = b"") -> bytes:
    size = len(text) if length is None else length
    field = struct.pack("<H", size % 2**16) if version == b"\x01\x00" else struct.pack("<I", size % 2**32)
    return b"\x93NUMPY" + version + field + text + data


def _outcome_of_npy(raw: bytes) -> None:
    """Read ``raw`` as a header, then as an array: a value or a SourceError, nothing else."""
    try:
        header = read_header(io.BytesIO(raw), "fuzz.npy")
    except SourceError as e:
        assert "\n" not in str(e) and str(e).startswith("fuzz.npy: ")
        return
    assert all(n >= 0 for n in header.shape) and header.dtype.itemsize > 0
    try:
        array = read_array(io.BytesIO(raw), "fuzz.npy")
    except SourceError as e:
        assert "\n" not in str(e) and str(e).startswith("fuzz.npy: ")
        return
    assert array.shape == header.shape and array.dtype == header.dtype


_DESCRS = st.one_of(
    st.sampled_from(["<f4", "<f8", ">f8", "|u1", "<i8", "|b1", "<c16", "<U5", "|S3", "<U0", "|S0", "|V0", "|V4",
                     "|O", "O", "<M8[s]", "i4,f8", "(2,)f4", "<f2", "a5", "", "<q", "float32", "?"]),
    st.text(max_size=8),
)
_SHAPES = st.one_of(
    st.lists(st.integers(0, 5), max_size=4).map(tuple),
    st.lists(st.integers(-(2**70), 2**70), max_size=40).map(tuple),
    st.sampled_from(["()", "(2,", "[2, 3]", "(2.0,)", "(True,)", "None", "2**64", "(-0,)"]),
)
_ORDERS = st.sampled_from(["False", "True", "0", "1", "None", "'F'"])


@st.composite
def _headers(draw: st.DrawFn) -> bytes:
    descr, shape, order = draw(_DESCRS), draw(_SHAPES), draw(_ORDERS)
    shape_text = shape if isinstance(shape, str) else repr(shape)
    entries = [f"'descr': {descr!r}", f"'fortran_order': {order}", f"'shape': {shape_text}"]
    if draw(st.booleans()):
        entries = draw(st.permutations(entries))
    if draw(st.integers(0, 9)) == 0:
        entries.append("'extra': 1")
    if draw(st.integers(0, 9)) == 0:
        entries = entries[1:]
    text = ("{" + ", ".join(entries) + ", }").encode("latin1", "replace")
    text += b" " * draw(st.integers(0, 70)) + b"\n"
    version = draw(st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x00\x00", b"\x04\x00", b"\xff\xff"]))
    length = draw(st.one_of(st.none(), st.integers(0, 2**32 - 1)))
    data = draw(st.binary(max_size=256))
    return _npy(text, version, length, data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_as_npy(raw):
    _outcome_of_npy(raw)
    _outcome_of_npy(b"\x93NUMPY" + raw)


@FUZZ
@given(_headers())
def test_generated_npy_headers(raw):
    _outcome_of_npy(raw)


def _saved(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


_VALID_NPY = [
    _saved(np.arange(12, dtype=np.float32).reshape(3, 4)),
    _saved(np.asfortranarray(np.ones((2, 3), np.float64))),
    _saved(np.array(["train", "oracle"])),
    _saved(np.zeros((0, 5), np.int16)),
]


_ALL_KINDS = ("flip", "set", "truncate", "insert", "delete")


@st.composite
def _mutations(draw: st.DrawFn, originals: list[bytes], kinds: tuple[str, ...] = _ALL_KINDS, head: int = 128) -> bytes:
    raw = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(kinds))
        # Half the mutations hit the first ``head`` bytes, where a .npy header is.
        limit = len(raw) if draw(st.booleans()) else min(len(raw), head)
        at = draw(st.integers(0, max(0, limit - 1)))
        if kind == "flip" and raw:
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and raw:
            raw[at] = draw(st.sampled_from([0, 0xFF, ord("("), ord(","), ord("-"), ord("9"), ord("'")]))
        elif kind == "truncate":
            del raw[at:]
        elif kind == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del raw[at : at + draw(st.integers(1, 8))]
    return bytes(raw)


@FUZZ
@given(_mutations(_VALID_NPY))
def test_mutated_npy_files(raw):
    _outcome_of_npy(raw)


# --- zip archives


@st.composite
def _small_zips(draw: st.DrawFn) -> bytes:
    """A zip of one to three small members, stored or deflated, possibly with bad fields."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(draw(st.integers(1, 3))):
            info = zipfile.ZipInfo(f"m/data/{i}.npy")
            info.compress_type = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
            payload = draw(st.sampled_from(_VALID_NPY)) if draw(st.booleans()) else draw(st.binary(max_size=64))
            archive.writestr(info, payload)
    raw = bytearray(buffer.getvalue())
    # Overwrite header fields the way damaged or hostile archives do: flags, method, sizes, CRC.
    for _ in range(draw(st.integers(0, 3))):
        signature = draw(st.sampled_from([b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"]))
        positions = [i for i in range(len(raw) - 3) if raw[i : i + 4] == signature]
        if not positions:
            continue
        at = draw(st.sampled_from(positions)) + draw(st.integers(4, 40))
        width = draw(st.sampled_from([1, 2, 4]))
        value = draw(st.sampled_from([0, 1, 9, 12, 14, 99, 0xFFFF, 0xFFFFFFFF, 2**31]))
        raw[at : at + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")[: max(0, len(raw) - at)]
    return bytes(raw)


def _outcome_of_zip(path: Path) -> None:
    """List and read every member of the zip at ``path``: values or SourceError only."""
    try:
        infos = list_members(path)
    except SourceError:
        return
    reader = ZipReader(path)
    for info in infos:
        try:
            with reader.open(info.filename, f"{path}:{info.filename}") as member:
                try:
                    read_array(member, info.filename)  # type: ignore[arg-type]
                except SourceError:
                    member.read()
        except SourceError as e:
            assert "\n" not in str(e)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@FUZZ
@given(raw=_small_zips())
def test_small_zips_with_bad_fields(raw, scratch):
    path = scratch / "fuzz.zip"
    path.write_bytes(raw)
    _outcome_of_zip(path)


@cache
def _mouse_zips() -> list[bytes]:
    """A complete, tiny mouse (every Sensorium quirk, a few KB) as a stored zip and as a
    deflated one: in the first, mutations reach the .npy headers of its members."""
    spec = sample_spec("dynamic00009-1-1-Video-fuzz", n_neurons=3, n_trials=7, t_pad=4, height=2, width=2)
    with tempfile.TemporaryDirectory() as folder:
        stored = write_mouse(spec, folder, as_zip=True)
        deflated = Path(folder) / "deflated.zip"
        with zipfile.ZipFile(stored) as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as out:
            for info in source.infolist():
                out.writestr(info.filename, source.read(info), zipfile.ZIP_STORED if info.is_dir() else None)
        return [stored.read_bytes(), deflated.read_bytes()]


@st.composite
def _rezipped_with_a_mutated_member(draw: st.DrawFn) -> bytes:
    """The mouse zip rebuilt with one member's content mutated, so its CRC is right and the
    damage reaches the .npy (or JSON) reader instead of the CRC check."""
    original = _mouse_zips()[0]
    with zipfile.ZipFile(io.BytesIO(original)) as source:
        infos = [i for i in source.infolist() if not i.is_dir()]
        target = draw(st.sampled_from(infos)).filename
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as out:
            for info in source.infolist():
                data = source.read(info)
                if info.filename == target:
                    data = draw(_mutations([data]))
                out.writestr(info, data)
    return buffer.getvalue()


def _mutated_mouse_zips() -> st.SearchStrategy[bytes]:
    # Mostly in-place changes: an inserted or deleted byte shifts every offset after it,
    # and the archive is then refused as a whole before any member is looked at.
    in_place = st.builds(_mouse_zips).flatmap(
        lambda zips: _mutations(zips, kinds=("flip", "flip", "set", "set", "truncate", "delete"), head=2**30)
    )
    return st.one_of(in_place, _rezipped_with_a_mutated_member())


@FUZZ
@given(raw=_mutated_mouse_zips())
def test_mutated_mouse_zip_scans_and_reads(raw, scratch):
    """Scan a damaged mouse zip and, if it scans, read every file of it, as a conversion would."""
    path = scratch / "dynamic00009-1-1-Video-fuzz.zip"
    path.write_bytes(raw)
    try:
        layout = scan_source(path)
        for variable, trial_id in layout.headers:
            layout.read_trial(variable, trial_id)
        for rel in layout.meta_files:
            layout.read_meta(rel)
        event("scanned and read")
    except SourceError as e:
        assert "\n" not in str(e)
        event(f"refused: {str(e).split(': ', 1)[1][:30]}")


def test_the_unmutated_mouse_zip_scans(scratch):
    """The fuzzed zip really is a mouse, so mutations start from something that converts."""
    path = scratch / "dynamic00009-1-1-Video-fuzz.zip"
    path.write_bytes(_mouse_zips()[0])
    assert scan_source(path).n_trials == 7


# --- atheris (coverage-guided), when the fuzz extra is installed


def test_atheris_harness_runs_clean(tmp_path):
    pytest.importorskip("atheris")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fuzz_atheris.py"), "-atheris_runs=3000", "-seed=1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 3000 " in result.stderr
