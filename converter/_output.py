"""The output side of a conversion: where the store may go, who may write it, and how the
finished store takes its place. Entry points: ``check_url``, ``check_out_dir``,
``output_lock``, ``recover``, ``publish`` and ``output_error``.

Files beside a store ``<mouse>.zarr``, all hidden, so readers and ``find_sources`` skip them:

- ``.<mouse>.zarr.partial``: the store being written; renamed into place when complete.
- ``.<mouse>.zarr.lock``: held with ``flock`` for the whole conversion, so a second
  conversion of the same mouse into the same folder fails at once instead of deleting
  the first one's partial store. The kernel drops the lock when the process ends, even
  by ``kill -9``, so a crash never leaves a stale lock; the file itself is removed on
  every exit the process lives through.
- ``.<mouse>.zarr.old``: the replaced store, for the moment of ``--overwrite``'s two
  renames. A crash between them leaves it with no store in place; the next conversion
  of the mouse puts it back, or deletes it when the new store did get in place.
"""

from __future__ import annotations

import errno
import fcntl
import importlib.util
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sensorium_zarr._location import EXTRA, Remote, is_url
from sensorium_zarr.errors import OutputError, SensoriumZarrError, SourceError

__all__ = ["check_url", "check_out", "check_out_dir", "output_lock", "recover", "publish", "os_error", "output_error"]

# A scheme of two letters or more, then ":/" (pathlib folds "s3://b" into "s3:/b"); one
# letter would be a Windows drive.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def check_url(path: Path | str, hint: str) -> None:
    """OutputError if ``path`` looks like a URL where only a local path is supported, or is
    one pathlib folded ("s3:/b"): it would silently become a local folder."""
    if _URL.match(str(path)):
        if isinstance(path, str) and is_url(path):
            raise OutputError(f"{path}: object storage is not supported here; {hint}")
        raise OutputError(f"{path}: a URL with one slash folded away (a Path?); pass the URL as a string, scheme://...")


def check_out(out_dir: Path | str, storage_options: Mapping[str, Any] | None = None) -> Path | Remote:
    """Where the stores go: a URL as a ``Remote`` (needs the ``s3`` extra; HTTP(S) is
    read-only), else a local folder as ``check_out_dir`` checks it."""
    if isinstance(out_dir, str) and is_url(out_dir):
        remote = Remote.of(out_dir, storage_options)
        if remote.read_only_scheme:
            raise OutputError(f"{out_dir}: HTTP(S) is read-only; write to s3://, gs:// or az://")
        if importlib.util.find_spec("obstore") is None:
            raise OutputError(f"{out_dir}: object storage needs the obstore package: {EXTRA}")
        return remote
    if storage_options:
        raise OutputError(f"{out_dir}: storage_options are for URLs; this is a local folder")
    return check_out_dir(out_dir)


def check_out_dir(out_dir: Path | str) -> Path:
    """``out_dir`` as a Path, refused if it is a URL or an existing non-folder."""
    check_url(out_dir, "--out must be a local folder")
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: not a folder; --out names the folder that receives <mouse>.zarr stores")
    return path


@contextmanager
def output_lock(final: Path) -> Iterator[None]:
    """Hold the lock of store ``final`` (``.<name>.lock`` beside it), or raise OutputError
    at once if another process holds it."""
    lock = final.with_name(f".{final.name}.lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise OutputError(
                f"{final}: another conversion{by} is writing this store; wait for it to end or stop it"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # The holder before us removes the file as it lets go: if it did so between our
        # open and our lock, we hold a lock nobody else can see; take the new file's.
        try:
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid only improves the message of a second conversion (a full disk)
        yield
    finally:
        # Removed while still held, so no process can lock the file after we leave it.
        try:
            lock.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)


def _old(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def recover(final: Path) -> str | None:
    """Undo what a crash inside ``publish`` left; say what was done, if anything."""
    old = _old(final)
    if not old.exists():
        return None
    if final.exists():
        shutil.rmtree(old)
        return f"{old}: removed, the replaced store of an interrupted --overwrite"
    old.rename(final)
    return f"{final}: put back from {old.name}, left by an --overwrite interrupted before the new store was in place"


def publish(partial: Path, final: Path) -> None:
    """Replace ``final`` by the finished ``partial`` with renames, never a half state."""
    if not final.exists():
        partial.rename(final)
        return
    old = _old(final)
    final.rename(old)
    partial.rename(final)
    shutil.rmtree(old)


# How the zarrs engine (Rust) reports an I/O error: a RuntimeError ending in the OS's code.
_RUST_OS_ERROR = re.compile(r"^(?P<reason>.*) \(os error (?P<errno>\d+)\)$")


def os_error(error: BaseException) -> OSError | None:
    """``error`` as an OSError if it is one, or is the zarrs engine's report of one."""
    if isinstance(error, OSError):
        return error
    if isinstance(error, RuntimeError):
        found = _RUST_OS_ERROR.match(str(error).strip().splitlines()[-1] if str(error).strip() else "")
        if found:
            return OSError(int(found["errno"]), found["reason"])
    return None


def output_error(error: OSError, source: Path | Remote, out_dir: Path, final: Path) -> SensoriumZarrError:
    """One line for an OSError raised while converting ``source`` into ``final``: a
    SourceError when it names a source file, else an OutputError."""
    filename = str(error.filename or "")
    reason = error.strerror or str(error)
    if filename and isinstance(source, Path) and Path(filename).is_relative_to(source):
        return SourceError(f"{filename}: could not be read ({reason}); did the source change while it was converted?")
    if error.errno == errno.ENOSPC:
        return OutputError(f"{out_dir}: no space left on device while writing {final.name}; nothing was kept")
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return OutputError(f"{out_dir}: cannot write there ({reason})")
    where = filename or str(out_dir)
    return OutputError(f"{where}: {reason} while writing {final.name}; nothing was kept")
