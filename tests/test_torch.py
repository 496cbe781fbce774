"""The PyTorch loaders (sensorium_zarr.torch) on real stores and real DataLoaders: windows
inside the real frames, values equal to the reader's standardized arrays, determinism
from a seed, multi-mouse batching and resume, and workers under fork and spawn (run in a
child process with a hard timeout, so a hang fails instead of blocking the suite)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from sensorium_zarr import SelectionError, open_mouse  # noqa: E402
from sensorium_zarr import format as fmt  # noqa: E402
from sensorium_zarr.converter._convert import convert_mouse  # noqa: E402
from sensorium_zarr.testing import sample_spec, write_mouse  # noqa: E402
from sensorium_zarr.torch import MouseBatchSampler, MouseDataset, SensoriumDataset  # noqa: E402

#: Evaluation tiers: validation and the test tiers, whose bonus trials are shorter.
EVAL = ["validation", "test"]
MICE = {"dynamic00011-1-1-Video-torch": 17, "dynamic00012-2-2-Video-torch": 9}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two small mice with different neuron and train trial counts, in one folder."""
    src = tmp_path_factory.mktemp("torch-src")
    out = tmp_path_factory.mktemp("torch-stores")
    for seed, (name, neurons) in enumerate(MICE.items()):
        spec = sample_spec(name, n_neurons=neurons, n_trials=16 + 8 * seed, t_pad=30, height=4, width=6, seed=seed)
        convert_mouse(write_mouse(spec, src), out, progress=False)
    return out


@pytest.fixture(scope="module")
def mouse(folder):
    return open_mouse(folder / f"{next(iter(MICE))}.zarr")


def _window(array: np.ndarray, variable: str, start: int, stop: int, every: int = 1) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[fmt.time_axis(variable, with_trial_axis=False)] = slice(start, stop, every)
    return array[tuple(index)]


# -- windows and values -------------------------------------------------------------------


def test_random_windows_stay_inside_the_real_frames(mouse):
    torch.manual_seed(0)
    # The test tiers hold the bonus stimuli, whose trials are shorter.
    ds = MouseDataset(mouse, ["train", "test"], frames=12)
    split = mouse.split(["train", "test"])
    real = split.valid_frames.min(axis=1)
    assert len(np.unique(real)) > 1, "the sample must have trials of different lengths"
    starts: dict[int, set[int]] = {}
    for _ in range(6):
        for i in range(len(ds)):
            s = ds[i]
            k = int(ds.trials[i])
            assert s["trial_id"] == int(split.trial_ids[k])
            assert 0 <= s["start"] <= real[k] - 12
            for v in fmt.VARIABLES:
                assert s[v].shape[-3 if v == fmt.VIDEOS else -1] == 12
                if v != fmt.RESPONSES or split.has_responses[k]:
                    assert not torch.isnan(s[v]).any(), (v, s["trial_id"], s["start"])
            starts.setdefault(k, set()).add(s["start"])
    assert max(len(v) for v in starts.values()) > 1, "windows are drawn anew per sample"


@pytest.mark.parametrize("statistics", ["recomputed", "provided"])
def test_a_sample_equals_the_readers_standardized_arrays(mouse, statistics):
    ds = MouseDataset(mouse, "train", frames=7, every=2, statistics=statistics)
    split = mouse.split("train", statistics=statistics)
    span = ds.windows.span
    for position, start in ((0, 0), (len(ds) - 1, 3)):
        s = ds[(position, start)]
        k = int(ds.trials[position])
        whole = split.trial(k)
        for v in fmt.VARIABLES:
            expected = _window(whole[v], v, start, start + span, 2)
            got = s[v][0] if v == fmt.VIDEOS else s[v]
            assert got.dtype == torch.float32
            np.testing.assert_array_equal(got.numpy(), expected, err_msg=v)
        # ... and the Dask arrays', computed independently.
        dask_video = split.videos[k, start : start + span : 2].compute()
        np.testing.assert_array_equal(s[fmt.VIDEOS][0].numpy(), dask_video)
        assert s["mouse"] == mouse.name and s["trial_id"] == int(split.trial_ids[k])


def test_neurons_half_precision_and_extra_channels(mouse):
    neurons = [1, 4, 5, 9]
    plain = MouseDataset(mouse, "train", frames=8)
    ds = MouseDataset(mouse, "train", frames=8, neurons=neurons, dtype=torch.bfloat16,
                      video_channels=["pupil_center", "behavior"])
    assert ds.n_neurons == 4
    full, s = plain[(2, 1)], ds[(2, 1)]
    assert s["responses"].dtype == torch.bfloat16 and s["responses"].shape == (4, 8)
    assert torch.equal(s["responses"], full["responses"][neurons].to(torch.bfloat16))
    # Channels: the video, then behavior, then pupil_center, each constant over the frame.
    assert s["videos"].shape == (5, 8, 4, 6)
    assert torch.equal(s["videos"][0], full["videos"][0].to(torch.bfloat16))
    for c, (v, ch) in enumerate([("behavior", 0), ("behavior", 1), ("pupil_center", 0), ("pupil_center", 1)]):
        expected = full[v][ch].to(torch.bfloat16)[:, None, None].expand(8, 4, 6)
        assert torch.equal(s["videos"][1 + c], expected), (v, ch)
    half = MouseDataset(mouse, "train", frames=8, dtype=torch.float16)[(2, 1)]
    assert torch.equal(half["behavior"], full["behavior"].to(torch.float16))


def test_deterministic_windows(mouse):
    real = mouse.split(EVAL).valid_frames.min(axis=1)
    fixed = MouseDataset(mouse, EVAL, frames=10, windows="fixed", offset=4)
    assert [fixed[i]["start"] for i in range(len(fixed))] == [4] * len(fixed) == [4] * int((real >= 14).sum())
    every = MouseDataset(mouse, EVAL, frames=10, windows="all", stride=5)
    assert len(every) == int(sum((r - 10) // 5 + 1 for r in real if r >= 10))
    samples = [every[i] for i in range(len(every))]
    assert [s["start"] for s in samples] == [s["start"] for s in (every[i] for i in range(len(every)))]
    by_trial: dict[int, list[int]] = {}
    for s in samples:
        by_trial.setdefault(s["trial_id"], []).append(s["start"])
    for k, trial_id in enumerate(mouse.split(EVAL).trial_ids.tolist()):
        assert by_trial.get(trial_id, []) == list(range(0, int(real[k]) - 9, 5))
    whole = MouseDataset(mouse, EVAL, frames=None, windows="trial")
    assert [whole[i]["responses"].shape[1] for i in range(len(whole))] == real.tolist()
    # A window longer than some trials' real frames leaves those trials out.
    longest = MouseDataset(mouse, EVAL, frames=int(real.max()), windows="fixed")
    assert len(longest) == int((real == real.max()).sum()) < len(real)


def test_bad_options_fail_with_one_clear_line(mouse):
    for options, match in [
        (dict(windows="sliding"), "windows='sliding'; expected one of random, fixed, all, trial"),
        (dict(frames=0), "frames=0; expected a positive integer"),
        (dict(every=0), "every=0"),
        (dict(windows="trial"), "pass frames=None"),
        (dict(dtype=torch.int32), "dtype=torch.int32"),
        (dict(video_channels=["responses"]), "video_channels=\\('responses',\\)"),
    ]:
        with pytest.raises(SelectionError, match=match):
            MouseDataset(mouse, "train", **options)
    ds = MouseDataset(mouse, "train", frames=10)
    with pytest.raises(IndexError, match="does not fit"):
        ds[(0, 1000)]
    with pytest.raises(IndexError, match="outside"):
        ds[len(ds)]


def test_importing_the_reader_never_imports_torch():
    code = "import sys, sensorium_zarr; sensorium_zarr.open_mouse; assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_dataset_pickles_without_its_data(mouse):
    ds = MouseDataset(mouse, "train", frames=10)
    ds[(0, 0)]  # opens arrays, reads statistics
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000
    again = pickle.loads(blob)
    assert torch.equal(again[(0, 2)]["videos"], ds[(0, 2)]["videos"])


# -- the batch sampler ----------------------------------------------------------------------


def test_multi_mouse_batches_each_from_one_mouse(folder):
    multi = SensoriumDataset(folder, "train", frames=10)
    counts = {name: len(d) for name, d in multi.datasets.items()}
    assert len(set(counts.values())) == 2, counts
    for interleave in ("round_robin", "proportional"):
        sampler = MouseBatchSampler(multi, 4, interleave=interleave, seed=3)
        plan = sampler.plan(0)
        assert len(plan) == len(sampler) == sum(-(-n // 4) for n in counts.values())
        seen = {name: [] for name in counts}
        for batch in plan:
            names = {key[0] for key in batch}
            assert len(names) == 1, batch
            seen[names.pop()] += [key[1] for key in batch]
        for name, positions in seen.items():
            assert sorted(positions) == list(range(counts[name])), "every sample once per epoch"
        order = [batch[0][0] for batch in plan]
        if interleave == "round_robin":
            first, second = sorted(counts)
            short = min(counts.values()) // 4 + (min(counts.values()) % 4 > 0)
            assert order[: 2 * short] == [first, second] * short
    loader = DataLoader(multi, batch_sampler=MouseBatchSampler(multi, 4, seed=0))
    shapes = {(b["mouse"][0], b["responses"].shape[1]) for b in loader}
    assert shapes == {(name, MICE[name]) for name in MICE}
    assert all(len(set(b["mouse"])) == 1 for b in loader)


def test_sampler_is_reproducible_from_a_seed(folder):
    multi = SensoriumDataset(folder, "train", frames=10)
    a, b, c = (MouseBatchSampler(multi, 3, seed=s, interleave="proportional") for s in (7, 7, 8))
    assert a.plan(0) == b.plan(0)
    assert a.plan(0) != c.plan(0)
    assert a.plan(0) != a.plan(1), "each epoch draws anew"
    first = [torch.cat([multi[k]["videos"] for k in batch]) for batch in list(a)[:3]]
    again = [torch.cat([multi[k]["videos"] for k in batch]) for batch in list(b)[:3]]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    starts = {key[2] for batch in a.plan(2) for key in batch}
    assert len(starts) > 1, "random windows start at different frames"


def test_resume_continues_the_same_sequence(folder):
    multi = SensoriumDataset(folder, "train", frames=10)
    reference = MouseBatchSampler(multi, 4, seed=5)
    epochs = [list(reference), list(reference)]  # two whole epochs, uninterrupted
    assert epochs[0] != epochs[1]
    flat = epochs[0] + epochs[1]
    for stop in (0, 3, len(epochs[0]), len(epochs[0]) + 2):
        run = MouseBatchSampler(multi, 4, seed=5)
        taken: list = []
        iterator = iter(run)
        for _ in range(min(stop, len(epochs[0]))):
            taken.append(next(iterator))
        if stop >= len(epochs[0]):
            taken += list(iterator)
            iterator = iter(run)
            taken += [next(iterator) for _ in range(stop - len(epochs[0]))]
        state = json.loads(json.dumps(run.state_dict()))  # as a checkpoint would store it
        resumed = MouseBatchSampler(multi, 4, seed=0)
        resumed.load_state_dict(state)
        rest = list(resumed)  # a state that ended epoch 0 plays epoch 1
        assert taken + rest == flat[: len(taken) + len(rest)], stop
        assert len(taken) + len(rest) in (len(epochs[0]), len(flat))
    with pytest.raises(SelectionError, match="state lacks"):
        MouseBatchSampler(multi, 4).load_state_dict({"epoch": 1})


# -- workers ----------------------------------------------------------------------------------

_WORKERS = """
import json, sys
import torch
from torch.utils.data import DataLoader
from sensorium_zarr.torch import MouseBatchSampler, SensoriumDataset

def batches(dataset, workers, context, epochs, consumed_at=None):
    sampler = MouseBatchSampler(dataset, 3, seed=11, interleave="proportional")
    options = dict(num_workers=workers)
    if workers:
        options.update(multiprocessing_context=context, persistent_workers=True, timeout=60, prefetch_factor=2)
    loader = DataLoader(dataset, batch_sampler=sampler, pin_memory=True, **options)
    out, state = [], None
    for _ in range(epochs):
        for step, batch in enumerate(loader):
            out.append([batch["mouse"][0], batch["trial_id"].tolist(), batch["start"].tolist(),
                        float(batch["videos"].double().sum()), float(batch["responses"].nansum().double())])
            if consumed_at is not None and step + 1 == consumed_at and state is None:
                state = sampler.state_dict(consumed=step + 1)
    return out, state

if __name__ == "__main__":
    folder, context = sys.argv[1:3]
    dataset = SensoriumDataset(folder, "train", frames=10)
    dataset[(next(iter(dataset.datasets)), 0, 0)]  # the parent reads first, as a training script does
    serial, _ = batches(dataset, 0, None, 2)
    parallel, state = batches(dataset, 2, context, 2, consumed_at=2)
    # Resume from the state saved mid-epoch with workers running ahead.
    sampler = MouseBatchSampler(dataset, 3, seed=0, interleave="proportional")
    sampler.load_state_dict(state)
    # (Spawned workers take seconds to start: the resumed loader runs them under fork only.)
    workers = 2 if context == "fork" else 0
    options = dict(multiprocessing_context=context, timeout=60) if workers else {}
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, **options)
    resumed = [[b["mouse"][0], b["trial_id"].tolist(), b["start"].tolist()] for b in loader]
    print(json.dumps({"serial": serial, "parallel": parallel, "resumed": resumed, "state": state}))
"""


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_fork_and_spawn_give_the_serial_batches(folder, tmp_path, context):
    script = tmp_path / "workers.py"
    script.write_text(textwrap.dedent(_WORKERS))
    try:
        done = subprocess.run([sys.executable, str(script), str(folder), context], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"DataLoader with {context} workers did not finish in 120 s (hung)")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    serial, parallel = result["serial"], result["parallel"]
    assert len(serial) == 2 * len(MouseBatchSampler(SensoriumDataset(folder, "train", frames=10), 3))
    assert parallel == serial, "workers, persistent and pinned, give exactly the serial batches"
    assert result["state"]["position"] == 2
    first_epoch = len(serial) // 2
    assert result["resumed"] == [row[:3] for row in serial[2:first_epoch]]
