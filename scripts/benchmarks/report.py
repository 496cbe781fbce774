"""The report: the machine it ran on, the table (columns ``#, what, sensorium-zarr,
baseline, ratio, target, met?``) and notes. Cells, ratios and verdicts come from the rows
table; measurements only give numbers."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import dask
import numcodecs
import numpy as np
import zarr

import sensorium_zarr as reader

from . import rows
from .children import psutil_module

COLUMNS = ("#", "what", "sensorium-zarr", "baseline", "ratio", "target", "met?")


@dataclass(frozen=True)
class Line:
    """One measured row: its numbers and the fields its templates name."""

    row: rows.Row
    ours: float
    base: float
    fields: dict[str, Any]

    @property
    def ratio(self) -> float:
        return self.row.ratio.of(self.ours, self.base)

    @property
    def met(self) -> bool | None:
        target = self.row.target
        if target is None:
            return None
        return target.met(self.ratio if target.on == "ratio" else self.ours / self.row.unit.scale)

    def cells(self) -> list[str]:
        r = self.row
        values = {"cache": r.cache, **self.fields, "ours": r.unit.format(self.ours), "base": r.unit.format(self.base)}
        target = r.target.cell(r) if r.target is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[self.met]
        return [r.shown, r.what.format(**values), r.ours_cell.format(**values), r.baseline_cell.format(**values),
                r.ratio.format(self.ratio), target, met]


@dataclass
class Report:
    header: list[str] = field(default_factory=list)
    lines: dict[str, Line] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, row_id: str, ours: float, base: float, **fields: Any) -> Line:
        """Record row ``row_id``'s measured values (in SI units: seconds, bytes, bytes/s)."""
        if row_id in self.lines:
            raise ValueError(f"row {row_id} measured twice")
        line = Line(rows.row(row_id), float(ours), float(base), fields)
        line.cells()  # a template naming a field the measurement did not give fails here, at once
        self.lines[row_id] = line
        return line

    def note(self, text: str) -> None:
        self.notes.append(text)

    def markdown(self) -> str:
        table = [f"| {' | '.join(self.lines[r.id].cells())} |" for r in rows.ROWS if r.id in self.lines]
        lines = [*self.header, "", f"| {' | '.join(COLUMNS)} |", "|" + "---|" * len(COLUMNS), *table]
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def machine_lines(args: Any, mouse: reader.Mouse, n_train: int, source_bytes: int) -> list[str]:
    """The report's header: when, on what machine and software, which mouse, how measured."""
    psutil = psutil_module()
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import zarrs  # noqa: F401

        zarrs_version = getattr(sys.modules["zarrs"], "__version__", "installed")
    except ImportError:
        zarrs_version = "not installed"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.source is None:
        kind = args.responses if args.responses == "dense" else f"sparse, {args.active_fraction:g} non-zero"
        scale = f"scale {args.scale:g}, {kind} responses"
    else:
        scale = f"given source {args.source}"
    return [
        f"## sensorium-zarr benchmark, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"- machine: {cpu}; {os.cpu_count()} logical cores ({affinity} usable); "
        f"{psutil.virtual_memory().total / rows.GIB.scale:.1f} GiB RAM; {platform.system()} {platform.release()}; "
        f"load average (1, 5, 15 min) at the start {args.load_before}, at the end {load}",
        f"- python {platform.python_version()}, numpy {np.__version__}, zarr {zarr.__version__}, "
        f"numcodecs {numcodecs.__version__}, dask {dask.__version__}, zarrs {zarrs_version}; "
        f"reader/converter engine: {args.engine}",
        f"- mouse {mouse.name} ({scale}): {mouse.n_trials} trials ({n_train} train), "
        f"{mouse.n_neurons} neurons, T_pad {mouse.t_pad}, stored dtypes "
        f"{', '.join(sorted(set(mouse.attrs.stored_dtypes.values())))}; source {source_bytes / 1e9:.2f} GB",
        f"- chunking: {json.dumps(mouse.attrs.chunking)}",
        f"- every figure is the median of {args.repeats} repetitions ({args.convert_repeats} for the "
        f"conversion, {args.trial_repeats} for the one-trial rows), the two sides interleaved; "
        "warm page cache unless the row says cold (everything read once first, and each compared warm row's "
        "reads made once, untimed, just before it is timed)",
    ]
