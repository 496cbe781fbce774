"""Store access: open a path or a Zarr ``Store`` as a sensorium-zarr store, read and check
its root attributes (``open_store``), tell a finished store (``is_complete_store``), and
keep a lazily reopened, picklable view of it (``StoreHandle``).

Every entry point judges completion with the one rule, ``format.is_complete``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.errors
from zarr.abc.store import Store

from . import _engine as engine_
from . import _fork
from . import _standardize as std_
from . import format as fmt
from ._location import Remote, describe, is_storage_error, require_usable
from ._remote import Check
from .errors import StoreFormatError, StoreNotFoundError, StoreReplacedError

__all__ = [
    "StoreHandle",
    "open_store",
    "open_root",
    "root_attributes",
    "is_complete_store",
    "store_name",
    "store_identity",
]

#: The pooled (``trials_time``) statistics the recomputed standardization is derived from.
POOLED = fmt.POOLED


def store_name(store: Store) -> str:
    """How messages name a Zarr store: its local folder, else its own description."""
    root = getattr(store, "root", None)
    return str(root) if root is not None else str(store)


#: Where a store is: a local folder, a Zarr ``Store`` given by hand, or a URL.
Source = Path | Store | Remote
#: What changes when a store is replaced (``store_identity``).
Identity = tuple[int, ...] | str


def _zarr_store(source: Source) -> Any:
    if isinstance(source, Path):
        return str(source)
    if isinstance(source, Remote):
        return source.store(read_only=True)
    return source


def _open_remote(remote: Remote) -> tuple[zarr.Group, str]:
    where = remote.where
    try:
        store = remote.store(read_only=True)
        return zarr.open_group(store=store, mode="r", zarr_format=3), where
    except (zarr.errors.BaseZarrError, FileNotFoundError) as e:
        if is_storage_error(e):
            raise StoreNotFoundError(f"{where}: {describe(e)}") from None
        # Only now, on the way to an error, tell a missing bucket from a missing store.
        try:
            exists = store_exists(remote)
        except Exception as missing:
            if is_storage_error(missing):
                raise StoreNotFoundError(f"{where}: {describe(missing)}") from None
            raise
        if not exists:
            raise StoreNotFoundError(
                f"{where}: no store there (no zarr.json); expected a store written by sensorium-zarr"
            ) from None
        raise StoreNotFoundError(
            f"{where}: not a Zarr v3 group ({e}); expected a store written by sensorium-zarr"
        ) from e
    except Exception as e:
        if is_storage_error(e):
            raise StoreNotFoundError(f"{where}: cannot read the store ({describe(e)})") from None
        raise


def store_exists(remote: Remote) -> bool:
    """Whether the root ``zarr.json`` of ``remote`` exists; raises obstore's errors for
    anything but its absence (a missing bucket, refused credentials)."""
    import obstore

    try:
        remote_identity(remote)
        return True
    except FileNotFoundError:
        pass
    # A HEAD's 404 has no body to say whether the bucket is missing; a listing's does.
    next(iter(obstore.list(remote.objects(), chunk_size=1)), None)
    return False


def remote_identity(remote: Remote) -> str:
    """The ETag and modification time of ``remote``'s root ``zarr.json``: every write of
    it (the converter's first, marking a replaced store incomplete, and its last, marking
    the new one complete) changes them; the time tells apart even a store rewritten byte
    for byte, whose ETag (a digest of the content) is the same. One HEAD request."""
    import obstore

    return _identity_of(obstore.head(remote.objects(), "zarr.json"))


async def remote_identity_async(remote: Remote) -> str:
    """``remote_identity``, awaited on the reads' request loop."""
    import obstore

    return _identity_of(await obstore.head_async(remote.objects(), "zarr.json"))


def _identity_of(head: Mapping[str, Any]) -> str:
    return f"{head.get('e_tag')} {head.get('last_modified')}"


def open_root(source: Path | str | Store | Remote) -> tuple[zarr.Group, str]:
    """The root group of ``source`` opened read-only, and how messages name it; or
    ``StoreNotFoundError`` when it is not a Zarr v3 group."""
    if isinstance(source, Remote):
        return _open_remote(source)
    if isinstance(source, Store):
        where = store_name(source)
        try:
            return zarr.open_group(store=source, mode="r", zarr_format=3), where
        except (zarr.errors.BaseZarrError, FileNotFoundError) as e:
            raise StoreNotFoundError(
                f"{where}: not a Zarr v3 group ({e}); expected a store written by sensorium-zarr"
            ) from e
    path = Path(source)
    if not (path / "zarr.json").is_file():
        what = "no such file or folder" if not path.exists() else "not a Zarr v3 store (no zarr.json)"
        raise StoreNotFoundError(f"{path}: {what}; expected a store written by sensorium-zarr")
    try:
        return zarr.open_group(store=str(path), mode="r", zarr_format=3), str(path)
    except (zarr.errors.NodeTypeValidationError, FileNotFoundError, ValueError) as e:
        raise StoreNotFoundError(f"{path}: not a Zarr v3 group ({e})") from e


def root_attributes(root: zarr.Group, where: str) -> Mapping[str, Any]:
    """The format's attributes of ``root`` (unchecked), or ``StoreFormatError``."""
    data = root.attrs.get(fmt.ATTRS_KEY)
    if not isinstance(data, dict):
        raise StoreFormatError(
            f"{where}: no '{fmt.ATTRS_KEY}' attributes; not a store written by sensorium-zarr"
        )
    return data


def open_store(source: Path | str | Store | Remote) -> tuple[zarr.Group, fmt.MouseAttrs]:
    """Open ``source`` read-only and return its root group and checked attributes;
    ``IncompleteStoreError`` unless the conversion finished, ``StoreFormatError`` if its
    version requires consolidated metadata and the root has none."""
    root, where = open_root(source)
    attrs = fmt.MouseAttrs.from_dict(root_attributes(root, where), where)
    if fmt.spec(attrs.format_version).consolidated and root.metadata.consolidated_metadata is None:
        raise StoreFormatError(
            f"{where}: no consolidated metadata in zarr.json, which format version {attrs.format_version} "
            "requires; convert the source again"
        )
    return root, attrs


def is_complete_store(path: Path | str | Remote) -> bool:
    """Whether ``path`` holds a finished store (of any format version): ``is_complete``
    holds for its attributes. False for anything that is not a store at all."""
    try:
        root, where = open_root(path)
        return fmt.is_complete(root_attributes(root, where), where)
    except (OSError, ValueError, zarr.errors.BaseZarrError):
        return False
    except Exception as e:
        if is_storage_error(e):
            return False
        raise


class StoreHandle:
    """Where a store lives, and a lazily opened, read-only view of it.

    Only the location (and ``identity``) pickles; the open group, arrays and
    standardization parameters are per-process caches, rebuilt on first use after
    unpickling. ``identity`` is ``store_identity`` when the store was opened (None: a
    Zarr store given by hand, not checked); ``check_unchanged`` compares it with the
    store's now. A ``Remote`` pickles as its URL and options, never a live client.
    ``bundled`` (set by ``Mouse`` for a format version 5 store) says the store has the
    bundle, whose members are then read from it (``value``), one read per process.
    """

    def __init__(
        self,
        source: Source,
        root: zarr.Group | None = None,
        engine: str = engine_.ZARR,
        identity: Identity | None = None,
    ) -> None:
        self.source = source
        self.engine = engine
        self.identity = identity
        self.bundled = False
        self._bundle: dict[str, np.ndarray] | None = None
        self._bundle_lock = threading.Lock()
        self.where = str(source) if isinstance(source, (Path, Remote)) else store_name(source)
        self._lock = threading.Lock()
        self._arrays: dict[str, engine_.Readable] = _fork.per_process_dict()
        self._nodes: dict[str, zarr.Array[Any]] = _fork.per_process_dict()
        self._params: dict[tuple[str, str], std_.StandardizationParams] = {}
        if root is not None:
            self.__dict__["root"] = root

    def __getstate__(self) -> dict[str, Any]:
        return {
            "source": self.source, "where": self.where, "engine": self.engine, "identity": self.identity,
            "bundled": self.bundled,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"], engine=state["engine"], identity=state.get("identity"))  # type: ignore[misc]
        self.bundled = bool(state.get("bundled", False))

    def __dask_tokenize__(self) -> tuple[str, ...]:
        return ("sensorium-zarr-store", self.where)

    @cached_property
    def root(self) -> zarr.Group:
        try:
            return zarr.open_group(store=_zarr_store(self.source), mode="r", zarr_format=3)
        except (zarr.errors.BaseZarrError, FileNotFoundError) as e:
            raise StoreNotFoundError(
                f"{self.where}: cannot reopen the store ({e}); was it moved or deleted?"
            ) from e

    def node(self, path: str) -> zarr.Array[Any]:
        """The root's own array at ``path`` (zarr-python's codec pipeline), or
        StoreFormatError naming it. Its metadata comes with the root's when the store has
        consolidated metadata, so looking at it costs no read."""
        array = self._nodes.get(path)
        if array is None:
            if isinstance(self.source, Remote):
                # The open group's store may be the parent's client, inherited by a fork.
                require_usable(self.where)
            node = self.root.get(path)
            if node is None:
                self.check_unchanged()  # gone because the store is being replaced?
                raise StoreFormatError(
                    f"{self.where}: no array '{path}'; the store is damaged or not written by "
                    "sensorium-zarr, convert the source again"
                )
            if not isinstance(node, zarr.Array):
                raise StoreFormatError(f"{self.where}: '{path}' is a group, expected an array")
            array = self._nodes[path] = node
        return array

    def array(self, path: str) -> engine_.Readable:
        """The array at ``path`` for reading data, or StoreFormatError naming it: a per-trial
        variable opened for the engine (which reads its metadata again, when its data is
        first read), any other array (small, one chunk) the root's own ``node``."""
        if path not in fmt.VARIABLES:
            return self.node(path)
        array = self._arrays.get(path)
        if array is None:
            node = self.node(path)
            try:
                remote = self.source if isinstance(self.source, Remote) else None
                array = engine_.open_reader(self.root.store, path, self.engine, remote=remote)
            except (zarr.errors.BaseZarrError, FileNotFoundError) as e:
                # The consolidated metadata named it, so it is gone: is the store being replaced?
                self.check_unchanged()
                raise StoreFormatError(
                    f"{self.where}: cannot open '{path}' ({e}); the store is damaged, convert the source again"
                ) from e
            if array.metadata.to_dict() != node.metadata.to_dict():
                # The checks ran on the consolidated copy; the data must be read by the same rules.
                raise StoreFormatError(
                    f"{self.where}: the consolidated metadata of '{path}' differs from its zarr.json; "
                    "the store was changed after conversion, convert the source again"
                )
            self._arrays[path] = array
        return array

    def read(self, path: str) -> np.ndarray:
        values = engine_.read(self.array(path), ..., self.where)
        self.check_unchanged()
        return values

    def bundle(self) -> dict[str, np.ndarray]:
        """The bundle's members by path, read once per process (one request, then one
        replaced-store check); StoreFormatError naming the store if it is missing or
        damaged. Only for a store with the bundle (``bundled``)."""
        values = self._bundle
        if values is None:
            with self._bundle_lock:
                values = self._bundle
                if values is None:
                    array = self.node(fmt.BUNDLE)
                    listed = fmt.listed_members(array.attrs)
                    try:
                        values = fmt.unpack_bundle(self.where, engine_.read(array, ..., self.where), listed)
                    except StoreFormatError:
                        self.check_unchanged()  # gone because the store is being replaced?
                        raise
                    self.check_unchanged()
                    self._bundle = values
        return values

    def value(self, path: str) -> np.ndarray:
        """The small array at ``path`` read whole: from the bundle where it holds it, else
        read (``read``)."""
        if self.bundled:
            values = self.bundle().get(path)
            if values is not None:
                return values
        return self.read(path)

    def overlapped_check(self, parts: int) -> Check | None:
        """For a store in a bucket, a ``Check`` whose HEAD goes out while ``parts`` reads
        taking part in it are under way (``check_unchanged(check)`` then waits for it);
        None where there is nothing to overlap (a local folder: a ``stat``)."""
        if self.identity is None or not isinstance(self.source, Remote):
            return None
        remote = self.source
        return Check(parts, lambda: remote_identity_async(remote))

    def check_unchanged(self, check: Check | None = None) -> None:
        """StoreReplacedError if the store at this path is no longer the one opened: after
        an ``--overwrite`` the path holds other trials, and during its swap none at all
        (zarr would read missing chunks as fill values). Called after each read (with the
        read's ``overlapped_check``, if it took part in one), so data read from a store
        being replaced is never returned."""
        if self.identity is None or not isinstance(self.source, (Path, Remote)):
            return
        try:
            now: Identity | None = check.result() if check is not None else store_identity(self.source)
        except OSError:
            now = None
        except Exception as e:
            if not is_storage_error(e):
                raise
            now = None
        if now != self.identity:
            what = "is being replaced or was removed" if now is None else "was replaced"
            raise StoreReplacedError(f"{self.where}: the store {what} since it was opened; open it again")

    def exists(self, path: str) -> bool:
        return path in self.root

    def params(self, variable: str, statistics: str) -> std_.StandardizationParams:
        """Standardization parameters of ``variable`` over every frame, read once per process."""
        key = (variable, statistics)
        params = self._params.get(key)
        if params is None:
            with self._lock:
                params = self._params.get(key)
                if params is None:
                    params = self._read_params(variable, statistics)
                    self._params[key] = params
        return params

    def _read_params(self, variable: str, statistics: str) -> std_.StandardizationParams:
        if statistics == std_.PROVIDED:
            self.require_provided(variable)
            stats = {
                s: self.value(fmt.provided_statistics_path(variable, s))
                for s in std_.required_statistics(variable)
            }
            return std_.provided_params(variable, stats.get("mean"), stats["std"])
        stats = {s: self.value(fmt.statistics_path(variable, fmt.OVER_TRIALS_AND_TIME, s)) for s in POOLED}
        return std_.recomputed_params(variable, stats)

    def require_provided(self, variable: str) -> None:
        """Raise naming every provided statistic ``variable``'s standardization lacks."""
        missing = [
            fmt.provided_statistics_path(variable, s)
            for s in std_.required_statistics(variable)
            if not self.exists(fmt.provided_statistics_path(variable, s))
        ]
        if missing:
            raise StoreFormatError(
                f"{self.where}: the dataset provides no {', '.join(missing)}; "
                f"use statistics='{std_.RECOMPUTED}' or standardize=False"
            )


def store_identity(path: Path | Remote) -> Identity:
    """What changes when the store at ``path`` is replaced: the identity and modification
    time of its root ``zarr.json``, which a finished store never rewrites (in object
    storage, its ETag)."""
    if isinstance(path, Remote):
        return remote_identity(path)
    stat = os.stat(path / "zarr.json")
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
