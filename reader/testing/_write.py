"""Writing a spec to disk: ``write_mouse`` (one mouse, a folder or a zip) and
``write_sample_tree`` (the quick start's two mice)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..format import VARIABLES
from ._data import MouseParams, trial_arrays
from ._sinks import FolderSink, Sink, ZipSink
from ._spec import DEFAULT_ACTIVE_FRACTION, DENSE, SampleSpec
from ._statistics import PROVIDED_STATISTICS, MedianSample, RunningStats
from ._synthetic import sample_tree_specs

#: Header of a macOS AppleDouble resource-fork file, what ``__MACOSX/`` entries hold.
_APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00" + b"Mac OS X        " + bytes(4070)


def write_mouse(
    spec: SampleSpec,
    out_dir: Path | str,
    *,
    as_zip: bool = False,
    macosx_junk: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``spec`` as ``out_dir/<name>/`` or ``out_dir/<name>.zip``; return that path.

    The zip holds the top-level folder ``<name>/`` (with directory entries) and, when
    ``macosx_junk``, AppleDouble files under ``__MACOSX/<name>/`` as Finder zips do, one
    of them named like a trial file so readers must really skip ``__MACOSX``. Files are
    written one trial at a time into a ``.partial`` sibling renamed at the end, so memory
    stays bounded and an interrupted run never leaves a tree that looks complete.
    """
    out_dir = Path(out_dir)
    final = out_dir / (f"{spec.name}.zip" if as_zip else spec.name)
    if final.exists() and not overwrite:
        raise FileExistsError(
            f"{final} already exists; remove it or pass overwrite=True (--overwrite)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{final.name}.partial"
    _remove(partial)
    try:
        sink: Sink = ZipSink(partial, spec.name) if as_zip else FolderSink(partial)
        with sink:
            _write_tree(spec, sink)
            if as_zip and macosx_junk:
                for rel in _macosx_junk_paths(spec):
                    sink.write_bytes(f"__MACOSX/{spec.name}/{rel}", _APPLEDOUBLE, top=False)
    except BaseException:
        _remove(partial)
        raise
    _remove(final)
    os.replace(partial, final)
    return final


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _macosx_junk_paths(spec: SampleSpec) -> list[str]:
    """Resource-fork names ``._<file>`` beside a few files of the tree."""
    paths = [f"data/videos/._{spec.trial_ids[0]}.npy", "meta/trials/._tiers.npy"]
    if spec.config:
        paths.insert(0, "._config.json")
    return paths


def _write_tree(spec: SampleSpec, sink: Sink) -> None:
    dtype = np.dtype(spec.dtype)
    params = MouseParams(spec)
    if spec.config:
        config: dict[str, object] = {"links": {}, "generator": "sensorium-zarr sample", "seed": spec.seed}
        if spec.responses != DENSE:
            # Added only when not dense, so dense trees stay byte for byte what they were.
            config.update(responses=spec.responses, active_fraction=spec.active_fraction)
        sink.write_bytes("config.json", json.dumps(config, indent=2).encode())
    sink.save("meta/neurons/unit_ids.npy", params.unit_ids)
    sink.save("meta/neurons/cell_motor_coordinates.npy", params.coordinates)
    width = max(len(t) for t in spec.tiers)
    sink.save("meta/trials/tiers.npy", np.array(spec.tiers, dtype=f"<U{width}"))
    sink.save("meta/trials/trial_idx.npy", np.arange(len(spec.tiers), dtype=np.int64))

    shapes = {var: spec.source_shape(var) for var in VARIABLES}
    running = {var: RunningStats(shapes[var]) for var in VARIABLES}
    medians = MedianSample(shapes, dtype, spec.n_trials)
    for position, (trial, label, row) in enumerate(
        zip(spec.trial_ids, spec.labels, spec.valid_frames, strict=True)
    ):
        valid = dict(zip(VARIABLES, row, strict=True))
        arrays = trial_arrays(spec, params, trial, label, valid, dtype)
        for var, array in arrays.items():
            sink.save(f"data/{var}/{trial}.npy", array)
            running[var].add(array, valid[var])
        medians.add(position, arrays, valid)

    median = medians.finish()
    for var in VARIABLES:
        stats = running[var].finish()
        stats["median"] = median[var]
        for stat in PROVIDED_STATISTICS:
            sink.save(f"meta/statistics/{var}/all/{stat}.npy", stats[stat].astype(dtype))


def write_sample_tree(
    out_dir: Path | str,
    *,
    seed: int = 0,
    overwrite: bool = False,
    responses: str = DENSE,
    active_fraction: float = DEFAULT_ACTIVE_FRACTION,
) -> list[Path]:
    """Write the quick start's two small mice (``sample_tree_specs``) into ``out_dir``;
    return their paths, the folder first, then the zip."""
    specs = sample_tree_specs(seed=seed, responses=responses, active_fraction=active_fraction)
    return [write_mouse(spec, out_dir, as_zip=as_zip, overwrite=overwrite) for spec, as_zip in specs]
