"""The benchmark's rows, as data: what each measures, against which baseline, how the
two form a ratio, which way is better, and the target (None for rows that only inform).

Measurement code reports numbers under a row's id and never states a target; the report
forms the ratio, checks it against the row's target and fills the cells from the row's
templates. Rows whose ``ours`` and ``baseline`` name methods of ``sides.Sides`` compute
the same values on both sides, and are checked value for value.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Direction = Literal["lower", "higher"]
Cache = Literal["warm", "cold"]
#: What a compared row's items are: train trial positions, neuron indices, or whole passes.
Over = Literal["trials", "neurons", "passes"]
#: Optional groups of rows, measured only when asked for (--s3, --cluster).
Group = Literal["s3", "cluster"]

#: How far a bound built from several separately measured figures may be off (their
#: run-to-run noise on the benchmark's machine): a target is called out of reach only when
#: its bound misses it by more than this.
NOISE = 0.05

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
}
#: The comparisons a target of each direction may use.
DIRECTION_OPS: dict[str, tuple[str, ...]] = {"lower": ("<=", "<"), "higher": (">=", ">")}


@dataclass(frozen=True)
class Unit:
    """How a row's measured values are shown: ``value / scale`` to ``digits`` decimals."""

    name: str
    scale: float
    digits: int

    def format(self, value: float) -> str:
        return f"{value / self.scale:.{self.digits}f} {self.name}"


MS = Unit("ms", 1e-3, 1)
SECONDS = Unit("s", 1.0, 2)
GIB = Unit("GiB", 2.0**30, 2)
GB = Unit("GB", 1e9, 3)
MB_PER_S = Unit("MB/s", 1e6, 0)
SAMPLES_PER_S = Unit("samples/s", 1.0, 1)
MIB = Unit("MiB", 2.0**20, 0)
REQUESTS = Unit("requests", 1.0, 0)
PERCENT = Unit("%", 0.01, 0)


@dataclass(frozen=True)
class Ratio:
    """How ours and the baseline form the ratio cell: ``ours / base`` (or, ``inverse``,
    ``base / ours``: a speed-up), shown to ``digits`` decimals with ``suffix`` and ``label``."""

    label: str
    digits: int
    inverse: bool = False
    suffix: str = ""

    def of(self, ours: float, base: float) -> float:
        return base / ours if self.inverse else ours / base

    def format(self, value: float) -> str:
        return f"{value:.{self.digits}f}{self.suffix} ({self.label})"


TIME = Ratio("ours/base time", 2)
SPEEDUP = Ratio("base/ours time", 1, inverse=True, suffix="x faster")
SIZE = Ratio("ours/base", 3)
MEMORY = Ratio("ours/base", 1)
FLOOR = Ratio("floor/base time", 2)
OF_MEMCPY = Ratio("ours/memcpy", 3)
OF_LIMIT = Ratio("ours/limit", 2)
OF_BOUND = Ratio("ours/bound", 2)
WORKERS = Ratio("2 workers/0 workers", 2)
OF_PEER = Ratio("ours/peer", 1, suffix="x")
GROWTH = Ratio("end/start", 2)
OF_OTHER_STORE = Ratio("this store/other store", 2)
S3_TIME = Ratio("s3/local time", 2)
S3_RATE = Ratio("s3/local throughput", 2, inverse=True)
AT_ONCE_TIME = Ratio("one workload/one after another time", 2)
AT_ONCE = Ratio("one workload/one after another", 2)


@dataclass(frozen=True)
class Target:
    """``<ratio or our value> <op> value``; ``on="ours"`` compares our measured value, in
    the row's unit, instead of the ratio."""

    op: Literal["<=", "<", ">=", ">"]
    value: float
    on: Literal["ratio", "ours"] = "ratio"

    def met(self, x: float) -> bool:
        return _OPS[self.op](x, self.value)

    def missed_past_noise(self, bound: float) -> bool:
        """Whether ``bound`` (a floor or bound built from separately measured figures)
        misses this target by more than ``NOISE``: given the benefit of the noise, in the
        target's direction, it still fails it."""
        lenient = bound / (1 + NOISE) if self.op in ("<=", "<") else bound * (1 + NOISE)
        return not self.met(lenient)

    def cell(self, row: Row) -> str:
        suffix = row.ratio.suffix if self.on == "ratio" else f" {row.unit.name}"
        return f"{self.op} {self.value:g}{suffix}"


@dataclass(frozen=True)
class Row:
    """One row of the table. ``what``, ``ours_cell`` and ``baseline_cell`` are templates:
    ``{ours}``/``{base}`` are the measured values in ``unit``, ``{cache}`` the row's cache
    state, other fields come from the measurement."""

    id: str
    what: str
    ours_cell: str
    baseline_cell: str
    unit: Unit
    ratio: Ratio
    direction: Direction
    target: Target | None = None
    cache: Cache | None = None
    #: Methods of ``sides.Sides`` computing our and the baseline's values, for compared rows.
    ours: str | None = None
    baseline: str | None = None
    over: Over | None = None
    #: How close the two sides' values must be (float32 rounding; summation order for means).
    rtol: float = 1e-6
    atol: float = 0.0
    #: The '#' cell, when several rows share one number.
    number: str | None = None
    #: The optional group the row belongs to (None: measured in every run). The compared
    #: rows of the s3 group run the same ``Sides`` method on the store in a bucket (ours)
    #: and on the same store on local disk (the baseline).
    group: Group | None = None

    @property
    def shown(self) -> str:
        return self.number or self.id

    @property
    def compared(self) -> bool:
        return self.ours is not None and self.baseline is not None


_TRIAL = "one random train trial, 4 variables, standardized, numpy, {spelling} ({cache})"
_NEURON = "one neuron x {n_train} train trials, standardized, {spelling} ({cache})"
_NPY_TRIAL = "{base} (np.load 4 files + same arithmetic)"
_NPY_NEURON = "{base} (np.load each file, row n)"
_MEMCPY = "{base} (memcpy, 1 thread)"
_CODEC = ("bare codec decode, {codec}, {threads} thread(s), inner-chunk-sized buffers of {codec_trials} "
          "train trials (streaming mix)")
_MIX = "{ours} (responses {responses_mbs:.0f}, videos {videos_mbs:.0f})"


def _trial(id: str, spelling: str, ours: str, cache: Cache, target: Target | None) -> Row:
    return Row(id, _TRIAL.replace("{spelling}", spelling), "{ours}", _NPY_TRIAL, MS, TIME, "lower", target,
               cache, ours=ours, baseline="npy_trial", over="trials")


def _neuron(id: str, spelling: str, ours: str, cache: Cache) -> Row:
    return Row(id, _NEURON.replace("{spelling}", spelling), "{ours}", _NPY_NEURON, MS, SPEEDUP, "higher",
               Target(">=", 20), cache, ours=ours, baseline="npy_neuron", over="neurons")


#: Every row, in the order of the table.
ROWS: tuple[Row, ...] = (
    Row("1", "conversion wall time (in the child, excluding interpreter start)",
        "{ours} ({process_s:.2f} s whole process)", "{base} (np.load of every file, serial)",
        SECONDS, TIME, "lower", Target("<=", 3)),
    Row("1rss", "conversion peak RSS (max over conversions)", "{ours}", "{base} (bare read)",
        GIB, MEMORY, "lower", Target("<", 2, on="ours"), number="1"),
    Row("2", "bytes on disk (allocated; apparent in brackets)", "{ours} ({apparent_gb:.3f}), {files} files",
        "{base} ({base_apparent_gb:.3f}), {base_files} files", GB, SIZE, "lower", Target("<=", 0.3)),
    Row("1w", "floor for row 1: the store's bytes written to fresh files from memory "
        "(64 MB files, no reading, encoding or statistics)", "{ours} ({rate_mbs:.0f} MB/s)",
        "{base} (np.load of every file, serial)", SECONDS, FLOOR, "lower"),
    _trial("3", "`split.trial(k)`", "our_trial", "warm", Target("<=", 1)),
    Row("3f", "floor for row 3: row 3's baseline with every byte checked as the reader checks it: each file read "
        "into its array in runs of the reader's read size, each piece of the store's chunk size then checked with "
        "CRC32C (google_crc32c) while in the cache, in one thread; no chunk lookups, decoding or copies",
        "{ours}", _NPY_TRIAL, MS, FLOOR, "lower", None, "warm",
        ours="npy_trial_checked", baseline="npy_trial", over="trials"),
    _trial("3d", "`dask.compute(split.<var>[k])`", "our_trial_dask", "warm", Target("<=", 1)),
    Row("3df", "floor for row 3d: Dask's own work for row 3d's spelling (the same four selections of arrays made as "
        "the split's are, of its chunks and dtypes, over reads that cost nothing: graph, scheduling, the copy of each "
        "single-chunk result), plus row 3f's floor spread over the {cores} cores",
        "{ours} (Dask alone {dask:.2f}x the baseline, plus {floor:.2f} / {cores})", _NPY_TRIAL, MS, FLOOR, "lower",
        None, "warm"),
    Row("3w", "a {window}-frame window of one random train trial, 4 variables, standardized, "
        "`split.trial(k, frames=...)` (warm)", "{ours}", "{base} (np.load the whole trial + same arithmetic)",
        MS, TIME, "lower", Target("<=", 0.5), "warm", ours="our_trial_window", baseline="npy_trial_window",
        over="trials"),
    _neuron("4a", "`split.responses[:, n]`", "our_neuron_slice", "warm"),
    _neuron("4b", "`split('train', neurons=[n])`", "our_neuron_split", "warm"),
    Row("4m", "row 4b vs a .npy reader using np.load(mmap_mode='r') (info, warm)", "{ours}",
        "{base} (mmap, row n)", MS, SPEEDUP, "higher", None, "warm",
        ours="our_neuron_split", baseline="npy_neuron_mmap", over="neurons"),
    _trial("3c", "`split.trial(k)`", "our_trial", "cold", Target("<=", 1)),
    _neuron("4ac", "`split.responses[:, n]`", "our_neuron_slice", "cold"),
    _neuron("4bc", "`split('train', neurons=[n])`", "our_neuron_split", "cold"),
    Row("5", "stream the train split: per-neuron + per-pixel nanmean, standardized "
        "(dask threads vs serial .npy loop)", "{ours} ({rate_mbs:.0f} MB/s decoded)",
        "{base} ({base_rate_mbs:.0f} MB/s)", SECONDS, TIME, "lower", Target("<=", 1), "warm",
        ours="our_stream", baseline="npy_stream", over="passes", rtol=1e-4, atol=1e-4),
    Row("6a", "raw read through the store's codec pipeline ({engine}), first {trials} trials "
        "(<= {shards} shards) of responses + videos, one read of trials a:b", _MIX, _MEMCPY,
        MB_PER_S, OF_MEMCPY, "higher"),
    Row("6b", _CODEC, _MIX, _MEMCPY, MB_PER_S, OF_MEMCPY, "higher"),
    Row("6c", _CODEC, _MIX, _MEMCPY, MB_PER_S, OF_MEMCPY, "higher"),
    Row("5c", "streaming (row 5) as a share of the codec decode limit (best of rows 6b, 6c)", "{ours}",
        "{base}", MB_PER_S, OF_LIMIT, "higher", Target(">=", 0.6)),
    Row("6d", "row 5's arithmetic alone (standardize + nanmean, dask threads) on {n} train trials already "
        "decoded in memory", "{ours}", _MEMCPY, MB_PER_S, OF_MEMCPY, "higher"),
    Row("5d", "streaming (row 5) as a share of the best any reader can do with this arithmetic: decode limit "
        "and arithmetic sharing the cores, 1 / (1 / 5c limit + 1 / 6d)", "{ours}",
        "{base} (bound; {bound_share:.2f} of the decode limit)", MB_PER_S, OF_BOUND, "higher"),
    Row("7", "one 50-frame training sample (random train trial and window, 4 variables standardized with the "
        "provided statistics, tensors): `MouseDataset[i]` vs the peer, each trial new to the peer ({cache})",
        "{ours}", "{base} ({peer})", MS, TIME, "lower", Target("<=", 0.2), "warm"),
    Row("7c", "row 7 with every trial already in the peer's in-memory cache, as in its later epochs (info)",
        "{ours}", "{base}", MS, TIME, "lower", None, "warm"),
    Row("7w", "DataLoader throughput, batch 8, `MouseDataset` random 50-frame windows: 2 workers ({context}) "
        "vs 0 workers", "{ours}", "{base}", SAMPLES_PER_S, WORKERS, "higher", Target(">=", 1.7), "warm"),
    Row("7wf", "bound for row 7w: {cores} cores over the CPU a sample needs with 2 workers, at least its 0-worker "
        "time ({sample_ms:.2f} ms) plus the CPU per sample the DataLoader's processes spend with 2 workers beyond 0 "
        "({extra_ms:.2f} ms: the transfer of each batch, measured on samples that cost nothing, which come at "
        "{free_parallel:.0f} samples/s with 2 workers, {free_serial:.0f} with 0), vs row 7w's 0 workers",
        "{ours}", "{base}", SAMPLES_PER_S, WORKERS, "higher", None, "warm"),
    Row("7p", "DataLoader throughput, batch 8: `MouseDataset` with 2 workers vs the peer's best configuration",
        "{ours}", "{base} ({peer_best})", SAMPLES_PER_S, OF_PEER, "higher", Target(">=", 5), "warm"),
    Row("7m", "steady memory: RSS of a training process (DataLoader, 0 workers) after two epochs over the train "
        "split ({samples} samples) vs after the first {first}", "{ours}", "{base}", MIB, GROWTH, "lower",
        Target("<=", 1.2), "warm"),
)

_S3 = "through a local S3 server (SeaweedFS on 127.0.0.1) vs the same store on local disk"

#: The optional groups' rows (--s3, --cluster), after the table's other rows.
ROWS += (
    Row("s3u", "the store uploaded into a bucket ({files} objects, {threads} threads) vs read from local disk (info)",
        "{ours} ({rate_mbs:.0f} MB/s)", "{base} ({base_rate_mbs:.0f} MB/s, warm)", SECONDS, S3_TIME, "lower",
        group="s3"),
    Row("s3o", "HTTP requests the S3 server receives to open a mouse, `open_mouse('s3://...')`: this store "
        "({trials} trials, {tiers} tiers) vs another ({other_trials} trials, {other_tiers} tiers), counted by a proxy "
        "in front of the server, {opens} opens each",
        "{ours} (at most {in_flight} in flight at once: {requests})", "{base} (at most {other_in_flight} in flight)",
        REQUESTS, OF_OTHER_STORE, "lower", Target("<=", 5, on="ours"), group="s3"),
    Row("s3ot", f"time to open a mouse, `open_mouse`, {_S3} (info)", "{ours}", "{base} (local disk)", MS, S3_TIME,
        "lower", None, "warm", group="s3"),
    Row("s3t", f"one random train trial, 4 variables, standardized, `split.trial(k)`, {_S3} ({{cache}})",
        "{ours} ({requests} requests)", "{base} (local disk)", MS, S3_TIME, "lower", Target("<=", 3), "warm",
        ours="our_trial", baseline="our_trial", over="trials", group="s3"),
    Row("s3tf", "floor for row s3t: the requests each trial's read made (recorded through the proxy), made again "
        "at once with obstore, bodies dropped: no decoding, checks or arithmetic",
        "{ours} ({requests} requests, {fetched_kb:.0f} kB)", "{base} (local disk, row s3t's baseline)", MS, S3_TIME,
        "lower", None, "warm", group="s3"),
    Row("s3s", f"stream the train split (row 5's arithmetic), {_S3} ({{cache}})",
        "{ours} ({rate_mbs:.0f} MB/s decoded; {requests} requests, at most {in_flight} in flight)",
        "{base} ({base_rate_mbs:.0f} MB/s, local disk)", SECONDS, S3_RATE,
        "higher", Target(">=", 0.5), "warm",
        ours="our_stream", baseline="our_stream", over="passes", group="s3"),
    Row("s3sf", "floor for row s3s: the requests of one streaming pass (recorded through the proxy), made again "
        "with as many in flight, bodies dropped: no decoding, checks or arithmetic",
        "{ours} ({rate_mbs:.0f} MB/s fetched; {requests} requests, {fetched_mb:.0f} MB)",
        "{base} (local disk, row s3s's baseline)", SECONDS, S3_RATE, "higher", None, "warm", group="s3"),
    Row("c1", "convert {mice} twins (scale {scale:g}, dense; {source_gb:.2f} GB of .npy) on a {workers}-worker "
        "LocalCluster: `convert_all(..., client=)`, one workload, vs `convert_mouse(..., client=)` one after another",
        "{ours}", "{base} (one after another)", SECONDS, AT_ONCE_TIME, "lower", Target("<=", 1), group="cluster"),
    Row("c1cpu", "CPU use of the {cores} cores over row c1's runs (CPU seconds of this process and the workers / "
        "wall time x cores; the whole machine's, /proc/stat, in brackets)", "{ours} (machine {machine_ours:.0f}%)",
        "{base} (machine {machine_base:.0f}%)", PERCENT, AT_ONCE, "higher", Target(">=", 85, on="ours"),
        number="c1", group="cluster"),
    Row("c1rss", "peak RSS of a worker in row c1's runs (max over the workers, each listed in brackets)",
        "{ours} ({ours_each})", "{base} ({base_each})", GIB, MEMORY, "lower", number="c1", group="cluster"),
)

_BY_ID = {r.id: r for r in ROWS}


def row(id: str) -> Row:
    """The row ``id`` (KeyError naming it if the table has none)."""
    try:
        return _BY_ID[id]
    except KeyError:
        raise KeyError(f"no benchmark row {id!r}; the table has {', '.join(_BY_ID)}") from None


def ref(id: str) -> str:
    """``id`` as the report shows it in prose ('row 1w'), checked to exist."""
    return f"row {row(id).shown}"


def cold_ids() -> list[str]:
    return [r.id for r in ROWS if r.cache == "cold"]


def group_ids(group: Group) -> list[str]:
    return [r.id for r in ROWS if r.group == group]
