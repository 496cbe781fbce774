"""``twin_spec``: a mouse shaped like a real one, from its public metadata
(``real-metadata/<mouse>/``: ``basic.json``, ``trials.csv``, ``neurons.csv``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..format import NONE_TIER, TEST_TIERS, TIERS
from ._spec import DEFAULT_ACTIVE_FRACTION, DENSE, SampleSpec


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
    responses: str = DENSE,
    active_fraction: float = DEFAULT_ACTIVE_FRACTION,
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
    ``responses`` and ``active_fraction`` are those of ``sample_spec``.
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
            response_frames = t_pad
        elif tier in real_withheld:
            # The real file is zeros without padding; real responses would end with the
            # video, as they do in every tier the release does not withhold.
            response_frames = video
        else:
            response_frames = min(int(row["valid_frames_response"]), t_pad)
        # behavior rows are pupil dilation and running speed: real up to the shorter one.
        behavior = min(int(row["valid_frames_pupil"]), int(row["valid_frames_locomotion"]), t_pad)
        gaze = min(int(row["valid_frames_gaze"]), t_pad)
        valid.append((video, response_frames, behavior, gaze))

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
        responses=responses,
        active_fraction=active_fraction,
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


