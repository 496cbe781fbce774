#!/usr/bin/env python3
"""Measure the choices behind the store layout (docs/FORMAT.md, "Chunking measurements").

1. Codecs on a mouse's own data: compressed size and encode / decode speed of each
   candidate, against memcpy measured in the same run.
2. Chunk shapes: one trial (responses) and one neuron across trials, read through each
   engine, for several ``neurons_per_chunk``, against ``np.load`` of the source files.

    python scripts/bench_layout.py SOURCE_MOUSE_DIR [--trials 48] [--repeats 5]

SOURCE_MOUSE_DIR is a Sensorium mouse folder, e.g. one written by ``make_sample.py
--twin``. Prints markdown tables; every time is a median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numcodecs import Blosc
from numcodecs import blosc as numcodecs_blosc

import sensorium_zarr as reader
from benchmarks.timing import median_time, memcpy_rate
from sensorium_zarr.converter import Chunking, SourceLayout, convert_mouse, scan_source

CODECS = {
    "blosc zstd 1 shuffle": Blosc("zstd", 1, Blosc.SHUFFLE),
    "blosc zstd 3 shuffle": Blosc("zstd", 3, Blosc.SHUFFLE),
    "blosc zstd 1 bitshuffle": Blosc("zstd", 1, Blosc.BITSHUFFLE),
    "blosc lz4 5 shuffle": Blosc("lz4", 5, Blosc.SHUFFLE),
    "blosc lz4 5 noshuffle": Blosc("lz4", 5, Blosc.NOSHUFFLE),
    "blosc lz4 5 bitshuffle": Blosc("lz4", 5, Blosc.BITSHUFFLE),
    "blosc zstd 9 bitshuffle (best effort)": Blosc("zstd", 9, Blosc.BITSHUFFLE),
}


# What each table times, as functions of their inputs (each timed call gets its own).


def _encode_all(codec: Blosc, chunks: Sequence[np.ndarray]) -> list[bytes]:
    return [codec.encode(c) for c in chunks]


def _decode_all(encoded: Sequence[bytes], outs: Sequence[np.ndarray]) -> None:
    # Into buffers already written once, with Blosc's own threads off, as the reader
    # decodes: a fresh output per chunk would time page faults, not the codec.
    for e, out in zip(encoded, outs, strict=True):
        numcodecs_blosc.decompress(e, out)


def _read_trial(array: Any, positions: Iterator[int]) -> None:
    """One trial of a Dask array, a different one per call."""
    array[int(next(positions))].compute(scheduler="sync")


def _load_trial(folder: Path, trial_ids: Iterator[int]) -> None:
    """np.load of one trial's file, a different one per call."""
    np.load(folder / f"{int(next(trial_ids))}.npy")


def _load_neuron(folder: Path, trial_ids: Sequence[int], neuron: int) -> list[np.ndarray]:
    """One neuron across ``trial_ids`` from the per-trial files."""
    return [np.load(folder / f"{int(i)}.npy")[neuron] for i in trial_ids]


def codec_table(mouse: Path, trials: list[int], repeats: int) -> list[str]:
    """Each codec on inner chunks of the default shapes, from the first 8 of ``trials``."""
    layout = scan_source(mouse)
    per_chunk = Chunking().neurons_per_chunk
    chunks = {
        "responses": [layout.read_trial("responses", t)[n:n + per_chunk].copy()
                      for t in trials[:8] for n in range(0, layout.n_neurons, per_chunk)],
        "videos": [np.ascontiguousarray(layout.read_trial("videos", t).transpose(2, 0, 1)[f:f + 64])
                   for t in trials[:8] for f in range(0, layout.t_pad, 64)],
    }
    memcpy = memcpy_rate(repeats) / 1e9
    numcodecs_blosc.use_threads = False
    rows = [f"memcpy: {memcpy:.2f} GB/s (one core)", "",
            "| codec | variable | size / raw | encode GB/s | decode GB/s | decode / memcpy |",
            "|---|---|---|---|---|---|"]
    for name, codec in CODECS.items():
        for variable, data in chunks.items():
            raw = sum(c.nbytes for c in data)
            encoded = [codec.encode(c) for c in data]
            t_enc = median_time(partial(_encode_all, codec, data), max(1, repeats // 2))
            outs = [np.zeros_like(c) for c in data]
            t_dec = median_time(partial(_decode_all, encoded, outs), repeats)
            size = sum(len(e) for e in encoded) / raw
            rows.append(f"| {name} | {variable} | {size:.3f} | {raw / t_enc / 1e9:.2f} | "
                        f"{raw / t_dec / 1e9:.2f} | {raw / t_dec / 1e9 / memcpy:.2f} |")
    return rows


def chunk_table(mouse: Path, work: Path, trials: list[int], repeats: int, per_chunk: list[int]) -> list[str]:
    rng = np.random.default_rng(0)
    source = mouse / "data" / "responses"
    rows = ["| neurons per chunk | engine | one trial (ms) | np.load one trial (ms) | ratio | "
            "one neuron, all trials (ms) | np.load all trials (ms) | speed-up |",
            "|---|---|---|---|---|---|---|---|"]
    for n in per_chunk:
        store = convert_mouse(mouse, work / f"chunk{n}", overwrite=True, progress=False,
                              chunking=Chunking(neurons_per_chunk=n))
        for engine in ("zarr", "zarrs"):
            m = reader.open_mouse(store, engine=engine)
            raw = m.split(list(m.tiers), standardize=False)
            picks = iter(rng.integers(0, len(raw), size=4 * repeats))
            array = raw.responses
            t_trial = median_time(partial(_read_trial, array, picks), repeats)
            ids = iter(raw.trial_ids[rng.integers(0, len(raw), size=4 * repeats)])
            t_load = median_time(partial(_load_trial, source, ids), repeats)
            neuron = int(rng.integers(m.n_neurons))
            one = m.split(list(m.tiers), standardize=False, neurons=[neuron]).responses
            t_neuron = median_time(partial(one.compute, scheduler="sync"), max(1, repeats // 2))
            t_all = median_time(partial(_load_neuron, source, raw.trial_ids.tolist(), neuron), 1)
            rows.append(f"| {n} | {engine} | {t_trial * 1e3:.1f} | {t_load * 1e3:.1f} | {t_trial / t_load:.2f} | "
                        f"{t_neuron * 1e3:.0f} | {t_all * 1e3:.0f} | {t_all / t_neuron:.1f}x |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mouse", type=Path, help="a Sensorium mouse folder")
    parser.add_argument("--trials", type=int, default=48, help="trials copied into the chunk study (default 48)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-chunk", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--codecs-only", action="store_true", help="measure the codecs, not the chunk shapes")
    args = parser.parse_args(argv)
    layout = scan_source(args.mouse)
    trials = [int(t) for t in layout.trial_ids[: args.trials]]
    print(f"# Layout measurements on {layout.name}: {layout.n_neurons} neurons, T_pad {layout.t_pad}\n")
    print("## Codecs\n")
    print("\n".join(codec_table(args.mouse, trials, args.repeats)))
    if args.codecs_only:
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-layout-") as tmp:
        work = Path(tmp)
        subset = _subset(layout, trials, work)
        print(f"\n## Chunk shapes ({len(trials)} trials, responses)\n")
        print("\n".join(chunk_table(subset, work, trials, args.repeats, args.per_chunk)))
    return 0


def _subset(layout: SourceLayout, trials: list[int], work: Path) -> Path:
    """A copy of ``trials`` of the mouse as its own mouse folder (links, no data copied)."""
    target = work / "subset" / layout.name
    for rel in layout.tree.files:
        parts = rel.split("/")
        if parts[0] == "data" and int(Path(parts[-1]).stem) not in trials:
            continue
        destination = target / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.symlink_to(layout.tree.path / rel)
    return target


if __name__ == "__main__":
    sys.exit(main())
