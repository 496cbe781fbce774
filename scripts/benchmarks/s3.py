"""The --s3 rows: the benchmark's store in a bucket of a real S3 server (SeaweedFS on
127.0.0.1, ``scripts/s3server.py``, the tests' server) against the same store on local
disk, in the same run: requests to open a mouse, one trial, streaming.

Requests are counted where the server receives them: ``CountingProxy`` is a plain HTTP
proxy on 127.0.0.1 in front of the gateway that forwards every request unchanged (a
signed request's Host header is the proxy's, as the client signed it) and records when
each began and ended, so the count includes whatever the reader asks obstore for directly
(the HEAD of the completion check) as well as zarr's reads. Timed rows talk to the
gateway directly, without the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import resource
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sensorium_zarr as reader
from sensorium_zarr._location import Remote
from sensorium_zarr.converter import convert_mouse
from sensorium_zarr.testing import sample_spec, write_mouse

from . import rows
from .cache import files_under, read_all
from .children import psutil_module
from .report import Report
from .sides import Sides, check_same
from .timing import log, median_time, paired, usable_cores

BUCKET = "sensorium-bench"
#: Threads uploading the store's files (obstore's put is one request per call).
UPLOAD_THREADS = 8
#: Opens counted per store: the count must not change from one to the next.
OPENS = 3
#: Headers that describe one hop's framing, not the request or response.
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    start: float
    end: float
    #: The bytes of the response's body (0 for a HEAD).
    nbytes: int = 0
    #: The request's Range header, if it had one.
    range: str | None = None


class CountingProxy:
    """An HTTP proxy on 127.0.0.1 forwarding to ``upstream`` (``http://host:port``) and
    recording every request it forwards; a context manager."""

    def __init__(self, upstream: str, delay: float = 0.0) -> None:
        host, port = upstream.removeprefix("http://").rstrip("/").split(":")
        self.upstream = (host, int(port))
        #: Seconds each request waits before it is forwarded (settable): requests made at
        #: once then overlap for certain, so ``most_in_flight`` tells them from serial ones.
        self.delay = delay
        #: Called with each request's method and target before it is forwarded, in the
        #: thread serving it (settable; a test changes the store while a request waits).
        self.hold: Callable[[str, str], None] | None = None
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                start = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    self.send_error(501, "chunked request bodies are not forwarded")
                    return
                body = self.rfile.read(length) if length else None
                if proxy.delay:
                    time.sleep(proxy.delay)
                if proxy.hold is not None:
                    proxy.hold(self.command, self.path)
                status, reason, headers, data = proxy._send(self.command, self.path, self.headers.items(), body)
                # Recorded before the client can see the answer, so a request always counts
                # in the block (``counting``) that made it.
                proxy._record(Request(self.command, self.path, start, time.perf_counter(),
                                      0 if self.command == "HEAD" else len(data), self.headers.get("Range")))
                self.send_response_only(status, reason)
                for k, v in headers:
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                if self.command == "HEAD":
                    self.send_header("Content-Length", dict((k.lower(), v) for k, v in headers).get(
                        "content-length", "0"))
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the record is the log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _send(self, method: str, target: str, headers: Any, body: bytes | None
              ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        for attempt in (0, 1):
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    if k.lower() not in _HOP:
                        conn.putheader(k, v)
                conn.endheaders(body)
                response = conn.getresponse()
                data = response.read()
                return response.status, response.reason, response.getheaders(), data
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    @contextmanager
    def counting(self) -> Iterator[list[Request]]:
        """The requests received while the block runs (filled in when it ends)."""
        with self._lock:
            first = len(self.requests)
        got: list[Request] = []
        try:
            yield got
        finally:
            with self._lock:
                got.extend(self.requests[first:])

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def most_in_flight(requests: list[Request]) -> int:
    """The most requests that were under way at one moment (1: one after another)."""
    events = sorted([(r.start, 1) for r in requests] + [(r.end, -1) for r in requests], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def upload(store: Path, remote: Remote) -> tuple[int, int]:
    """Every file of the local store ``store`` put under ``remote``: (files, bytes)."""
    import obstore

    objects = remote.objects()
    files = files_under(store)

    def put(path: Path) -> int:
        data = path.read_bytes()
        obstore.put(objects, path.relative_to(store).as_posix(), data)
        return len(data)

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        nbytes = sum(pool.map(put, files))
    return len(files), nbytes


def s3_pair(row_id: str, remote: Sides, local: Sides) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Rows s3t and s3s: the row's ``ours`` method of ``Sides`` on the store in the bucket,
    its ``baseline`` (the same method) on the local store: one reader call, two stores."""
    row = rows.row(row_id)
    if row.ours is None or row.baseline is None:
        raise ValueError(f"row {row_id} names no sides to compare")
    return remote.method(row.ours), local.method(row.baseline)


def _span(header: str | None) -> tuple[int, int] | int | None:
    """A ``Range: bytes=a-b`` header as (start, end), ``bytes=-n`` as n (a suffix), none as None."""
    if not header:
        return None
    first, last = header.removeprefix("bytes=").split("-")
    return int(last) if not first else (int(first), int(last) + 1)


def _key(target: str, bucket: str) -> str:
    """The object key of a path-style request target (``/bucket/key?query``)."""
    return urllib.parse.unquote(target.split("?")[0]).split(f"/{bucket}/", 1)[1]


async def _fetch_bare(objects: Any, request: Request, bucket: str) -> int:
    """``request`` made again with obstore, its body read and dropped: its bytes."""
    import obstore

    key, span = _key(request.target, bucket), _span(request.range)
    if request.method == "HEAD":
        await obstore.head_async(objects, key)
        return 0
    if isinstance(span, tuple):
        return len(await obstore.get_range_async(objects, key, start=span[0], end=span[1]))
    options = {"range": {"suffix": span}} if isinstance(span, int) else None
    return len(await (await obstore.get_async(objects, key, options=options)).bytes_async())


def replay(objects: Any, requests: list[Request], in_flight: int, bucket: str = BUCKET) -> int:
    """The recorded ``requests`` (GETs of byte ranges, HEADs) made again at once, at most
    ``in_flight`` under way, with nothing done with the bytes: the floor any reader of
    those bytes through this server has (``objects``: an obstore store rooted at the
    ``bucket`` the requests went to). Returns the bytes fetched, which must be the
    recorded responses' (RuntimeError otherwise: the floor would not be of the same reads)."""

    async def run() -> int:
        limit = asyncio.Semaphore(max(1, in_flight))

        async def one(request: Request) -> int:
            async with limit:
                return await _fetch_bare(objects, request, bucket)

        return sum(await asyncio.gather(*(one(r) for r in requests)))

    fetched = asyncio.run(run())
    recorded = sum(r.nbytes for r in requests)
    if fetched != recorded:
        raise RuntimeError(f"replayed requests fetched {fetched} bytes, the recorded ones {recorded}")
    return fetched


def request_kinds(requests: list[Request]) -> str:
    """'5 HEAD zarr.json, 3 GET chunk': what the requests asked for, most common first."""
    kinds = Counter(f"{r.method} {'zarr.json' if r.target.split('?')[0].endswith('/zarr.json') else 'chunk'}"
                    for r in requests)
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())


def request_keys(requests: list[Request], store_name: str) -> list[str]:
    """'METHOD key' of each request, the key relative to the store."""
    return [f"{r.method} {r.target.split('?')[0].split(store_name + '/', 1)[-1]}" for r in requests]


def _open_requests(url: str, options: dict[str, Any], proxy: CountingProxy) -> tuple[list[int], int, list[Request]]:
    """Requests of ``OPENS`` opens of the mouse at ``url`` (through the proxy): the count of
    each, the most in flight in any, and the last open's requests."""
    counts, in_flight, last = [], 0, []
    for _ in range(OPENS):
        with proxy.counting() as got:
            reader.open_mouse(url, storage_options={**options, "endpoint": proxy.endpoint})
        counts.append(len(got))
        in_flight = max(in_flight, most_in_flight(got))
        last = got
    return counts, in_flight, last


def small_store(folder: Path) -> Path:
    """A store of another shape than the benchmark's (20 trials, few neurons), converted on disk."""
    source = write_mouse(sample_spec("dynamic00002-1-1-Video-bench", n_neurons=23, n_trials=20, t_pad=30,
                                     height=6, width=8), folder / "small-source")
    return Path(convert_mouse(source, folder / "small-store", progress=False))


def cpu_of(fn: Callable[[], Any], server_pid: int) -> tuple[float, float, float, float]:
    """(wall seconds, this process's CPU seconds, the user-space part of them, the
    server's CPU seconds) of ``fn()``."""
    server = psutil_module().Process(server_pid)

    def server_cpu() -> float:
        times = server.cpu_times()
        return float(times.user + times.system)

    def own() -> tuple[float, float]:
        # Both from one call, so the user-space part never exceeds the whole.
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime, usage.ru_utime

    wall, (cpu, user), before = time.perf_counter(), own(), server_cpu()
    fn()
    after, after_user = own()
    return time.perf_counter() - wall, after - cpu, after_user - user, server_cpu() - before


def measure_s3(args: argparse.Namespace, sides: Sides, store: Path, endpoint: str, options: dict[str, Any],
               work: Path, report: Report, picks: list[int], server_pid: int | None = None) -> None:
    """Rows s3u, s3o, s3ot, s3t, s3tf, s3s, s3sf, against the S3 server at ``endpoint``
    (``server_pid``: its process, for row s3s's CPU accounting)."""
    url = f"s3://{BUCKET}/{store.name}"
    remote = Remote.of(url, options)
    files = files_under(store)
    t_read = median_time(lambda: read_all(files), args.repeats)
    log(f"uploading the store to {url} ({len(files)} files)")
    started = time.perf_counter()
    n_files, nbytes = upload(store, remote)
    t_upload = time.perf_counter() - started
    report.add("s3u", t_upload, t_read, files=n_files, threads=UPLOAD_THREADS, rate_mbs=nbytes / t_upload / 1e6,
               base_rate_mbs=nbytes / t_read / 1e6)

    small = small_store(work)
    small_url = f"s3://{BUCKET}/{small.name}"
    upload(small, Remote.of(small_url, options))
    with CountingProxy(endpoint) as proxy:
        counts, in_flight, requests = _open_requests(url, options, proxy)
        other_counts, other_in_flight, _ = _open_requests(small_url, options, proxy)
        mouse = reader.open_mouse(url, storage_options={**options, "endpoint": proxy.endpoint})
        trial = mouse.split("train")
        trial.trial(0)  # the split's own metadata reads, once
        per_pick = {}
        for k in dict.fromkeys(picks):  # row s3tf replays what each trial read asked for
            with proxy.counting() as asked:
                trial.trial(k)
            per_pick[k] = list(asked)
        got = per_pick[picks[0]]
        trial_requests, trial_in_flight = len(got), most_in_flight(got)
        log("counting the requests of one streaming pass (through the proxy, untimed)")
        with proxy.counting() as streamed_requests:
            Sides(mouse, sides.source).our_stream()
    small_mouse = reader.open_mouse(small)
    log(f"open: {counts} requests ({request_kinds(requests)}), {other_counts} on the small store; "
        f"one trial: {trial_requests} ({request_kinds(got)})")
    report.add("s3o", max(counts), max(other_counts), trials=sides.mouse.n_trials, other_trials=small_mouse.n_trials,
               tiers=len(sides.mouse.attrs.tiers), other_tiers=len(small_mouse.attrs.tiers), opens=OPENS,
               counts="/".join(map(str, counts)), other_counts="/".join(map(str, other_counts)),
               in_flight=in_flight, other_in_flight=other_in_flight, requests=request_kinds(requests))
    report.note(f"row s3o: the {OPENS} opens of each store received {'/'.join(map(str, counts))} and "
                f"{'/'.join(map(str, other_counts))} requests; one `split.trial(k)` on the bucket's store "
                f"afterwards received {trial_requests} ({request_kinds(got)}; {trial_in_flight} at most in flight at "
                f"once). The last open's requests, in order: {', '.join(request_keys(requests, store.name))}.")

    def open_remote(_: object) -> reader.Mouse:
        return reader.open_mouse(url, storage_options=options)

    def open_local(_: object) -> reader.Mouse:
        return reader.open_mouse(store)

    t_ours, t_base, _, _ = paired(open_remote, open_local, range(args.trial_repeats))
    report.add("s3ot", t_ours, t_base)

    in_bucket = Sides(reader.open_mouse(url, storage_options=options, engine=args.engine), sides.source)
    ours, base = s3_pair("s3t", in_bucket, sides)
    log(f"row s3t: one trial, S3 vs local disk ({len(picks)} repetitions)")
    t_ours, t_base, r_ours, r_base = paired(ours, base, picks, warm_up=True)
    check_same("row s3t", r_ours, r_base, rtol=rows.row("s3t").rtol, atol=rows.row("s3t").atol)
    report.add("s3t", t_ours, t_base, requests=trial_requests)
    bucket = Remote.of(f"s3://{BUCKET}", options).objects()
    log(f"row s3tf: one trial's requests replayed bare ({len(picks)} repetitions)")
    t_floor, t_local, _, _ = paired(lambda k: replay(bucket, per_pick[k], len(per_pick[k])), base, picks)
    report.add("s3tf", t_floor, t_local, requests=trial_requests,
               fetched_kb=sum(r.nbytes for r in got) / 1e3)
    _out_of_reach(report, "s3t", t_floor / t_local, "fetching one trial's bytes alone (row s3tf) takes "
                  f"{t_floor / t_local:.2f}x the local trial, before the reader does anything with them")
    if server_pid is not None:
        _trial_cpu(report, bucket, per_pick, picks, ours, base, server_pid, t_base)

    ours, base = s3_pair("s3s", in_bucket, sides)
    log(f"row s3s: streaming the train split, S3 vs local disk ({args.repeats} repetitions)")
    t_ours, t_base, r_ours, r_base = paired(ours, base, range(args.repeats), warm_up=True)
    check_same("row s3s", r_ours, r_base, rtol=rows.row("s3s").rtol, atol=rows.row("s3s").atol)
    streamed = sides.streamed_bytes()
    report.add("s3s", t_ours, t_base, rate_mbs=streamed / t_ours / 1e6, base_rate_mbs=streamed / t_base / 1e6,
               requests=len(streamed_requests), in_flight=most_in_flight(streamed_requests))
    log(f"row s3sf: the streaming pass's requests replayed bare ({args.repeats} repetitions)")
    streamed_in_flight = most_in_flight(streamed_requests)
    t_floor, t_local, _, _ = paired(lambda _: replay(bucket, streamed_requests, streamed_in_flight), base,
                                    range(args.repeats))
    fetched = sum(r.nbytes for r in streamed_requests)
    report.add("s3sf", t_floor, t_local, requests=len(streamed_requests), in_flight=streamed_in_flight,
               fetched_mb=fetched / 1e6, rate_mbs=fetched / t_floor / 1e6)
    _out_of_reach(report, "s3s", t_local / t_floor, "fetching the stream's bytes alone (row s3sf), with no "
                  f"decoding or arithmetic, goes at {t_local / t_floor:.2f} of the local streaming rate")
    if server_pid is not None:
        _stream_cpu(report, bucket, streamed_requests, streamed_in_flight, ours, base, server_pid, t_base)
    report.note(f"row s3s: one streaming pass made {len(streamed_requests)} requests "
                f"({request_kinds(streamed_requests)}), at most {most_in_flight(streamed_requests)} in flight at once "
                f"(counted through the proxy in an untimed pass).")


def _out_of_reach(report: Report, row_id: str, floor_ratio: float, why: str) -> None:
    """A note that ``row_id``'s target is out of reach, if its floor row's ratio misses it
    by more than the noise (``rows.NOISE``)."""
    target = rows.row(row_id).target
    if target is not None and target.missed_past_noise(floor_ratio):
        report.note(f"{rows.ref(row_id)}'s target ({target.cell(rows.row(row_id))}) is out of reach with this server "
                    f"on this machine: {why}.")


#: Passes over row s3t's trials for its CPU accounting (the server's CPU time is counted
#: in clock ticks: enough trials that a tick is a small share of it).
TRIAL_CPU_PASSES = 3


@dataclass
class _CpuSum:
    """One run of each side of an s3 row and of its requests replayed bare (``_cpu_sum``),
    per item: wall and CPU seconds, the server's CPU besides the client's."""

    s3_wall: float
    s3_cpu: float
    s3_server: float
    local_wall: float
    local_cpu: float
    local_user: float
    client_replay: float
    server_replay: float
    cores: int

    @property
    def bound(self) -> float:
        """Serving and receiving the requests plus the local side's user-space CPU (its
        checks, decoding, arithmetic and bookkeeping, without the system time of its reads
        from the page cache, which a reader from a bucket replaces by receiving), over
        the cores: the least wall time a reader making these requests through obstore
        and doing the local side's work can take on them."""
        return (self.server_replay + self.client_replay + self.local_user) / self.cores

    def terms(self, scale: float) -> str:
        """The bound's sum written out, each term times ``scale`` (1e3: milliseconds)."""
        return (f"({self.server_replay * scale:.3f} + {self.client_replay * scale:.3f} + "
                f"{self.local_user * scale:.3f}) / {self.cores} = {self.bound * scale:.3f}")


def _cpu_sum(replayed: Callable[[], Any], local: Callable[[], Any], from_bucket: Callable[[], Any],
             server_pid: int, items: int = 1) -> _CpuSum:
    """The CPU of ``replayed`` (the requests, bare), ``local`` and ``from_bucket``, run in
    that order, on both sides of the server, per one of ``items``."""
    _, client_replay, _, server_replay = (x / items for x in cpu_of(replayed, server_pid))
    local_wall, local_cpu, local_user, _ = (x / items for x in cpu_of(local, server_pid))
    s3_wall, s3_cpu, _, s3_server = (x / items for x in cpu_of(from_bucket, server_pid))
    return _CpuSum(s3_wall, s3_cpu, s3_server, local_wall, local_cpu, local_user, client_replay, server_replay,
                   usable_cores())


def _trial_cpu(report: Report, bucket: Any, per_pick: dict[int, list[Request]], picks: list[int],
               ours: Callable[[Any], Any], base: Callable[[Any], Any], server_pid: int, row_base: float) -> None:
    """Row s3t's CPU accounting, as row s3s's (``_stream_cpu``), per trial: row s3t's
    trials read ``TRIAL_CPU_PASSES`` more times from the bucket and from local disk, and
    their requests replayed bare (row s3tf's); the note that row s3t's target is out of
    reach when the bound (``_CpuSum.bound``) misses it past the noise, against the slower
    of the local trials of this pass and of row s3t (``row_base``, seconds)."""
    trials = picks * TRIAL_CPU_PASSES

    def each(fn: Callable[[int], Any]) -> Callable[[], None]:
        def run() -> None:
            for k in trials:
                fn(k)
        return run

    c = _cpu_sum(each(lambda k: replay(bucket, per_pick[k], len(per_pick[k]))), each(base), each(ours), server_pid,
                 len(trials))
    ms = 1e3
    report.note(
        f"row s3t's CPU, its trials read {TRIAL_CPU_PASSES} more times on each side, per trial: from the bucket "
        f"{c.s3_wall * ms:.1f} ms of wall time, the reader {c.s3_cpu * ms:.1f} CPU ms and the server "
        f"{c.s3_server * ms:.1f}; from local disk {c.local_wall * ms:.3f} ms, {c.local_cpu * ms:.3f} CPU ms "
        f"({c.local_user * ms:.3f} of it in user space). Serving a trial's requests alone (row s3tf's replay) costs "
        f"the server {c.server_replay * ms:.2f} CPU ms and receiving them {c.client_replay * ms:.2f}, so on {c.cores} "
        f"cores serving and receiving a trial's requests and doing the local trial's user-space work (its checks, "
        f"decoding, arithmetic and bookkeeping; not its reads from the page cache, system time, which a reader from "
        f"a bucket does not make) take at least {c.terms(ms)} ms, {c.bound / c.local_wall:.2f}x the local trial.")
    ratio = c.bound / max(c.local_wall, row_base)
    _out_of_reach(report, "s3t", ratio, "serving and receiving one trial's requests and the local trial's "
                  "user-space work, on the cores the server shares with the reader, take at least "
                  f"{ratio:.2f}x the local trial (the CPU note above, against the slower of its local trial and row "
                  "s3t's)")


def _stream_cpu(report: Report, bucket: Any, requests: list[Request], in_flight: int, ours: Callable[[Any], Any],
                base: Callable[[Any], Any], server_pid: int, row_base: float) -> None:
    """Row s3s's CPU accounting, one untimed-for-the-ratio run of each: what the server
    spends to serve the stream's requests (the bare replay), what the local pass spends
    (in user space: its checks, decoding and arithmetic), and what the pass from the
    bucket spends on both sides. However well a reader overlaps fetching and computing,
    the two cores cannot do the server's work, the receiving and the local pass's in
    less than their sum over the cores; the note that row s3s's target is out of reach
    when that bound misses it past the noise, against the slower of the local passes of
    this run and of row s3s (``row_base``, seconds)."""
    c = _cpu_sum(lambda: replay(bucket, requests, in_flight), lambda: base(0), lambda: ours(0), server_pid)
    report.note(
        f"row s3s's CPU, one more run of each side: from the bucket {c.s3_wall:.2f} s of wall time, the reader "
        f"{c.s3_cpu:.2f} CPU s and the server {c.s3_server:.2f}; from local disk {c.local_wall:.3f} s, "
        f"{c.local_cpu:.3f} CPU s ({c.local_user:.3f} of it in user space). "
        f"Serving the stream's requests alone (row s3sf's replay) costs the server {c.server_replay:.2f} CPU s and "
        f"receiving them {c.client_replay:.2f}, so on {c.cores} cores serving and receiving the stream's requests and "
        f"doing the local pass's user-space work take at least {c.terms(1)} s, {c.local_wall / c.bound:.2f} of the "
        "local rate.")
    ratio = max(c.local_wall, row_base) / c.bound
    _out_of_reach(report, "s3s", ratio, "serving and receiving the stream's requests and the local pass's "
                  "user-space work, on the cores the server shares with the reader, allow at most "
                  f"{ratio:.2f} of the local rate (the CPU note above, against the slower of its local pass and row "
                  "s3s's)")
