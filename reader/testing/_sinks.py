"""Where a generated tree's files go: ``FolderSink`` (files on disk) or ``ZipSink``
(entries of a zip, written one by one), both addressed by POSIX paths relative to the
mouse folder."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


class Sink:
    """Where a tree's files go, addressed by POSIX paths relative to the mouse folder."""

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self, rel: str, array: np.ndarray) -> None:
        raise NotImplementedError

    def write_bytes(self, rel: str, data: bytes, top: bool = True) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FolderSink(Sink):
    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: set[Path] = set()

    def _path(self, rel: str) -> Path:
        path = self.root / rel
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        return path

    def save(self, rel: str, array: np.ndarray) -> None:
        np.save(self._path(rel), array, allow_pickle=False)

    def write_bytes(self, rel: str, data: bytes, top: bool = True) -> None:
        self._path(rel).write_bytes(data)


class ZipSink(Sink):
    """Entries go to the zip one by one; nothing of the tree is held in memory."""

    def __init__(self, path: Path, name: str) -> None:
        # ZIP_STORED: .npy trial files barely compress with deflate, and storing is fast.
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.name = name
        self._dirs: set[str] = set()

    def _entry(self, rel: str, top: bool) -> str:
        name = f"{self.name}/{rel}" if top else rel
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            directory = "/".join(parts[:depth]) + "/"
            if directory not in self._dirs:
                self.zip.mkdir(directory)
                self._dirs.add(directory)
        return name

    def save(self, rel: str, array: np.ndarray) -> None:
        with self.zip.open(self._entry(rel, True), "w") as f:
            np.save(f, array, allow_pickle=False)

    def write_bytes(self, rel: str, data: bytes, top: bool = True) -> None:
        self.zip.writestr(self._entry(rel, top), data)

    def close(self) -> None:
        self.zip.close()


