"""Verification stage: compare every stored value with its source. Entry point: ``verify``.

Walks the format's table (``sensorium_zarr.format``) first: every array it requires must
exist with the dims, dtype, shape, chunk rule, checksums and fill value it gives, and
every array present must be one it defines. Then reads the whole store, so every chunk's
CRC32C checksum is checked too: a flipped byte in any chunk file shows up as an
unreadable block, and a source file changed after the conversion shows up as differing
values.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import EllipsisType
from typing import Any

import numpy as np
import zarr
from dask.base import compute
from dask.delayed import delayed

from sensorium_zarr import format as fmt
from sensorium_zarr._engine import open_array, parse_engine
from sensorium_zarr._store import open_store
from sensorium_zarr.errors import SensoriumZarrError

from ._chunking import Chunking
from ._source import SourceLayout, scan_source
from ._writer import real_frames, responses_withheld, store_shapes

__all__ = ["verify"]


def verify(
    source: Path | str, store: Path | str, *, workers: int | None = None, engine: str | None = None
) -> list[str]:
    """Every difference between ``source`` (mouse folder or zip) and ``store``, one line
    each; an empty list means the store holds exactly what the source holds."""
    engine = parse_engine(engine)
    layout = scan_source(source)
    root, attrs = open_store(store)
    problems: list[str] = []
    if attrs.mouse != layout.name:
        problems.append(f"mouse name: store has {attrs.mouse!r}, source {layout.name!r}")
    stored_ids = _read(root, fmt.TRIAL_ID, problems)
    if stored_ids is None or not np.array_equal(stored_ids, layout.trial_ids):
        problems.append(
            f"{fmt.TRIAL_ID}: store holds trials {_ids(stored_ids)}, source has {_ids(layout.trial_ids)}"
        )
        return problems
    problems.extend(_layout_problems(root, attrs, layout))
    tiers = _read(root, fmt.TIER, problems)
    if tiers is not None and [str(t) for t in tiers] != [str(t) for t in layout.trial_tiers]:
        problems.append(f"{fmt.TIER}: differs from meta/trials/tiers.npy")

    step = int(attrs.chunking.get("trials_per_shard", 8))
    tasks = [
        delayed(_verify_block)(layout, Path(store), lo, min(lo + step, layout.n_trials), engine)
        for lo in range(0, layout.n_trials, step)
    ]
    for block_problems in compute(*tasks, scheduler="threads", num_workers=workers):  # type: ignore[no-untyped-call]
        problems.extend(block_problems)

    for rel, _header in sorted(layout.meta_files.items()):
        path = rel[: -len(".npy")]
        stored = _read(root, path, problems)
        if stored is None:
            continue
        expected = layout.read_meta(rel)
        if expected.dtype.kind in "US":
            stored = stored.astype(expected.dtype)
        if stored.shape != expected.shape or not np.array_equal(stored, expected, equal_nan=expected.dtype.kind == "f"):
            problems.append(f"{path}: differs from {layout.tree.where(rel)}")
    # Derived arrays have no source to compare with, but reading them checks their checksums.
    opener = _Opener(Path(store), engine)
    for path, _array in _arrays(root):
        if path.split("/")[0] in (fmt.STATISTICS_GROUP, fmt.INDEX_GROUP):
            _read(opener, path, problems)
    return problems


def _layout_problems(root: zarr.Group, attrs: fmt.MouseAttrs, layout: SourceLayout) -> list[str]:
    """What the store's arrays break of the format's table, from their metadata: each
    array's own (``zarr.json``), and the root's consolidated copy where the version has one."""
    spec = fmt.spec(attrs.format_version)
    shapes = store_shapes(layout)
    # The arrays' own metadata, not the consolidated copy the reader trusts: that copy is
    # what is checked against them.
    own = zarr.open_group(root.store, mode="r", zarr_format=3, use_consolidated=False)
    present = dict(_arrays(own))
    problems = []
    if spec.consolidated:
        problems.extend(_consolidated_problems(root, present))
    if spec.consistent_dimensions:
        problems.extend(
            fmt.dimension_conflicts(
                (path, _dimension_names(array), array.shape) for path, array in present.items()
            )
        )
    for expected in spec.required(attrs, shapes):
        if expected.path not in present:
            problems.append(f"{expected.path}: missing from the store")
    try:
        chunking: Chunking | None = Chunking(**attrs.chunking)
    except (TypeError, ValueError) as e:
        problems.append(f"chunking attribute: {e}")
        chunking = None
    for path, array in present.items():
        try:
            expected = spec.expected(path, attrs, shapes, source_shape=tuple(array.shape))
        except KeyError:
            problems.append(f"{path}: an array the format does not define")
            continue
        problems.extend(f"{p}" for p in fmt.array_problems(expected, array.metadata.to_dict()))
        if isinstance(expected.chunks, fmt.Whole):
            if array.shards is not None or (all(array.shape) and tuple(array.chunks) != tuple(array.shape)):
                problems.append(f"{path}: chunks {array.chunks}, expected one chunk of the whole array")
        elif chunking is not None and expected.dims is not None:
            chunks, shards = chunking.layout_rule(expected.chunks, expected.dims, tuple(array.shape))
            if (tuple(array.chunks), array.shards) != (chunks, shards):
                problems.append(
                    f"{path}: chunks {array.chunks} in shards {array.shards}, expected {chunks} in {shards}"
                )
    return problems


def _dimension_names(array: zarr.Array[Any]) -> tuple[str | None, ...]:
    names = array.metadata.to_dict().get("dimension_names")
    return tuple(n if isinstance(n, str) else None for n in names) if isinstance(names, (list, tuple)) else ()


def _consolidated_problems(root: zarr.Group, present: dict[str, zarr.Array[Any]]) -> list[str]:
    consolidated = root.metadata.consolidated_metadata
    if consolidated is None:
        return ["zarr.json: no consolidated metadata, which this format version requires"]
    entries = {path: meta.to_dict() for path, meta in consolidated.flattened_metadata.items()}
    listed = {path: meta for path, meta in entries.items() if meta.get("node_type") == "array"}
    problems = [f"{path}: missing from the consolidated metadata" for path in sorted(set(present) - set(listed))]
    problems += [
        f"{path}: in the consolidated metadata, not in the store" for path in sorted(set(listed) - set(present))
    ]
    problems += [
        f"{path}: its consolidated metadata differs from its zarr.json"
        for path in sorted(set(present) & set(listed))
        if listed[path] != present[path].metadata.to_dict()
    ]
    return problems


def _verify_block(layout: SourceLayout, store: Path, lo: int, hi: int, engine: str) -> list[str]:
    problems: list[str] = []
    root = _Opener(store, engine)
    valid = _read(root, fmt.VALID_FRAMES, problems, slice(lo, hi))
    has_responses = _read(root, fmt.HAS_RESPONSES, problems, slice(lo, hi))
    for column, variable in enumerate(fmt.VARIABLES):
        block = _read(root, variable, problems, slice(lo, hi))
        if block is None:
            continue
        time_axis = fmt.time_axis(variable, with_trial_axis=False)
        for i, trial_id in enumerate(layout.trial_ids[lo:hi]):
            where = layout.tree.where(layout.trial_file(variable, trial_id))
            try:
                source = layout.read_trial(variable, trial_id)
            except SensoriumZarrError as e:
                problems.append(str(e))
                continue
            expected = source.transpose(fmt.SOURCE_TO_STORED_AXES[variable]).astype(block.dtype)
            if not np.array_equal(block[i], expected, equal_nan=True):
                problems.append(f"{variable} trial {trial_id}: {_difference(block[i], expected)} vs {where}")
            if valid is not None and valid[i, column] != real_frames(expected, time_axis):
                problems.append(f"{fmt.VALID_FRAMES} trial {trial_id} {variable}: {valid[i, column]} stored, "
                                f"{real_frames(expected, time_axis)} in {where}")
            withheld = variable == fmt.RESPONSES and responses_withheld(expected)
            if variable == fmt.RESPONSES and has_responses is not None and has_responses[i] == withheld:
                problems.append(
                    f"{fmt.HAS_RESPONSES} trial {trial_id}: {bool(has_responses[i])} stored, wrong for {where}"
                )
    return problems


class _Opener:
    """``opener[path]``: an array of the store, opened for ``engine``."""

    def __init__(self, store: Path, engine: str) -> None:
        self.store, self.engine = str(store), engine

    def __getitem__(self, path: str) -> zarr.Array[Any]:
        try:
            return open_array(self.store, path, self.engine)
        except FileNotFoundError as e:
            raise KeyError(path) from e


def _read(
    root: zarr.Group | _Opener, path: str, problems: list[str], selection: slice | EllipsisType = Ellipsis
) -> np.ndarray | None:
    try:
        node = root[path]
        if not isinstance(node, zarr.Array):
            raise KeyError(path)
        return np.asarray(node[selection])
    except KeyError:
        problems.append(f"{path}: missing from the store")
    except Exception as e:  # a failed checksum or a damaged file, whatever zarr raises
        where = f" [{selection.start}:{selection.stop}]" if isinstance(selection, slice) else ""
        problems.append(f"{path}{where}: unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    return None


def _difference(stored: np.ndarray, expected: np.ndarray) -> str:
    both_nan = np.isnan(stored) & np.isnan(expected) if stored.dtype.kind == "f" else False
    differs = ~((stored == expected) | both_nan)
    first = tuple(int(i) for i in np.argwhere(differs)[0])
    return (f"{int(differs.sum())} values differ (first at {first}: stored {stored[first]!r}, "
            f"source {expected[first]!r})")


def _ids(ids: np.ndarray | None) -> str:
    if ids is None:
        return "nothing readable"
    return f"{len(ids)} ids" + (f" {int(ids[0])}..{int(ids[-1])}" if len(ids) else "")


def _arrays(group: zarr.Group, prefix: str = "") -> Iterator[tuple[str, zarr.Array[Any]]]:
    for name, node in group.members():
        path = f"{prefix}{name}"
        if isinstance(node, zarr.Array):
            yield path, node
        else:
            yield from _arrays(node, path + "/")
