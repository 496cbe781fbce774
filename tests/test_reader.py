"""The reader's values: every variable of every split against the source ``.npy`` files,
raw and standardized, with the standardization rules recomputed here with plain numpy."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from oracles import (
    NAN_REDUCERS,
    NeuroNormalizer,
    is_withheld,
    real_frames,
    recomputed_standardization,
    response_threshold,
)

from sensorium_zarr import destandardize, open_mouse, standardize
from sensorium_zarr.converter._convert import convert_mouse
from sensorium_zarr.testing import sample_spec, write_mouse

VARIABLES = ("videos", "responses", "behavior", "pupil_center")
# Source (time last) -> stored axes, written out here rather than taken from reader.format.
STORED_AXES = {"videos": (2, 0, 1), "responses": (0, 1), "behavior": (0, 1), "pupil_center": (0, 1)}
TIME_AXIS = {"videos": 1, "responses": 2, "behavior": 2, "pupil_center": 2}  # with the trial axis
TEST_TIERS = ("live_test_main", "live_test_bonus", "final_test_main", "final_test_bonus")
STORE_TIER_ORDER = ("train", "oracle", *TEST_TIERS, "none")
SILENT, FAINT = 3, 5  # neurons made (nearly) constant, to hit the response std threshold


class Mouse:
    """A generated source tree, its store, and its source arrays loaded with numpy."""

    def __init__(self, source: Path, store: Path) -> None:
        self.source, self.store = source, store
        self.tiers_npy = np.load(source / "meta/trials/tiers.npy", allow_pickle=False)
        # The store's order (format version 2), written out here: tiers in experiment
        # order, ascending trial id within a tier.
        rank = {tier: k for k, tier in enumerate(STORE_TIER_ORDER)}
        self.ids = sorted(
            (int(p.stem) for p in (source / "data/responses").glob("*.npy")),
            key=lambda i: (rank[str(self.tiers_npy[i])], i),
        )
        self.data = {
            v: {i: np.load(source / "data" / v / f"{i}.npy", allow_pickle=False) for i in self.ids} for v in VARIABLES
        }
        self.provided = {
            v: {
                s: np.load(source / f"meta/statistics/{v}/all/{s}.npy", allow_pickle=False)
                for s in ("mean", "std", "min", "max", "median")
            }
            for v in VARIABLES
        }

    def ids_of(self, *tiers: str) -> list[int]:
        return [i for i in self.ids if self.tiers_npy[i] in tiers]

    def stored(self, variable: str, ids: list[int]) -> np.ndarray:
        """Source trials stacked in the stored layout."""
        return np.stack([self.data[variable][i].transpose(STORED_AXES[variable]) for i in ids])

    def withheld(self, trial_id: int) -> bool:
        return is_withheld(self.data["responses"][trial_id])


def _flatten_silent_neurons(source: Path) -> None:
    """Neuron SILENT all zeros, neuron FAINT scaled by 1e-7, in every trial and in the
    provided std: their std falls below 0.01 * nanmean(std)."""
    for path in (source / "data/responses").glob("*.npy"):
        r = np.load(path)
        r[SILENT] = np.where(np.isnan(r[SILENT]), np.nan, 0)
        r[FAINT] *= 1e-7
        np.save(path, r)
    path = source / "meta/statistics/responses/all/std.npy"
    s = np.load(path)
    s[SILENT] = np.where(np.isnan(s[SILENT]), np.nan, 0)
    s[FAINT] *= 1e-7
    np.save(path, s)


@pytest.fixture(scope="module")
def f32(tmp_path_factory) -> Mouse:
    """float32, test tiers withheld (all-zero responses), two near-constant neurons."""
    spec = sample_spec(
        "dynamic00001-1-1-Video-reader", n_neurons=30, n_trials=24, t_pad=30, height=6, width=8, seed=1
    )
    source = write_mouse(spec, tmp_path_factory.mktemp("src32"))
    _flatten_silent_neurons(source)
    return Mouse(source, convert_mouse(source, tmp_path_factory.mktemp("out32"), progress=False))


@pytest.fixture(scope="module")
def f64(tmp_path_factory) -> Mouse:
    """float64, every tier with real responses (the later release)."""
    spec = sample_spec(
        "dynamic00002-3-5-Video-reader", n_neurons=21, n_trials=20, t_pad=28, height=5, width=7,
        dtype="float64", withheld=False, seed=2,
    )
    source = write_mouse(spec, tmp_path_factory.mktemp("src64"))
    return Mouse(source, convert_mouse(source, tmp_path_factory.mktemp("out64"), progress=False))


@pytest.fixture(params=["f32", "f64"])
def mouse(request) -> Mouse:
    return request.getfixturevalue(request.param)


def _tol(m: Mouse) -> dict:
    if m.data["videos"][m.ids[0]].dtype == np.float32:
        return dict(rtol=2e-6, atol=2e-6)
    return dict(rtol=1e-10, atol=1e-12)


# -- independent references ------------------------------------------------------------


def _recomputed_reference(m: Mouse, variable: str, ids: list[int]) -> np.ndarray:
    """The documented rules, from every real value of the train trials, in float64."""
    train = [m.data[variable][i] for i in m.ids_of("train")]
    return recomputed_standardization(variable, m.stored(variable, ids), train, [m.withheld(i) for i in ids])


def _provided_reference(m: Mouse, variable: str, ids: list[int]) -> np.ndarray:
    normalizer = NeuroNormalizer(m.provided)
    out = np.stack(
        [normalizer(variable, m.data[variable][i]).transpose(STORED_AXES[variable]) for i in ids]
    ).astype(np.float64)
    if variable == "responses":
        out[[m.withheld(i) for i in ids]] = np.nan
    return out


# -- values ----------------------------------------------------------------------------


def test_raw_values_equal_the_source_exactly(mouse):
    split = open_mouse(mouse.store).split(["train", "validation", "test"], standardize=False)
    assert split.trial_ids.tolist() == mouse.ids
    for variable in VARIABLES:
        expected = mouse.stored(variable, mouse.ids)
        got = getattr(split, variable).compute()
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)  # NaN positions equal too
    # Withheld responses stay the zeros the release holds when not standardizing.
    for i, has in zip(split.trial_ids, split.has_responses, strict=True):
        assert has == (not mouse.withheld(i))


def test_recomputed_standardization_matches_numpy(mouse):
    split = open_mouse(mouse.store).split(["train", "validation", "test"])
    for variable in VARIABLES:
        got = getattr(split, variable).compute()
        assert got.dtype == mouse.data[variable][mouse.ids[0]].dtype
        expected = _recomputed_reference(mouse, variable, mouse.ids)
        np.testing.assert_allclose(got, expected, equal_nan=True, err_msg=variable, **_tol(mouse))
        assert not np.isinf(got).any(), variable


def test_provided_standardization_matches_neuro_normalizer(mouse):
    split = open_mouse(mouse.store).split(["train", "validation", "test"], statistics="provided")
    for variable in VARIABLES:
        got = getattr(split, variable).compute()
        assert got.dtype == mouse.data[variable][mouse.ids[0]].dtype
        expected = _provided_reference(mouse, variable, mouse.ids)
        np.testing.assert_allclose(got, expected, equal_nan=True, err_msg=variable, rtol=1e-5, atol=1e-5)


def test_response_std_threshold(f32):
    """A (nearly) constant neuron is divided by the threshold, never by ~0."""
    m = open_mouse(f32.store)
    train = m.split("train").responses.compute()
    raw = m.split("train", standardize=False).responses.compute()
    train_trials = [f32.data["responses"][i].astype(np.float64) for i in f32.ids_of("train")]
    std = np.nanstd(np.concatenate(train_trials, axis=1), axis=1)
    threshold = response_threshold(std)
    assert std[SILENT] == 0 and 0 < std[FAINT] < threshold  # the fixture does hit the rule
    real = ~np.isnan(raw[:, SILENT])
    assert np.all(train[:, SILENT][real] == 0)
    np.testing.assert_allclose(train[:, FAINT], raw[:, FAINT] / threshold, rtol=1e-5, equal_nan=True)
    params = m.standardization_params("responses")
    assert params.scale[SILENT, 0] == pytest.approx(threshold, rel=1e-6)
    for statistics in ("recomputed", "provided"):
        values = m.split(["train", "test"], statistics=statistics).responses.compute()
        assert np.isfinite(values[~np.isnan(values)]).all()


def test_videos_use_one_pooled_mean_and_std(mouse):
    m = open_mouse(mouse.store)
    values = np.concatenate([mouse.data["videos"][i].astype(np.float64).ravel() for i in mouse.ids_of("train")])
    params = m.standardization_params("videos")
    assert params.mean.size == 1 and params.scale.size == 1
    assert float(params.mean.ravel()[0]) == pytest.approx(np.nanmean(values), rel=1e-9)
    assert float(params.scale.ravel()[0]) == pytest.approx(np.nanstd(values), rel=1e-9)


def test_nan_padding_is_preserved(mouse):
    m = open_mouse(mouse.store)
    for statistics in ("recomputed", "provided"):
        split = m.split("train", statistics=statistics)
        for variable in VARIABLES:
            got = getattr(split, variable).compute()
            source = mouse.stored(variable, list(split.trial_ids))
            np.testing.assert_array_equal(np.isnan(got), np.isnan(source), err_msg=f"{variable} {statistics}")
    # The per-trial real frame counts follow the first NaN frame of each variable.
    split = m.split(["train", "test", "validation"], standardize=False)
    for column, variable in enumerate(VARIABLES):
        source = mouse.stored(variable, list(split.trial_ids))
        np.testing.assert_array_equal(split.valid_frames[:, column], real_frames(source, TIME_AXIS[variable]))


def test_withheld_responses_are_nan_when_standardized(f32, f64):
    m = open_mouse(f32.store)
    test = m.split("test")
    assert len(test) > 0 and not test.has_responses.any()
    assert np.isnan(test.responses.compute()).all()
    assert np.isnan(m.split("test", statistics="provided").responses.compute()).all()
    raw = m.split("test", standardize=False).responses.compute()
    assert np.all(raw == 0)
    # Other variables of withheld trials are real.
    assert not np.isnan(test.videos.compute()[:, 0]).any()
    # In a release with every response, test trials are standardized like any other.
    full = open_mouse(f64.store).split("test")
    assert full.has_responses.all()
    assert not np.isnan(full.responses.compute()[:, :, 0]).any()


@pytest.mark.parametrize("statistics", ["recomputed", "provided"])
def test_frames_window(mouse, statistics):
    m = open_mouse(mouse.store)
    whole = m.split("train", statistics=statistics)
    window = m.split("train", statistics=statistics, frames=slice(4, 19))
    for variable in VARIABLES:
        got = getattr(window, variable)
        index = [slice(None)] * got.ndim
        index[TIME_AXIS[variable]] = slice(4, 19)
        assert got.shape[TIME_AXIS[variable]] == 15
        np.testing.assert_array_equal(got.compute(), getattr(whole, variable).compute()[tuple(index)])
    raw = m.split("train", standardize=False, frames=slice(None, 7)).responses.compute()
    np.testing.assert_array_equal(raw, mouse.stored("responses", mouse.ids_of("train"))[..., :7])


@pytest.mark.parametrize(
    "names, tiers",
    [
        ("train", ("train",)),
        ("validation", ("oracle",)),
        ("oracle", ("oracle",)),
        ("test", TEST_TIERS),
        ("final_test_bonus", ("final_test_bonus",)),
        (["validation", "live_test_main"], ("oracle", "live_test_main")),
        (("train", "train", "oracle"), ("train", "oracle")),
    ],
)
def test_split_names_select_the_right_trials(f32, names, tiers):
    m = open_mouse(f32.store)
    split = m.split(names)
    expected = f32.ids_of(*tiers)
    assert expected, "every tier has trials in the fixture"
    assert split.trial_ids.tolist() == expected  # store order: by tier, then ascending id
    assert split.tiers.tolist() == [str(f32.tiers_npy[i]) for i in expected]
    assert split.responses.shape[0] == split.videos.shape[0] == len(expected)
    np.testing.assert_array_equal(
        split.pupil_center.compute(),
        _recomputed_reference(f32, "pupil_center", expected).astype(np.float32),
    )


def test_mouse_metadata(f32):
    m = open_mouse(f32.store)
    assert m.name == f32.source.name and m.path == f32.store
    assert m.n_trials == len(f32.ids) and m.n_neurons == 30 and m.t_pad == 30
    assert m.trial_ids.tolist() == f32.ids
    assert m.attrs.complete and m.attrs.mouse == m.name
    assert {t: ids.tolist() for t, ids in m.tiers.items()} == {
        t: f32.ids_of(t) for t in sorted(set(f32.tiers_npy[f32.ids]))
    }
    # A valid tier with no trial in this store is an empty split, not an error.
    empty = m.split("none")
    assert len(empty) == 0 and empty.responses.shape == (0, 30, 30)
    assert empty.responses.compute().shape == (0, 30, 30)


@pytest.mark.parametrize("statistics", ["recomputed", "provided"])
def test_inverse_standardization_round_trips(mouse, statistics):
    m = open_mouse(mouse.store)
    ids = mouse.ids
    split = m.split(["train", "validation", "test"], statistics=statistics)
    for variable in VARIABLES:
        standardized = getattr(split, variable)
        back = split.destandardize(variable, standardized.compute())
        raw = mouse.stored(variable, ids)
        keep = split.has_responses if variable == "responses" else np.ones(len(ids), bool)
        np.testing.assert_allclose(back[keep], raw[keep], rtol=1e-5, atol=1e-4, equal_nan=True, err_msg=variable)
        # Lazily too: destandardize works on the Dask array itself.
        lazy = split.destandardize(variable, standardized)
        np.testing.assert_allclose(lazy.compute()[keep], raw[keep], rtol=1e-5, atol=1e-4, equal_nan=True)
        # And the public functions on one numpy trial, with the split's parameters.
        params = split.standardization_params(variable)
        one = raw[0]
        np.testing.assert_allclose(
            destandardize(variable, standardize(variable, one, params), params),
            one,
            rtol=1e-5,
            atol=1e-4,
            equal_nan=True,
        )
        assert standardize(variable, one, params).dtype == one.dtype


def test_statistics_as_stored(mouse):
    m = open_mouse(mouse.store)
    stats = m.statistics()
    train = mouse.ids_of("train")
    reducers = NAN_REDUCERS
    for variable in VARIABLES:
        stack = mouse.stored(variable, train).astype(np.float64)
        t = TIME_AXIS[variable]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for stat, reduce in reducers.items():
                np.testing.assert_allclose(
                    stats[variable]["trials"][stat], reduce(stack, axis=0), rtol=1e-9, equal_nan=True
                )
                np.testing.assert_allclose(stats[variable]["trials_time"][stat], reduce(stack, axis=(0, t)), rtol=1e-9)
        assert stats[variable]["trials_time"]["count"].tolist() == (~np.isnan(stack)).sum(axis=(0, t)).tolist()
    provided = m.provided_statistics()
    for variable in VARIABLES:
        for stat, expected in mouse.provided[variable].items():
            np.testing.assert_array_equal(provided[variable][stat], expected)
