"""One converted mouse, opened read-only. Entry points: ``open_mouse``, ``open_sensorium``.

Opening reads the root attributes and the small per-trial and per-tier index arrays only
(from format version 5, the one bundle that duplicates them and the statistics
standardization uses); every variable and statistic is read when asked for. A ``Mouse``
pickles as its store location plus those small arrays, and reopens Zarr on first use in
the new process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import zarr
import zarr.errors
from zarr.abc.store import Store

from . import _engine as engine_
from . import _standardize as std_
from . import format as fmt
from ._chunks import require_chunks
from ._location import Remote, describe, is_storage_error, is_url, looks_like_folded_url
from ._selection import parse_frames, parse_neurons, parse_trials_per_block, parse_variable
from ._split import Split
from ._store import POOLED, Identity, StoreHandle, open_store, store_identity
from .errors import IncompleteStoreError, SelectionError, StoreFormatError, StoreNotFoundError, StoreReplacedError

__all__ = ["Mouse", "open_mouse", "open_sensorium"]

#: Requests to a bucket issued at once when opening a mouse (one per small array).
_REQUESTS_IN_FLIGHT = 16

_T = TypeVar("_T")


class Mouse:
    """A converted mouse: its attributes, trial index and tiers, and lazy access to its data
    through ``split``."""

    def __init__(self, handle: StoreHandle, attrs: fmt.MouseAttrs) -> None:
        self._handle = handle
        self.attrs = attrs
        self.shapes: dict[str, tuple[int, ...]] = {}
        for variable in fmt.VARIABLES:
            self.shapes[variable] = tuple(self._checked(variable).shape)
        indexes = {tier_name: f"{fmt.INDEX_GROUP}/{tier_name}" for tier_name in attrs.tiers}
        paths = [fmt.TRIAL_ID, fmt.TIER, fmt.VALID_FRAMES, fmt.HAS_RESPONSES, *indexes.values()]
        handle.bundled = self._spec.bundle
        small = self._from_bundle(paths) if handle.bundled else self._read_all_checked(paths)
        trial_ids = small[fmt.TRIAL_ID].astype(np.int64)
        # Zarr returns variable-width strings; fixed-width ones compare and pickle plainly.
        self.trial_tiers: np.ndarray = np.array(small[fmt.TIER].tolist(), dtype=str)
        self.valid_frames: np.ndarray = small[fmt.VALID_FRAMES].astype(np.int32)
        self.has_responses: np.ndarray = small[fmt.HAS_RESPONSES].astype(bool)
        self.trial_ids: np.ndarray = trial_ids
        self.positions_by_tier: dict[str, np.ndarray] = {
            tier_name: small[path].astype(np.int64) for tier_name, path in indexes.items()
        }
        self._spec.check_tier_index(
            handle.where, attrs.n_trials, trial_ids, self.trial_tiers, self.positions_by_tier
        )

    @property
    def _spec(self) -> fmt.FormatSpec:
        return fmt.spec(self.attrs.format_version)

    def _checked(self, path: str) -> zarr.Array[Any]:
        """The array at ``path`` (the root's node: from the consolidated metadata, where the
        store has it, so checking reads nothing), its metadata checked against the table."""
        array = self._handle.node(path)
        expected = self._spec.expected(path, self.attrs, self.shapes, source_shape=tuple(array.shape))
        fmt.check_array(self._handle.where, expected, array.metadata.to_dict())
        return array

    def _from_bundle(self, paths: Sequence[str]) -> dict[str, np.ndarray]:
        """The small arrays at ``paths``, their metadata checked, their values from the
        bundle: one read, whose magic and checksum stand for the arrays' existence checks."""
        arrays = {path: self._checked(path) for path in paths}
        self._checked(fmt.BUNDLE)
        members = self._handle.bundle()
        fmt.require_members(self._handle.where, list(members), self.attrs)
        return {path: self._bundled(path, array, members) for path, array in arrays.items()}

    def _bundled(self, path: str, array: zarr.Array[Any], members: Mapping[str, np.ndarray]) -> np.ndarray:
        values = members[path]
        if values.shape != tuple(array.shape):
            raise StoreFormatError(
                f"{self._handle.where}: '{fmt.BUNDLE}' member '{path}' has shape {values.shape}, the array "
                f"{tuple(array.shape)}; convert the source again"
            )
        return values

    def _in_bundle(self, path: str) -> bool:
        """Whether the bundle holds ``path`` (its values are then read from there, and its
        chunk needs no existence check)."""
        if not self._handle.bundled:
            return False
        members = self._handle.bundle()
        if path not in members:
            return False
        self._bundled(path, self._handle.node(path), members)  # refuses a member of another shape
        return True

    def _require_chunks(self, array: zarr.Array[Any]) -> None:
        try:
            require_chunks(array, self._handle.where)
        except StoreFormatError:
            self._handle.check_unchanged()  # gone because the store is being replaced?
            raise

    def _read_checked(self, path: str) -> np.ndarray:
        return self._read_all_checked([path])[path]

    def _read_all_checked(self, paths: Sequence[str]) -> dict[str, np.ndarray]:
        """The small arrays at ``paths``, checked and read whole, then one check that the
        store was not replaced meanwhile. From a bucket, where each request is a round
        trip, the existence checks go out at once, then the reads."""
        arrays = {path: self._checked(path) for path in paths}

        def require(array: zarr.Array[Any]) -> None:
            if self._spec.every_chunk_present:
                # Zarr would read a lost chunk as the fill value: index/oracle as trial 0.
                self._require_chunks(array)

        def read(array: zarr.Array[Any]) -> np.ndarray:
            return engine_.read(array, ..., self._handle.where)

        self._each(require, list(arrays.values()))
        values = dict(zip(arrays, self._each(read, list(arrays.values())), strict=True))
        self._handle.check_unchanged()
        return values

    def _each(self, function: Callable[[zarr.Array[Any]], _T], arrays: list[zarr.Array[Any]]) -> list[_T]:
        """``function`` of each of ``arrays``: from a bucket, where each call is a round
        trip, all at once; else one after another."""
        if isinstance(self._handle.source, Remote) and len(arrays) > 1:
            with ThreadPoolExecutor(min(_REQUESTS_IN_FLIGHT, len(arrays))) as pool:
                return list(pool.map(function, arrays))
        return [function(array) for array in arrays]

    @property
    def name(self) -> str:
        return self.attrs.mouse

    @property
    def path(self) -> Path | None:
        """The store's folder; None when opened from a URL or a Zarr store that has no local root."""
        source = self._handle.source
        if isinstance(source, Path):
            return source
        if isinstance(source, Remote):
            return None
        root = getattr(source, "root", None)
        return Path(root) if root is not None else None

    @property
    def url(self) -> str | None:
        """The store's URL when it was opened from one."""
        source = self._handle.source
        return source.url if isinstance(source, Remote) else None

    @property
    def n_trials(self) -> int:
        return self.attrs.n_trials

    @property
    def n_neurons(self) -> int:
        return self.attrs.n_neurons

    @property
    def t_pad(self) -> int:
        return self.attrs.t_pad

    @property
    def tiers(self) -> dict[str, np.ndarray]:
        """Trial ids of every tier present, ascending within each tier."""
        return {tier: self.trial_ids[positions] for tier, positions in self.positions_by_tier.items()}

    def __repr__(self) -> str:
        return (
            f"<Mouse {self.name}: {self.n_trials} trials, {self.n_neurons} neurons, "
            f"t_pad {self.t_pad}, at {self._handle.where}>"
        )

    def split(
        self,
        names: str | Sequence[str],
        *,
        standardize: bool = True,
        statistics: str = std_.RECOMPUTED,
        frames: slice | None = None,
        trials_per_block: int | None = None,
        neurons: slice | Sequence[int] | np.ndarray | None = None,
    ) -> Split:
        """The trials of splits or tiers ``names`` ("train", "validation", "test", any tier,
        or a list of those), in store order, as lazy Dask arrays: ascending trial id within
        each tier, and tiers in experiment order (a format version 1 store orders every
        trial by id); ``trial_ids`` and ``tiers`` say which trial each row is.

        ``trials_per_block`` trials make one Dask block; by default as many as fit in 16
        MiB (or Dask's ``array.chunk-size`` if that is smaller), so a selection across
        trials is a few tasks and a reduction's temporaries stay small enough to reuse.
        Slicing reads only what it selects, whatever the block size; an index array on
        the trial axis (or the neuron axis of ``responses``) reads only the trials (or
        neurons) it names.
        ``frames`` selects a time window of every variable and ``neurons`` (a slice or a
        list of indices) the neurons of ``responses``; both are read selectively, so one
        neuron across trials decodes one small chunk per trial. Reads no array data:
        values are read (and standardized) when computed.
        """
        where = self._handle.where
        try:
            tiers = fmt.parse_tiers([names] if isinstance(names, str) else list(names))
        except SelectionError as e:
            raise SelectionError(f"{where}: {e}") from None
        if not tiers:
            valid = ", ".join([*fmt.SPLITS, *fmt.TIERS])
            raise SelectionError(f"{where}: no split or tier named; valid names: {valid}")
        statistics = std_.parse_statistics_source(statistics, where)
        if trials_per_block is not None:
            trials_per_block = parse_trials_per_block(trials_per_block, where)
        window = parse_frames(frames, self.t_pad, where)
        neuron_selection = parse_neurons(neurons, self.n_neurons, where)
        if standardize:
            self._require_statistics(statistics)
        parts = [self.positions_by_tier[t] for t in tiers if t in self.positions_by_tier]
        # Sorted positions: each read then covers one ascending run of the trial axis.
        positions = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        return Split(
            self._handle,
            mouse=self.name,
            tiers_selected=tiers,
            positions=positions,
            trial_ids=self.trial_ids[positions],
            tiers=self.trial_tiers[positions],
            valid_frames=self.valid_frames[positions],
            has_responses=self.has_responses[positions],
            shapes=self.shapes,
            dtypes={v: np.dtype(self.attrs.stored_dtypes[v]) for v in fmt.VARIABLES},
            standardize=standardize,
            statistics=statistics,
            frames=window,
            trials_per_block=trials_per_block,
            neurons=neuron_selection,
            uint8_variables=self.attrs.uint8_variables,
        )

    def _require_statistics(self, statistics: str) -> None:
        # Checked from metadata now, so a missing statistic fails here, not inside a worker.
        unchecked: list[zarr.Array[Any]] = []
        for variable in fmt.VARIABLES:
            if statistics == std_.PROVIDED:
                self._handle.require_provided(variable)
                paths = [fmt.provided_statistics_path(variable, stat) for stat in std_.required_statistics(variable)]
                arrays = [self._handle.node(path) for path in paths]
            else:
                paths = [fmt.statistics_path(variable, fmt.OVER_TRIALS_AND_TIME, stat) for stat in POOLED]
                arrays = [self._checked(path) for path in paths]
            if self._spec.every_chunk_present:
                unchecked += [a for path, a in zip(paths, arrays, strict=True) if not self._in_bundle(path)]
        self._each(self._require_chunks, unchecked)

    def statistics(self, tier: str = fmt.STATISTICS_TIER) -> dict[str, dict[str, dict[str, np.ndarray]]]:
        """Statistics recomputed from ``tier``: ``[variable][granularity][stat]``, stored layout
        without the trial axis (``trials`` keeps time, ``trials_time`` pools it)."""
        available = self.attrs.statistics_tier
        if tier != available:
            raise SelectionError(
                f"{self._handle.where}: no statistics recomputed from tier {tier!r}; available: {available}"
            )
        values = self._read_all_checked([
            fmt.statistics_path(variable, granularity, stat, tier)
            for variable in fmt.VARIABLES for granularity in fmt.GRANULARITIES for stat in fmt.STATISTICS
        ])
        return {
            variable: {
                granularity: {
                    stat: values[fmt.statistics_path(variable, granularity, stat, tier)] for stat in fmt.STATISTICS
                }
                for granularity in fmt.GRANULARITIES
            }
            for variable in fmt.VARIABLES
        }

    def provided_statistics(self) -> dict[str, dict[str, np.ndarray]]:
        """The dataset's own statistics as stored: ``[variable][stat]``, source layout (time
        last); variables or statistics the dataset lacks are absent."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for variable in fmt.VARIABLES:
            # The folder of the variable's statistic files, whichever the dataset has.
            group_path = fmt.provided_statistics_path(variable, "").rstrip("/")
            if not self._handle.exists(group_path):
                continue
            group = self._handle.root[group_path]
            if not isinstance(group, zarr.Group):
                continue
            stats = {name: engine_.read(array, ..., self._handle.where) for name, array in sorted(group.arrays())}
            if stats:
                out[variable] = stats
        return out

    def standardization_params(
        self, variable: str, statistics: str = std_.RECOMPUTED
    ) -> std_.StandardizationParams:
        """The parameters ``split`` standardizes ``variable`` with, over all ``t_pad`` frames."""
        where = self._handle.where
        variable = parse_variable(variable, where)
        statistics = std_.parse_statistics_source(statistics, where)
        self._require_statistics(statistics)
        return self._handle.params(variable, statistics)


def open_mouse(
    path: str | os.PathLike[str] | Store,
    *,
    engine: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Mouse:
    """Open the store at ``path`` (a folder, a URL such as ``s3://bucket/mouse.zarr``, or
    a Zarr ``Store``) read-only.

    ``engine`` decodes chunks: ``"native"`` (the default: the reader's own read path for
    the converter's layouts, in a local folder or at a URL; zarr-python's for anything
    else), ``"zarr"``
    (zarr-python's own pipeline) or ``"zarrs"`` (the ``fast`` extra; it does not check the
    checksum of chunks it reads in part). ``native`` and ``zarr`` check every chunk's
    CRC32C. Opening checks the attributes,
    and the metadata and the small index arrays of every array it opens, against the
    format (``sensorium_zarr.format``); a store that breaks it raises ``StoreFormatError``.

    A URL is read through obstore (``pip install 'sensorium-zarr[s3]'``);
    ``storage_options`` are obstore's config keys (``endpoint``, ``access_key_id``,
    ``secret_access_key``, ``region``, ``client_options``...), and what they leave out comes
    from the standard environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``...).
    """
    if is_url(path):
        assert isinstance(path, str)
        return _open_remote(Remote.of(path, storage_options), engine)
    if storage_options:
        raise SelectionError(f"{path}: storage_options are for URLs; this is a local path")
    if looks_like_folded_url(path):
        raise StoreNotFoundError(f"{path}: looks like a URL with one slash folded away; write scheme://bucket/...")
    engine = engine_.parse_engine(engine)
    if isinstance(path, Store):
        root, attrs = open_store(path)
        # Zarr's read-only view of the store, so a pickled Mouse reopens read-only too.
        handle = StoreHandle(root.store, root, engine)
    elif isinstance(path, (str, os.PathLike)):
        folder = Path(path)
        try:
            # Before the attributes are read, so a store replaced meanwhile is caught.
            identity: Identity | None = store_identity(folder)
        except OSError:
            identity = None  # open_store says what is wrong
        root, attrs = open_store(folder)
        handle = StoreHandle(folder, root, engine, identity)
    else:
        raise TypeError(f"open_mouse: expected a path or a zarr Store (or a URL), got {type(path).__name__}")
    return _mouse(handle, attrs)


def _open_remote(remote: Remote, engine: str | None) -> Mouse:
    engine = engine_.parse_engine(engine)
    try:
        # Before the attributes are read, so a store replaced meanwhile is caught.
        identity: Identity | None = store_identity(remote)
    except Exception as e:
        if not is_storage_error(e) and not isinstance(e, OSError):
            raise
        identity = None  # open_store says what is wrong
    root, attrs = open_store(remote)
    return _mouse(StoreHandle(remote, root, engine, identity), attrs)


def _mouse(handle: StoreHandle, attrs: fmt.MouseAttrs) -> Mouse:
    try:
        return Mouse(handle, attrs)
    except Exception as e:
        # A store replaced while it was being opened fails in whatever way zarr likes.
        try:
            handle.check_unchanged()
        except StoreReplacedError as replaced:
            raise replaced from e
        if is_storage_error(e):
            raise StoreNotFoundError(f"{handle.where}: cannot read the store ({describe(e)})") from e
        if isinstance(e, (zarr.errors.BaseZarrError, KeyError, ValueError, TypeError)) and not isinstance(
            e, StoreFormatError
        ):
            raise StoreFormatError(
                f"{handle.where}: unreadable index arrays ({e}); convert the source again"
            ) from e
        raise


def open_sensorium(
    folder: str | os.PathLike[str],
    *,
    engine: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Mouse]:
    """Every complete ``*.zarr`` store in ``folder`` (a local folder, or a URL prefix such
    as ``s3://bucket/sensorium``, listed with one request), by mouse name.

    Hidden folders (conversions under way or interrupted, ``.<mouse>.zarr.partial``) and
    stores whose conversion never finished (``complete`` false; listed if no store is
    left) are skipped. Every other store is opened as ``open_mouse`` opens it, by the same
    rules, so a store it refuses is refused here too, with the same error.
    """
    candidates: list[str | Path]
    if is_url(folder):
        assert isinstance(folder, str)
        remote = Remote.of(folder, storage_options)
        candidates = [remote.child(name).url for name in list_stores(remote)]
    else:
        if storage_options:
            raise SelectionError(f"{folder}: storage_options are for URLs; this is a local path")
        folder = Path(folder)
        if not folder.is_dir():
            raise StoreNotFoundError(f"{folder}: no such folder; expected a folder of <mouse>.zarr stores")
        candidates = [
            path for path in sorted(folder.glob("*.zarr")) if not path.name.startswith(".") and path.is_dir()
        ]
    mice: dict[str, Mouse] = {}
    skipped: list[str] = []
    for path in candidates:
        name = path.name if isinstance(path, Path) else path.rsplit("/", 1)[-1]
        try:
            mouse = open_mouse(path, engine=engine, storage_options=storage_options if is_url(path) else None)
        except IncompleteStoreError:
            skipped.append(name)
            continue
        if mouse.name in mice:
            other = mice[mouse.name]
            raise StoreFormatError(
                f"{folder}: {name} and {other.path or other.url} both hold mouse "
                f"{mouse.name!r}; remove one"
            )
        mice[mouse.name] = mouse
    if not mice:
        detail = f" ({len(skipped)} incomplete: {', '.join(skipped)})" if skipped else ""
        raise StoreNotFoundError(
            f"{folder}: no complete *.zarr store{detail}; convert the mice with sensorium-zarr first"
        )
    return mice


def list_stores(remote: Remote) -> list[str]:
    """The names of the ``*.zarr`` prefixes directly under ``remote`` (hidden ones, a
    conversion's lock, skipped), sorted."""
    import obstore

    try:
        listing = obstore.list_with_delimiter(remote.objects())
    except Exception as e:
        if is_storage_error(e):
            raise StoreNotFoundError(f"{remote.url}: cannot list the stores ({describe(e)})") from None
        raise
    names = [str(prefix).rstrip("/").rsplit("/", 1)[-1] for prefix in listing["common_prefixes"]]
    return sorted(n for n in names if n.endswith(".zarr") and not n.startswith("."))
