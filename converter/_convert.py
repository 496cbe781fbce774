"""Conversion of one mouse, end to end. Entry points: ``convert_mouse``, ``convert_all``.

Stages: scan the source (``source``) -> create the store and write every block of trials
in one pass over the source, streaming the train statistics (``writer``) -> medians
from the written store and the remaining arrays (``recompute``) -> mark complete.

Nothing half-written is ever taken for a store: the conversion writes to a hidden
``.<mouse>.zarr.partial`` folder beside the target, marks it complete as its last write,
and only then renames it to ``<mouse>.zarr``. Running the same conversion again after an
interruption redoes it from scratch. ``_output`` keeps the files beside the store: the
lock that keeps two conversions of a mouse apart, and ``--overwrite``'s renames.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from dask.base import compute
from dask.delayed import delayed

from sensorium_zarr import format as fmt
from sensorium_zarr._engine import ZARR, parse_engine
from sensorium_zarr._location import Remote, describe, is_storage_error, is_url
from sensorium_zarr._store import is_complete_store
from sensorium_zarr.errors import OptionError, OutputError, SensoriumZarrError, StoreExistsError

from ._chunking import Chunking, positive_int
from ._output import check_out, os_error, output_error, output_lock, publish, recover
from ._recompute import (
    create_statistics,
    median_block,
    median_blocks,
    pooled_median_block,
    pooled_median_blocks,
    write_medians,
    write_pooled_medians,
)
from ._remote import clear_store, remote_lock, store_state
from ._source import SourceLayout, find_sources, is_remote_source, scan_source
from ._statistics import Moments
from ._writer import (
    Blueprint,
    Written,
    create_store,
    finish_store,
    release_buffers,
    stored_shape,
    write_block,
    write_bundle,
)

__all__ = ["convert_mouse", "convert_all", "converter_version", "stored_dtypes"]

log = logging.getLogger("sensorium_zarr")

#: Concurrent chunk operations per zarr call inside conversion tasks.
ZARR_CONCURRENCY = 2


def converter_version() -> str:
    try:
        return metadata.version("sensorium-zarr")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def stored_dtypes(layout: SourceLayout, float32: bool = False) -> dict[str, np.dtype]:
    """The dtype each variable is stored in: the source's, or float32 if asked (lossy)."""
    out = {}
    for variable, dtype in layout.dtypes.items():
        if float32 and dtype.kind == "f" and dtype.itemsize > 4:
            dtype = np.dtype(np.float32)
        out[variable] = np.dtype(dtype)
    return out


def convert_all(
    sources: Iterable[Path | str | Remote], out_dir: Path | str, *, client: Any = None, **options: Any
) -> list[Path | Remote]:
    """Convert every mouse named by ``sources`` (see ``find_sources``); return the stores.

    With a ``dask.distributed`` ``client``, every mouse is converted at once: each mouse's
    stages run in a driver thread of their own and submit their tasks to the one cluster,
    whose scheduler spreads the blocks of all mice over all workers as one workload (a
    mouse's medians wait only for its own blocks). Memory per worker stays bounded: a
    worker runs one block task per thread, whatever the number of mice. Without a
    client, the mice are converted one after another. ``skip_existing=True`` (the CLI's
    ``--skip-existing``) skips a mouse whose complete store is there, so a re-run after a
    crash converts only what is missing; by default such a store is an error, as
    ``convert_mouse`` says. Progress is logged per mouse: i of n, throughput, ETA.
    """
    paths = find_sources(list(sources), options.get("storage_options"))
    tracker = _Progress(len(paths))
    if client is None:
        return [tracker.done(i, convert_mouse(path, out_dir, **options)) for i, path in enumerate(paths)]
    with ThreadPoolExecutor(len(paths) or 1, thread_name_prefix="sensorium-zarr-mouse") as pool:
        futures = [pool.submit(convert_mouse, path, out_dir, client=client, **options) for path in paths]
        try:
            for i, future in enumerate(futures):
                tracker.done(i, future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return [future.result() for future in futures]


class _Progress:
    """One log line per finished mouse: which (i of n), the throughput so far, the ETA."""

    def __init__(self, n: int) -> None:
        self.n, self.finished, self.started = n, 0, time.perf_counter()
        self.bytes = 0

    def done(self, i: int, store: Path | Remote) -> Path | Remote:
        self.finished += 1
        self.bytes += _store_bytes(store)
        elapsed = time.perf_counter() - self.started
        rate = self.bytes / elapsed if elapsed > 0 else 0.0
        eta = elapsed / self.finished * (self.n - self.finished)
        log.info(
            "[%d/%d] %s done; %.1f MB/s written overall, ETA %.0f s",
            self.finished, self.n, store, rate / 1e6, eta,
        )
        return store


def _store_bytes(store: Path | Remote) -> int:
    try:
        if isinstance(store, Remote):
            import obstore

            return sum(int(m["size"]) for batch in obstore.list(store.objects()) for m in batch)
        return sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    except Exception:  # only a progress figure
        return 0


def convert_mouse(
    source: Path | str | Remote,
    out_dir: Path | str,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    client: Any = None,
    progress: bool | None = None,
    chunking: Chunking | None = None,
    float32: bool = False,
    engine: str | None = None,
    storage_options: dict[str, Any] | None = None,
    skip_existing: bool = False,
) -> Path | Remote:
    """Convert one mouse folder or zip into ``out_dir/<mouse>.zarr`` and return its path
    (a ``Remote``, whose ``url`` names it, when ``out_dir`` is a URL such as
    ``s3://bucket/prefix``; ``storage_options`` as ``open_mouse`` takes them). The
    source may be a URL too (``s3://bucket/path/mouse.zip`` or ``.../mouse/``), read by
    ranged requests with the same ``storage_options``, never downloaded whole.

    ``workers`` threads run the Dask graph (default: one per core); a
    ``dask.distributed.Client`` as ``client`` runs the same graph on its cluster.
    ``float32`` stores float64 sources as float32 (lossy, recorded in the attributes).
    ``skip_existing`` returns a complete store already there untouched (instead of
    ``StoreExistsError``). ``engine`` encodes and decodes chunks: ``"zarrs"`` (the ``fast`` extra, default when
    installed) or ``"zarr"``; the store is the same either way.
    Raises ``SourceError`` for bad input (a source file gone or unreadable mid-run too),
    ``OptionError`` for an option out of range, ``OutputError`` when the output cannot be
    written (a file, read-only, full, a URL, another conversion of the mouse under way)
    and ``StoreExistsError`` when a complete store is already there and ``overwrite`` is
    false; in every case nothing is left behind.
    """
    started = time.perf_counter()
    chunking = chunking or Chunking()
    if workers is not None:
        positive_int(workers, "workers")
    # The options serve a source URL as well as an output URL.
    out_is_url = isinstance(out_dir, str) and is_url(out_dir)
    out = check_out(out_dir, storage_options if out_is_url or not is_remote_source(source) else None)
    # zarrs reads and writes object storage through zarr-python's pipeline anyway.
    engine = ZARR if isinstance(out, Remote) and engine is None else parse_engine(engine)
    layout = scan_source(source, storage_options)
    if skip_existing and not overwrite:
        existing = out.child(f"{layout.name}.zarr") if isinstance(out, Remote) else out / f"{layout.name}.zarr"
        if is_complete_store(existing):
            log.info("%s: complete store already there, skipped", existing)
            return existing
    log.info("%s: scanned %d trials in %.1f s", layout.name, layout.n_trials, time.perf_counter() - started)
    for warning in layout.warnings:
        log.warning("%s", warning)
    chunking = chunking.for_trials(layout.n_trials)
    dtypes = stored_dtypes(layout, float32)
    _check_memory(layout, chunking, dtypes, _parallelism(workers, client))
    job = _Job(layout, chunking, dtypes, float32, engine, workers, client, progress)
    if isinstance(out, Remote):
        return _convert_remote(job, out, overwrite, started)
    out_dir = out
    final = out_dir / f"{layout.name}.zarr"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with output_lock(final):
            attrs = _convert_locked(job, final, overwrite)
    except SensoriumZarrError:
        raise
    except (OSError, RuntimeError) as e:
        error = os_error(e)
        if error is None:
            raise
        raise output_error(error, layout.tree.path, out_dir, final) from e
    log.info(
        "%s: %d trials, %d neurons -> %s in %.1f s",
        layout.name, attrs.n_trials, attrs.n_neurons, final, time.perf_counter() - started,
    )
    return final


@dataclasses.dataclass(frozen=True)
class _Job:
    """What one conversion writes, and how: everything but where."""

    layout: SourceLayout
    chunking: Chunking
    dtypes: dict[str, np.dtype]
    float32: bool
    engine: str
    workers: int | None
    client: Any
    progress: bool | None


def _convert_remote(job: _Job, out: Remote, overwrite: bool, started: float) -> Remote:
    """``convert_mouse`` into object storage, by the protocol of ``_remote``."""
    final = out.child(f"{job.layout.name}.zarr")
    try:
        with remote_lock(final):
            state = store_state(final)
            if state == "complete" and not overwrite:
                raise StoreExistsError(f"{final}: a complete store is already there; pass --overwrite to replace it "
                                       "(or --skip-existing to keep it)")
            if state is not None:
                if state == "incomplete":
                    log.warning("%s: incomplete store from an earlier run, converting again", final)
                clear_store(final)
            try:
                attrs = _write(job, final)
            except BaseException:
                try:
                    clear_store(final)
                except Exception as e:  # the store stays incomplete; the next run clears it
                    log.warning("%s: could not delete the incomplete store (%s)", final, describe(e))
                raise
    except SensoriumZarrError:
        raise
    except Exception as e:
        if not is_storage_error(e):
            raise
        raise OutputError(f"{final}: {describe(e)}; nothing complete was left") from e
    log.info(
        "%s: %d trials, %d neurons -> %s in %.1f s",
        job.layout.name, attrs.n_trials, attrs.n_neurons, final, time.perf_counter() - started,
    )
    return final


def _convert_locked(job: _Job, final: Path, overwrite: bool) -> fmt.MouseAttrs:
    """The conversion proper, under the output lock; see the module's docstring."""
    recovered = recover(final)
    if recovered:
        log.warning("%s", recovered)
    partial = final.with_name(f".{final.name}.partial")
    if partial.exists():  # no other conversion is under way: we hold the lock
        log.info("%s: removing the leftovers of an interrupted conversion", partial)
        shutil.rmtree(partial)
    if final.exists() and not overwrite:
        if is_complete_store(final):
            raise StoreExistsError(f"{final}: a complete store is already there; pass --overwrite to replace it "
                                   "(or --skip-existing to keep it)")
        log.warning("%s: incomplete store from an earlier run, converting again", final)
    try:
        attrs = _write(job, partial)
        publish(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return attrs


#: Bytes of memory per byte of a block of trials while it is written: the block buffer,
#: and zarr's copy of the whole shard as it encodes it, plus room for the encoded chunks.
_MEMORY_PER_BLOCK_BYTE = 3


def _check_memory(layout: SourceLayout, chunking: Chunking, dtypes: dict[str, np.dtype], chains: int) -> None:
    """OptionError when the block buffers of ``chains`` parallel writers would not fit in
    this machine's memory, before anything is written."""
    per_trial = sum(
        int(np.prod(stored_shape(layout, v)[1:], dtype=np.int64)) * dtypes[v].itemsize for v in fmt.VARIABLES
    )
    blocks = min(chains, -(-layout.n_trials // chunking.trials_per_shard))
    need = _MEMORY_PER_BLOCK_BYTE * per_trial * chunking.trials_per_shard * blocks
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return
    if need > have:
        raise OptionError(
            f"{layout.tree.path}: --trials-per-shard {chunking.trials_per_shard} with {blocks} writers needs "
            f"about {need / 2**30:.1f} GiB of memory, this machine has {have / 2**30:.1f} GiB; "
            "give a smaller --trials-per-shard or fewer --workers"
        )


def _write(job: _Job, path: Path | Remote) -> fmt.MouseAttrs:
    layout, chunking, dtypes, engine, workers, client = (
        job.layout, job.chunking, job.dtypes, job.engine, job.workers, job.client
    )
    run = functools.partial(_compute, workers=workers, client=client, progress=job.progress)
    attrs = _attrs(layout, chunking, dtypes, job.float32)
    blueprint = Blueprint.of(layout, attrs, chunking)
    root = create_store(path, blueprint)
    root.attrs[fmt.ATTRS_KEY] = attrs.to_dict()
    _write_trial_index(root, layout, blueprint)
    _write_meta(root, layout, blueprint)
    train = np.flatnonzero(layout.trial_tiers == fmt.STATISTICS_TIER)
    chains = _parallelism(workers, client)
    write = functools.partial(_write_blocks, layout, path, chunking.trials_per_shard, dtypes, chains=chains,
                              engine=engine, run=run)
    try:
        written = write(train, uint8=frozenset(attrs.uint8_variables))
        if written.not_uint8:
            # A trial that uint8 does not hold (its values are not all integers 0..255):
            # the variable is written again, whole, in its stored dtype. Every block task
            # of the first pass has finished, so nothing of it writes after this.
            for variable, problem in written.not_uint8.items():
                log.info("  %s: %s; stored as %s instead of uint8", variable, problem, dtypes[variable])
            attrs = dataclasses.replace(
                attrs, uint8_variables=tuple(v for v in attrs.uint8_variables if v not in written.not_uint8)
            )
            root.attrs[fmt.ATTRS_KEY] = attrs.to_dict()
            blueprint = Blueprint.of(layout, attrs, chunking)
            again = tuple(v for v in fmt.VARIABLES if v in written.not_uint8)
            for variable in again:
                blueprint.create(root, variable, overwrite=True)
            write(np.zeros(0, np.int64), variables=again)
    finally:
        release_buffers()  # the worker threads' reused block buffers
    if client is not None:
        client.run(release_buffers)
    valid, has_responses = written.per_trial()
    blueprint.create(root, fmt.VALID_FRAMES)[...] = valid
    blueprint.create(root, fmt.HAS_RESPONSES)[...] = has_responses
    for variable in fmt.VARIABLES:
        # No train trial at all: statistics stay NaN (count 0) rather than being invented.
        moments = written.moments[variable] if written.moments else Moments.empty(stored_shape(layout, variable)[1:])
        create_statistics(root, variable, moments, blueprint)
    _write_medians(root, path, train, engine, run, {
        v: valid[train, fmt.VARIABLES.index(v)] for v in attrs.uint8_variables
    })
    if fmt.spec(attrs.format_version).bundle:
        write_bundle(root, blueprint)
    complete = dataclasses.replace(attrs, complete=True)
    finish_store(path, complete)
    return complete


def _attrs(layout: SourceLayout, chunking: Chunking, dtypes: dict[str, np.dtype], float32: bool) -> fmt.MouseAttrs:
    present = set(layout.trial_tiers)
    lossy = float32 and any(layout.dtypes[v] != dtypes[v] for v in fmt.VARIABLES)
    return fmt.MouseAttrs(
        format_version=fmt.FORMAT_VERSION,
        complete=False,
        mouse=layout.name,
        n_trials=layout.n_trials,
        n_neurons=layout.n_neurons,
        t_pad=layout.t_pad,
        source=layout.tree.path.name,
        source_dtypes=layout.source_dtypes,
        stored_dtypes={v: str(d) for v, d in dtypes.items()},
        tiers=fmt.ordered_tiers(present),
        converter_version=converter_version(),
        config=layout.config,
        lossy=("float64 stored as float32",) if lossy else (),
        chunking=chunking.to_dict(),
        # Tried first; the conversion stores videos in their float dtype if a trial does
        # not fit (``write_block``).
        uint8_variables=(fmt.VIDEOS,) if dtypes[fmt.VIDEOS].kind == "f" else (),
    )


def _write_blocks(
    layout: SourceLayout,
    path: Path | Remote,
    step: int,
    dtypes: dict[str, np.dtype],
    train: np.ndarray,
    *,
    chains: int,
    engine: str,
    run: Any,
    uint8: frozenset[str] = frozenset(),
    variables: tuple[str, ...] = fmt.VARIABLES,
) -> Written:
    """The one pass over the source: every block of trials of ``variables`` written
    (``uint8`` ones as uint8, see ``write_block``), moments of the ``train`` trials streamed."""
    is_train = np.zeros(layout.n_trials, bool)
    is_train[train] = True
    starts = list(range(0, layout.n_trials, step))
    # One chain of block tasks per worker, each carrying its running statistics from
    # block to block: parallel, yet memory holds one set of statistics per chain.
    n_chains = max(1, min(len(starts), chains))
    # One shared leaf: passed bare, Dask would walk the layout's dataclass fields (every
    # file of every trial) again for each task, which took 15 s of a 55 s conversion.
    layout_leaf = delayed(layout, traverse=False)
    tails = []
    for first in range(n_chains):
        written = None
        for lo in starts[first::n_chains]:
            written = delayed(write_block, pure=False)(
                layout_leaf, path, lo, min(lo + step, layout.n_trials), dtypes, is_train, engine, written,
                uint8, variables,
            )
        tails.append(written)
    (results,) = run(tails, what="write")
    merged: Written = functools.reduce(Written.merge, results)
    return merged


def _write_medians(
    root: zarr.Group, path: Path | Remote, train: np.ndarray, engine: str, run: Any, valid: dict[str, np.ndarray]
) -> None:
    """Both medians of every variable; ``valid``: the train trials' real frame counts of
    each ``uint8`` variable, whose padding the median tasks restore."""
    tasks = {
        variable: [
            delayed(median_block, pure=False)(path, variable, train, lo, hi, engine, valid.get(variable))
            for lo, hi in median_blocks(_array(root, variable), variable, len(train))
        ]
        for variable in fmt.VARIABLES
    }
    (results,) = run(tasks, what="medians")
    pending = [variable for variable, blocks in results.items() if not write_medians(root, variable, blocks)]
    if pending:
        # Videos whose values are not all integers 0..255: their median over trials and
        # time the general way, from blocks holding every frame.
        log.info("  %s: values other than integers 0..255, pooled median from whole-time blocks", ", ".join(pending))
        fallback = {
            variable: [
                delayed(pooled_median_block, pure=False)(path, variable, train, lo, hi, engine, valid.get(variable))
                for lo, hi in pooled_median_blocks(_array(root, variable), variable, len(train))
            ]
            for variable in pending
        }
        (pooled,) = run(fallback, what="pooled medians")
        for variable, parts in pooled.items():
            write_pooled_medians(root, variable, parts)


def _array(root: zarr.Group, path: str) -> zarr.Array[Any]:
    node = root[path]
    if not isinstance(node, zarr.Array):
        raise TypeError(f"{path}: a group where the format has an array")
    return node


def _parallelism(workers: int | None, client: Any) -> int:
    if client is not None:
        return max(1, int(sum(client.nthreads().values())))
    return workers or os.cpu_count() or 1


def _compute(*collections: Any, workers: int | None, client: Any, progress: bool | None, what: str) -> tuple[Any, ...]:
    started = time.perf_counter()
    try:
        return _run(collections, workers, client, progress, what)
    finally:
        log.info("  %s stage: %.1f s", what, time.perf_counter() - started)


def _run(
    collections: tuple[Any, ...], workers: int | None, client: Any, progress: bool | None, what: str
) -> tuple[Any, ...]:
    if client is not None:
        return tuple(client.gather(client.compute(list(collections))))
    if progress is None:
        progress = sys.stderr.isatty()
    bar: Any = nullcontext()
    if progress:
        from dask.diagnostics.progress import ProgressBar

        print(f"[{what}]", file=sys.stderr)
        bar = ProgressBar(out=sys.stderr)  # type: ignore[no-untyped-call]
    # Our own pool, so a failure waits for the tasks still running before the caller
    # deletes the partial store (dask returns on the first error, leaving them running).
    pool = ThreadPoolExecutor(workers or os.cpu_count() or 1)
    try:
        # Zarr's default of 10 concurrent chunk reads per call, each decoding into a
        # shard-sized buffer, multiplies memory by the Dask workers already in parallel.
        with bar, zarr.config.set({"async.concurrency": ZARR_CONCURRENCY}):
            computed: tuple[Any, ...] = compute(  # type: ignore[no-untyped-call]
                *collections, scheduler="threads", pool=pool
            )
            return computed
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_trial_index(root: zarr.Group, layout: SourceLayout, blueprint: Blueprint) -> None:
    blueprint.create(root, fmt.TRIAL_ID)[...] = layout.trial_ids
    names = np.asarray(layout.trial_tiers, dtype=str)
    blueprint.create(root, fmt.TIER)[...] = names
    for tier in blueprint.attrs.tiers:
        positions = np.flatnonzero(names == tier).astype(np.int64)
        blueprint.create(root, f"{fmt.INDEX_GROUP}/{tier}", shape=positions.shape)[...] = positions


def _write_meta(root: zarr.Group, layout: SourceLayout, blueprint: Blueprint) -> None:
    """Every ``meta/**.npy`` as an array at the same path (without ``.npy``), values as-is."""
    for rel in sorted(layout.meta_files):
        values = layout.read_meta(rel)
        path = rel[: -len(".npy")]
        attrs: dict[str, Any] = {}
        dtype: Any = values.dtype
        if values.dtype.kind in "US":
            attrs = {fmt.ATTRS_KEY: {fmt.SOURCE_DTYPE_KEY: values.dtype.str}}
            values = values.astype(str) if values.dtype.kind == "S" else values
            dtype = str
        array = blueprint.create(root, path, shape=values.shape, dtype=dtype, attrs=attrs)
        if values.size:
            array[...] = values
