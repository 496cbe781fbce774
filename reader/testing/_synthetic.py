"""``sample_spec``: a small synthetic mouse with every quirk of the real ones, and
``sample_tree_specs``, the two mice of the quick start."""

from __future__ import annotations

import zlib

import numpy as np

from ..format import NONE_TIER, ORACLE, TEST_TIERS, TRAIN
from ._spec import DEFAULT_ACTIVE_FRACTION, DENSE, SampleSpec

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
    responses: str = DENSE,
    active_fraction: float = DEFAULT_ACTIVE_FRACTION,
) -> SampleSpec:
    """A small synthetic mouse that still has every quirk of the real ones.

    ``n_trials`` ids have files; ``n_skipped`` more ids (default ``n_trials // 8``, at
    least 2) lie between them with tier ``none`` and no files. Every tier is present, ids
    are shuffled across tiers, and frame counts follow the real per-label patterns scaled
    to ``t_pad``: natural videos stop before behavior does, random dots earlier still,
    pink noise fills ``t_pad`` in every variable (no NaN at all). ``withheld`` writes the
    test tiers' responses as zeros, as the competition releases do. ``responses`` is
    ``"dense"`` (the default) or ``"sparse"``: exact zeros but for about
    ``active_fraction`` of the real values, like the release's deconvolved traces.
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
            response_frames = t_pad if tier in withheld_tiers else video
            rows.append((tier, label, (video, response_frames, t_pad, video)))
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
        responses=responses,
        active_fraction=active_fraction,
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


def sample_tree_specs(
    *, seed: int = 0, responses: str = DENSE, active_fraction: float = DEFAULT_ACTIVE_FRACTION
) -> list[tuple[SampleSpec, bool]]:
    """The mice ``write_sample_tree`` writes, each with whether it is zipped, so tests of a
    conversion can compare the store with what the source holds.

    Between them they show both source forms: a float32 folder with ``config.json`` whose
    test responses are withheld (a competition release), and a float64 zip with
    ``__MACOSX`` junk, no ``config.json`` and real responses in every tier (the later
    release), with a different neuron count and ``t_pad``. ``responses`` and
    ``active_fraction`` are those of ``sample_spec``, for both mice.
    """
    folder = sample_spec(
        "dynamic00001-1-1-Video-sample",
        n_neurons=60,
        n_trials=24,
        t_pad=40,
        seed=seed,
        responses=responses,
        active_fraction=active_fraction,
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
        responses=responses,
        active_fraction=active_fraction,
    )
    return [(folder, False), (zipped, True)]


