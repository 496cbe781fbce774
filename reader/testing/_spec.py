"""``SampleSpec``: everything that shapes one generated mouse, checked when it is made.

The specs themselves come from ``_synthetic`` (``sample_spec``) and ``_twin``
(``twin_spec``); ``_write.write_mouse`` turns one into files.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from ..format import BEHAVIOR, PUPIL_CENTER, RESPONSES, TEST_TIERS, TIERS, VARIABLES, VIDEOS

DTYPES = ("float32", "float64")
#: Kinds of generated responses: ``dense`` (a small positive baseline under the events,
#: almost no exact zero) or ``sparse`` (exact zeros but for ``active_fraction`` of the
#: values, like the deconvolved traces of the release).
DENSE, SPARSE = "dense", "sparse"
RESPONSE_KINDS = (DENSE, SPARSE)
#: Share of non-zero response values the release's deconvolved traces have.
DEFAULT_ACTIVE_FRACTION = 0.1
_RESPONSES_COL = VARIABLES.index(RESPONSES)


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
    #: ``"dense"`` or ``"sparse"`` (see ``RESPONSE_KINDS``).
    responses: str = DENSE
    #: Sparse responses only: expected share of non-zero real values (tiny negatives
    #: included) in trials that are not withheld, averaged over neurons. Neurons differ
    #: (up to 5/3 of it) and each is capped at 1, so above about 0.6 the share falls short.
    active_fraction: float = DEFAULT_ACTIVE_FRACTION

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
        if self.dtype not in DTYPES:
            raise ValueError(f"{where}: dtype {self.dtype!r}; expected one of {DTYPES}")
        if self.responses not in RESPONSE_KINDS:
            raise ValueError(
                f"{where}: responses {self.responses!r}; expected one of {', '.join(RESPONSE_KINDS)}"
            )
        if not 0 < self.active_fraction <= 1:
            raise ValueError(f"{where}: active_fraction={self.active_fraction} must be in (0, 1]")
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
