"""One converted mouse, opened read-only. Entry points: ``open_mouse``, ``open_sensorium``.

Opening reads the root attributes and the small per-trial and per-tier index arrays only;
every variable and statistic is read when asked for. A ``Mouse`` pickles as its store
location plus those small arrays, and reopens Zarr on first use in the new process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
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
from ._split import Split, parse_frames, parse_neurons, parse_trials_per_block, parse_variable
from ._store import is_complete_store, open_store
from .errors import SelectionError, StoreFormatError, StoreNotFoundError

__all__ = ["Mouse", "open_mouse", "open_sensorium"]

#: The pooled (``trials_time``) statistics the recomputed standardization is derived from.
_POOLED = ("mean", "std", "count")


class StoreHandle:
    """Where a store lives, and a lazily opened, read-only view of it.

    Only the location pickles; the open group, arrays and standardization parameters are
    per-process caches, rebuilt on first use after unpickling.
    """

    def __init__(self, source: Path | Store, root: zarr.Group | None = None, engine: str = engine_.ZARR) -> None:
        self.source = source
        self.engine = engine
        self.where = str(source) if isinstance(source, Path) else _store_name(source)
        self._lock = threading.Lock()
        self._arrays: dict[str, zarr.Array] = _fork.per_process_dict()
        self._params: dict[tuple[str, str], std_.StandardizationParams] = {}
        if root is not None:
            self.__dict__["root"] = root

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source, "where": self.where, "engine": self.engine}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"], engine=state["engine"])  # type: ignore[misc]

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

    def array(self, path: str) -> zarr.Array:
        """The array at ``path``, or StoreFormatError naming it."""
        array = self._arrays.get(path)
        if array is None:
            node = self.root.get(path)
            if node is None:
                raise StoreFormatError(
                    f"{self.where}: no array '{path}'; the store is damaged or not written by "
                    "sensorium-zarr, convert the source again"
                )
            if not isinstance(node, zarr.Array):
                raise StoreFormatError(f"{self.where}: '{path}' is a group, expected an array")
            array = engine_.open_array(self.root.store, path, self.engine)
            self._arrays[path] = array
        return array

    def read(self, path: str) -> np.ndarray:
        return engine_.read(self.array(path), ..., self.where)

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
                s: self.read(fmt.provided_statistics_path(variable, s))
                for s in std_.required_statistics(variable)
            }
            return std_.provided_params(variable, stats.get("mean"), stats["std"])
        stats = {s: self.read(fmt.statistics_path(variable, fmt.OVER_TRIALS_AND_TIME, s)) for s in _POOLED}
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


def _store_name(store: Store) -> str:
    root = getattr(store, "root", None)
    return str(root) if root is not None else str(store)


def _zarr_store(source: Path | Store) -> Any:
    return str(source) if isinstance(source, Path) else source


class Mouse:
    """A converted mouse: its attributes, trial index and tiers, and lazy access to its data
    through ``split``."""

    def __init__(self, handle: StoreHandle, attrs: fmt.MouseAttrs) -> None:
        self._handle = handle
        self.attrs = attrs
        where = handle.where
        trial_ids = self._read_trial_array(fmt.TRIAL_ID).astype(np.int64)
        tier = self._read_trial_array(fmt.TIER)
        # Zarr returns variable-width strings; fixed-width ones compare and pickle plainly.
        self.trial_tiers: np.ndarray = np.array(tier.tolist(), dtype=str)
        self.valid_frames: np.ndarray = self._read_trial_array(fmt.VALID_FRAMES).astype(np.int32)
        self.has_responses: np.ndarray = self._read_trial_array(fmt.HAS_RESPONSES).astype(bool)
        self.trial_ids: np.ndarray = trial_ids
        if len(np.unique(trial_ids)) != len(trial_ids):
            raise StoreFormatError(f"{where}: '{fmt.TRIAL_ID}' repeats a trial id; convert the source again")
        self.positions_by_tier: dict[str, np.ndarray] = {}
        for tier_name in attrs.tiers:
            positions = handle.read(f"{fmt.INDEX_GROUP}/{tier_name}").astype(np.int64)
            if positions.size and (positions.min() < 0 or positions.max() >= attrs.n_trials):
                raise StoreFormatError(
                    f"{where}: '{fmt.INDEX_GROUP}/{tier_name}' points outside the {attrs.n_trials} trials; "
                    "convert the source again"
                )
            # Both versions store a tier's trials by ascending position and trial id
            # (version 1 sorts all trials by id, version 2 groups them by tier first).
            if np.any(np.diff(positions) <= 0) or np.any(np.diff(trial_ids[positions]) <= 0):
                raise StoreFormatError(
                    f"{where}: '{fmt.INDEX_GROUP}/{tier_name}' is not in ascending position and trial id "
                    "order; convert the source again"
                )
            if attrs.format_version >= 2 and np.any(np.diff(positions) != 1):
                raise StoreFormatError(
                    f"{where}: '{fmt.INDEX_GROUP}/{tier_name}' is not one consecutive range of trials, as "
                    f"format version {attrs.format_version} requires; convert the source again"
                )
            self.positions_by_tier[tier_name] = positions
        self.shapes: dict[str, tuple[int, ...]] = {}
        for variable in fmt.VARIABLES:
            shape = tuple(handle.array(variable).shape)
            if shape[:1] != (attrs.n_trials,) or len(shape) != len(fmt.DIMENSIONS[variable]):
                raise StoreFormatError(
                    f"{where}: '{variable}' has shape {shape}, expected {len(fmt.DIMENSIONS[variable])} "
                    f"dimensions {fmt.DIMENSIONS[variable]} and {attrs.n_trials} trials"
                )
            self.shapes[variable] = shape

    def _read_trial_array(self, path: str) -> np.ndarray:
        values = self._handle.read(path)
        if values.shape[:1] != (self.attrs.n_trials,):
            raise StoreFormatError(
                f"{self._handle.where}: '{path}' has {values.shape[:1]} entries, expected "
                f"{self.attrs.n_trials} (one per trial); convert the source again"
            )
        return values

    @property
    def name(self) -> str:
        return self.attrs.mouse

    @property
    def path(self) -> Path | None:
        """The store's folder; None when opened from a Zarr store that has no local root."""
        source = self._handle.source
        if isinstance(source, Path):
            return source
        root = getattr(source, "root", None)
        return Path(root) if root is not None else None

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

        ``trials_per_block`` trials make one Dask block; by default one trial, except for
        ``responses`` of a neuron subset, whose blocks hold as many trials as make the
        size of one full trial (one block in all for a single neuron).
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
        )

    def _require_statistics(self, statistics: str) -> None:
        # Checked from metadata now, so a missing statistic fails here, not inside a worker.
        for variable in fmt.VARIABLES:
            if statistics == std_.PROVIDED:
                self._handle.require_provided(variable)
            else:
                for stat in _POOLED:
                    self._handle.array(fmt.statistics_path(variable, fmt.OVER_TRIALS_AND_TIME, stat))

    def statistics(self, tier: str = fmt.STATISTICS_TIER) -> dict[str, dict[str, dict[str, np.ndarray]]]:
        """Statistics recomputed from ``tier``: ``[variable][granularity][stat]``, stored layout
        without the trial axis (``trials`` keeps time, ``trials_time`` pools it)."""
        available = self.attrs.statistics_tier
        if tier != available:
            raise SelectionError(
                f"{self._handle.where}: no statistics recomputed from tier {tier!r}; available: {available}"
            )
        return {
            variable: {
                granularity: {
                    stat: self._handle.read(fmt.statistics_path(variable, granularity, stat, tier))
                    for stat in fmt.STATISTICS
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
        return self._handle.params(variable, std_.parse_statistics_source(statistics, where))


def open_mouse(path: str | os.PathLike[str] | Store, *, engine: str | None = None) -> Mouse:
    """Open the store at ``path`` (a folder, or a Zarr ``Store``) read-only.

    ``engine`` decodes chunks: ``"zarrs"`` (the ``fast`` extra; the default when it is
    installed) or ``"zarr"`` (zarr-python's own pipeline).
    """
    engine = engine_.parse_engine(engine)
    if isinstance(path, Store):
        root, attrs = _open_zarr_store(path)
        # Zarr's read-only view of the store, so a pickled Mouse reopens read-only too.
        handle = StoreHandle(root.store, root, engine)
    elif isinstance(path, (str, os.PathLike)):
        folder = Path(path)
        root, attrs = open_store(folder)
        handle = StoreHandle(folder, root, engine)
    else:
        raise TypeError(f"open_mouse: expected a path or a zarr Store, got {type(path).__name__}")
    try:
        return Mouse(handle, attrs)
    except StoreFormatError:
        raise
    except (zarr.errors.BaseZarrError, KeyError, ValueError, TypeError) as e:
        raise StoreFormatError(
            f"{handle.where}: unreadable index arrays ({e}); convert the source again"
        ) from e


def _open_zarr_store(store: Store) -> tuple[zarr.Group, fmt.MouseAttrs]:
    where = _store_name(store)
    try:
        root = zarr.open_group(store=store, mode="r", zarr_format=3)
    except (zarr.errors.BaseZarrError, FileNotFoundError) as e:
        raise StoreNotFoundError(
            f"{where}: not a Zarr v3 group ({e}); expected a store written by sensorium-zarr"
        ) from e
    data = root.attrs.get(fmt.ATTRS_KEY)
    if not isinstance(data, dict):
        raise StoreFormatError(
            f"{where}: no '{fmt.ATTRS_KEY}' attributes; not a store written by sensorium-zarr"
        )
    return root, fmt.MouseAttrs.from_dict(data, where)


def open_sensorium(folder: str | os.PathLike[str], *, engine: str | None = None) -> dict[str, Mouse]:
    """Every complete ``*.zarr`` store in ``folder``, by mouse name.

    Hidden folders (conversions under way or interrupted, ``.<mouse>.zarr.partial``) and
    stores whose conversion never finished are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise StoreNotFoundError(f"{folder}: no such folder; expected a folder of <mouse>.zarr stores")
    mice: dict[str, Mouse] = {}
    skipped: list[str] = []
    for path in sorted(folder.glob("*.zarr")):
        if path.name.startswith(".") or not path.is_dir():
            continue
        if not is_complete_store(path):
            skipped.append(path.name)
            continue
        mouse = open_mouse(path, engine=engine)
        if mouse.name in mice:
            raise StoreFormatError(
                f"{folder}: {path.name} and {mice[mouse.name].path} both hold mouse "
                f"{mouse.name!r}; remove one"
            )
        mice[mouse.name] = mouse
    if not mice:
        detail = f" ({len(skipped)} incomplete: {', '.join(skipped)})" if skipped else ""
        raise StoreNotFoundError(
            f"{folder}: no complete *.zarr store{detail}; convert the mice with sensorium-zarr first"
        )
    return mice
