#!/usr/bin/env python3
"""Benchmark a converted store against the per-trial .npy tree it came from.

    python scripts/bench.py [--metadata DIR | --source MOUSE_DIR] [--scale F] [--repeats N]
                            [--convert-repeats N] [--work DIR] [--keep] [--markdown FILE]
                            [--engine zarr|zarrs] [--no-cold] [--shards N] [--codec-trials N]
                            [--arithmetic-trials N] [--seed N]

Generates a twin of a real mouse (``../shared/real-metadata/<mouse>``, full size by
default: ~7440 neurons, 720 trials, ~9 GB, about 5 minutes plus ~90 s of generation;
``--scale 0.1`` for a run of well under a minute),
or takes an already generated mouse folder (``--source``), converts it, and measures the
store and the .npy tree side by side in the same run:

1. conversion wall time and peak RSS (child process) vs a serial ``np.load`` of every file,
   and (1w) the floor any converter faces: writing the store's bytes alone;
2. store bytes vs source bytes on disk;
3. one random train trial, four variables, standardized, as numpy;
4. one neuron across every train trial, standardized;
5. streaming the train split (per-neuron and per-pixel means of standardized values);
6. decode throughput of the store's codec pipeline and of the bare codec, vs memcpy,
   and the cost of row 5's arithmetic alone, which bounds row 5 together with decoding.

The machine this runs on is shared and noisy, so every figure is the median of several
repetitions and is reported as a ratio to a baseline measured in the same run, with the
two sides interleaved repetition by repetition. Read the ratios, not the seconds.
Progress goes to stderr; the table (and the machine description above it) to stdout.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import mmap
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numcodecs
import numpy as np
import zarr
from numcodecs import blosc as numcodecs_blosc

import sensorium_zarr as reader
from sensorium_zarr import _standardize as std_
from sensorium_zarr import format as fmt
from sensorium_zarr._engine import ENGINES, open_array, parse_engine
from sensorium_zarr._standardize import StandardizationParams, standardize
from sensorium_zarr.testing import twin_spec, write_mouse

REPO = Path(__file__).resolve().parents[1]
TWIN_NAME = "dynamic29156-11-10-Video-8744edeac3b4d1ce16b680916b5267ce"
DEFAULT_METADATA = Path(__file__).resolve().parents[2] / "shared" / "real-metadata" / TWIN_NAME
DEFAULT_WORK = Path(tempfile.gettempdir()) / "sensorium-zarr-bench"
VARIABLES = fmt.VARIABLES
GIB = 2**30
#: Rows 3 and 3c (one trial, cheap) run this many times ``--repeats``.
TRIAL_REPEAT_FACTOR = 5
#: Above this much source data one conversion is all we can afford by default.
LARGE_SOURCE_BYTES = 2 * 10**9

_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[bench +{time.perf_counter() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- timing


def paired(
    ours: Callable[[Any], Any],
    base: Callable[[Any], Any],
    items: Sequence[Any],
    before: Callable[[], None] | None = None,
) -> tuple[float, float, Any, Any]:
    """Median seconds of ``ours(item)`` and ``base(item)`` over ``items``, and their last results.

    The two sides alternate which goes first, so a burst of load from other tenants or
    a cache warming up hits both about equally. ``before`` runs untimed before each call
    (e.g. evicting the page cache for a cold repetition).
    """
    t_ours: list[float] = []
    t_base: list[float] = []
    r_ours = r_base = None
    for k, item in enumerate(items):
        sides = [(ours, t_ours), (base, t_base)]
        for fn, times in sides if k % 2 == 0 else sides[::-1]:
            if before is not None:
                before()
            start = time.perf_counter()
            result = fn(item)
            times.append(time.perf_counter() - start)
            if fn is ours:
                r_ours = result
            else:
                r_base = result
    return statistics.median(t_ours), statistics.median(t_base), r_ours, r_base


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --------------------------------------------------------------------------- files and page cache


def files_under(root: Path) -> list[Path]:
    return sorted(Path(d) / f for d, _, names in os.walk(root) for f in names)


def bytes_on_disk(root: Path) -> tuple[int, int]:
    """(allocated, apparent) bytes of every file under ``root``: what ``du`` and ``ls`` say."""
    allocated = apparent = 0
    for path in files_under(root):
        st = path.stat()
        allocated += st.st_blocks * 512
        apparent += st.st_size
    return allocated, apparent


def read_all(paths: Iterable[Path]) -> int:
    """Read every byte of ``paths`` (into one reused buffer) so they sit in the page cache."""
    buffer = bytearray(16 << 20)
    view = memoryview(buffer)
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                total += n
    return total


def evict(paths: Iterable[Path]) -> None:
    """Drop ``paths`` from the page cache, so the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_fraction(paths: Sequence[Path]) -> float | None:
    """Share of the pages of ``paths`` in the page cache (mincore), or None if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        page = mmap.PAGESIZE
        resident = total = 0
        for path in paths:
            size = path.stat().st_size
            if size == 0:
                continue
            with open(path, "rb") as f:
                # ACCESS_COPY gives a writable buffer ctypes can take the address of; it is
                # private and never written, so the file's own cached pages are what mincore sees.
                mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
            try:
                pages = (size + page - 1) // page
                vec = (ctypes.c_ubyte * pages)()
                address = ctypes.addressof(ctypes.c_char.from_buffer(mm))
                if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vec) != 0:
                    return None
                resident += sum(b & 1 for b in vec)
                total += pages
            finally:
                mm.close()
        return resident / total if total else None
    except (OSError, AttributeError, ValueError, BufferError):
        return None


@dataclass
class ColdCheck:
    possible: bool
    reason: str


def check_eviction(sample: Sequence[Path]) -> ColdCheck:
    """Whether posix_fadvise(DONTNEED) really makes reads of ``sample`` cold here.

    Two pieces of evidence: pages left resident after the call (mincore), and the time of
    a read after it vs a warm read. On a VM the host may still cache the disk, in which
    case the guest evicts but "cold" reads are barely slower; we report that as it is.
    """
    drop_caches = os.access("/proc/sys/vm/drop_caches", os.W_OK)
    if not hasattr(os, "posix_fadvise"):
        return ColdCheck(False, "os.posix_fadvise is not available on this platform")
    try:
        read_all(sample)
        warm = median_time(lambda: read_all(sample), 3)
        evict(sample)
        left = resident_fraction(sample)
        start = time.perf_counter()
        read_all(sample)
        cold = time.perf_counter() - start
    except OSError as e:
        return ColdCheck(False, f"posix_fadvise(DONTNEED) failed: {e}")
    detail = (
        f"read of {len(sample)} files after fadvise {cold * 1e3:.1f} ms vs warm {warm * 1e3:.1f} ms"
        + (f", {left:.0%} of their pages still resident after it" if left is not None else "")
        + f"; /proc/sys/vm/drop_caches {'writable' if drop_caches else 'not writable'}"
    )
    if left is not None and left > 0.5:
        return ColdCheck(False, f"the kernel kept the pages: {detail}")
    if left is None and cold < 1.5 * warm:
        return ColdCheck(False, f"eviction had no measurable effect: {detail}")
    return ColdCheck(True, detail)


# --------------------------------------------------------------------------- child processes


_CONVERT_CHILD = """
import json, logging, sys, time
from pathlib import Path
from sensorium_zarr.converter import convert_mouse
# The converter logs its stage times at INFO; they end up in the child's stderr file.
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
source, out, engine = sys.argv[1:4]
start = time.perf_counter()
store = convert_mouse(Path(source), Path(out), overwrite=True, progress=False, engine=engine or None)
print(json.dumps({"seconds": time.perf_counter() - start, "store": str(store)}))
"""

# The baseline for a conversion: discover and np.load every file once, serially.
_READ_CHILD = """
import json, os, sys, time
import numpy as np
start = time.perf_counter()
n = 0
for d, _, names in os.walk(sys.argv[1]):
    for name in sorted(names):
        if name.endswith(".npy"):
            n += np.load(os.path.join(d, name), allow_pickle=False).nbytes
print(json.dumps({"seconds": time.perf_counter() - start, "bytes": n}))
"""


# A floor for any converter writing a store of this size: the same number of bytes
# written to fresh files (64 MB each, about a shard) from memory, with no reading,
# encoding or statistics. Page-cache writes, like the converter's (neither syncs).
_WRITE_CHILD = """
import json, os, sys, time
import numpy as np
target, nbytes = sys.argv[1], int(sys.argv[2])
block = np.random.default_rng(0).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
os.makedirs(target)
start = time.perf_counter()
written = k = 0
while written < nbytes:
    n = min(len(block), nbytes - written)
    with open(os.path.join(target, f"{k}.bin"), "wb") as f:
        f.write(memoryview(block)[:n])
    written, k = written + n, k + 1
print(json.dumps({"seconds": time.perf_counter() - start, "bytes": written}))
"""


@dataclass
class ChildRun:
    seconds: float  # timed inside the child: no interpreter start, no imports
    process_seconds: float  # the whole child process, from the parent
    peak_rss: int  # bytes
    output: dict[str, Any]


def run_child(code: str, args: Sequence[str], logs: Path) -> ChildRun:
    """Run ``python -c code args`` and measure its peak RSS.

    The peak comes from the kernel's high-water mark of that very child (``wait4``'s
    ``ru_maxrss``, not RUSAGE_CHILDREN, which would mix in every earlier child), and from
    psutil polling of the child and its descendants in case the work is spread over
    processes; the larger of the two is reported.
    """
    psutil = _psutil()
    out_path, err_path = logs.with_suffix(".out"), logs.with_suffix(".err")
    start = time.perf_counter()
    # Output goes to files so a chatty child can never block on a full pipe while we poll.
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=err, cwd=REPO)
    polled = 0
    watched = psutil.Process(proc.pid)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            tree = [watched, *watched.children(recursive=True)]
            polled = max(polled, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass  # the child (or one of its own) just ended
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child process failed ({proc.returncode}):\n{err_path.read_text()[-4000:]}")
    output = json.loads(out_path.read_text().strip().splitlines()[-1])
    output["stderr"] = err_path.read_text()
    return ChildRun(output["seconds"], elapsed, max(usage.ru_maxrss * 1024, polled), output)


def _psutil() -> Any:
    try:
        import psutil
    except ImportError:
        raise SystemExit(
            "scripts/bench.py needs psutil to watch the conversion's memory: "
            "pip install psutil (or pip install -e '.[test]')"
        ) from None
    return psutil


# --------------------------------------------------------------------------- the mouse


def make_source(args: argparse.Namespace, work: Path) -> tuple[Path, bool]:
    """The mouse folder to benchmark and whether this run generated it (so may delete it)."""
    if args.source is not None:
        source = args.source.resolve()
        if not (source / "data").is_dir():
            raise SystemExit(f"--source {source}: not a Sensorium mouse folder (no data/ inside)")
        log(f"using the given source {source}")
        return source, False
    spec = twin_spec(args.metadata, neuron_scale=args.scale, trial_scale=args.scale)
    folder = work / "source"
    target = folder / spec.name
    marker = folder / f"{spec.name}.spec.sha256"
    # The spec (ids, tiers, frame counts, neurons, seed...) decides every byte written.
    wanted = hashlib.sha256(repr(spec).encode()).hexdigest()
    if target.is_dir() and marker.is_file() and marker.read_text().strip() == wanted:
        log(f"reusing the tree generated earlier with the same spec: {target}")
        return target, False
    marker.unlink(missing_ok=True)
    log(f"generating a twin of {spec.name} at scale {args.scale} ({spec.n_trials} trials, "
        f"{spec.n_neurons} neurons, T_pad {spec.t_pad}) into {folder}")
    path = write_mouse(spec, folder, overwrite=True)
    marker.write_text(wanted + "\n")
    return path, True


def source_file(source: Path, variable: str, trial_id: int) -> Path:
    return source / "data" / variable / f"{int(trial_id)}.npy"


def source_layout_params(params: StandardizationParams, variable: str) -> StandardizationParams:
    """``params`` (stored layout) rearranged to broadcast against a source file (time last)."""
    axes = fmt.SOURCE_TO_STORED_AXES[variable]  # stored axis i is source axis axes[i]
    back = tuple(int(a) for a in np.argsort(axes))
    return StandardizationParams(params.mean.transpose(back), params.scale.transpose(back), axes[params.time_axis])


def npy_standardize(variable: str, x: np.ndarray, params: StandardizationParams) -> np.ndarray:
    """Standardize a freshly loaded source array the way the reader treats a block it owns.

    The reader rescales (not centred) variables in place in the stored dtype when it can;
    the .npy side gets the very same arithmetic, so rows 3-5 compare reading, not maths.
    """
    inplace = getattr(std_, "standardize_inplace", None)
    centred = getattr(std_, "subtracts_mean", lambda v: True)(variable)
    if inplace is not None and x.dtype.kind == "f" and x.flags.writeable and not centred:
        return inplace(variable, x, params)
    return standardize(variable, x, params)


def to_stored(variable: str, x: np.ndarray) -> np.ndarray:
    return x.transpose(fmt.SOURCE_TO_STORED_AXES[variable])


# --------------------------------------------------------------------------- the table


@dataclass
class Row:
    number: str
    what: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: bool | None

    def markdown(self) -> str:
        met = {True: "yes", False: "**no**", None: "-"}[self.met]
        return f"| {self.number} | {self.what} | {self.ours} | {self.baseline} | {self.ratio} | {self.target} | {met} |"


@dataclass
class Report:
    header: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [*self.header, "",
                 "| # | what | sensorium-zarr | baseline | ratio | target | met? |",
                 "|---|---|---|---|---|---|---|",
                 *(row.markdown() for row in self.rows)]
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def slower(ours: float, base: float, target: float | None) -> tuple[str, str, bool | None]:
    """Ratio cell for "time ours / time baseline" (lower is better)."""
    r = ours / base
    return f"{r:.2f} (ours/base time)", (f"<= {target:g}" if target is not None else "-"), (
        r <= target if target is not None else None)


def faster(ours: float, base: float, target: float | None) -> tuple[str, str, bool | None]:
    """Ratio cell for "time baseline / time ours" (a speed-up; higher is better)."""
    r = base / ours
    return f"{r:.1f}x faster (base/ours time)", (f">= {target:g}x faster" if target is not None else "-"), (
        r >= target if target is not None else None)


def machine_lines(args: argparse.Namespace, mouse: reader.Mouse, n_train: int, source_bytes: int) -> list[str]:
    psutil = _psutil()
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import zarrs  # noqa: F401

        zarrs_version = getattr(sys.modules["zarrs"], "__version__", "installed")
    except ImportError:
        zarrs_version = "not installed"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    scale = f"scale {args.scale:g}" if args.source is None else f"given source {args.source}"
    return [
        f"## sensorium-zarr benchmark, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"- machine: {cpu}; {os.cpu_count()} logical cores ({affinity} usable); "
        f"{psutil.virtual_memory().total / GIB:.1f} GiB RAM; {platform.system()} {platform.release()}; "
        f"load average (1, 5, 15 min) at the start {args.load_before}, at the end {load}",
        f"- python {platform.python_version()}, numpy {np.__version__}, zarr {zarr.__version__}, "
        f"numcodecs {numcodecs.__version__}, dask {dask.__version__}, zarrs {zarrs_version}; "
        f"reader/converter engine: {args.engine}",
        f"- mouse {mouse.name} ({scale}): {mouse.n_trials} trials ({n_train} train), "
        f"{mouse.n_neurons} neurons, T_pad {mouse.t_pad}, stored dtypes "
        f"{', '.join(sorted(set(mouse.attrs.stored_dtypes.values())))}; source {source_bytes / 1e9:.2f} GB",
        f"- chunking: {json.dumps(mouse.attrs.chunking)}",
        f"- every figure is the median of {args.repeats} repetitions ({args.convert_repeats} for the "
        f"conversion, {args.trial_repeats} for the one-trial rows), the two sides interleaved; "
        "warm page cache (everything read once first) unless the row says cold",
    ]


# --------------------------------------------------------------------------- measurements


def measure_conversion(args: argparse.Namespace, source: Path, out: Path, logs: Path, report: Report) -> Path:
    """Row 1: conversion (child process) vs np.load of every file (child process, serial)."""
    converts: list[ChildRun] = []
    reads: list[ChildRun] = []
    # Interleaved like the in-process rows; the read is cheap, so it gets the full repeats.
    for k in range(max(args.repeats, args.convert_repeats)):
        if k < args.repeats:
            log(f"bare read of the source, np.load of every file ({k + 1}/{args.repeats})")
            reads.append(run_child(_READ_CHILD, [str(source)], logs / f"read{k}"))
        if k < args.convert_repeats:
            log(f"converting ({k + 1}/{args.convert_repeats})")
            converts.append(run_child(_CONVERT_CHILD, [str(source), str(out), args.engine], logs / f"convert{k}"))
            log(f"converted in {converts[-1].seconds:.1f} s, peak RSS {converts[-1].peak_rss / GIB:.2f} GiB")
            for line in stage_lines(converts[-1].output["stderr"]):
                log(f"  converter: {line}")
    stages = stage_lines(converts[-1].output["stderr"])
    if stages:
        # Where the conversion's time goes, as the converter itself reports it.
        report.notes.append(f"conversion stages (last conversion, converter's log): {'; '.join(stages)}")
    t_conv = statistics.median(c.seconds for c in converts)
    t_read = statistics.median(r.seconds for r in reads)
    ratio, target, met = slower(t_conv, t_read, 3.0)
    process = statistics.median(c.process_seconds for c in converts)
    report.rows.append(Row("1", "conversion wall time (in the child, excluding interpreter start)",
                           f"{t_conv:.2f} s ({process:.2f} s whole process)",
                           f"{t_read:.2f} s (np.load of every file, serial)", ratio, target, met))
    peak = max(c.peak_rss for c in converts)
    read_peak = max(r.peak_rss for r in reads)
    report.rows.append(Row("1", "conversion peak RSS (max over conversions)", f"{peak / GIB:.2f} GiB",
                           f"{read_peak / GIB:.2f} GiB (bare read)", f"{peak / read_peak:.1f} (ours/base)",
                           "< 2 GiB", peak < 2 * GIB))
    return Path(converts[-1].output["store"])


def measure_write_floor(args: argparse.Namespace, source: Path, store_bytes: int, work: Path, logs: Path,
                        report: Report) -> None:
    """Row 1w: writing the store's byte count, alone, against the same bare read as row 1.

    No converter can write its store faster than the machine writes that many bytes, so
    when this ratio is above row 1's target, that target is out of reach for a store of
    this size (and row 2 shows how close to the smallest lossless size it is)."""
    writes, reads = [], []
    for k in range(args.repeats):
        log(f"write floor: {store_bytes / 1e9:.2f} GB to fresh files ({k + 1}/{args.repeats}), and a bare read")
        reads.append(run_child(_READ_CHILD, [str(source)], logs / f"floor-read{k}"))
        target = work / f"write-floor-{k}"
        try:
            writes.append(run_child(_WRITE_CHILD, [str(target), str(store_bytes)], logs / f"floor-write{k}"))
        finally:
            shutil.rmtree(target, ignore_errors=True)
    t_write = statistics.median(w.seconds for w in writes)
    t_read = statistics.median(r.seconds for r in reads)
    ratio = t_write / t_read
    report.rows.append(Row("1w", "floor for row 1: the store's bytes written to fresh files from memory "
                           "(64 MB files, no reading, encoding or statistics)",
                           f"{t_write:.2f} s ({store_bytes / t_write / 1e6:.0f} MB/s)",
                           f"{t_read:.2f} s (np.load of every file, serial)", f"{ratio:.2f} (floor/base time)",
                           "-", None))
    if ratio > 3.0:
        report.notes.append(
            f"row 1's target (<= 3x the bare read) is out of reach for a store of this size on this machine: "
            f"writing its {store_bytes / 1e9:.2f} GB alone takes {ratio:.1f}x the bare read (row 1w).")


def stage_lines(stderr: str) -> list[str]:
    """The converter's own per-stage timings (``<stage> stage: <seconds> s``) from its log."""
    return [line.strip() for line in stderr.splitlines() if " stage: " in line]


def measure_size(source: Path, store: Path, report: Report) -> int:
    """Row 2: allocated bytes (what a disk quota or `du` counts) of store vs source."""
    s_alloc, s_apparent = bytes_on_disk(source)
    z_alloc, z_apparent = bytes_on_disk(store)
    ratio = z_alloc / s_alloc
    report.rows.append(Row("2", "bytes on disk (allocated; apparent in brackets)",
                           f"{z_alloc / 1e9:.3f} GB ({z_apparent / 1e9:.3f}), {len(files_under(store))} files",
                           f"{s_alloc / 1e9:.3f} GB ({s_apparent / 1e9:.3f}), {len(files_under(source))} files",
                           f"{ratio:.3f} (ours/base)", "<= 0.3", ratio <= 0.3))
    return s_alloc


class Sides:
    """The reader side and the .npy side of rows 3-5, computing the same values."""

    def __init__(self, mouse: reader.Mouse, source: Path) -> None:
        self.mouse = mouse
        self.source = source
        self.train = mouse.split("train")
        # The reader's own parameters, so the .npy side does exactly the same arithmetic.
        self.params = {v: mouse.standardization_params(v) for v in VARIABLES}
        self.source_params = {v: source_layout_params(self.params[v], v) for v in VARIABLES}
        self.has_responses = dict(zip(self.train.trial_ids.tolist(), self.train.has_responses.tolist(), strict=True))

    # -- one trial (row 3)
    def our_trial(self, k: int) -> list[np.ndarray]:
        one = self.train.trial(k)  # the numpy spelling, for per-trial loaders
        return [one[v] for v in VARIABLES]

    def our_trial_dask(self, k: int) -> list[np.ndarray]:
        return list(dask.compute(*(self.train.array(v)[k] for v in VARIABLES), scheduler="threads"))

    def npy_trial(self, k: int) -> list[np.ndarray]:
        trial = int(self.train.trial_ids[k])
        out = []
        for v in VARIABLES:
            x = npy_standardize(v, np.load(source_file(self.source, v, trial)), self.source_params[v])
            if v == fmt.RESPONSES and not self.has_responses[trial]:
                x[...] = np.nan  # the reader's rule for withheld responses
            out.append(x)
        return out

    # -- one neuron (row 4)
    def our_neuron_slice(self, n: int) -> np.ndarray:
        return self.train.responses[:, n, :].compute(scheduler="threads")

    def our_neuron_split(self, n: int) -> np.ndarray:
        return self.mouse.split("train", neurons=[n]).responses.compute(scheduler="threads")[:, 0, :]

    def npy_neuron(self, n: int, mmap_mode: str | None = None) -> np.ndarray:
        rows = []
        for trial in self.train.trial_ids.tolist():
            row = np.array(np.load(source_file(self.source, fmt.RESPONSES, trial), mmap_mode=mmap_mode)[n])
            rows.append(row if self.has_responses[trial] else np.full_like(row, np.nan))
        return npy_standardize(fmt.RESPONSES, np.stack(rows), self.params[fmt.RESPONSES].neurons(np.array([n])))

    # -- streaming (row 5)
    def our_stream(self, _: object = None) -> tuple[np.ndarray, np.ndarray]:
        return dask.compute(
            da.nanmean(self.train.responses, axis=(0, 2)),
            da.nanmean(self.train.videos, axis=(0, 1)),
            scheduler="threads",
        )

    def npy_stream(self, _: object = None) -> tuple[np.ndarray, np.ndarray]:
        sums: dict[str, Any] = {}
        counts: dict[str, Any] = {}
        for trial in self.train.trial_ids.tolist():
            for v in (fmt.RESPONSES, fmt.VIDEOS):
                if v == fmt.RESPONSES and not self.has_responses[trial]:
                    continue  # NaN for the reader: adds nothing to a nanmean
                x = npy_standardize(v, np.load(source_file(self.source, v, trial)), self.source_params[v])
                # Time is the last axis of every source file.
                s = np.nansum(x, axis=-1, dtype=np.float64)
                c = np.count_nonzero(~np.isnan(x), axis=-1)
                sums[v] = s if v not in sums else sums[v] + s
                counts[v] = c if v not in counts else counts[v] + c
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums[fmt.RESPONSES] / counts[fmt.RESPONSES], sums[fmt.VIDEOS] / counts[fmt.VIDEOS]

    def streamed_bytes(self) -> int:
        return int(self.train.responses.nbytes + self.train.videos.nbytes)

    def files(self) -> list[Path]:
        return [source_file(self.source, v, t) for t in self.train.trial_ids.tolist() for v in VARIABLES]


def random_trials(rng: np.random.Generator, n_train: int, count: int) -> list[int]:
    """``count`` train positions, all different while there are enough trials."""
    picks = rng.permutation(n_train)[:count].tolist()
    while len(picks) < count:
        picks.append(int(rng.integers(n_train)))
    return picks


def check_same(what: str, ours: Sequence[np.ndarray], base: Sequence[np.ndarray], rtol: float = 1e-6,
               atol: float = 0.0) -> None:
    """Both sides must compute the same values before their times mean anything (to a few
    float32 roundings: the reader may pick a float32 or a float64 path per block)."""
    for a, b in zip(ours, base, strict=True):
        assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def measure_trial(sides: Sides, picks: Sequence[int], label: str, number: str, report: Report,
                  before: Callable[[], None] | None = None, dask_path: bool = False) -> None:
    """Row 3: one random train trial, all four variables, standardized, as numpy, through
    ``split.trial(k)`` (or, with ``dask_path``, computing the Dask arrays' slices)."""
    log(f"one trial{' via dask' if dask_path else ''}, {label} ({len(picks)} repetitions)")
    ours = sides.our_trial_dask if dask_path else sides.our_trial
    t_ours, t_base, _, _ = paired(ours, sides.npy_trial, picks, before)
    ratio, target, met = slower(t_ours, t_base, None if dask_path else 1.0)
    spelling = "`dask.compute(split.<var>[k])` (info)" if dask_path else "`split.trial(k)`"
    report.rows.append(Row(number, f"one random train trial, 4 variables, standardized, numpy, {spelling} ({label})",
                           ms(t_ours), f"{ms(t_base)} (np.load 4 files + same arithmetic)", ratio, target, met))


def measure_neuron(sides: Sides, neurons: Sequence[int], label: str, suffix: str, report: Report,
                   before: Callable[[], None] | None = None) -> None:
    """Row 4: one neuron across every train trial, standardized, both reader spellings."""
    n_train = len(sides.train)
    for letter, fn, spelling in (("a", sides.our_neuron_slice, "split.responses[:, n]"),
                                 ("b", sides.our_neuron_split, "split('train', neurons=[n])")):
        log(f"one neuron across {n_train} train trials via {spelling}, {label}")
        t_ours, t_base, _, _ = paired(fn, sides.npy_neuron, neurons, before)
        ratio, target, met = faster(t_ours, t_base, 20.0)
        report.rows.append(Row(f"4{letter}{suffix}", f"one neuron x {n_train} train trials, standardized, "
                               f"`{spelling}` ({label})", ms(t_ours),
                               f"{ms(t_base)} (np.load each file, row n)", ratio, target, met))


def measure_neuron_mmap(sides: Sides, neurons: Sequence[int], report: Report) -> None:
    """Row 4m: the same, against a smarter .npy reader (mmap reads one row per file)."""
    log("one neuron, .npy side with np.load(mmap_mode='r')")
    mm = lambda n: sides.npy_neuron(n, mmap_mode="r")  # noqa: E731
    t_ours, t_base, r_ours, r_base = paired(sides.our_neuron_split, mm, neurons)
    check_same("one neuron (mmap)", [r_ours], [r_base])
    ratio, _, _ = faster(t_ours, t_base, None)
    report.rows.append(Row("4m", "row 4b vs a .npy reader using np.load(mmap_mode='r') (info, warm)",
                           ms(t_ours), f"{ms(t_base)} (mmap, row n)", ratio, "-", None))


def measure_stream(sides: Sides, repeats: int, report: Report) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """Row 5: nanmean over the whole train split, reader (dask threads) vs a .npy loop."""
    log(f"streaming the train split ({len(sides.train)} trials, {sides.streamed_bytes() / 1e9:.2f} GB "
        f"of responses + videos), {repeats} repetitions a side")
    t_ours, t_base, r_ours, r_base = paired(sides.our_stream, sides.npy_stream, range(repeats))
    # Summation order differs (dask trees vs a running float64 sum): close, not identical.
    check_same("streaming means", r_ours, r_base, rtol=1e-4, atol=1e-4)
    rate = sides.streamed_bytes() / t_ours
    ratio, target, met = slower(t_ours, t_base, 1.0)
    report.rows.append(Row("5", "stream the train split: per-neuron + per-pixel nanmean, standardized "
                           "(dask threads vs serial .npy loop)", f"{t_ours:.2f} s ({rate / 1e6:.0f} MB/s decoded)",
                           f"{t_base:.2f} s ({sides.streamed_bytes() / t_base / 1e6:.0f} MB/s)", ratio, target, met))
    return rate, r_ours


def memcpy_rate(repeats: int) -> float:
    a = np.ones(256 << 20, np.uint8)
    b = np.ones_like(a)  # touched, so page faults are not timed
    return a.nbytes / median_time(lambda: np.copyto(b, a), max(3, repeats))


def store_read_rate(store: Path, engine: str, variable: str, n_shards: int, repeats: int) -> tuple[float, int, int]:
    """Decoded bytes/s, bytes and trials of raw reads of the first ``n_shards`` shards (or
    all there are), through the store's codec pipeline: the reader's path minus standardizing."""
    array = open_array(str(store), variable, engine)
    trials = min(array.shape[0], n_shards * array.shards[0])
    array[:trials]  # warm-up: opens the shard files and indexes once
    seconds = median_time(lambda: array[:trials], repeats)
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
        out[fmt.RESPONSES] += [np.ascontiguousarray(r[n:n + per_neuron]) for n in range(0, r.shape[0], per_neuron)]
        v = to_stored(fmt.VIDEOS, np.load(source_file(sides.source, fmt.VIDEOS, t)))
        out[fmt.VIDEOS] += [np.ascontiguousarray(v[f:f + per_frame]) for f in range(0, v.shape[0], per_frame)]
    return out


def codec_rates(chunks: list[np.ndarray], codec: numcodecs.Blosc, threads: int, repeats: int) -> float:
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


def measure_codec(args: argparse.Namespace, sides: Sides, store: Path, stream_rate: float,
                  report: Report) -> float:
    """Row 6 (and 5 vs the codec limit): store pipeline, bare codec and memcpy, decoded bytes/s."""
    log("decode throughput: store pipeline, bare codec, memcpy")
    chunking = sides.mouse.attrs.chunking
    memcpy = memcpy_rate(args.repeats)
    rates = {v: store_read_rate(store, args.engine, v, args.shards, args.repeats) for v in (fmt.RESPONSES, fmt.VIDEOS)}
    total = sum(n for _, n, _ in rates.values())
    pipeline = total / sum(n / r for r, n, _ in rates.values())
    trials = rates[fmt.RESPONSES][2]
    report.rows.append(Row("6a", f"raw read through the store's codec pipeline ({args.engine}), first {trials} "
                           f"trials (<= {args.shards} shards) of responses + videos, `zarr.open_array(...)[a:b]`",
                           f"{pipeline / 1e6:.0f} MB/s (responses {rates[fmt.RESPONSES][0] / 1e6:.0f}, "
                           f"videos {rates[fmt.VIDEOS][0] / 1e6:.0f})",
                           f"{memcpy / 1e6:.0f} MB/s (memcpy, 1 thread)", f"{pipeline / memcpy:.3f} (ours/memcpy)",
                           "-", None))

    shuffle = {"shuffle": numcodecs.Blosc.SHUFFLE, "bitshuffle": numcodecs.Blosc.BITSHUFFLE,
               "noshuffle": numcodecs.Blosc.NOSHUFFLE}[chunking.get("shuffle", "shuffle")]
    codec = numcodecs.Blosc(cname=chunking.get("cname", "lz4"), clevel=int(chunking.get("clevel", 5)), shuffle=shuffle)
    chunks = codec_chunks(sides, chunking, args.codec_trials)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # Blosc's own thread pool off: parallelism comes from the Python threads, as in a Dask read.
    previous = numcodecs_blosc.use_threads
    numcodecs_blosc.use_threads = False
    try:
        single = {v: codec_rates(c, codec, 1, args.repeats) for v, c in chunks.items()}
        multi = {v: codec_rates(c, codec, cores, args.repeats) for v, c in chunks.items()}
    finally:
        numcodecs_blosc.use_threads = previous
    # The limit for the streaming mix of bytes: the time each variable's bytes need, summed.
    b = {fmt.RESPONSES: sides.train.responses.nbytes, fmt.VIDEOS: sides.train.videos.nbytes}
    mix = lambda rate: sum(b.values()) / sum(b[v] / rate[v] for v in b)  # noqa: E731
    name = f"Blosc {codec.cname} {codec.clevel} {chunking.get('shuffle', 'shuffle')}"
    for letter, rate, threads in (("b", single, 1), ("c", multi, cores)):
        report.rows.append(Row(f"6{letter}", f"bare codec decode, {name}, {threads} thread(s), inner-chunk-sized "
                               f"buffers of {args.codec_trials} train trials (streaming mix)",
                               f"{mix(rate) / 1e6:.0f} MB/s (responses {rate[fmt.RESPONSES] / 1e6:.0f}, "
                               f"videos {rate[fmt.VIDEOS] / 1e6:.0f})",
                               f"{memcpy / 1e6:.0f} MB/s (memcpy, 1 thread)", f"{mix(rate) / memcpy:.3f} (ours/memcpy)",
                               "-", None))
    # The limit is the best the bare codec did, on one thread or on all of them.
    limit = max(mix(single), mix(multi))
    fraction = stream_rate / limit
    report.rows.append(Row("5c", "streaming (row 5) as a share of the codec decode limit (best of rows 6b, 6c)",
                           f"{stream_rate / 1e6:.0f} MB/s", f"{limit / 1e6:.0f} MB/s", f"{fraction:.2f} (ours/limit)",
                           ">= 0.6", fraction >= 0.6))
    return limit


def measure_arithmetic(args: argparse.Namespace, sides: Sides, stream_rate: float, limit: float,
                       report: Report) -> None:
    """Rows 6d and 5d: what row 5's arithmetic alone costs, and the bound it puts on row 5.

    Streaming decodes and then standardizes and reduces, on the same cores, so no reader
    can beat 1 / (1 / decode limit + 1 / arithmetic rate). This measures the arithmetic
    on train trials already decoded in memory, through the same Dask reductions."""
    n = min(args.arithmetic_trials, len(sides.train))
    log(f"row 5's arithmetic alone on {n} decoded train trials")
    raw = sides.mouse.split("train", standardize=False)
    decoded = [raw.trial(k) for k in range(n)]
    arrays = {}
    for v in (fmt.RESPONSES, fmt.VIDEOS):
        stack = np.stack([d[v] for d in decoded])
        params = sides.params[v]
        # A fresh copy per block stands in for the decoder's fresh output buffer, which the
        # reader standardizes in place; the arithmetic is the reader's own.
        arrays[v] = da.from_array(stack, chunks=(1, *stack.shape[1:])).map_blocks(
            lambda b, v=v, params=params: npy_standardize(v, b[0].copy(), params)[np.newaxis],
            dtype=np.result_type(stack.dtype, np.float32))
    nbytes = sum(a.nbytes for a in arrays.values())

    def arithmetic() -> None:
        dask.compute(da.nanmean(arrays[fmt.RESPONSES], axis=(0, 2)), da.nanmean(arrays[fmt.VIDEOS], axis=(0, 1)),
                     scheduler="threads")

    rate = nbytes / median_time(arithmetic, args.repeats)
    memcpy = memcpy_rate(args.repeats)
    report.rows.append(Row("6d", f"row 5's arithmetic alone (standardize + nanmean, dask threads) on {n} train "
                           "trials already decoded in memory", f"{rate / 1e6:.0f} MB/s",
                           f"{memcpy / 1e6:.0f} MB/s (memcpy, 1 thread)", f"{rate / memcpy:.3f} (ours/memcpy)",
                           "-", None))
    bound = 1.0 / (1.0 / limit + 1.0 / rate)
    report.rows.append(Row("5d", "streaming (row 5) as a share of the best any reader can do with this arithmetic: "
                           "decode limit and arithmetic sharing the cores, 1 / (1 / 5c limit + 1 / 6d)",
                           f"{stream_rate / 1e6:.0f} MB/s", f"{bound / 1e6:.0f} MB/s (bound; {bound / limit:.2f} of "
                           "the decode limit)", f"{stream_rate / bound:.2f} (ours/bound)", "-", None))
    if bound < 0.6 * limit:
        report.notes.append(
            f"row 5c's target (>= 0.6 of the decode limit) is out of reach for row 5's arithmetic on this machine: "
            f"even with free reading, decoding at the limit and then standardizing + reducing at row 6d's rate "
            f"gives at most {bound / limit:.2f} of the limit (row 5d).")


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace, report: Report) -> None:
    work = args.work
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
        store = measure_conversion(args, source, out, logs, report)
        source_bytes = measure_size(source, store, report)
        measure_write_floor(args, source, bytes_on_disk(store)[1], work, logs, report)

        # Written data can sit dirty in the page cache, where fadvise cannot drop it.
        os.sync()
        store_files = files_under(store)
        log(f"warming the page cache: reading the source and the store once "
            f"({len(store_files)} store files)")
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

        log("checking that both sides compute the same values")
        ours, base = sides.our_trial(picks[0]), sides.npy_trial(picks[0])
        check_same("one trial", ours, [to_stored(v, x) for v, x in zip(VARIABLES, base, strict=True)])
        base_neuron = sides.npy_neuron(neurons[0])
        check_same("one neuron, slice", [sides.our_neuron_slice(neurons[0])], [base_neuron])
        check_same("one neuron, split", [sides.our_neuron_split(neurons[0])], [base_neuron])

        measure_trial(sides, picks, "warm", "3", report)
        measure_trial(sides, picks, "warm", "3d", report, dask_path=True)
        measure_neuron(sides, neurons, "warm", "", report)
        measure_neuron_mmap(sides, neurons, report)

        if args.cold:
            involved = sides.files() + store_files
            sample = [source_file(source, fmt.RESPONSES, t) for t in sides.train.trial_ids[:8].tolist()]
            cold = check_eviction(sample)
            log(f"cold-cache check: {cold.reason}")
            if cold.possible:
                other = np.random.default_rng(args.seed + 1)
                cold_picks = random_trials(other, n_train, args.trial_repeats)
                drop = lambda: evict(involved)  # noqa: E731
                measure_trial(sides, cold_picks, "cold", "3c", report, before=drop)
                measure_neuron(sides, neurons, "cold", "c", report, before=drop)
                report.notes.append(
                    "cold rows: posix_fadvise(POSIX_FADV_DONTNEED) on every source and store file before "
                    f"each repetition of each side; check: {cold.reason}. On a VM the host may still cache "
                    "the disk, so cold here means 'not in this kernel's page cache'.")
                read_all(files_under(source))
                read_all(store_files)
            else:
                report.notes.append(f"cold rows (3c, 4ac, 4bc) missing: {cold.reason}")
        else:
            report.notes.append("cold rows (3c, 4ac, 4bc) skipped: --no-cold")

        stream_rate, _ = measure_stream(sides, args.repeats, report)
        limit = measure_codec(args, sides, store, stream_rate, report)
        measure_arithmetic(args, sides, stream_rate, limit, report)

        report.header = machine_lines(args, mouse, n_train, source_bytes)
        report.notes.append(
            "ratio directions: '(ours/base time)' is our time over the baseline's (lower is better); "
            "'x faster (base/ours time)' is the baseline's time over ours (higher is better); "
            "'(ours/base)' for sizes and memory (lower is better).")
        report.notes.append("rows 3-5: the reader uses the train split's standardization parameters "
                            "(mouse.standardization_params); the .npy side applies the same ones with the "
                            "reader's own functions (reader.standardize: standardize, or standardize_inplace "
                            "for rescaled-only variables, as the reader does); values were checked equal "
                            "(to float32 rounding) before timing.")
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            for path in [*cleanup, work / "logs"]:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            for folder in (work / "source", *([work] if created_work else [])):
                try:
                    folder.rmdir()  # only if this run left it empty
                except OSError:
                    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", type=Path, default=DEFAULT_METADATA,
                        help="real-metadata/<mouse> folder of the mouse to twin (default: %(default)s)")
    parser.add_argument("--source", type=Path, default=None,
                        help="benchmark this already generated mouse folder instead of generating a twin")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="neuron_scale and trial_scale of the twin (default 1.0: full size, ~9 GB)")
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
    parser.add_argument("--shards", type=int, default=20, help="shards read in row 6a (default 20)")
    parser.add_argument("--codec-trials", type=int, default=4, help="train trials encoded for rows 6b/6c (default 4)")
    parser.add_argument("--arithmetic-trials", type=int, default=32,
                        help="decoded train trials held in memory for row 6d (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random trials and neurons")
    args = parser.parse_args(argv)
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
    global _START
    _START = time.perf_counter()
    args = parse_args(argv)
    _psutil()  # fail before ~90 s of generation, not after
    report = Report()
    started = time.perf_counter()
    # The machine is shared: the load before and after tells how quiet the run was.
    args.load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    run(args, report)
    report.notes.append(f"benchmark wall time {time.perf_counter() - started:.0f} s")
    text = report.markdown()
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
