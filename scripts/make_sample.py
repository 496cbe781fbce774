"""Write a synthetic Sensorium 2023 source tree: the quick start's sample, or a twin.

    python scripts/make_sample.py OUT                      # two small mice (folder + zip)
    python scripts/make_sample.py OUT --twin real-metadata/<mouse> [--neuron-scale 0.1]
    python scripts/make_sample.py OUT --responses sparse   # ~10% non-zero responses

A twin has the real mouse's name, trial ids, tiers, frame counts and neurons; at full
scale it is as large as the real mouse (about 7 GB) and takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from sensorium_zarr.testing import DEFAULT_ACTIVE_FRACTION, RESPONSE_KINDS, twin_spec, write_mouse, write_sample_tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the mouse folders or zips into")
    parser.add_argument(
        "--twin", type=Path, metavar="METADATA_DIR",
        help="real-metadata/<mouse>/ folder (basic.json, trials.csv, neurons.csv) to imitate; "
        "without it, write the built-in two-mouse sample",
    )
    parser.add_argument(
        "--neuron-scale", type=float, default=1.0, help="twin: fraction of neurons kept"
    )
    parser.add_argument(
        "--trial-scale", type=float, default=1.0, help="twin: fraction of trials kept per tier"
    )
    parser.add_argument(
        "--t-pad", type=int, default=None, help="twin: frames per trial (default: the real one)"
    )
    parser.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="twin: file dtype"
    )
    parser.add_argument(
        "--responses", choices=RESPONSE_KINDS, default="dense",
        help="dense traces (a small baseline, almost no zero) or sparse ones (exact zeros but "
        "for --active-fraction of the values, like the release's deconvolved traces)",
    )
    parser.add_argument(
        "--active-fraction", type=float, default=DEFAULT_ACTIVE_FRACTION,
        help=f"sparse responses: share of non-zero values (default {DEFAULT_ACTIVE_FRACTION})",
    )
    parser.add_argument("--zip", action="store_true", help="twin: write a zip (with __MACOSX junk)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace mice already in OUT")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        if args.twin is None:
            paths = write_sample_tree(
                args.out,
                seed=args.seed,
                overwrite=args.overwrite,
                responses=args.responses,
                active_fraction=args.active_fraction,
            )
        else:
            spec = twin_spec(
                args.twin,
                neuron_scale=args.neuron_scale,
                trial_scale=args.trial_scale,
                t_pad=args.t_pad,
                dtype=args.dtype,
                seed=args.seed,
                responses=args.responses,
                active_fraction=args.active_fraction,
            )
            paths = [write_mouse(spec, args.out, as_zip=args.zip, overwrite=args.overwrite)]
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"make_sample: {e}", file=sys.stderr)
        return 1
    for path in paths:
        trials, neurons, size = _summary(path)
        print(f"{path}: {trials} trials, {neurons} neurons, {size:,} bytes")
    print(f"written in {time.perf_counter() - start:.1f} s")
    return 0


def _summary(path: Path) -> tuple[int, int, int]:
    """Trial files, neurons and bytes of a written mouse, read back from disk."""
    if path.is_dir():
        trials = len(list((path / "data" / "responses").glob("*.npy")))
        neurons = len(np.load(path / "meta" / "neurons" / "unit_ids.npy"))
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return trials, neurons, size
    top = path.name.removesuffix(".zip")
    with zipfile.ZipFile(path) as zf:
        names = [PurePosixPath(n) for n in zf.namelist()]
        trials = sum(1 for n in names if n.parent == PurePosixPath(top, "data", "responses"))
        with zf.open(f"{top}/meta/neurons/unit_ids.npy") as f:
            neurons = len(np.load(f))
    return trials, neurons, os.path.getsize(path)


if __name__ == "__main__":
    sys.exit(main())
