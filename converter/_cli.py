"""Command line: ``sensorium-zarr convert|verify|info``. Entry point: ``main``.

Bad input, a bad option or an output that cannot be written end the run with one
``error:`` line and exit status 2; Ctrl-C exits 130 and SIGTERM 143, each with one line,
and none of them leaves a store or a partial folder behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from sensorium_zarr import format as fmt
from sensorium_zarr._engine import ENGINES
from sensorium_zarr._location import Remote, is_url
from sensorium_zarr._store import StoreHandle, open_store
from sensorium_zarr.errors import SensoriumZarrError

from ._chunking import Chunking, positive_int
from ._convert import convert_all, convert_mouse
from ._output import check_out, check_url
from ._source import find_sources
from ._verify import FLOAT32_OPTION, verify

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


def _percent(name: str) -> Any:
    """An argparse type: an integer from 0 to 100."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer from 0 to 100, got {text!r}") from None
        if not 0 <= value <= 100:
            raise argparse.ArgumentTypeError(f"must be an integer from 0 to 100, got {text!r}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sensorium-zarr", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="convert mouse folders or zips into Zarr stores")
    convert.add_argument("sources", nargs="+",
                         help="mouse folder, mouse .zip, or a folder of them; on disk or a URL "
                         "(s3://bucket/path/mouse.zip, s3://bucket/path/mouse/, s3://bucket/path/), read by range")
    # A string, not a Path: pathlib would fold "s3://bucket" into "s3:/bucket".
    convert.add_argument("--out", required=True,
                         help="folder or URL (s3://bucket/prefix, gs://, az://) that receives <mouse>.zarr stores; "
                         "credentials and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, "
                         "AWS_REGION")
    convert.add_argument("--overwrite", action="store_true", help="replace complete stores already there")
    convert.add_argument("--skip-existing", action="store_true",
                         help="keep complete stores already there and convert only the missing mice")
    convert.add_argument("--scheduler", default=None,
                         help="address of a dask.distributed scheduler (tcp://host:8786): convert all mice at once "
                         "on its cluster")
    convert.add_argument("--workers", type=_count("--workers"), default=None, help="threads (default: one per core)")
    convert.add_argument("--float32", action="store_true", help="LOSSY: store float64 sources as float32")
    convert.add_argument("--trials-per-shard", type=_count("--trials-per-shard"), default=Chunking.trials_per_shard,
                         help="trials per shard file (at most the mouse's trials are used)")
    convert.add_argument("--neurons-per-chunk", type=_count("--neurons-per-chunk"),
                         default=Chunking.neurons_per_chunk)
    convert.add_argument("--frames-per-response-chunk", type=_count("--frames-per-response-chunk"), default=None,
                         help="cut response chunks along time too, so a window of frames decodes only its chunks "
                         "(for training; one neuron across trials then decodes more; default: every frame)")
    convert.add_argument("--min-blosc-saving", type=_percent("--min-blosc-saving"),
                         default=Chunking.min_blosc_saving,
                         help="store a variable uncoded (no Blosc: copied, not decoded, on read) when Blosc saves less "
                         "than this percentage of its first trials' bytes; 0: always Blosc (default: %(default)s)")
    convert.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    convert.add_argument("--verify", action="store_true", help="verify each store against its source after converting")
    convert.add_argument("--engine", choices=ENGINES, default=None,
                         help="codec pipeline that encodes (default: zarr-python's; native reads only)")

    check = commands.add_parser("verify", help="compare a store with its source, value by value")
    check.add_argument("source", help="mouse folder or .zip, on disk or a URL")
    check.add_argument("store", help="store folder or URL")
    check.add_argument("--workers", type=_count("--workers"), default=None)
    check.add_argument("--engine", choices=ENGINES, default=None)

    info = commands.add_parser("info", help="print a summary of stores")
    info.add_argument("stores", nargs="+", help="store folders or URLs")
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


def entry(argv: list[str] | None = None) -> NoReturn:
    """The ``sensorium-zarr`` command: ``main``'s status as the process's exit status.

    Once obstore has run (object storage), the process ends without Python's
    finalization: obstore's client threads outlive ``main``, and one that runs on while
    the interpreter is torn down now and then aborts the process (SIGABRT, after the
    command had printed its result). Everything ``main`` writes is written and closed
    when it returns; its output streams are flushed here."""
    code = main(argv)
    if "obstore" not in sys.modules:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _run(args: argparse.Namespace) -> int:
    if args.command == "convert":
        for source in args.sources:
            if not is_url(source):
                check_url(source, "")  # a folded URL
        check_out(args.out)
        return _convert(args)
    if args.command == "verify":
        if not is_url(args.source):
            check_url(args.source, "")  # a folded URL
        return _verify(_store_arg(args.source), _store_arg(args.store), args.workers, args.engine)
    for store in args.stores:
        print(summarize(_store_arg(store)))
    return 0


def _store_arg(text: str) -> Path | Remote:
    if is_url(text):
        return Remote.of(text)
    check_url(text, "")  # a folded URL
    return Path(text)


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
    chunking = Chunking(trials_per_shard=args.trials_per_shard, neurons_per_chunk=args.neurons_per_chunk,
                        frames_per_response_chunk=args.frames_per_response_chunk,
                        min_blosc_saving=args.min_blosc_saving)
    # Strings, not Paths: pathlib would fold "s3://bucket" into "s3:/bucket".
    sources = find_sources(args.sources)
    options: dict[str, Any] = dict(
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        workers=args.workers,
        progress=False if args.no_progress else None,
        chunking=chunking,
        float32=args.float32,
        engine=args.engine,
    )
    status = 0
    if args.scheduler:
        from distributed import Client

        with Client(args.scheduler) as client:  # type: ignore[no-untyped-call]
            stores = convert_all(sources, args.out, client=client, **options)
        for source, store in zip(sources, stores, strict=True):
            print(store)
            if args.verify:
                status = max(status, _verify(source, store, args.workers, args.engine))
        return status
    # One mouse after another, each store named as soon as it is complete.
    for source in sources:
        store = convert_mouse(source, args.out, **options)
        print(store)
        if args.verify:
            status = max(status, _verify(source, store, args.workers, args.engine))
    return status


def _verify(source: Path | Remote, store: Path | Remote, workers: int | None, engine: str | None) -> int:
    problems = verify(source, store, workers=workers, engine=engine)
    for problem in problems:
        print(f"mismatch: {problem}")
    if problems:
        print(f"{store}: {len(problems)} mismatches")
        return 1
    _, attrs = open_store(store)
    if attrs.lossy:
        print(f"{store}: OK, equal to {source} within the lossy option {_lossy(attrs.lossy)}")
    else:
        print(f"{store}: OK, identical to {source}")
    return 0


def _lossy(options: tuple[str, ...]) -> str:
    """How messages name the lossy options: ``--float32``'s by its flag's name."""
    return ", ".join("float32 (float64 values rounded to float32)" if o == FLOAT32_OPTION else repr(o)
                     for o in options)


def summarize(store: Path | str | Remote) -> str:
    """A few lines about a store: trials per tier, shapes, dtypes, size on disk (or in
    the bucket)."""
    target = store if isinstance(store, Remote) else Remote.of(str(store)) if is_url(store) else Path(store)
    root, attrs = open_store(target)
    handle = StoreHandle(target, root)
    tiers = ", ".join(f"{t} {handle.array(f'{fmt.INDEX_GROUP}/{t}').shape[0]}" for t in attrs.tiers)
    withheld = int((~handle.read(fmt.HAS_RESPONSES)).sum())
    if isinstance(target, Remote):
        import obstore

        size = sum(int(m["size"]) for batch in obstore.list(target.objects()) for m in batch)
        where = "in the store"
    else:
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        where = "on disk"
    dtypes = ", ".join(
        f"{v} {d}" + (" (stored as uint8)" if v in attrs.uint8_variables else "")
        for v, d in attrs.stored_dtypes.items()
    )
    return "\n".join([
        f"{attrs.mouse}  ({store})",
        f"  {attrs.n_trials} trials, {attrs.n_neurons} neurons, {attrs.t_pad} frames (padded) at {attrs.frame_rate} Hz",
        f"  tiers: {tiers}",
        f"  withheld responses: {withheld} trials; dtypes: {dtypes}",
        f"  {size / 2**20:.1f} MiB {where}; format v{attrs.format_version}, converter {attrs.converter_version}",
        f"  LOSSY: {_lossy(attrs.lossy)}; values are not the source's exactly" if attrs.lossy
        else "  lossless: every value as in the source",
    ])

