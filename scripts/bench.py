#!/usr/bin/env python3
"""Benchmark a converted store against the per-trial .npy tree it came from.

    python scripts/bench.py [--scale 1.0] [--repeats 3] [--source MOUSE_DIR] [--work DIR]
                            [--markdown FILE] [--engine zarr|zarrs]

Generates a twin of a real mouse (from ../shared/real-metadata, full size by default;
``--scale 0.1`` for a quick run) or takes ``--source``, converts it, and measures side by
side, in one run, each figure the median of ``--repeats`` and a ratio to its baseline:
conversion, size, one trial, one neuron across the train trials, streaming the train
split, and the codec's decode limit. Prints a markdown table (and writes it to
``--markdown``). The machine is shared and noisy: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import dask
import dask.array as da
import numpy as np
import numcodecs
import zarr

import reader
from converter import scan_source, twin_spec, write_mouse
from reader.engine import ENGINES, parse_engine
from reader.standardize import standardize

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TWIN = REPO.parent / "shared" / "real-metadata" / "dynamic29156-11-10-Video-8744edeac3b4d1ce16b680916b5267ce"
VARIABLES = ("videos", "responses", "behavior", "pupil_center")
SOURCE_AXES = {"videos": (2, 0, 1), "responses": (0, 1), "behavior": (0, 1), "pupil_center": (0, 1)}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], object], repeats: int, before: Callable[[], None] | None = None) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs (``before`` runs untimed first)."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def evict(paths: list[Path]) -> None:
    """Ask the kernel to drop these files from the page cache (a cold read follows)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"- machine: {cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, numpy {np.__version__}, zarr {zarr.__version__}, "
        f"numcodecs {numcodecs.__version__}, dask {dask.__version__}",
    ]


@dataclass
class Row:
    number: str
    what: str
    ours: str
    baseline: str
    ratio: float
    ratio_text: str
    target: str
    met: bool | None

    def markdown(self) -> str:
        met = {True: "yes", False: "**no**", None: "-"}[self.met]
        return f"| {self.number} | {self.what} | {self.ours} | {self.baseline} | {self.ratio_text} | {self.target} | {met} |"


def make_source(args: argparse.Namespace, work: Path) -> Path:
    if args.source is not None:
        return args.source
    spec = twin_spec(args.metadata, neuron_scale=args.scale, trial_scale=args.scale, seed=0)
    target = work / "source" / spec.name
    marker = work / "source" / f"{spec.name}.spec.json"
    wanted = json.dumps({"metadata": str(args.metadata), "scale": args.scale})
    if target.is_dir() and marker.is_file() and marker.read_text() == wanted:
        log(f"reusing the generated source {target}")
        return target
    log(f"generating a twin of {args.metadata.name} at scale {args.scale} into {target}")
    path = write_mouse(spec, work / "source", overwrite=True)
    marker.write_text(wanted)
    return path


def convert(source: Path, out: Path, engine: str) -> tuple[float, float, Path]:
    """Wall time and peak RSS (GiB) of one conversion, in a child process of its own."""
    command = [sys.executable, str(REPO / "scripts" / "convert_sensorium.py"), str(source), "--out", str(out),
               "--overwrite", "--no-progress", "--engine", engine]
    code = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"conversion failed:\n{done.stderr}")
    peak_kib = int(done.stdout.strip().splitlines()[-1])
    return elapsed, peak_kib / 2**20, Path(done.stdout.strip().splitlines()[0])


def run(args: argparse.Namespace) -> list[str]:
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    source = make_source(args, work)
    layout = scan_source(source)
    files = [source / rel for rel in layout.tree.files if rel.startswith("data/")]
    data = source / "data"
    rows: list[Row] = []

    log(f"bare read: np.load of {len(files)} files")
    bare = timed(lambda: [np.load(f) for f in files], args.repeats)

    log("converting")
    runs = [convert(source, work / "store", args.engine) for _ in range(args.convert_repeats)]
    conversion = statistics.median(r[0] for r in runs)
    peak = max(r[1] for r in runs)
    store = runs[-1][2]
    rows.append(Row("1", "conversion wall time", f"{conversion:.1f} s", f"{bare:.1f} s (np.load of every file)",
                    conversion / bare, f"{conversion / bare:.1f}x the bare read", "<= 3x", conversion / bare <= 3))
    rows.append(Row("1", "conversion peak RSS", f"{peak:.2f} GiB", "-", peak, "-", "< 2 GiB", peak < 2))
    source_bytes, store_bytes = tree_bytes(source), tree_bytes(store)
    rows.append(Row("2", "bytes on disk", f"{store_bytes / 1e9:.2f} GB", f"{source_bytes / 1e9:.2f} GB (source)",
                    store_bytes / source_bytes, f"{store_bytes / source_bytes:.2f}x the source", "<= 0.3x",
                    store_bytes / source_bytes <= 0.3))

    mouse = reader.open_mouse(store, engine=args.engine)
    train = mouse.split("train")
    params = {v: train.standardization_params(v) for v in VARIABLES}
    rng = np.random.default_rng(args.seed)
    store_files = [p for p in store.rglob("*") if p.is_file()]

    def our_trial(k: int) -> list[np.ndarray]:
        return list(dask.compute(*(train.array(v)[k] for v in VARIABLES), scheduler="threads"))

    def npy_trial(k: int) -> list[np.ndarray]:
        trial = int(train.trial_ids[k])
        return [standardize(v, np.load(data / v / f"{trial}.npy").transpose(SOURCE_AXES[v]), params[v]) for v in VARIABLES]

    picks = [int(k) for k in rng.integers(0, len(train), size=args.repeats)]
    # Both sides must compute the same thing before their times mean anything.
    for a, b in zip(our_trial(picks[0]), npy_trial(picks[0])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    log("one trial, warm")
    ours, base = iter(picks), iter(picks)
    t_ours = timed(lambda: our_trial(next(ours)), args.repeats)
    t_base = timed(lambda: npy_trial(next(base)), args.repeats)
    rows.append(Row("3", "one random train trial, 4 variables, standardized (warm)", f"{t_ours * 1e3:.1f} ms",
                    f"{t_base * 1e3:.1f} ms", t_ours / t_base, f"{t_ours / t_base:.2f} (time ours / npy)", "<= 1.0",
                    t_ours / t_base <= 1.0))

    neurons = [int(n) for n in rng.integers(0, mouse.n_neurons, size=args.repeats)]
    scale = params["responses"].scale

    def our_neuron(n: int) -> np.ndarray:
        return mouse.split("train", neurons=[n]).responses.compute(scheduler="threads")

    def npy_neuron(n: int) -> np.ndarray:
        return np.stack([np.load(data / "responses" / f"{int(t)}.npy")[n] for t in train.trial_ids]) / scale[n]

    np.testing.assert_allclose(our_neuron(neurons[0])[:, 0], npy_neuron(neurons[0]), rtol=1e-5, atol=1e-6)
    log("one neuron across train, warm")
    ours, base = iter(neurons), iter(neurons)
    n_ours = timed(lambda: our_neuron(next(ours)), args.repeats)
    n_base = timed(lambda: npy_neuron(next(base)), args.repeats)
    rows.append(Row("4", f"one neuron across {len(train)} train trials, standardized (warm)", f"{n_ours * 1e3:.0f} ms",
                    f"{n_base * 1e3:.0f} ms", n_base / n_ours, f"{n_base / n_ours:.1f}x faster", ">= 20x faster",
                    n_base / n_ours >= 20))

    cold_note = None
    if args.cold:
        log("cold-cache repetitions (posix_fadvise DONTNEED before each)")
        source_files = list(files)
        ours, base = iter(picks), iter(picks)
        c_ours = timed(lambda: our_trial(next(ours)), args.repeats, before=lambda: evict(store_files))
        c_base = timed(lambda: npy_trial(next(base)), args.repeats, before=lambda: evict(source_files))
        rows.append(Row("3c", "one trial (cold cache)", f"{c_ours * 1e3:.1f} ms", f"{c_base * 1e3:.1f} ms",
                        c_ours / c_base, f"{c_ours / c_base:.2f} (time ours / npy)", "<= 1.0", c_ours / c_base <= 1.0))
        ours, base = iter(neurons), iter(neurons)
        c_ours = timed(lambda: our_neuron(next(ours)), args.repeats, before=lambda: evict(store_files))
        c_base = timed(lambda: npy_neuron(next(base)), args.repeats, before=lambda: evict(source_files))
        rows.append(Row("4c", "one neuron across train (cold cache)", f"{c_ours * 1e3:.0f} ms", f"{c_base * 1e3:.0f} ms",
                        c_base / c_ours, f"{c_base / c_ours:.1f}x faster", ">= 20x faster", c_base / c_ours >= 20))
        cold_note = ("cold figures evict the files involved with posix_fadvise(DONTNEED) before each repetition; "
                     "the kernel may keep pages other processes map")

    log("streaming the train split")
    def our_stream() -> None:
        dask.compute(da.nanmean(train.responses, axis=(0, 2)), da.nanmean(train.videos, axis=(0, 1)), scheduler="threads")

    def npy_stream() -> None:
        sums = {"responses": 0.0, "videos": 0.0}
        counts = {"responses": 0, "videos": 0}
        for t in train.trial_ids:
            for v, axis in (("responses", 1), ("videos", 0)):
                x = standardize(v, np.load(data / v / f"{int(t)}.npy").transpose(SOURCE_AXES[v]), params[v])
                sums[v] = sums[v] + np.nansum(x, axis=axis)
                counts[v] = counts[v] + (~np.isnan(x)).sum(axis=axis)

    s_ours = timed(our_stream, args.repeats)
    s_base = timed(npy_stream, args.repeats)
    streamed = sum(train.array(v).nbytes for v in ("responses", "videos"))
    rows.append(Row("5", "stream the train split: per-neuron and per-pixel means, standardized",
                    f"{s_ours:.1f} s ({streamed / s_ours / 1e9:.2f} GB/s)", f"{s_base:.1f} s",
                    s_ours / s_base, f"{s_ours / s_base:.2f} (time ours / npy)", "<= 1.0", s_ours / s_base <= 1.0))

    log("codec decode limit and memcpy")
    decode, memcpy = codec_limits(store, layout, mouse)
    limit = decode * (os.cpu_count() or 1)
    rows.append(Row("6", "decode throughput of the store's codec (one core; x cores = limit for 5)",
                    f"{decode:.2f} GB/s", f"memcpy {memcpy:.2f} GB/s", decode / memcpy,
                    f"{decode / memcpy:.2f} of memcpy", "-", None))
    fraction = streamed / s_ours / 1e9 / limit
    rows.append(Row("5", "streaming as a share of the codec decode limit", f"{streamed / s_ours / 1e9:.2f} GB/s",
                    f"{limit:.2f} GB/s ({os.cpu_count()} cores)", fraction, f"{fraction:.0%}", ">= 60%", fraction >= 0.6))

    lines = [f"## sensorium-zarr benchmark ({time.strftime('%Y-%m-%d')})", "", *machine(),
             f"- mouse: {layout.name}, scale {args.scale if args.source is None else 'given source'}: "
             f"{layout.n_trials} trials ({len(train)} train), {layout.n_neurons} neurons, T_pad {layout.t_pad}, "
             f"source dtype {layout.source_dtypes['responses']}",
             f"- engine: {args.engine}; medians of {args.repeats} repetitions "
             f"({args.convert_repeats} for conversion); warm page cache unless marked cold", ""]
    if cold_note:
        lines += [f"- {cold_note}", ""]
    elif not args.cold:
        lines += ["- cold-cache rows skipped (--no-cold)", ""]
    lines += ["| # | what | sensorium-zarr | baseline (.npy tree) | ratio | target | met? |",
              "|---|---|---|---|---|---|---|", *(row.markdown() for row in rows)]
    return lines


def codec_limits(store: Path, layout, mouse) -> tuple[float, float]:
    """Single-core decode GB/s of the store's codec on its own chunks, and memcpy GB/s."""
    chunking = mouse.attrs.chunking
    shuffle = {"shuffle": numcodecs.Blosc.SHUFFLE, "bitshuffle": numcodecs.Blosc.BITSHUFFLE}.get(chunking["shuffle"], 0)
    codec = numcodecs.Blosc(chunking["cname"], chunking["clevel"], shuffle)
    per_chunk = chunking["neurons_per_chunk"]
    trials = [int(t) for t in layout.trial_ids[:8]]
    raw = [np.ascontiguousarray(layout.read_trial("responses", t)[n:n + per_chunk])
           for t in trials for n in range(0, layout.n_neurons, per_chunk)]
    encoded = [codec.encode(c) for c in raw]
    nbytes = sum(c.nbytes for c in raw)
    decode = nbytes / timed(lambda: [codec.decode(e) for e in encoded], 5) / 1e9
    a = np.ones(256 * 2**20, np.uint8)
    b = np.ones_like(a)
    memcpy = a.nbytes / timed(lambda: np.copyto(b, a), 5) / 1e9
    return decode, memcpy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", type=Path, default=DEFAULT_TWIN, help="real-metadata folder of the mouse to twin")
    parser.add_argument("--scale", type=float, default=1.0, help="neurons and trials scale of the twin (default 1.0)")
    parser.add_argument("--source", type=Path, default=None, help="benchmark this mouse folder instead of a twin")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sensorium-zarr-bench")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--convert-repeats", type=int, default=None, help="default: 1 at scale >= 0.5, else 3")
    parser.add_argument("--engine", choices=ENGINES, default=None)
    parser.add_argument("--no-cold", dest="cold", action="store_false", help="skip the cold-cache rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    args.engine = parse_engine(args.engine)
    if args.convert_repeats is None:
        args.convert_repeats = 1 if args.scale >= 0.5 or args.source else 3
    lines = run(args)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
