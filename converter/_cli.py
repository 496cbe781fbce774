"""Command line: ``sensorium-zarr convert|verify|info``. Entry point: ``main``.

Errors in the input end the run with one ``error:`` line and exit status 2; an
interrupted run exits 130 and leaves no store behind.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sensorium_zarr import format as fmt
from sensorium_zarr._engine import ENGINES
from sensorium_zarr._store import StoreHandle, open_store
from sensorium_zarr.errors import SensoriumZarrError

from ._chunking import Chunking
from ._convert import convert_mouse
from ._source import find_sources
from ._verify import verify

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sensorium-zarr", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="convert mouse folders or zips into Zarr stores")
    convert.add_argument("sources", nargs="+", type=Path, help="mouse folder, mouse .zip, or a folder of them")
    convert.add_argument("--out", required=True, type=Path, help="folder that receives <mouse>.zarr stores")
    convert.add_argument("--overwrite", action="store_true", help="replace complete stores already there")
    convert.add_argument("--workers", type=int, default=None, help="threads (default: one per core)")
    convert.add_argument("--float32", action="store_true", help="LOSSY: store float64 sources as float32")
    convert.add_argument("--trials-per-shard", type=int, default=Chunking.trials_per_shard)
    convert.add_argument("--neurons-per-chunk", type=int, default=Chunking.neurons_per_chunk)
    convert.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    convert.add_argument("--verify", action="store_true", help="verify each store against its source after converting")
    convert.add_argument("--engine", choices=ENGINES, default=None,
                         help="chunk codec pipeline (default: zarrs if installed, else zarr)")

    check = commands.add_parser("verify", help="compare a store with its source, value by value")
    check.add_argument("source", type=Path)
    check.add_argument("store", type=Path)
    check.add_argument("--workers", type=int, default=None)
    check.add_argument("--engine", choices=ENGINES, default=None)

    info = commands.add_parser("info", help="print a summary of stores")
    info.add_argument("stores", nargs="+", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "convert":
            return _convert(args)
        if args.command == "verify":
            return _verify(args.source, args.store, args.workers, args.engine)
        for store in args.stores:
            print(summarize(store))
        return 0
    except SensoriumZarrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no store was left half-written", file=sys.stderr)
        return 130


def _convert(args: argparse.Namespace) -> int:
    chunking = Chunking(trials_per_shard=args.trials_per_shard, neurons_per_chunk=args.neurons_per_chunk)
    status = 0
    for source in find_sources(args.sources):
        store = convert_mouse(
            source,
            args.out,
            overwrite=args.overwrite,
            workers=args.workers,
            progress=False if args.no_progress else None,
            chunking=chunking,
            float32=args.float32,
            engine=args.engine,
        )
        print(store)
        if args.verify:
            status = max(status, _verify(source, store, args.workers, args.engine))
    return status


def _verify(source: Path, store: Path, workers: int | None, engine: str | None) -> int:
    problems = verify(source, store, workers=workers, engine=engine)
    for problem in problems:
        print(f"mismatch: {problem}")
    print(f"{store}: {'OK, identical to ' + str(source) if not problems else f'{len(problems)} mismatches'}")
    return 1 if problems else 0


def summarize(store: Path | str) -> str:
    """A few lines about a store: trials per tier, shapes, dtypes, size on disk."""
    root, attrs = open_store(store)
    handle = StoreHandle(Path(store), root)
    tiers = ", ".join(f"{t} {handle.array(f'{fmt.INDEX_GROUP}/{t}').shape[0]}" for t in attrs.tiers)
    withheld = int((~handle.read(fmt.HAS_RESPONSES)).sum())
    size = sum(p.stat().st_size for p in Path(store).rglob("*") if p.is_file())
    dtypes = ", ".join(f"{v} {d}" for v, d in attrs.stored_dtypes.items())
    return "\n".join([
        f"{attrs.mouse}  ({store})",
        f"  {attrs.n_trials} trials, {attrs.n_neurons} neurons, {attrs.t_pad} frames (padded) at {attrs.frame_rate} Hz",
        f"  tiers: {tiers}",
        f"  withheld responses: {withheld} trials; dtypes: {dtypes}",
        f"  {size / 2**20:.1f} MiB on disk; format v{attrs.format_version}, converter {attrs.converter_version}",
    ])
