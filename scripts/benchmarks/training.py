"""Rows 7: training loaders. ``sensorium_zarr.torch.MouseDataset`` against the status quo
(the "peer"): neuralpredictors' ``MovieFileTreeDataset`` over the .npy tree with the
Sensorium 2023 starter kit's chain (NeuroNormalizer, CutVideos, the channel reorders,
Subsequence, ExpandChannels, ToTensor), or, when neuralpredictors is not installed, that
chain written out in numpy (``NumpyPeer``: whole trials loaded, each kept in a dict
forever, the same arithmetic). Both standardize with the dataset's provided statistics,
as NeuroNormalizer does, and a window of both is checked equal before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import sensorium_zarr as reader
from sensorium_zarr import format as fmt

from . import children, rows
from .children import run_child
from .report import Report
from .timing import log, paired, usable_cores

FRAMES = 50
BATCH = 8
KEYS = fmt.VARIABLES
PEER_CHAIN = "MovieFileTreeDataset + NeuroNormalizer, CutVideos, Subsequence(50), ToTensor"
SCRIPTS = Path(__file__).resolve().parents[1]


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def neuralpredictors_available() -> bool:
    """Whether neuralpredictors is installed with the starter kit's transforms: PyPI's only
    release (0.3.0) has ``MovieFileTreeDataset`` but not ``CutVideos`` or
    ``ChangeChannelsOrder``, which the starter kit installs from GitHub."""
    try:
        from neuralpredictors.data.datasets import MovieFileTreeDataset  # noqa: F401
        from neuralpredictors.data.transforms import ChangeChannelsOrder, CutVideos  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- the peer


class NumpyPeer:
    """The peer chain in numpy: ``peer[trial_id]`` loads the trial's four whole files
    (once: every loaded trial stays in ``cache``), standardizes them as NeuroNormalizer
    does with the provided statistics, cuts at the first NaN frame of any variable
    (CutVideos), takes a ``frames`` window at ``offset`` (random if negative, as
    Subsequence), and returns tensors in the starter kit's layout."""

    def __init__(self, source: Path, frames: int = FRAMES, offset: int = -1) -> None:
        self.source = source
        self.frames = frames
        self.offset = offset
        self.cache: dict[int, list[np.ndarray]] = {}

        def stat(variable: str, name: str) -> np.ndarray:
            return np.load(source / "meta" / "statistics" / variable / "all" / f"{name}.npy", allow_pickle=False)

        s = stat(fmt.RESPONSES, "std")
        threshold = 0.01 * np.nanmean(s)
        precision = np.ones_like(s) / threshold
        precision[s > threshold] = 1 / s[s > threshold]
        # NeuroNormalizer's arithmetic: (x - mean) / std for videos and pupil positions,
        # x * precision for responses and behavior.
        self.centred = {v: (stat(v, "mean"), stat(v, "std")) for v in (fmt.VIDEOS, fmt.PUPIL_CENTER)}
        self.precision = {fmt.RESPONSES: precision, fmt.BEHAVIOR: 1 / stat(fmt.BEHAVIOR, "std")}

    def transform(self, variable: str, x: np.ndarray) -> np.ndarray:
        if variable in self.centred:
            mean, std = self.centred[variable]
            return (x - mean) / std
        return x * self.precision[variable]

    def __getitem__(self, trial_id: int) -> dict[str, Any]:
        import torch

        raw = self.cache.get(trial_id)
        if raw is None:
            raw = [np.load(self.source / "data" / v / f"{trial_id}.npy", allow_pickle=False) for v in KEYS]
            self.cache[trial_id] = raw
        x = [self.transform(v, a) for v, a in zip(KEYS, raw, strict=True)]
        # CutVideos(max_frame=None): the first NaN frame of any variable ends the trial.
        cut = min(int(np.argwhere(np.isnan(a))[:, -1].min()) if np.isnan(a).any() else a.shape[-1] for a in x)
        start = np.random.randint(0, cut - self.frames) if self.offset < 0 else self.offset
        out = {}
        for v, a in zip(KEYS, x, strict=True):
            a = a[..., :cut][..., start : start + self.frames]
            if v == fmt.VIDEOS:
                a = a.transpose(2, 0, 1)[np.newaxis]  # (1, time, height, width)
            out[v] = torch.from_numpy(a.astype(np.float32))
        return out


def neuralpredictors_peer(source: Path, frames: int = FRAMES, offset: int = -1) -> Any:
    """The starter kit's ``mouse_video_loader`` dataset (all neurons, scale 1, behavior not
    as channels, so its layout is ``MouseDataset``'s)."""
    from neuralpredictors.data.datasets import MovieFileTreeDataset
    from neuralpredictors.data.transforms import (
        ChangeChannelsOrder,
        CutVideos,
        ExpandChannels,
        NeuroNormalizer,
        Subsequence,
        ToTensor,
    )

    dataset = MovieFileTreeDataset(str(source), *KEYS)
    dataset.transforms.extend([
        NeuroNormalizer(dataset, stats_source="all", in_name=fmt.VIDEOS),
        CutVideos(max_frame=None, frame_axis={k: -1 for k in KEYS}, target_groups=list(KEYS)),
        ChangeChannelsOrder((2, 0, 1), in_name=fmt.VIDEOS),
        ChangeChannelsOrder((1, 0), in_name=fmt.RESPONSES),
        ChangeChannelsOrder((1, 0), in_name=fmt.BEHAVIOR),
        ChangeChannelsOrder((1, 0), in_name=fmt.PUPIL_CENTER),
        Subsequence(frames=frames, channel_first=(), offset=offset),
        ChangeChannelsOrder((1, 0), in_name=fmt.RESPONSES),
        ExpandChannels(fmt.VIDEOS),
        ChangeChannelsOrder((1, 0), in_name=fmt.BEHAVIOR),
        ChangeChannelsOrder((1, 0), in_name=fmt.PUPIL_CENTER),
        ToTensor(),
    ])
    return dataset


def make_peer(source: Path, frames: int = FRAMES, offset: int = -1, kind: str | None = None) -> Any:
    kind = kind or ("neuralpredictors" if neuralpredictors_available() else "numpy")
    return neuralpredictors_peer(source, frames, offset) if kind == "neuralpredictors" else NumpyPeer(
        source, frames, offset)


def as_dict(sample: Any) -> dict[str, Any]:
    """A peer sample (a run-time namedtuple, or a dict) as a dict."""
    return sample if isinstance(sample, dict) else dict(zip(sample._fields, sample, strict=True))


def ours(store: Path, engine: str, frames: int = FRAMES) -> Any:
    from sensorium_zarr.torch import MouseDataset

    # The provided statistics, as the peer's NeuroNormalizer(stats_source="all").
    return MouseDataset(reader.open_mouse(store, engine=engine), "train", frames=frames, statistics="provided")


def check_same_window(store: Path, source: Path, engine: str, kind: str) -> None:
    """Both sides give the same values for the same trial and window (float32 rounding:
    the peer standardizes in float64)."""
    dataset = ours(store, engine)
    start = 7
    position = len(dataset) - 1
    mine = dataset[(position, start)]
    trial_id = int(dataset.split.trial_ids[dataset.trials[position]])
    theirs = as_dict(make_peer(source, offset=start, kind=kind)[trial_id])
    for v in KEYS:
        a, b = mine[v].numpy(), theirs[v].numpy()
        if a.shape != b.shape:
            raise AssertionError(f"rows 7: {v} shapes {a.shape} (ours) vs {b.shape} (peer)")
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, equal_nan=True, err_msg=f"rows 7: {v}")


# --------------------------------------------------------------------------- loaders


def _measure_workers_bound(args: argparse.Namespace, dataset: Any, keys: Sequence[int], serial: float,
                           parallel: float, report: Report) -> tuple[float, int]:
    """Row 7wf: the best two workers can do at our sample's cost, given what the
    DataLoader itself spends per sample with workers (measured on samples that cost
    nothing); the note when that misses row 7w's target. Returns that extra CPU per
    sample (seconds) and the cores."""
    free = FreeSamples(dataset)
    # Four times the keys: free samples come fast, and CPU times are counted in 10 ms ticks.
    free_keys = list(keys) * 4
    free_serial = loader_rates(free, free_keys, 0, None)[1]
    free_parallel, free_cpu = loader_cpu(free, free_keys, 2, args.loader_context)
    cores = usable_cores()
    bound, sample_s, extra = workers_bound(serial, free_serial, free_cpu, cores)
    line = report.add("7wf", bound, serial, sample_ms=sample_s * 1e3, extra_ms=extra * 1e3,
                      free_parallel=free_parallel, free_serial=free_serial, cores=cores)
    target = rows.row("7w").target
    # An estimate from separate measurements: if row 7w's 2 workers beat it by more than
    # the noise, it bounds nothing.
    holds = parallel <= bound * (1 + rows.NOISE)
    if holds and target is not None and target.missed_past_noise(line.ratio):
        report.note(
            f"{rows.ref('7w')}'s target ({target.cell(rows.row('7w'))}) is out of reach for this sample's cost on "
            f"this machine: with 2 workers the DataLoader's processes spend {extra * 1e3:.2f} ms of CPU per "
            f"sample more than with 0 (measured on samples that cost nothing, which come at {free_parallel:.0f} "
            f"samples/s with 2 workers, {free_serial:.0f} with 0: the transfer of each batch), so on top of row "
            f"7w's {sample_s * 1e3:.2f} ms a sample with 0 workers, {cores} cores give at most {bound:.0f} "
            f"samples/s, {line.ratio:.2f}x the 0-worker loader ({rows.ref('7wf')}; its inputs are measured once "
            f"each, so it may be off by a few percent, less than its distance to the target); the cheaper the "
            "sample, the smaller that ratio.")
    return extra, cores


def sample_keys(keys: Sequence[int], count: int, seed: int) -> list[int]:
    """``count`` keys: shuffled passes over ``keys``, so each is used once per pass."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < count:
        out += [keys[i] for i in rng.permutation(len(keys))]
    return out[:count]


def loader_rates(dataset: Any, keys: Sequence[int], workers: int, context: str | None,
                 timeout: float = 300) -> tuple[float, float]:
    """Samples/s of two passes of a DataLoader (batch 8) over ``keys``, each timed from
    the start of the pass to its last batch. Workers persist between the passes, so the
    second includes neither their start nor batches they made before it began."""
    loader = _loader(dataset, keys, workers, context, timeout)
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        n = _samples(loader)
        rates.append(n / (time.perf_counter() - start))
    del loader  # ends its workers now, not during the next measurement
    return rates[0], rates[1]


def _loader(dataset: Any, keys: Sequence[int], workers: int, context: str | None, timeout: float) -> Any:
    """A DataLoader (batch 8) over ``keys``; with workers, persistent ones."""
    from torch.utils.data import DataLoader

    options: dict[str, Any] = {}
    if workers:
        options = dict(multiprocessing_context=context, timeout=timeout, persistent_workers=True)
    return DataLoader(dataset, batch_size=BATCH, sampler=list(keys), num_workers=workers, **options)


def _samples(loader: Any) -> int:
    """One pass of ``loader``: the samples its batches held."""
    return sum(int(as_dict(batch)[fmt.RESPONSES].shape[0]) for batch in loader)


class FreeSamples:
    """A Dataset whose samples cost (almost) nothing: each a fresh copy of one sample of
    ``dataset`` (same keys, shapes and dtypes, tensors new each time, as a real sample's
    are), so a DataLoader over it times the DataLoader alone: batching, and with workers
    the transfer of every batch to the main process."""

    def __init__(self, dataset: Any) -> None:
        self.sample = dataset[0]
        self.n = len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int) -> dict[str, Any]:
        return {k: v.clone() if hasattr(v, "clone") else v for k, v in self.sample.items()}


def workers_bound(serial: float, free_serial: float, free_cpu: float, cores: int) -> tuple[float, float, float]:
    """The most samples/s a DataLoader's workers can deliver on ``cores`` cores, from what
    the 0-worker loader delivers (``serial`` samples/s; ``free_serial`` on samples that
    cost nothing) and the CPU seconds per sample its processes spend with workers on
    samples that cost nothing (``free_cpu``).

    With workers a sample needs at least the CPU it needs with none, plus the CPU the
    DataLoader spends per sample with workers beyond what it spends with none (the
    transfer of each batch to the main process), which is the same for samples of the
    same shapes; the cores give no more than ``cores`` CPU seconds a second. Returns the
    bound, the 0-worker time per sample and that extra CPU, in seconds."""
    extra = max(0.0, free_cpu - 1 / free_serial)
    return cores / (1 / serial + extra), 1 / serial, extra


def loader_cpu(dataset: Any, keys: Sequence[int], workers: int, context: str | None,
               timeout: float = 300) -> tuple[float, float]:
    """Samples/s of the second of two passes of a DataLoader (as ``loader_rates``) over
    ``keys``, and the CPU seconds per sample that its processes (this one and the
    workers) spent during that pass."""
    this = children.psutil_module().Process()
    loader = _loader(dataset, keys, workers, context, timeout)

    def cpu(processes: list[Any]) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in processes)

    _samples(loader)  # the first pass starts the workers and warms everything
    processes = [this, *this.children()]
    before, start = cpu(processes), time.perf_counter()
    n = _samples(loader)
    wall, spent = time.perf_counter() - start, cpu(processes) - before
    del loader
    return n / wall, spent / n


# Runs a DataLoader (0 workers, batch 8) over the train split for two epochs in a fresh
# process, and reports its RSS after the first samples and at the end.
MEMORY = """
import json, sys
sys.path.insert(0, sys.argv[1])
from benchmarks.training import memory_run
print(json.dumps(memory_run(*sys.argv[2:])))
"""

# The peer with 2 workers: does it deliver a batch within the DataLoader's timeout?
PEER_WORKERS = """
import json, sys
sys.path.insert(0, sys.argv[1])
from benchmarks.training import peer_workers_run
if __name__ == "__main__":
    print(json.dumps(peer_workers_run(*sys.argv[2:])))
"""


def _rss() -> int:
    psutil = children.psutil_module()
    rss: int = psutil.Process().memory_info().rss
    return rss


def memory_run(side: str, store: str, source: str, engine: str, kind: str, first: str) -> dict[str, Any]:
    """Two epochs over the train split through a DataLoader; RSS after ``first`` samples."""
    from torch.utils.data import DataLoader

    if side == "ours":
        dataset = ours(Path(store), engine)
        keys = list(range(len(dataset)))
    else:
        dataset = make_peer(Path(source), kind=kind)
        keys = reader.open_mouse(store).split("train").trial_ids.tolist()
    order = sample_keys(keys, 2 * len(keys), seed=0)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=order, collate_fn=lambda b: [as_dict(x) for x in b])
    seen, at_first = 0, None
    start = time.perf_counter()
    for batch in loader:
        seen += len(batch)
        if at_first is None and seen >= int(first):
            at_first = _rss()
    return {"first": at_first, "end": _rss(), "samples": seen, "seconds": time.perf_counter() - start}


def peer_workers_run(source: str, store: str, kind: str, timeout: str) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    dataset = make_peer(Path(source), kind=kind)
    keys = reader.open_mouse(store).split("train").trial_ids.tolist()
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sample_keys(keys, 4 * BATCH, 0), num_workers=2,
                        timeout=float(timeout))
    try:
        start = time.perf_counter()
        n = sum(int(as_dict(b)[fmt.RESPONSES].shape[0]) for b in loader)
        return {"ok": True, "rate": n / (time.perf_counter() - start)}
    except Exception as e:  # the outcome is the measurement: say what happened
        return {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}


def probe_peer_workers(source: Path, store: Path, kind: str, timeout: float) -> dict[str, Any]:
    """The peer with 2 workers, in a child process that must end within a bound."""
    try:
        done = subprocess.run([sys.executable, "-c", PEER_WORKERS, str(SCRIPTS), str(source), str(store), kind,
                               str(timeout)], capture_output=True, text=True, timeout=timeout + 120,
                              cwd=children.REPO)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"no batch and no error within {timeout + 120:.0f} s (hung)"}
    if done.returncode != 0 or not done.stdout.strip():
        return {"ok": False, "error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["ok"] and "timed out" in result["error"]:
        result["error"] = f"hung (no batch within the DataLoader's timeout of {timeout:g} s)"
    return result


# --------------------------------------------------------------------------- the rows


def measure_training(args: argparse.Namespace, source: Path, store: Path, logs: Path, report: Report) -> None:
    """Rows 7, 7c, 7w, 7wf, 7p and 7m."""
    kind = "neuralpredictors" if neuralpredictors_available() else "numpy"
    missing = ("neuralpredictors with the starter kit's transforms is not installed: PyPI's only release, 0.3.0, "
               "lacks CutVideos")
    peer_name = (f"neuralpredictors {PEER_CHAIN}" if kind == "neuralpredictors"
                 else f"the same chain in numpy ({PEER_CHAIN.split(' + ')[1]}; {missing})")
    log(f"rows 7: training loaders, ours vs {peer_name}")
    check_same_window(store, source, args.engine, kind)
    dataset = ours(store, args.engine)
    train_ids = [int(dataset.split.trial_ids[k]) for k in dataset.trials]
    rng = np.random.default_rng(args.seed + 7)
    picks = rng.permutation(len(dataset))[: args.trial_repeats].tolist()
    peer = make_peer(source, kind=kind)

    # Row 7: each pick is a trial the peer has not loaded yet (its first epoch); row 7c:
    # the same picks again, now in its cache (its later epochs).
    def mine(k: int) -> Any:
        return dataset[k]

    def theirs(k: int) -> Any:
        return peer[train_ids[k]]

    t_ours, t_peer, _, _ = paired(mine, theirs, picks)
    report.add("7", t_ours, t_peer, peer=peer_name)
    t_ours_again, t_cached, _, _ = paired(mine, theirs, picks)
    report.add("7c", t_ours_again, t_cached)

    batches = args.loader_batches
    keys = sample_keys(list(range(len(dataset))), BATCH * batches, args.seed)
    log(f"rows 7w, 7p: DataLoader throughput, two passes of {batches} batches of {BATCH} per configuration")
    # Our second passes: the page cache and the workers warm, as in a training run.
    serial = loader_rates(dataset, keys, 0, None)[1]
    parallel = loader_rates(dataset, keys, 2, args.loader_context)[1]
    context = args.loader_context or "the platform's default start method"
    report.add("7w", parallel, serial, context=context)
    extra, cores = _measure_workers_bound(args, dataset, keys, serial, parallel, report)
    # The peer's first pass loads each trial once; its second finds them in its cache.
    peer_first, peer_again = loader_rates(make_peer(source, kind=kind), [train_ids[k] for k in keys], 0, None)
    configurations = {"0 workers, first epoch": peer_first, "0 workers, trials cached": peer_again}
    probe = {"ok": False, "error": "not tried: the numpy chain stands in for it"}
    if kind == "neuralpredictors":
        log("the peer with 2 workers (a child process, bounded)")
        probe = probe_peer_workers(source, store, kind, args.peer_probe_timeout)
        if probe["ok"]:
            configurations["2 workers"] = probe["rate"]
    best = max(configurations, key=lambda c: configurations[c])
    line = report.add("7p", parallel, configurations[best], peer_best=best)
    target = rows.row("7p").target
    if target is not None and not line.met:
        # Row 7wf's arithmetic turned around: the 0-worker time per sample that would let 2
        # workers deliver the target's rate.
        needed = target.value * configurations[best]
        budget = cores / needed - extra
        report.note(
            f"{rows.ref('7p')}'s target asks 2 workers for {needed:.0f} samples/s; with the DataLoader's own "
            f"{extra * 1e3:.2f} ms per sample ({rows.ref('7wf')}) that needs " + (
                f"a sample of at most {budget * 1e3:.2f} ms with 0 workers (row 7w's: {1e3 / serial:.2f} ms)."
                if budget > 0 else f"more than {cores} cores: out of reach on this machine whatever a sample costs."))
    rates = "; ".join(f"{c}: {r:.1f} samples/s" for c, r in configurations.items())
    report.note(f"rows 7-7p peer: {peer_name}. Its configurations: {rates}; with 2 workers: "
                f"{'ran' if probe['ok'] else probe['error']}.")

    log("row 7m: memory over two epochs, ours and the peer, each in a fresh process")
    first = min(100, len(dataset))
    runs = {}
    for side in ("ours", "peer"):
        child = run_child(MEMORY, [str(SCRIPTS), side, str(store), str(source), args.engine, kind, str(first)],
                          logs / f"memory-{side}")
        runs[side] = child.output
    report.add("7m", runs["ours"]["end"], runs["ours"]["first"], samples=runs["ours"]["samples"], first=first)
    p = runs["peer"]
    report.note(f"row 7m for the peer: RSS {p['first'] / 2**20:.0f} MiB after the first {first} samples, "
                f"{p['end'] / 2**20:.0f} MiB after two epochs ({p['end'] / p['first']:.2f}x): it keeps every "
                "trial it loaded.")
