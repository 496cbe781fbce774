"""Coverage-guided fuzzing of the source readers with atheris (the ``fuzz`` extra).

    python scripts/fuzz_atheris.py -atheris_runs=100000    # or any libFuzzer flag

Feeds each input to the `.npy` reader or, when it starts with a zip signature, to the zip
layer (list every member, open it, read it as `.npy`). Anything but a value or a
``SourceError`` escaping is a crash, which libFuzzer reports with the input that caused
it. Seeds (a few valid `.npy` files and small zips of them) are written to ``./fuzz-corpus``.
tests/test_fuzz.py runs this for a bounded number of inputs when atheris is installed.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import atheris
import numpy as np

# Only the project is instrumented: instrumenting numpy, zarr and dask on import is slow.
with atheris.instrument_imports(include=["sensorium_zarr"]):
    from sensorium_zarr.converter._npy import read_array, read_header
    from sensorium_zarr.converter._zip import ZipReader, list_members
    from sensorium_zarr.errors import SourceError

#: Where each zip input is written (in the working folder: libFuzzer exits without cleanup).
SCRATCH = Path("fuzz-input.zip")


def read_npy(fp: io.BufferedIOBase | io.RawIOBase, where: str) -> None:
    try:
        read_header(fp, where)  # type: ignore[arg-type]
        fp.seek(0)
        read_array(fp, where)  # type: ignore[arg-type]
    except SourceError:
        pass


def test_one_input(data: bytes) -> None:
    if not data.startswith(b"PK"):
        read_npy(io.BytesIO(data), "fuzz.npy")
        return
    SCRATCH.write_bytes(data)
    try:
        infos = list_members(SCRATCH)
    except SourceError:
        return
    reader = ZipReader(SCRATCH)
    for info in infos[:8]:
        try:
            with reader.open(info.filename, info.filename) as member:
                try:
                    read_header(member, info.filename)  # type: ignore[arg-type]
                    member.read()
                except SourceError:
                    pass
        except SourceError:
            pass


def write_seeds(corpus: Path) -> None:
    corpus.mkdir(exist_ok=True)
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.array(["train", "oracle"]), np.zeros(3, np.int64)]
    for i, array in enumerate(arrays):
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        (corpus / f"seed-{i}.npy").write_bytes(buffer.getvalue())
        for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            with zipfile.ZipFile(corpus / f"seed-{i}-{method}.zip", "w", method) as archive:
                archive.writestr(f"mouse/data/videos/{i}.npy", buffer.getvalue())
                archive.writestr("mouse/config.json", b'{"links": {}}')


def main() -> None:
    corpus = Path("fuzz-corpus")
    write_seeds(corpus)
    atheris.Setup([*sys.argv, str(corpus)], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
