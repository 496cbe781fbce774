"""Command line: ``sensorium-zarr convert|verify|info``. Entry point: ``main``.

Bad input, a bad option or an output that cannot be written end the run with one
``error:`` line and exit status 2; Ctrl-C exits 130 and SIGTERM 143, each with one line,
and none of them leaves a store or a partial folder behind.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from sensorium_zarr import format as fmt
from sensorium_zarr._engine import ENGINES
from sensorium_zarr._store import StoreHandle, open_store
from sensorium_zarr.errors import SensoriumZarrError

from ._chunking import Chunking, positive_int
from ._convert import convert_mouse
from ._output import check_out_dir, check_url
from ._source import find_sources
from ._verify import verify

__all__ = ["main"]


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C, so the same cleanup runs."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line like every other error; the usage is one --help away.
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _count(name: str) -> Any:
    """An argparse type: an integer of at least 1, checked as the API checks it."""
    def parse(text: str) -> int:
        try:
            return positive_int(int(text), name)
        except ValueError:  # not a number, or OptionError
            raise argparse.ArgumentTypeError(f"must be an integer of at least 1, got {text!r}") from None
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sensorium-zarr", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="convert mouse folders or zips into Zarr stores")
    convert.add_argument("sources", nargs="+", help="mouse folder, mouse .zip, or a folder of them")
    # A string, not a Path: pathlib would fold "s3://bucket" into "s3:/bucket".
    convert.add_argument("--out", required=True, help="folder that receives <mouse>.zarr stores")
    convert.add_argument("--overwrite", action="store_true", help="replace complete stores already there")
    convert.add_argument("--workers", type=_count("--workers"), default=None, help="threads (default: one per core)")
    convert.add_argument("--float32", action="store_true", help="LOSSY: store float64 sources as float32")
    convert.add_argument("--trials-per-shard", type=_count("--trials-per-shard"), default=Chunking.trials_per_shard,
                         help="trials per shard file (at most the mouse's trials are used)")
    convert.add_argument("--neurons-per-chunk", type=_count("--neurons-per-chunk"),
                         default=Chunking.neurons_per_chunk)
    convert.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    convert.add_argument("--verify", action="store_true", help="verify each store against its source after converting")
    convert.add_argument("--engine", choices=ENGINES, default=None,
                         help="chunk codec pipeline (default: zarrs if installed, else zarr)")

    check = commands.add_parser("verify", help="compare a store with its source, value by value")
    check.add_argument("source")
    check.add_argument("store")
    check.add_argument("--workers", type=_count("--workers"), default=None)
    check.add_argument("--engine", choices=ENGINES, default=None)

    info = commands.add_parser("info", help="print a summary of stores")
    info.add_argument("stores", nargs="+")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        with _sigterm_unwinds():
            return _run(args)
    except SensoriumZarrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated: no store was left half-written", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted: no store was left half-written", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "convert":
        for source in args.sources:
            check_url(source, "give a local mouse folder or zip")
        check_out_dir(args.out)
        return _convert(args)
    if args.command == "verify":
        check_url(args.source, "give a local mouse folder or zip")
        check_url(args.store, "give a local store folder")
        return _verify(Path(args.source), Path(args.store), args.workers, args.engine)
    for store in args.stores:
        check_url(store, "give a local store folder")
    for store in args.stores:
        print(summarize(Path(store)))
    return 0


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While the command runs, SIGTERM (schedulers, ``timeout``, containers) raises
    ``Terminated`` in the main thread, as Ctrl-C raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one cleanup, however many signals
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _convert(args: argparse.Namespace) -> int:
    chunking = Chunking(trials_per_shard=args.trials_per_shard, neurons_per_chunk=args.neurons_per_chunk)
    status = 0
    for source in find_sources([Path(s) for s in args.sources]):
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

