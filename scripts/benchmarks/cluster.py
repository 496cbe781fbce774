"""The --cluster rows: several twins (one per real mouse of ``real-metadata/``) converted on
a ``dask.distributed`` ``LocalCluster`` of worker processes, as one workload
(``convert_all(..., client=)``) against one after another on the same cluster
(``convert_mouse(..., client=)`` per mouse): wall time, CPU use of the cores, peak RSS
per worker.

CPU use is the CPU seconds of this process (the client, and the LocalCluster's scheduler,
which runs in it) and of every process it started (nannies and workers) over wall time x
usable cores; the whole machine's share from /proc/stat is shown beside it, since other
tenants of a shared machine count there too. Peak RSS is each worker's own ``ru_maxrss``;
the workers are restarted before each run, so it is that run's peak.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import resource
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensorium_zarr.converter import convert_all, convert_mouse
from sensorium_zarr.testing import twin_spec, write_mouse

from .cache import bytes_on_disk, files_under, read_all
from .children import psutil_module
from .report import Report
from .timing import log, usable_cores


def twin_sources(args: argparse.Namespace, work: Path) -> list[Path]:
    """``args.cluster_mice`` twins at ``args.cluster_scale``, one per real mouse (in name
    order), generated into ``work/cluster-source`` or reused from an earlier run."""
    metadata = sorted(p for p in args.metadata.parent.iterdir() if (p / "basic.json").is_file())
    if len(metadata) < args.cluster_mice:
        raise SystemExit(f"--cluster-mice {args.cluster_mice}: {args.metadata.parent} holds {len(metadata)} mice")
    folder = work / "cluster-source"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for meta in metadata[: args.cluster_mice]:
        spec = twin_spec(meta, neuron_scale=args.cluster_scale, trial_scale=args.cluster_scale, responses="dense")
        target, marker = folder / spec.name, folder / f"{spec.name}.spec.sha256"
        wanted = hashlib.sha256(repr(spec).encode()).hexdigest()
        if not (target.is_dir() and marker.is_file() and marker.read_text().strip() == wanted):
            marker.unlink(missing_ok=True)
            log(f"cluster: generating a twin of {spec.name} at scale {args.cluster_scale} ({spec.n_trials} trials, "
                f"{spec.n_neurons} neurons)")
            write_mouse(spec, folder, overwrite=True)
            marker.write_text(wanted + "\n")
        paths.append(target)
    return paths


def _machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of every core, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


class _StageLog(logging.Handler):
    """The converter's ``<stage> stage: <s> s`` lines, with the thread that logged them
    (each mouse of ``convert_all`` runs in a thread of its own)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.stages: list[tuple[str, str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().strip()
        if " stage: " in message:
            name, seconds = message.split(" stage: ")
            self.stages.append((record.threadName or "", name, float(seconds.removesuffix(" s"))))


@dataclass(frozen=True)
class ClusterRun:
    seconds: float
    cpu_share: float
    machine_share: float
    peak_rss: list[int]
    stages: list[tuple[str, str, float]]


def _our_cpu_seconds(psutil: Any) -> float:
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _max_rss() -> int:
    """This process's peak RSS in bytes (run on each worker)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def timed_run(client: Any, cores: int, convert: Callable[[], Any]) -> ClusterRun:
    """``convert()`` on freshly restarted workers: wall time, CPU shares, per-worker peak RSS."""
    psutil = psutil_module()
    client.restart()
    handler = _StageLog()
    logger = logging.getLogger("sensorium_zarr")
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        cpu0, (busy0, total0) = _our_cpu_seconds(psutil), _machine_busy()
        started = time.perf_counter()
        convert()
        seconds = time.perf_counter() - started
        cpu1, (busy1, total1) = _our_cpu_seconds(psutil), _machine_busy()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    rss = sorted(client.run(_max_rss).values())
    return ClusterRun(seconds, (cpu1 - cpu0) / (seconds * cores), (busy1 - busy0) / max(1, total1 - total0), rss,
                      handler.stages)


def measure_cluster(args: argparse.Namespace, work: Path, report: Report) -> None:
    """Rows c1, c1cpu, c1rss."""
    from distributed import Client, LocalCluster

    sources = twin_sources(args, work)
    source_bytes = sum(bytes_on_disk(s)[1] for s in sources)
    cores = usable_cores()
    runs: dict[str, list[ClusterRun]] = {"all": [], "serial": []}
    outputs = {"all": work / "cluster-out-all", "serial": work / "cluster-out-serial"}

    def at_once() -> None:
        convert_all(sources, outputs["all"], client=client, progress=False, engine=args.engine)

    def one_by_one() -> None:
        for source in sources:
            convert_mouse(source, outputs["serial"], client=client, progress=False, engine=args.engine)

    log(f"cluster: {len(sources)} twins, {source_bytes / 1e9:.2f} GB of .npy, on a LocalCluster of "
        f"{args.cluster_workers} worker processes x 1 thread")
    with LocalCluster(n_workers=args.cluster_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        for k in range(args.cluster_repeats):
            order = [("all", at_once), ("serial", one_by_one)]
            for mode, convert in order if k % 2 == 0 else order[::-1]:
                read_all(f for s in sources for f in files_under(s))
                log(f"cluster: converting {'as one workload' if mode == 'all' else 'one after another'} "
                    f"({k + 1}/{args.cluster_repeats})")
                try:
                    runs[mode].append(timed_run(client, cores, convert))
                finally:
                    shutil.rmtree(outputs[mode], ignore_errors=True)
                r = runs[mode][-1]
                log(f"cluster: {r.seconds:.1f} s, CPU {r.cpu_share:.0%} of {cores} cores (machine "
                    f"{r.machine_share:.0%}), worker peak RSS {[f'{x / 2**30:.2f}' for x in r.peak_rss]} GiB")

    def median(mode: str, of: Callable[[ClusterRun], float]) -> float:
        return statistics.median(of(r) for r in runs[mode])

    report.add("c1", median("all", lambda r: r.seconds), median("serial", lambda r: r.seconds), mice=len(sources),
               scale=args.cluster_scale, source_gb=source_bytes / 1e9, workers=args.cluster_workers)
    report.add("c1cpu", median("all", lambda r: r.cpu_share), median("serial", lambda r: r.cpu_share), cores=cores,
               machine_ours=100 * median("all", lambda r: r.machine_share),
               machine_base=100 * median("serial", lambda r: r.machine_share))
    report.add("c1rss", median("all", lambda r: max(r.peak_rss)), median("serial", lambda r: max(r.peak_rss)),
               ours_each=" / ".join(f"{x / 2**30:.2f}" for x in runs["all"][-1].peak_rss),
               base_each=" / ".join(f"{x / 2**30:.2f}" for x in runs["serial"][-1].peak_rss))
    for mode, what in (("all", "as one workload"), ("serial", "one after another")):
        stages = runs[mode][-1].stages
        per_stage: dict[str, list[float]] = {}
        for _, name, seconds in stages:
            per_stage.setdefault(name, []).append(seconds)
        summary = "; ".join(f"{name} {', '.join(f'{s:.1f}' for s in v)} s" for name, v in per_stage.items())
        report.note(f"rows c1 ({what}, last run), the converter's stages per mouse: {summary}")
