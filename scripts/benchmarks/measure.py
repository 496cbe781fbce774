"""One function per group of rows: each measures, checks both sides agree where they
compute values, and reports numbers under the rows table's ids. No targets here: a note
that a target is out of reach asks the rows table for it."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
from numcodecs import blosc as numcodecs_blosc

from sensorium_zarr import format as fmt
from sensorium_zarr._engine import open_reader
from sensorium_zarr._native import layout_of
from sensorium_zarr.converter import Chunking

from . import children, rows
from .cache import bytes_on_disk, files_under
from .children import ChildRun, run_child, stage_lines
from .report import Report
from .sides import STREAMED, Sides, check_same, source_file, to_stored
from .timing import log, median_time, memcpy_rate, paired, usable_cores


def measure_conversion(args: argparse.Namespace, source: Path, out: Path, logs: Path, report: Report) -> Path:
    """Rows 1: conversion (child process) vs np.load of every file (child process, serial)."""
    converts: list[ChildRun] = []
    reads: list[ChildRun] = []
    # Interleaved like the in-process rows; the read is cheap, so it gets the full repeats.
    for k in range(max(args.repeats, args.convert_repeats)):
        if k < args.repeats:
            log(f"bare read of the source, np.load of every file ({k + 1}/{args.repeats})")
            reads.append(run_child(children.READ, [str(source)], logs / f"read{k}"))
        if k < args.convert_repeats:
            log(f"converting ({k + 1}/{args.convert_repeats})")
            converts.append(run_child(children.CONVERT, [str(source), str(out), args.engine,
                                                               chunking_options(args)],
                                      logs / f"convert{k}"))
            log(f"converted in {converts[-1].seconds:.1f} s, peak RSS {converts[-1].peak_rss / rows.GIB.scale:.2f} GiB")
            for line in stage_lines(converts[-1].output["stderr"]):
                log(f"  converter: {line}")
    stages = stage_lines(converts[-1].output["stderr"])
    if stages:
        # Where the conversion's time goes, as the converter itself reports it.
        report.note(f"conversion stages (last conversion, converter's log): {'; '.join(stages)}")
    report.add("1", statistics.median(c.seconds for c in converts), statistics.median(r.seconds for r in reads),
               process_s=statistics.median(c.process_seconds for c in converts))
    report.add("1rss", max(c.peak_rss for c in converts), max(r.peak_rss for r in reads))
    return Path(converts[-1].output["store"])


def measure_size(source: Path, store: Path, report: Report) -> int:
    """Row 2: allocated bytes (what a disk quota or `du` counts) of store vs source."""
    s_alloc, s_apparent = bytes_on_disk(source)
    z_alloc, z_apparent = bytes_on_disk(store)
    report.add("2", z_alloc, s_alloc, apparent_gb=z_apparent / 1e9, files=len(files_under(store)),
               base_apparent_gb=s_apparent / 1e9, base_files=len(files_under(source)))
    return s_alloc


def measure_write_floor(args: argparse.Namespace, source: Path, store_bytes: int, work: Path, logs: Path,
                        report: Report) -> None:
    """Row 1w: writing the store's byte count, alone, against the same bare read as row 1.

    No converter can write its store faster than the machine writes that many bytes, so
    when this ratio misses row 1's target, that target is out of reach for a store of
    this size (and row 2 shows how close to the smallest lossless size it is)."""
    writes, reads = [], []
    for k in range(args.repeats):
        log(f"write floor: {store_bytes / 1e9:.2f} GB to fresh files ({k + 1}/{args.repeats}), and a bare read")
        reads.append(run_child(children.READ, [str(source)], logs / f"floor-read{k}"))
        target = work / f"write-floor-{k}"
        try:
            writes.append(run_child(children.WRITE, [str(target), str(store_bytes)], logs / f"floor-write{k}"))
        finally:
            shutil.rmtree(target, ignore_errors=True)
    t_write = statistics.median(w.seconds for w in writes)
    line = report.add("1w", t_write, statistics.median(r.seconds for r in reads),
                      rate_mbs=store_bytes / t_write / 1e6)
    conversion = rows.row("1")
    if conversion.target is not None and not conversion.target.met(line.ratio):
        report.note(
            f"{rows.ref('1')}'s target ({conversion.target.cell(conversion)} times the bare read) is out of reach "
            f"for a store of this size on this machine: writing its {store_bytes / 1e9:.2f} GB alone takes "
            f"{line.ratio:.1f}x the bare read ({rows.ref('1w')}).")


def compare(sides: Sides, row_id: str, items: Sequence[Any],
            before: Callable[[], None] | None = None) -> tuple[float, float]:
    """A compared row: the two sides the rows table names, interleaved over ``items``,
    their results for the last item checked equal. Median seconds, ours and the baseline's."""
    row = rows.row(row_id)
    if row.ours is None or row.baseline is None:
        raise ValueError(f"row {row_id} names no sides to compare")
    log(f"row {row_id}: {row.ours} vs {row.baseline}, {row.cache} ({len(items)} repetitions)")
    # A warm row first reads what it will time: the page cache may have dropped files read
    # minutes before (reading everything once at the start is not enough on a kernel that
    # reclaims idle page cache, as this benchmark's VM does).
    t_ours, t_base, r_ours, r_base = paired(
        sides.method(row.ours), sides.method(row.baseline), items, before, warm_up=row.cache == "warm")
    check_same(f"row {row_id}", r_ours, r_base, rtol=row.rtol, atol=row.atol)
    return t_ours, t_base


def measure_reads(sides: Sides, row_ids: Sequence[str], trials: Sequence[int], neurons: Sequence[int],
                  report: Report, before: Callable[[], None] | None = None) -> None:
    """Rows 3 and 4 (one trial, one neuron): each compared over random trials or neurons."""
    for row_id in row_ids:
        items = trials if rows.row(row_id).over == "trials" else neurons
        report.add(row_id, *compare(sides, row_id, items, before), n_train=len(sides.train),
                   window=sides.window(0).stop - sides.window(0).start)


def note_trial_floor(report: Report) -> None:
    """Row 3's target out of reach, if its floor (row 3f: the baseline plus the checks a
    reader of the store cannot skip) misses it."""
    floor, trial = report.lines.get("3f"), rows.row("3")
    if floor is None or trial.target is None or not trial.target.missed_past_noise(floor.ratio):
        return
    report.note(
        f"{rows.ref('3')}'s target ({trial.target.cell(trial)}) is out of reach on this machine for a reader that "
        "returns only checked bytes and checks them in the thread that reads them, as this one does: reading the "
        f"files as np.load does and checking every byte, in the cache, alone takes {floor.ratio:.2f}x the baseline "
        f"({rows.ref('3f')}), "
        f"before any chunk lookup, and this store's codecs decode a chunk slower than it is copied ({rows.ref('6b')}).")


def measure_dask_floor(sides: Sides, trials: Sequence[int], report: Report) -> None:
    """Row 3df: row 3d's spelling over arrays whose reads cost nothing
    (``Sides.free_trial_dask``) against row 3's baseline, interleaved, plus row 3f's floor
    (if measured) over the usable cores: Dask's work for a trial runs before and after the
    reads (graph, optimisation, the result's copy), and the reads' least work can at best
    be spread over the cores. Each part is a ratio to the baseline of its own pairing."""
    log(f"row 3df: free_trial_dask vs npy_trial, warm ({len(trials)} repetitions)")
    t_free, t_base, _, _ = paired(sides.free_trial_dask, sides.npy_trial, trials, warm_up=True)
    floor = report.lines.get("3f")
    floor_ratio = floor.ratio if floor is not None else 0.0
    cores = usable_cores()
    bound = t_free / t_base + floor_ratio / cores
    report.add("3df", bound * t_base, t_base, dask=t_free / t_base, floor=floor_ratio, cores=cores)


def note_dask_floor(report: Report) -> None:
    """Row 3d's target out of reach, if its floor (row 3df) misses it."""
    floor, dask_row = report.lines.get("3df"), rows.row("3d")
    if floor is None or dask_row.target is None or not dask_row.target.missed_past_noise(floor.ratio):
        return
    report.note(
        f"{rows.ref('3d')}'s target ({dask_row.target.cell(dask_row)}) is out of reach on this machine for Dask "
        f"arrays: Dask's own work for the same four selections, over reads that cost nothing, takes "
        f"{floor.fields['dask']:.2f}x the baseline, and with the least the reads can cost ({rows.ref('3f')}) spread "
        f"over the {floor.fields['cores']} cores, {floor.ratio:.2f}x ({rows.ref('3df')}).")


def measure_stream(sides: Sides, repeats: int, report: Report) -> float:
    """Row 5: nanmean over the whole train split, reader (dask threads) vs a .npy loop.
    Returns our decoded bytes/s."""
    nbytes = sides.streamed_bytes()
    log(f"streaming the train split ({len(sides.train)} trials, {nbytes / 1e9:.2f} GB of responses + videos)")
    t_ours, t_base = compare(sides, "5", range(repeats))
    report.add("5", t_ours, t_base, rate_mbs=nbytes / t_ours / 1e6, base_rate_mbs=nbytes / t_base / 1e6)
    return nbytes / t_ours


def chunking_options(args: argparse.Namespace) -> str:
    """The converter's chunking options the command line asked for, as JSON ("" for none)."""
    options = {name: getattr(args, name) for name in ("neurons_per_chunk", "frames_per_response_chunk",
                                                      "min_blosc_saving")
               if getattr(args, name, None) is not None}
    return json.dumps(options) if options else ""


def store_read_rate(store: Path, engine: str, variable: str, n_shards: int, repeats: int) -> tuple[float, int, int]:
    """Decoded bytes/s, bytes and trials of raw reads of the first ``n_shards`` shards (or
    all there are), through the engine's read path as the reader opens it: the reader's
    path minus standardizing."""
    array = open_reader(str(store), variable, engine)
    plain = getattr(array, "fallback", array)  # the native engine's zarr array, for its layout
    trials = min(array.shape[0], n_shards * (plain.shards or plain.chunks)[0])

    def read() -> None:
        array.get_orthogonal_selection((slice(0, trials),))

    read()  # warm-up: opens the shard files and indexes once
    seconds = median_time(read, repeats)
    nbytes = trials * int(np.prod(array.shape[1:])) * array.dtype.itemsize
    return nbytes / seconds, nbytes, trials


def codec_chunks(sides: Sides, chunking: dict[str, Any], n_trials: int) -> dict[str, list[np.ndarray]]:
    """Chunks shaped like the store's inner chunks, from a few train trials of the source."""
    trials = sides.train.trial_ids[:n_trials].tolist()
    per_neuron = int(chunking.get("neurons_per_chunk", 64))
    per_frame = int(chunking.get("frames_per_video_chunk", 64))
    out: dict[str, list[np.ndarray]] = {fmt.RESPONSES: [], fmt.VIDEOS: []}
    for t in trials:
        r = np.load(source_file(sides.source, fmt.RESPONSES, t))
        frames = int(chunking.get("frames_per_response_chunk", r.shape[1]))
        out[fmt.RESPONSES] += [np.ascontiguousarray(r[n:n + per_neuron, f:f + frames])
                               for n in range(0, r.shape[0], per_neuron) for f in range(0, r.shape[1], frames)]
        v = to_stored(fmt.VIDEOS, np.load(source_file(sides.source, fmt.VIDEOS, t)))
        out[fmt.VIDEOS] += [np.ascontiguousarray(v[f:f + per_frame]) for f in range(0, v.shape[0], per_frame)]
    return out


_BLOSC_SHUFFLES = {"shuffle": numcodecs.Blosc.SHUFFLE, "bitshuffle": numcodecs.Blosc.BITSHUFFLE,
                   "noshuffle": numcodecs.Blosc.NOSHUFFLE}


class Uncoded:
    """The "codec" of a variable the store holds uncoded (format version 7): decoding is a
    copy of the chunk's bytes."""

    def encode(self, chunk: np.ndarray) -> bytes:
        return chunk.tobytes()

    def decode(self, data: bytes) -> bytearray:
        return bytearray(data)


def is_coded(store: Path, variable: str) -> bool:
    """Whether ``variable``'s chunks in ``store`` are Blosc-coded."""
    metadata = zarr.open_array(str(store), path=variable, mode="r").metadata.to_dict()
    layout = layout_of(metadata, None)
    return layout is None or layout.compressed


def codec_rate(chunks: list[np.ndarray], codec: numcodecs.Blosc | Uncoded, threads: int, repeats: int) -> float:
    """Decoded bytes/s of the bare codec on ``chunks``, spread over ``threads`` Python threads."""
    encoded = [codec.encode(c) for c in chunks]
    nbytes = sum(c.nbytes for c in chunks)

    def decode(part: list[bytes]) -> None:
        for e in part:
            codec.decode(e)

    if threads == 1:
        return nbytes / median_time(lambda: decode(encoded), repeats)
    with ThreadPoolExecutor(threads) as pool:
        parts = [encoded[i::threads] for i in range(threads)]
        return nbytes / median_time(lambda: list(pool.map(decode, parts)), repeats)


def mixed_rate(rates: dict[str, float], nbytes: dict[str, float]) -> float:
    """The rate of reading ``nbytes`` of each variable at its own rate: the times, summed."""
    return sum(nbytes.values()) / sum(nbytes[v] / rates[v] for v in nbytes)


def measure_codec(args: argparse.Namespace, sides: Sides, store: Path, stream_rate: float, report: Report) -> float:
    """Rows 6a-6c and 5c: store pipeline, bare codec and memcpy, decoded bytes/s, and
    streaming against the codec limit. Returns that limit."""
    log("decode throughput: store pipeline, bare codec, memcpy")
    chunking = sides.mouse.attrs.chunking
    memcpy = memcpy_rate(args.repeats)
    reads = {v: store_read_rate(store, args.engine, v, args.shards, args.repeats) for v in STREAMED}
    pipeline = mixed_rate({v: r[0] for v, r in reads.items()}, {v: r[1] for v, r in reads.items()})
    report.add("6a", pipeline, memcpy, engine=args.engine, trials=reads[fmt.RESPONSES][2], shards=args.shards,
               responses_mbs=reads[fmt.RESPONSES][0] / 1e6, videos_mbs=reads[fmt.VIDEOS][0] / 1e6)

    recorded = Chunking.recorded(chunking)
    shuffles = {fmt.RESPONSES: recorded.response_shuffle, fmt.VIDEOS: recorded.shuffle}
    coded = {variable: is_coded(store, variable) for variable in shuffles}
    codecs: dict[str, numcodecs.Blosc | Uncoded] = {
        variable: numcodecs.Blosc(cname=recorded.cname, clevel=recorded.clevel, shuffle=_BLOSC_SHUFFLES[name])
        if coded[variable] else Uncoded()
        for variable, name in shuffles.items()
    }
    label = (f"Blosc {recorded.cname} {recorded.clevel}, "
             + ", ".join(f"{v} {shuffles[v] if coded[v] else 'uncoded (a copy)'}" for v in (fmt.RESPONSES, fmt.VIDEOS)))
    chunks = codec_chunks(sides, chunking, args.codec_trials)
    cores = usable_cores()
    # Blosc's own thread pool off: parallelism comes from the Python threads, as in a Dask read.
    previous = numcodecs_blosc.use_threads
    numcodecs_blosc.use_threads = False
    try:
        per_threads = {threads: {v: codec_rate(c, codecs[v], threads, args.repeats) for v, c in chunks.items()}
                       for threads in (1, cores)}
    finally:
        numcodecs_blosc.use_threads = previous
    # The limit for the streaming mix of bytes.
    streamed = {fmt.RESPONSES: sides.train.responses.nbytes, fmt.VIDEOS: sides.train.videos.nbytes}
    mixes = {}
    for row_id, threads in (("6b", 1), ("6c", cores)):
        rate = per_threads[threads]
        mixes[row_id] = mixed_rate(rate, streamed)
        report.add(row_id, mixes[row_id], memcpy, codec=label,
                   threads=threads, codec_trials=args.codec_trials,
                   responses_mbs=rate[fmt.RESPONSES] / 1e6, videos_mbs=rate[fmt.VIDEOS] / 1e6)
    # The limit is the best the bare codec did, on one thread or on all of them.
    limit = max(mixes.values())
    report.add("5c", stream_rate, limit)
    return limit


def measure_arithmetic(args: argparse.Namespace, sides: Sides, stream_rate: float, limit: float,
                       report: Report) -> None:
    """Rows 6d and 5d: what row 5's arithmetic alone costs, and the bound it puts on row 5.

    Streaming decodes and then standardizes and reduces, on the same cores, so no reader
    can beat 1 / (1 / decode limit + 1 / arithmetic rate). This measures the arithmetic
    on train trials already decoded in memory, through the same Dask reductions and the
    reader's own standardization."""
    n = min(args.arithmetic_trials, len(sides.train))
    log(f"row 5's arithmetic alone on {n} decoded train trials")
    arithmetic, nbytes = sides.decoded_arithmetic(n)
    rate = nbytes / median_time(arithmetic, args.repeats)
    report.add("6d", rate, memcpy_rate(args.repeats), n=n)
    bound = 1.0 / (1.0 / limit + 1.0 / rate)
    report.add("5d", stream_rate, bound, bound_share=bound / limit)
    streaming = rows.row("5c")
    # An estimate from two separate measurements, not a proof: when streaming beats it by
    # more than the noise, it bounds nothing and says nothing of the target.
    holds = stream_rate <= bound * (1 + rows.NOISE)
    if holds and streaming.target is not None and not streaming.target.met(bound / limit):
        report.note(
            f"{rows.ref('5c')}'s target ({streaming.target.cell(streaming)} of the decode limit) is out of reach for "
            f"row 5's arithmetic on this machine: even with free reading, decoding at the limit and then "
            f"standardizing + reducing at {rows.ref('6d')}'s rate gives at most {bound / limit:.2f} of the limit "
            f"({rows.ref('5d')}).")
