"""Synthetic Sensorium 2023 source trees, with every quirk of the real data.

Entry points: ``write_sample_tree`` (the two small mice of the quick start, whose specs
``sample_tree_specs`` returns), ``sample_spec`` (a small synthetic mouse), ``twin_spec``
(a mouse shaped like a real one, from its public metadata) and ``write_mouse`` (a spec ->
a folder or zip on disk).

The real dataset is 148 GB behind a slow download, so the demo, the tests and the
benchmarks run on trees written here instead. A tree follows ``SENSORIUM.md`` to the
letter, quirks included: trial ids that skip numbers (tier ``none``, no files), NaN
padding whose length differs by trial and by variable, trials with no padding at all,
withheld (all-zero) test responses, tiny negative responses, optional ``config.json``,
float32 or float64 files, Mac zips with ``__MACOSX`` junk. Data are deterministic from
the spec's seed, and a full-size twin is written one trial at a time, so memory stays
bounded whatever its size.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from ..format import (
    BEHAVIOR,
    NONE_TIER,
    ORACLE,
    PUPIL_CENTER,
    RESPONSES,
    TEST_TIERS,
    TIERS,
    TRAIN,
    VARIABLES,
    VIDEOS,
)

__all__ = [
    "SampleSpec",
    "sample_spec",
    "sample_tree_specs",
    "twin_spec",
    "write_mouse",
    "write_sample_tree",
]

_DTYPES = ("float32", "float64")
#: Statistics the dataset provides in ``meta/statistics/<var>/all/``.
_PROVIDED_STATISTICS = ("mean", "std", "min", "max", "median")
#: Value of the tiny negative responses the deconvolution leaves behind.
_TINY_NEGATIVE = -3e-7
#: Memory allowed for the trials kept to compute the median (see ``_MedianSample``).
_MEDIAN_BUDGET_BYTES = 256 << 20
#: The real mice: 324 frames per trial is the common T_pad; frame counts in sample
#: specs are real counts scaled by t_pad / 324.
_REAL_T_PAD = 324
# Unpacking fails loudly should the format's test tiers ever change.
_LIVE_MAIN, _LIVE_BONUS, _FINAL_MAIN, _FINAL_BONUS = TEST_TIERS
#: Share of each non-train tier in a real mouse (about 60 oracle trials of 720...).
_TIER_SHARES = {
    ORACLE: 0.083,
    _LIVE_MAIN: 0.08,
    _LIVE_BONUS: 0.08,
    _FINAL_MAIN: 0.08,
    _FINAL_BONUS: 0.17,
}
_RESPONSES_COL = VARIABLES.index(RESPONSES)
#: Header of a macOS AppleDouble resource-fork file, what ``__MACOSX/`` entries hold.
_APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00" + b"Mac OS X        " + bytes(4070)


@dataclass(frozen=True)
class SampleSpec:
    """Everything that shapes one generated mouse; ``write_mouse`` turns it into files.

    Per-trial fields (``labels``, ``valid_frames``) follow ``trial_ids``; ``tiers`` is
    indexed by trial id and covers every id from 0 to its length - 1, as ``tiers.npy``
    does, including ids that have no files.
    """

    #: Folder name, e.g. ``dynamic29156-11-10-Video-8744edeac3b4d1ce16b680916b5267ce``.
    name: str
    #: Ids that have files, ascending; not contiguous in general.
    trial_ids: tuple[int, ...]
    #: Tier of every id 0..len-1, the content of ``meta/trials/tiers.npy``.
    tiers: tuple[str, ...]
    #: Stimulus label per trial (``NaturalVideo``, ``Gabor``...); shapes the video only,
    #: never written: the dataset has no such file.
    labels: tuple[str, ...]
    #: Real (non-NaN) leading frames per trial, one column per variable in
    #: ``reader.format.VARIABLES`` order, like the store's ``valid_frames`` array.
    valid_frames: tuple[tuple[int, ...], ...]
    n_neurons: int
    #: Last dimension of every per-trial array.
    t_pad: int
    height: int = 36
    width: int = 64
    #: dtype of all four per-trial variables and of the provided statistics.
    dtype: str = "float32"
    #: Tiers whose responses are all zeros with no NaN, as in the competition releases.
    withheld_tiers: tuple[str, ...] = TEST_TIERS
    #: Whether ``config.json`` exists; neuralpredictors reads a missing one as {"links": {}}.
    config: bool = True
    #: ``meta/neurons/unit_ids.npy``; None: ascending ids that skip numbers.
    unit_ids: tuple[int, ...] | None = None
    #: ``meta/neurons/cell_motor_coordinates.npy`` rows (x, y, z); None: synthetic.
    coordinates: tuple[tuple[float, float, float], ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        ids = self.trial_ids
        where = f"SampleSpec {self.name!r}"
        if not ids:
            raise ValueError(f"{where}: no trial ids")
        if any(b <= a for a, b in pairwise(ids)) or ids[0] < 0:
            raise ValueError(f"{where}: trial_ids must be non-negative and strictly ascending")
        if len(self.tiers) <= ids[-1]:
            raise ValueError(
                f"{where}: tiers covers ids 0..{len(self.tiers) - 1} but the largest trial id "
                f"is {ids[-1]}; tiers needs one entry per id up to the largest"
            )
        unknown = sorted(set(self.tiers) - set(TIERS))
        if unknown:
            raise ValueError(f"{where}: unknown tiers {unknown}; valid: {', '.join(TIERS)}")
        if len(self.labels) != len(ids) or len(self.valid_frames) != len(ids):
            raise ValueError(
                f"{where}: {len(ids)} trial ids but {len(self.labels)} labels and "
                f"{len(self.valid_frames)} valid_frames rows"
            )
        if self.dtype not in _DTYPES:
            raise ValueError(f"{where}: dtype {self.dtype!r}; expected one of {_DTYPES}")
        if self.n_neurons < 1 or self.t_pad < 1 or self.height < 1 or self.width < 1:
            raise ValueError(f"{where}: n_neurons, t_pad, height and width must be positive")
        for trial, row in zip(ids, self.valid_frames, strict=True):
            if len(row) != len(VARIABLES) or not all(1 <= v <= self.t_pad for v in row):
                raise ValueError(
                    f"{where}: trial {trial}: valid_frames {row} must hold {len(VARIABLES)} "
                    f"counts ({', '.join(VARIABLES)}) in 1..t_pad={self.t_pad}"
                )
            if self.tiers[trial] in self.withheld_tiers and row[_RESPONSES_COL] != self.t_pad:
                raise ValueError(
                    f"{where}: trial {trial} of withheld tier {self.tiers[trial]!r} has "
                    f"{row[_RESPONSES_COL]} valid response frames; withheld responses are all "
                    f"zeros with no NaN, so it must be t_pad={self.t_pad}"
                )
        for field_name, values in (("unit_ids", self.unit_ids), ("coordinates", self.coordinates)):
            if values is not None and len(values) != self.n_neurons:
                raise ValueError(
                    f"{where}: {len(values)} {field_name} for n_neurons={self.n_neurons}"
                )

    @property
    def n_trials(self) -> int:
        """Number of trials with files."""
        return len(self.trial_ids)

    def trial_tiers(self) -> tuple[str, ...]:
        """Tier of each trial with files, in ``trial_ids`` order."""
        return tuple(self.tiers[i] for i in self.trial_ids)

    def is_withheld(self, trial_id: int) -> bool:
        """Whether the responses of ``trial_id`` are written as all zeros."""
        return self.tiers[trial_id] in self.withheld_tiers

    def valid_frames_array(self) -> np.ndarray:
        """``valid_frames`` as an int array (trial, variable), to compare with a store."""
        return np.array(self.valid_frames, dtype=np.int64).reshape(self.n_trials, len(VARIABLES))

    def source_shape(self, variable: str) -> tuple[int, ...]:
        """Shape of one trial file of ``variable`` (time last, as in the source)."""
        return {
            VIDEOS: (self.height, self.width, self.t_pad),
            RESPONSES: (self.n_neurons, self.t_pad),
            BEHAVIOR: (2, self.t_pad),
            PUPIL_CENTER: (2, self.t_pad),
        }[variable]



def _scaled(frames: int, t_pad: int) -> int:
    return max(1, min(t_pad, round(frames * t_pad / _REAL_T_PAD)))


def sample_spec(
    name: str = "dynamic00001-1-1-Video-sample",
    *,
    n_neurons: int = 50,
    n_trials: int = 24,
    n_skipped: int | None = None,
    t_pad: int = 40,
    height: int = 36,
    width: int = 64,
    dtype: str = "float32",
    config: bool = True,
    withheld: bool = True,
    seed: int = 0,
) -> SampleSpec:
    """A small synthetic mouse that still has every quirk of the real ones.

    ``n_trials`` ids have files; ``n_skipped`` more ids (default ``n_trials // 8``, at
    least 2) lie between them with tier ``none`` and no files. Every tier is present, ids
    are shuffled across tiers, and frame counts follow the real per-label patterns scaled
    to ``t_pad``: natural videos stop before behavior does, random dots earlier still,
    pink noise fills ``t_pad`` in every variable (no NaN at all). ``withheld`` writes the
    test tiers' responses as zeros, as the competition releases do.
    """
    if n_trials < 7:
        raise ValueError(
            f"sample_spec: n_trials={n_trials}; at least 7 are needed to cover every tier "
            "and both bonus labels"
        )
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    n_skipped = max(2, n_trials // 8) if n_skipped is None else n_skipped
    if n_skipped < 0:
        raise ValueError(f"sample_spec: n_skipped={n_skipped} must be >= 0")

    # Tier sizes in the proportions of a real mouse (about 350 train of 720).
    counts = {tier: max(1, round(n_trials * share)) for tier, share in _TIER_SHARES.items()}
    counts[_FINAL_BONUS] = max(2, counts[_FINAL_BONUS])  # both of its labels
    counts[TRAIN] = n_trials - sum(counts.values())
    if counts[TRAIN] < 1:
        raise ValueError(f"sample_spec: n_trials={n_trials} leaves no train trial")

    n_ids = n_trials + n_skipped
    # Skipped ids sit strictly inside the range, as in the original mice.
    skipped = set(rng.choice(np.arange(1, n_ids - 1), size=n_skipped, replace=False).tolist())
    trial_ids = tuple(i for i in range(n_ids) if i not in skipped)

    withheld_tiers = TEST_TIERS if withheld else ()
    rows: list[tuple[str, str, tuple[int, ...]]] = []
    for tier in (TRAIN, ORACLE, *TEST_TIERS):
        for k in range(counts[tier]):
            label, video = _sample_trial_pattern(tier, k, rng)
            video = _scaled(video, t_pad)
            responses = t_pad if tier in withheld_tiers else video
            rows.append((tier, label, (video, responses, t_pad, video)))
    # Real ids do not follow presentation order, so tiers interleave across ids.
    order = rng.permutation(len(rows))
    tiers = [NONE_TIER] * n_ids
    labels, valid = [], []
    for trial, j in zip(trial_ids, order, strict=True):
        tier, label, frames = rows[j]
        tiers[trial] = tier
        labels.append(label)
        valid.append(frames)
    return SampleSpec(
        name=name,
        trial_ids=trial_ids,
        tiers=tuple(tiers),
        labels=tuple(labels),
        valid_frames=tuple(valid),
        n_neurons=n_neurons,
        t_pad=t_pad,
        height=height,
        width=width,
        dtype=dtype,
        withheld_tiers=withheld_tiers,
        config=config,
        seed=seed,
    )


def _sample_trial_pattern(tier: str, k: int, rng: np.random.Generator) -> tuple[str, int]:
    """Label and real video frame count (at T_pad 324) of the k-th trial of a tier."""
    if tier == _LIVE_BONUS:
        return "PinkNoise", _REAL_T_PAD  # the trials with no NaN padding at all
    if tier == _FINAL_BONUS:
        if k % 2:
            return "NaturalImages", int(rng.integers(305, 323))
        return "RandomDots", 240
    return "NaturalVideo", 300


def twin_spec(
    metadata_dir: Path | str,
    *,
    neuron_scale: float = 1.0,
    trial_scale: float = 1.0,
    t_pad: int | None = None,
    dtype: str = "float32",
    config: bool = True,
    withheld: bool | None = None,
    seed: int = 0,
) -> SampleSpec:
    """A mouse shaped like the real one whose metadata is in ``metadata_dir``.

    ``metadata_dir`` is a ``real-metadata/<mouse>/`` folder (``basic.json``,
    ``trials.csv``, ``neurons.csv``). The twin has the real name, trial ids, tiers,
    labels, per-variable frame counts (clipped to ``t_pad``, default the real
    ``samples_per_trial``), unit ids and coordinates. Ids missing from ``trials.csv`` get
    tier ``none`` and no files, as in the original mice.

    ``neuron_scale`` keeps that fraction of the neurons (evenly spread, at least 2);
    ``trial_scale`` keeps that fraction of each tier's trials (at least one per tier, real
    ids kept; dropped ids become ``none`` without files). ``withheld`` None withholds the
    tiers whose responses the real release withholds (``valid_response`` False: the
    test tiers of the "new" mice); True withholds every test tier; False none.
    """
    metadata_dir = Path(metadata_dir).resolve()
    for scale_name, scale in (("neuron_scale", neuron_scale), ("trial_scale", trial_scale)):
        if not 0 < scale <= 1:
            raise ValueError(f"twin_spec: {scale_name}={scale} must be in (0, 1]")
    try:
        basic = json.loads((metadata_dir / "basic.json").read_text())
        trial_rows = _read_csv(metadata_dir / "trials.csv")
        neuron_rows = _read_csv(metadata_dir / "neurons.csv")
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"twin_spec: {metadata_dir} lacks {Path(e.filename).name}; pass a "
            "real-metadata/<mouse>/ folder holding basic.json, trials.csv and neurons.csv"
        ) from e
    t_pad = int(basic["samples_per_trial"]) if t_pad is None else t_pad
    trial_rows.sort(key=lambda r: int(r["trial"]))

    by_tier: dict[str, list[dict[str, str]]] = {}
    for row in trial_rows:
        tier = row["trial_type"]
        if tier not in TIERS:
            raise ValueError(
                f"twin_spec: {metadata_dir / 'trials.csv'}: trial {row['trial']} has unknown "
                f"tier {tier!r}; valid: {', '.join(TIERS)}"
            )
        by_tier.setdefault(tier, []).append(row)
    real_withheld = tuple(
        t for t in TIERS if t in by_tier and all(r["valid_response"] == "False" for r in by_tier[t])
    )
    if withheld is None:
        withheld_tiers = real_withheld
    else:
        withheld_tiers = TEST_TIERS if withheld else ()

    kept = [row for rows in by_tier.values() for row in _evenly(rows, trial_scale)]
    kept.sort(key=lambda r: int(r["trial"]))
    tiers = [NONE_TIER] * (int(trial_rows[-1]["trial"]) + 1)
    valid = []
    for row in kept:
        tier = row["trial_type"]
        tiers[int(row["trial"])] = tier
        video = min(int(row["valid_frames_video"]), t_pad)
        if tier in withheld_tiers:
            responses = t_pad
        elif tier in real_withheld:
            # The real file is zeros without padding; real responses would end with the
            # video, as they do in every tier the release does not withhold.
            responses = video
        else:
            responses = min(int(row["valid_frames_response"]), t_pad)
        # behavior rows are pupil dilation and running speed: real up to the shorter one.
        behavior = min(int(row["valid_frames_pupil"]), int(row["valid_frames_locomotion"]), t_pad)
        gaze = min(int(row["valid_frames_gaze"]), t_pad)
        valid.append((video, responses, behavior, gaze))

    neurons = _evenly(neuron_rows, neuron_scale, minimum=2)
    return SampleSpec(
        name=metadata_dir.name,
        trial_ids=tuple(int(r["trial"]) for r in kept),
        tiers=tuple(tiers),
        labels=tuple(r["label"] for r in kept),
        valid_frames=tuple(valid),
        n_neurons=len(neurons),
        t_pad=t_pad,
        dtype=dtype,
        withheld_tiers=withheld_tiers,
        config=config,
        unit_ids=tuple(int(r["ID"]) for r in neurons),
        coordinates=tuple(
            (float(r["coord_x"]), float(r["coord_y"]), float(r["coord_z"])) for r in neurons
        ),
        seed=seed,
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _evenly(rows: list[Any], scale: float, minimum: int = 1) -> list[Any]:
    """``scale`` of ``rows``, spread evenly so a subset still spans the whole range."""
    n = min(len(rows), max(minimum, round(len(rows) * scale)))
    if n == len(rows):
        return list(rows)
    picks = np.unique(np.linspace(0, len(rows) - 1, n).round().astype(int))
    return [rows[i] for i in picks]


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
        sink: _Sink = _ZipSink(partial, spec.name) if as_zip else _FolderSink(partial)
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


class _Sink:
    """Where a tree's files go, addressed by POSIX paths relative to the mouse folder."""

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self, rel: str, array: np.ndarray) -> None:
        raise NotImplementedError

    def write_bytes(self, rel: str, data: bytes, top: bool = True) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _FolderSink(_Sink):
    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: set[Path] = set()

    def _path(self, rel: str) -> Path:
        path = self.root / rel
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        return path

    def save(self, rel: str, array: np.ndarray) -> None:
        np.save(self._path(rel), array, allow_pickle=False)

    def write_bytes(self, rel: str, data: bytes, top: bool = True) -> None:
        self._path(rel).write_bytes(data)


class _ZipSink(_Sink):
    """Entries go to the zip one by one; nothing of the tree is held in memory."""

    def __init__(self, path: Path, name: str) -> None:
        # ZIP_STORED: .npy trial files barely compress with deflate, and storing is fast.
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.name = name
        self._dirs: set[str] = set()

    def _entry(self, rel: str, top: bool) -> str:
        name = f"{self.name}/{rel}" if top else rel
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            directory = "/".join(parts[:depth]) + "/"
            if directory not in self._dirs:
                self.zip.mkdir(directory)
                self._dirs.add(directory)
        return name

    def save(self, rel: str, array: np.ndarray) -> None:
        with self.zip.open(self._entry(rel, True), "w") as f:
            np.save(f, array, allow_pickle=False)

    def write_bytes(self, rel: str, data: bytes, top: bool = True) -> None:
        self.zip.writestr(self._entry(rel, top), data)

    def close(self) -> None:
        self.zip.close()


def _write_tree(spec: SampleSpec, sink: _Sink) -> None:
    dtype = np.dtype(spec.dtype)
    params = _MouseParams(spec)
    if spec.config:
        config = {"links": {}, "generator": "sensorium-zarr sample", "seed": spec.seed}
        sink.write_bytes("config.json", json.dumps(config, indent=2).encode())
    sink.save("meta/neurons/unit_ids.npy", params.unit_ids)
    sink.save("meta/neurons/cell_motor_coordinates.npy", params.coordinates)
    width = max(len(t) for t in spec.tiers)
    sink.save("meta/trials/tiers.npy", np.array(spec.tiers, dtype=f"<U{width}"))
    sink.save("meta/trials/trial_idx.npy", np.arange(len(spec.tiers), dtype=np.int64))

    shapes = {var: spec.source_shape(var) for var in VARIABLES}
    running = {var: _RunningStats(shapes[var]) for var in VARIABLES}
    medians = _MedianSample(shapes, dtype, spec.n_trials)
    for position, (trial, label, row) in enumerate(
        zip(spec.trial_ids, spec.labels, spec.valid_frames, strict=True)
    ):
        valid = dict(zip(VARIABLES, row, strict=True))
        arrays = _trial_arrays(spec, params, trial, label, valid, dtype)
        for var, array in arrays.items():
            sink.save(f"data/{var}/{trial}.npy", array)
            running[var].add(array, valid[var])
        medians.add(position, arrays, valid)

    median = medians.finish()
    for var in VARIABLES:
        stats = running[var].finish()
        stats["median"] = median[var]
        for stat in _PROVIDED_STATISTICS:
            sink.save(f"meta/statistics/{var}/all/{stat}.npy", stats[stat].astype(dtype))


class _MouseParams:
    """Per-mouse constants: neuron identities and firing, eye and pupil baselines."""

    def __init__(self, spec: SampleSpec) -> None:
        self.mouse_key = zlib.crc32(spec.name.encode())
        rng = np.random.default_rng([spec.seed, self.mouse_key, 0])
        n = spec.n_neurons
        if spec.unit_ids is None:
            # Real unit ids are ascending but skip numbers.
            self.unit_ids = np.sort(rng.choice(np.arange(1, 2 * n + 1), n, replace=False))
        else:
            self.unit_ids = np.array(spec.unit_ids, dtype=np.int64)
        if spec.coordinates is None:
            xy = rng.uniform((-1400.0, -720.0), (-700.0, -350.0), (n, 2))
            z = rng.choice(np.arange(200.0, 450.0, 25.0), n)
            self.coordinates = np.column_stack([xy.round(), z])
        else:
            self.coordinates = np.array(spec.coordinates, dtype=np.float64).reshape(n, 3)
        self.event_rate = rng.uniform(0.03, 0.15, (n, 1)).astype(np.float32)
        self.event_scale = rng.lognormal(np.log(4.0), 0.6, (n, 1)).astype(np.float32)
        self.pupil_base = rng.uniform(15.0, 40.0)
        self.eye_center = rng.uniform((150.0, 100.0), (300.0, 200.0))

    def trial_rng(self, seed: int, trial: int) -> np.random.Generator:
        # Keyed by trial id, not position, so a trial's data do not depend on which other
        # trials a (scaled) spec keeps.
        return np.random.default_rng([seed, self.mouse_key, 1, trial])


def _trial_arrays(
    spec: SampleSpec,
    params: _MouseParams,
    trial: int,
    label: str,
    valid: dict[str, int],
    dtype: np.dtype,
) -> dict[str, np.ndarray]:
    rng = params.trial_rng(spec.seed, trial)
    t = spec.t_pad
    arrays = {
        VIDEOS: _video(rng, label, spec.height, spec.width, t),
        RESPONSES: (
            np.zeros((spec.n_neurons, t), dtype=np.float32)
            if spec.is_withheld(trial)
            else _responses(rng, params, t)
        ),
        BEHAVIOR: _behavior(rng, params, t),
        PUPIL_CENTER: params.eye_center[:, None] + 8.0 * _smooth_walk(rng, 2, t),
    }
    out = {}
    for var, array in arrays.items():
        array = array.astype(dtype, copy=False)
        if not (var == RESPONSES and spec.is_withheld(trial)):
            array[..., valid[var] :] = np.nan
        out[var] = array
    return out


def _video(rng: np.random.Generator, label: str, height: int, width: int, t_pad: int) -> np.ndarray:
    """Integer-valued 0..255 frames (height, width, time) that compress like real video:
    smooth drifting patterns plus a little sensor noise, not white noise."""
    y = np.arange(height, dtype=np.float32)[:, None, None]
    x = np.arange(width, dtype=np.float32)[None, :, None]
    t = np.arange(t_pad, dtype=np.float32)[None, None, :]
    if label == "GaussianDot":
        # One blob, bright or dark, jumping every 9 frames on a gray screen.
        n_pos = -(-t_pad // 9)
        cy = np.repeat(rng.uniform(0, height, n_pos), 9)[:t_pad].astype(np.float32)
        cx = np.repeat(rng.uniform(0, width, n_pos), 9)[:t_pad].astype(np.float32)
        sign = np.repeat(rng.choice([-1.0, 1.0], n_pos), 9)[:t_pad].astype(np.float32)
        frames = 128 + 110 * sign * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 32)
    else:
        frames = np.zeros((height, width, t_pad), dtype=np.float32)
        n_waves = 1 if label == "Gabor" else 3
        for amplitude in (60.0, 35.0, 20.0)[:n_waves]:
            theta = float(rng.uniform(0, 2 * np.pi))
            freq = float(rng.uniform(0.015, 0.08))  # cycles per pixel
            speed = float(rng.uniform(-0.05, 0.05))  # cycles per frame
            # Python floats keep the float32 grids float32 (numpy scalars would upcast).
            spatial = freq * (math.cos(theta) * x + math.sin(theta) * y) + float(rng.uniform())
            frames += amplitude * np.cos(2 * np.pi * (spatial - speed * t))
        if label == "Gabor":
            cy, cx = float(rng.uniform(0, height)), float(rng.uniform(0, width))
            frames *= np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 10.0**2))
        frames += 128
    frames += 2 * rng.standard_normal(frames.shape, dtype=np.float32)
    return np.clip(np.rint(frames, out=frames), 0, 255, out=frames)


def _responses(rng: np.random.Generator, params: _MouseParams, t_pad: int) -> np.ndarray:
    """Deconvolved-like traces (neuron, time): sparse non-negative events with a short
    decay, a small baseline, and a few exact tiny negatives as deconvolution leaves.

    One uniform draw per value decides all three: below the neuron's event rate it is an
    event (its rescaled value is exponential), else it is rescaled to the baseline, and the
    lowest sliver of that becomes a tiny negative. Vectorised over the trial: a full-size
    trial (8000 x 324) takes a few tens of milliseconds.
    """
    n = params.event_rate.shape[0]
    u = rng.random((n, t_pad), dtype=np.float32)
    rate = np.broadcast_to(params.event_rate, u.shape)
    scale = np.broadcast_to(params.event_scale, u.shape)
    event = u < rate
    on_event = u[event]
    # In place where possible: a fresh 10 MB temporary costs as much as the arithmetic.
    rest = np.subtract(u, rate, out=u)
    rest /= 1 - params.event_rate  # uniform on [0, 1) where not an event
    negative = (rest >= 0) & (rest < 0.002)
    tiny = _TINY_NEGATIVE * (0.75 + 125 * rest[negative])
    trace = rest
    for _ in range(3):  # rest**8: mostly near zero
        np.square(trace, out=trace)
    trace *= 0.05 * params.event_scale
    # Below the rate, u / rate is uniform again, so its -log is exponential.
    trace[event] = -scale[event] * np.log(np.maximum(on_event / rate[event], 1e-12))
    decayed = trace.copy()
    decayed[:, 1:] += 0.6 * trace[:, :-1]
    decayed[:, 2:] += 0.3 * trace[:, :-2]
    decayed[negative] = tiny
    return decayed


def _smooth_walk(rng: np.random.Generator, rows: int, t_pad: int) -> np.ndarray:
    """Smooth random traces (rows, time) of order 1, for eye and body signals."""
    walk = np.cumsum(rng.standard_normal((rows, t_pad + 14)), axis=1) / 4
    kernel = np.hanning(15)
    kernel /= kernel.sum()
    return np.stack([np.convolve(r, kernel, mode="valid") for r in walk])


def _behavior(rng: np.random.Generator, params: _MouseParams, t_pad: int) -> np.ndarray:
    walk = _smooth_walk(rng, 2, t_pad)
    pupil = params.pupil_base * (1 + 0.3 * np.tanh(walk[0]))
    speed = 4.0 * np.abs(walk[1])
    return np.stack([pupil, speed])


class _RunningStats:
    """NaN-aware mean, std, min and max over trials, keeping every axis, streamed.

    NaN only pads trailing frames, so a trial adds its first ``valid`` frames and the
    count is kept per frame. Sums are float64: float32 sums over 700 trials lose digits.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.sum = np.zeros(shape)
        self.sumsq = np.zeros(shape)
        self.min = np.full(shape, np.inf)
        self.max = np.full(shape, -np.inf)
        self.count = np.zeros(shape[-1], dtype=np.int64)

    def add(self, array: np.ndarray, valid: int) -> None:
        a = array[..., :valid].astype(np.float64)
        self.sum[..., :valid] += a
        low, high = self.min[..., :valid], self.max[..., :valid]
        np.minimum(low, a, out=low)
        np.maximum(high, a, out=high)
        self.sumsq[..., :valid] += np.square(a, out=a)
        self.count[:valid] += 1

    def finish(self) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum / self.count
            var = np.maximum(self.sumsq / self.count - mean**2, 0)
        empty = self.count == 0  # frames padded in every trial
        out = {"mean": mean, "std": np.sqrt(var), "min": self.min.copy(), "max": self.max.copy()}
        for stat in out.values():
            stat[..., empty] = np.nan
        return out


class _MedianSample:
    """The median cannot be streamed exactly; it is computed over a subsample of trials
    kept in memory: every trial when they fit in ``_MEDIAN_BUDGET_BYTES`` (small specs:
    exact), otherwise trials evenly spread over the mouse (full-size twins: about 20 of
    720, an approximation). A second pass over the written files would be exact but costs
    a full re-read of a 7 GB tree, and zips cannot be read back cheaply while being
    written."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype: np.dtype, n_trials: int) -> None:
        per_trial = dtype.itemsize * sum(math.prod(s) for s in shapes.values())
        k = max(1, min(n_trials, _MEDIAN_BUDGET_BYTES // per_trial))
        picks = np.unique(np.linspace(0, n_trials - 1, k).round().astype(int))
        self.slot = {int(p): i for i, p in enumerate(picks)}
        self.buffers = {var: np.empty((len(picks), *s), dtype=dtype) for var, s in shapes.items()}
        self.count = {var: np.zeros(s[-1], dtype=np.int64) for var, s in shapes.items()}

    def add(self, position: int, arrays: dict[str, np.ndarray], valid: dict[str, int]) -> None:
        slot = self.slot.get(position)
        if slot is not None:
            for var, array in arrays.items():
                self.buffers[var][slot] = array
                self.count[var][: valid[var]] += 1

    def finish(self) -> dict[str, np.ndarray]:
        """Median per element, as np.nanmedian over the kept trials would give it.

        Sorting in place moves NaN last; since NaN only pads trailing frames, the number
        of real values is the same for every element of a frame, so the middle rows are
        found per frame. np.nanmedian itself goes through masked arrays and is 20x slower.
        """
        out = {}
        for var in list(self.buffers):
            # Sorted in place, the buffer no longer holds the trials: drop it.
            buffer = self.buffers.pop(var)
            buffer.sort(axis=0)
            count = self.count[var]
            index_shape = (1,) * (buffer.ndim - 1) + (-1,)
            low = np.maximum((count - 1) // 2, 0).reshape(index_shape)
            high = (count // 2).clip(max=len(buffer) - 1).reshape(index_shape)
            median = np.take_along_axis(buffer, low, axis=0)[0].astype(np.float64)
            median += np.take_along_axis(buffer, high, axis=0)[0]
            median /= 2
            median[..., count == 0] = np.nan  # frames padded in every kept trial
            out[var] = median
        return out


def sample_tree_specs(*, seed: int = 0) -> list[tuple[SampleSpec, bool]]:
    """The mice ``write_sample_tree`` writes, each with whether it is zipped, so tests of a
    conversion can compare the store with what the source holds.

    Between them they show both source forms: a float32 folder with ``config.json`` whose
    test responses are withheld (a competition release), and a float64 zip with
    ``__MACOSX`` junk, no ``config.json`` and real responses in every tier (the later
    release), with a different neuron count and ``t_pad``.
    """
    folder = sample_spec(
        "dynamic00001-1-1-Video-sample", n_neurons=60, n_trials=24, t_pad=40, seed=seed
    )
    zipped = sample_spec(
        "dynamic00002-3-5-Video-sample",
        n_neurons=80,
        n_trials=30,
        t_pad=44,
        dtype="float64",
        config=False,
        withheld=False,
        seed=seed,
    )
    return [(folder, False), (zipped, True)]


def write_sample_tree(out_dir: Path | str, *, seed: int = 0, overwrite: bool = False) -> list[Path]:
    """Write the quick start's two small mice (``sample_tree_specs``) into ``out_dir``;
    return their paths, the folder first, then the zip."""
    return [
        write_mouse(spec, out_dir, as_zip=as_zip, overwrite=overwrite)
        for spec, as_zip in sample_tree_specs(seed=seed)
    ]
