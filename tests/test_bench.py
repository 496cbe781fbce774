"""The benchmark (scripts/benchmarks, run by scripts/bench.py): its rows table is
consistent, a tiny run prints every row with a number in it, and the two sides of every
compared row compute the same values through the same arithmetic path. Never a timing
assertion: the machine is shared and noisy, and a tiny mouse says nothing about speed."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from helpers import REAL_METADATA, REPO

import sensorium_zarr
from benchmarks import rows, runner, sides, training
from benchmarks.report import COLUMNS
from benchmarks.sides import Sides
from sensorium_zarr import _standardize as std_
from sensorium_zarr import format as fmt
from sensorium_zarr.converter import convert_mouse
from sensorium_zarr.testing import twin_spec, write_mouse

TWIN = REAL_METADATA / "dynamic29156-11-10-Video-8744edeac3b4d1ce16b680916b5267ce"
PACKAGE = REPO / "scripts" / "benchmarks"
#: The compared rows of every run; the optional groups' are tested in test_bench_s3.py.
COMPARED = [r.id for r in rows.ROWS if r.compared and r.group is None]
#: Compared rows whose two sides are both .npy readers: floors, the baseline plus work the
#: reader cannot skip.
FLOORS = [r.id for r in rows.ROWS if r.compared and r.ratio is rows.FLOOR]


def _need_twin() -> None:
    if not TWIN.is_dir():
        pytest.skip(f"{TWIN} is not here (shared/ must sit beside the repository)")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


# --------------------------------------------------------------------------- the rows table


def test_rows_table_is_consistent():
    ids = [r.id for r in rows.ROWS]
    assert len(ids) == len(set(ids)), ids
    for r in rows.ROWS:
        assert r.direction in rows.DIRECTION_OPS, r.id
        if r.target is not None:
            # A target says which way is better, the same way the row does.
            assert r.target.op in rows.DIRECTION_OPS[r.direction], r.id
        if r.ratio.inverse:
            assert r.direction == "higher", r.id  # a speed-up
        assert r.compared == (r.over is not None), r.id
        for side in (r.ours, r.baseline):
            if side is not None:
                assert callable(getattr(Sides, side, None)), f"row {r.id}: Sides has no {side}"
    # Cold rows mirror warm ones: same sides, same target.
    for cold in rows.cold_ids():
        c = rows.row(cold)
        twins = [r for r in rows.ROWS if r.cache == "warm" and (r.ours, r.baseline, r.target) == (c.ours, c.baseline,
                                                                                                  c.target)]
        assert twins, cold
    with pytest.raises(KeyError, match="no benchmark row 'nope'"):
        rows.row("nope")


def _row_ids_named_in_code() -> dict[str, str]:
    """Every literal row id the package's code passes to the report or the table."""
    named = {}
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("add", "row", "ref", "compare"):
                    for arg in node.args:
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                            named[arg.value] = f"{path.name}:{node.lineno}"
    return named


def test_every_row_the_code_names_exists():
    named = _row_ids_named_in_code()
    assert {"1", "1rss", "5", "5c", "5d", "6d"} <= set(named)  # the scan does see them
    ids = {r.id for r in rows.ROWS}
    assert {i: where for i, where in named.items() if i not in ids} == {}


def test_measurement_code_states_no_target():
    """Targets live in the rows table: the code that measures never builds one."""
    for path in PACKAGE.glob("*.py"):
        if path.name != "rows.py":
            assert "Target(" not in path.read_text(), path.name


# --------------------------------------------------------------------------- a tiny run


@pytest.mark.parametrize("responses", ["dense", "sparse"])
def test_tiny_benchmark_prints_every_row(tmp_path, capsys, responses):
    _need_twin()
    pytest.importorskip("psutil")
    table = tmp_path / "table.md"
    work = tmp_path / "work"
    argv = ["--metadata", str(TWIN), "--scale", "0.02", "--repeats", "1", "--convert-repeats", "1",
            "--shards", "2", "--codec-trials", "1", "--work", str(work), "--markdown", str(table),
            "--responses", responses, "--loader-batches", "2", "--peer-probe-timeout", "10"]
    assert runner.main(argv) == 0
    captured = capsys.readouterr()
    text = table.read_text()
    assert text in captured.out
    assert "converting" in captured.err  # progress goes to stderr
    assert (f"{responses} responses" if responses == "dense" else "sparse, 0.1 non-zero responses") in text

    header = next(line for line in text.splitlines() if line.startswith("| #"))
    assert tuple(_cells(header)) == COLUMNS
    printed = [_cells(line) for line in text.splitlines() if re.match(r"\| \d", line)]
    cold_missing = re.search(r"cold rows \(3c, 4ac, 4bc\) missing:", text) is not None
    expected = [r for r in rows.ROWS if r.group is None and not (cold_missing and r.cache == "cold")]
    if not training.torch_available():
        assert "training rows (7, 7c, 7w, 7wf, 7p, 7m) missing: torch is not installed" in text
        expected = [r for r in expected if not r.id.startswith("7")]
    assert [row[0] for row in printed] == [r.shown for r in expected]
    number = r"\d+(\.\d+)?"
    for r, row in zip(expected, printed, strict=True):
        assert len(row) == len(COLUMNS), row
        assert re.match(number, row[2]), row  # our measured value
        assert re.match(number, row[3]), row  # the baseline's
        assert re.match(number, row[4]), row  # their ratio
        assert row[5] == (r.target.cell(r) if r.target is not None else "-"), row
        assert row[6] in (("yes", "**no**") if r.target is not None else ("-",)), row

    notes = [line for line in text.splitlines() if line.startswith("- ")]
    shown = {r.shown for r in rows.ROWS}
    for note in notes:
        for ref in re.findall(r"\brows? (\d+[a-z]*)\b", note):
            assert ref in shown, note
    for word in ("cores", "RAM", "numpy", "zarr", "dask", "T_pad", "neurons", "trials", "scale 0.02"):
        assert word in text, word
    # Nothing of this run is left behind without --keep.
    assert not work.exists()


def test_bench_script_finds_its_package():
    """scripts/bench.py runs as a plain script: its folder on sys.path is all it needs."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--help"], capture_output=True,
                          text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    for option in ("--metadata", "--source", "--scale", "--no-cold", "--arithmetic-trials", "--markdown"):
        assert option in done.stdout


def test_generated_tree_is_reused(tmp_path):
    """A second run with the same spec finds the tree of the first (with --keep) and says so."""
    _need_twin()
    args = runner.parse_args(["--metadata", str(TWIN), "--scale", "0.01", "--work", str(tmp_path)])
    first, generated = runner.make_source(args, tmp_path)
    assert generated
    second, generated_again = runner.make_source(args, tmp_path)
    assert second == first and not generated_again
    other = runner.parse_args(["--metadata", str(TWIN), "--scale", "0.02", "--work", str(tmp_path)])
    _, regenerated = runner.make_source(other, tmp_path)
    assert regenerated  # a different spec is never mistaken for the one on disk


# --------------------------------------------------------------------------- both sides of compared rows


@pytest.fixture(scope="module")
def tiny_sides(tmp_path_factory) -> Sides:
    """Both sides over a tiny twin and its store (the benchmark's own tiny scale)."""
    _need_twin()
    folder = tmp_path_factory.mktemp("bench-sides")
    source = write_mouse(twin_spec(TWIN, neuron_scale=0.02, trial_scale=0.02), folder / "source")
    store = convert_mouse(source, folder / "store", progress=False)
    return Sides(sensorium_zarr.open_mouse(store), source)


def _items(s: Sides, over: str) -> list[int]:
    """A few items per compared row: first and last train trial, first and last neuron."""
    return {"trials": [0, len(s.train) - 1], "neurons": [0, s.mouse.n_neurons - 1], "passes": [0]}[over]


@pytest.mark.parametrize("row_id", COMPARED)
def test_both_sides_compute_equal_values(tiny_sides, row_id):
    row = rows.row(row_id)
    for item in _items(tiny_sides, row.over):
        ours = sides.as_arrays(tiny_sides.method(row.ours)(item))
        base = sides.as_arrays(tiny_sides.method(row.baseline)(item))
        assert len(ours) == len(base) > 0
        for a, b in zip(ours, base, strict=True):
            assert a.shape == b.shape, (row_id, item)
            assert np.isfinite(a).any(), (row_id, item)  # not vacuously equal
            if row.over == "passes":
                # Means: dask's float32 tree of sums against a running float64 sum.
                np.testing.assert_allclose(a, b, rtol=row.rtol, atol=row.atol, equal_nan=True)
            else:
                # Same values through the same arithmetic: same dtype, equal to the last bit.
                assert a.dtype == b.dtype, (row_id, item)
                np.testing.assert_array_equal(a, b, err_msg=f"row {row_id}, item {item}")


@contextmanager
def _recorded_arithmetic() -> Iterator[list[tuple[str, str, str]]]:
    """Record (variable, function, dtype) of every call of the standardization functions the
    reader's block read calls, whoever calls them, while the block runs: the three that
    standardize an array, and ``rescaling``, the multiplier that ``standardize_inplace``
    applies and that the native engine applies to each chunk as it reads it.

    Both the reader (sensorium_zarr._reading) and the benchmark look them up on the
    _standardize module at each call, so wrapping the module's attributes sees both."""
    calls: list[tuple[str, str, str]] = []
    names = ("standardize", "standardize_inplace", "standardize_into", "standardize_to", "rescaling")
    originals = {name: getattr(std_, name) for name in names}

    def recording_to(fn):
        # The arithmetic's dtype is its output's: a uint8 store's videos (format version 8)
        # go through the same float64 path into float32 as the .npy side's float32 files.
        def wrapper(variable, x, params, out):
            calls.append((variable, "standardize_to", str(out.dtype)))
            return fn(variable, x, params, out)
        return wrapper

    def recording(name, fn):
        def wrapper(variable, x, params):
            calls.append((variable, name, str(np.asarray(x).dtype) if not hasattr(x, "dask") else f"dask {x.dtype}"))
            return fn(variable, x, params)
        return wrapper

    def recording_rescaling(fn):
        def wrapper(variable, params, dtype):
            calls.append((variable, "rescaling", str(np.dtype(dtype))))
            return fn(variable, params, dtype)
        return wrapper

    for name, fn in originals.items():
        if name == "rescaling":
            setattr(std_, name, recording_rescaling(fn))
        elif name == "standardize_to":
            setattr(std_, name, recording_to(fn))
        else:
            setattr(std_, name, recording(name, fn))
    try:
        yield calls
    finally:
        for name, fn in originals.items():
            setattr(std_, name, fn)


def _paths(fn, item) -> set[tuple[str, str, str]]:
    with _recorded_arithmetic() as calls:
        fn(item)
    return set(calls)


def _arithmetic(paths: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """``paths`` without ``standardize_inplace``, which only applies ``rescaling`` (recorded
    too): the reader's native engine applies it to each chunk as it reads it, the .npy side
    to the array ``np.load`` returned; the same multiplication either way."""
    return {p for p in paths if p[1] != "standardize_inplace"}


def _paths_of_row(s: Sides, row_id: str, item: int) -> tuple[set, set]:
    row = rows.row(row_id)
    return _paths(s.method(row.ours), item), _paths(s.method(row.baseline), item)


@pytest.mark.parametrize("row_id", COMPARED)
def test_both_sides_run_the_readers_arithmetic_path(tiny_sides, row_id):
    ours, base = _paths_of_row(tiny_sides, row_id, 0)
    assert ours, f"row {row_id}: the reader standardized nothing through the recorded functions"
    assert _arithmetic(base) == _arithmetic(ours)
    # Responses, most of the bytes, are multiplied by the same rescaling in the stored dtype
    # on both sides: as the native engine reads each chunk, and in place after np.load.
    stored = tiny_sides.mouse.attrs.stored_dtypes[fmt.RESPONSES]
    assert (fmt.RESPONSES, "rescaling", stored) in ours
    assert (fmt.RESPONSES, "standardize_inplace", stored) in base


def test_row_6d_runs_row_5s_arithmetic(tiny_sides):
    """Row 6d stands for row 5's arithmetic alone: the same calls, and the same means as the
    reader over the same trials."""
    n = min(3, len(tiny_sides.train))
    arithmetic, nbytes = tiny_sides.decoded_arithmetic(n)
    assert nbytes > 0
    with _recorded_arithmetic() as calls:
        means = arithmetic()
    assert _arithmetic(set(calls)) == _arithmetic(_paths(tiny_sides.our_stream, 0))
    expected = sides.stream_means(tiny_sides.train.responses[:n], tiny_sides.train.videos[:n])
    for a, b in zip(means, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)


def _old_npy_standardize(variable, x, params):
    """The baseline's arithmetic before the fix: it looked for standardize_inplace on
    ``reader.standardize``, the function (the package's __init__ shadows the module), found
    nothing, and took the float64 path for every variable."""
    inplace = getattr(sensorium_zarr.standardize, "standardize_inplace", None)
    if inplace is not None and x.dtype.kind == "f" and not std_.subtracts_mean(variable):
        return inplace(variable, x, params)
    return std_.standardize(variable, x, params)


def test_the_checks_catch_the_old_float64_baseline(tiny_sides, monkeypatch):
    """With the old baseline arithmetic put back, the path check and the bit-for-bit check
    above both fail, for every compared row that reads responses."""
    monkeypatch.setattr(sides, "standardize_like_reader", _old_npy_standardize)
    for row_id in (r for r in COMPARED if r not in FLOORS):
        ours, base = _paths_of_row(tiny_sides, row_id, 0)
        assert _arithmetic(base) != _arithmetic(ours), row_id
        assert (fmt.RESPONSES, "standardize", "float32") in base, row_id
    reader_trial = tiny_sides.our_trial(0)
    old_trial = tiny_sides.npy_trial(0)
    k = fmt.VARIABLES.index(fmt.RESPONSES)
    assert not np.array_equal(reader_trial[k], old_trial[k], equal_nan=True)
    # Within float32 rounding, though: why a tolerance alone could never tell the paths apart.
    np.testing.assert_allclose(reader_trial[k], old_trial[k], rtol=1e-6, equal_nan=True)


def test_row_3f_checks_every_byte_the_baseline_loads(tiny_sides, monkeypatch):
    """Row 3f is row 3's baseline and the checks: CRC32C, through the function the reader
    calls, over every byte of the four arrays (read as np.load reads them: the values are
    checked equal to the baseline's with the other compared rows), in pieces no larger than
    the store's chunks."""
    assert rows.row("3f").baseline == rows.row("3").baseline
    checked: list[int] = []
    crc = sides.google_crc32c.value

    def counting(data):
        checked.append(len(data))
        return crc(data)

    monkeypatch.setattr(sides.google_crc32c, "value", counting)
    k = len(tiny_sides.train) - 1
    trial = int(tiny_sides.train.trial_ids[k])
    loaded = [np.load(sides.source_file(tiny_sides.source, v, trial)) for v in sides.VARIABLES]
    tiny_sides.npy_trial_checked(k)
    assert sum(checked) == sum(x.nbytes for x in loaded)
    assert max(checked) <= max(tiny_sides.piece_nbytes.values())
    assert tiny_sides.piece_nbytes[fmt.RESPONSES] == tiny_sides.mouse.attrs.chunking["neurons_per_chunk"] * (
        tiny_sides.mouse.t_pad * 4
    )
    checked.clear()
    tiny_sides.npy_trial(k)
    assert not checked  # the baseline itself checks nothing


def test_row_3f_reads_files_as_np_load_does(tmp_path):
    x = np.arange(3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7)
    for order in ("C", "F"):
        np.save(tmp_path / f"{order}.npy", np.asarray(x, order=order))
        for piece in (4, 28, 1000):
            got = sides.load_checked(tmp_path / f"{order}.npy", piece)
            np.testing.assert_array_equal(got, x)
    np.save(tmp_path / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="never unpickles"):
        sides.load_checked(tmp_path / "object.npy", 64)
    with open(tmp_path / "C.npy", "r+b") as f:
        f.truncate(f.seek(0, 2) - 8)
    with pytest.raises(ValueError, match="cut short"):
        sides.load_checked(tmp_path / "C.npy", 28)


def test_row_3f_floor_note(monkeypatch):
    """The out-of-reach note for row 3 appears exactly when row 3f's ratio misses row 3's
    target by more than the noise."""
    from benchmarks import measure
    from benchmarks.report import Report

    # Within the noise a bound's inputs may have (rows.NOISE) of the target: no verdict.
    for floor, expect in ((1.2, True), (1.03, False), (0.9, False)):
        report = Report()
        report.add("3f", floor, 1.0)
        measure.note_trial_floor(report)
        assert bool(report.notes) == expect, floor
        if expect:
            assert "row 3f" in report.notes[0] and "1.20x" in report.notes[0]


def test_row_3df_is_row_3ds_dask_work_over_reads_that_cost_nothing(tiny_sides, monkeypatch):
    """Row 3df's arrays are made as the split's are (same shapes, chunks, dtypes), row 3d's
    selection of them is as many tasks as of the split's, before and after Dask's
    optimisation, gives arrays of the same shapes and dtypes, and reads nothing."""
    import dask

    from sensorium_zarr import _reading

    k = len(tiny_sides.train) - 1
    real = [tiny_sides.train.array(v) for v in sides.VARIABLES]
    for free, array in zip(tiny_sides.free_arrays, real, strict=True):
        assert (free.shape, free.chunks, free.dtype) == (array.shape, array.chunks, array.dtype)
        assert free.name != array.name
        picked, real_picked = free[k], array[k]
        assert len(picked.__dask_graph__()) == len(real_picked.__dask_graph__())
        (opt,), (real_opt,) = dask.optimize(picked), dask.optimize(real_picked)
        assert len(opt.__dask_graph__()) == len(real_opt.__dask_graph__())
    reads: list[object] = []
    real_read = _reading.SplitVariable.read
    monkeypatch.setattr(_reading.SplitVariable, "read", lambda *a, **kw: reads.append(a) or real_read(*a, **kw))
    got = tiny_sides.free_trial_dask(k)
    assert not reads
    expected = tiny_sides.our_trial_dask(k)
    assert reads  # the spy sees the real spelling's reads
    assert [(x.shape, x.dtype) for x in got] == [(x.shape, x.dtype) for x in expected]


def test_free_reads_give_a_selections_shape():
    free = sides.FreeReads((5, 4, 3), np.dtype(np.float32))
    for key, shape in (((1,), (4, 3)), ((slice(1, 4), slice(None), 2), (3, 4)), ((slice(0, 2), [0, 3]), (2, 2, 3))):
        got = free[key]
        assert got.shape == shape and got.dtype == np.float32
        got[...] = 1  # a new array of its own, writable
    assert free[(0,)] is not free[(0,)]


def test_row_3df_adds_row_3fs_floor_over_the_cores_and_notes_row_3d(tiny_sides, monkeypatch):
    """Row 3df's ratio is Dask's own share plus row 3f's over the cores; the out-of-reach
    note for row 3d appears exactly when that misses row 3d's target by more than the noise."""
    from benchmarks import measure
    from benchmarks.report import Report

    monkeypatch.setattr(measure, "usable_cores", lambda: 2)
    report = Report()
    report.add("3f", 1.1, 1.0)
    measure.measure_dask_floor(tiny_sides, [0, len(tiny_sides.train) - 1], report)
    line = report.lines["3df"]
    assert line.fields["cores"] == 2 and line.fields["floor"] == pytest.approx(1.1)
    assert line.ratio == pytest.approx(line.fields["dask"] + 1.1 / 2)
    assert line.fields["dask"] > 0
    for bound, expect in ((1.3, True), (1.03, False), (0.8, False)):
        report = Report()
        report.add("3df", bound, 1.0, dask=bound - 0.5, floor=1.0, cores=2)
        measure.note_dask_floor(report)
        assert bool(report.notes) == expect, bound
        if expect:
            assert "row 3df" in report.notes[0] and f"{bound:.2f}x" in report.notes[0]


def test_layout_benchmark_runs(folder_mouse):
    """scripts/bench_layout.py, which shares the package's timing helpers, runs as a script."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_layout.py"), str(folder_mouse), "--trials", "8",
         "--repeats", "1", "--per-chunk", "8"], capture_output=True, text=True, timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "## Codecs" in done.stdout and "## Chunk shapes (8 trials, responses)" in done.stdout
    table = [_cells(line) for line in done.stdout.splitlines() if line.startswith("| 8 |")]
    assert [row[1] for row in table] == ["zarr", "zarrs"]
    assert all(re.match(r"\d+(\.\d+)?", cell) for row in table for cell in row[2:5])


# --------------------------------------------------------------------------- rows 7: training loaders


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory) -> tuple:
    _need_twin()
    folder = tmp_path_factory.mktemp("bench-training")
    source = write_mouse(twin_spec(TWIN, neuron_scale=0.02, trial_scale=0.02), folder / "source")
    return source, convert_mouse(source, folder / "store", progress=False)


@pytest.mark.parametrize("kind", ["numpy", "neuralpredictors"])
def test_training_rows_compare_equal_windows(tiny_tree, kind):
    """Row 7's two sides give the same sample for the same trial and window (the check
    the benchmark runs before timing), through the peer or its numpy stand-in."""
    pytest.importorskip("torch")
    if kind == "neuralpredictors":
        pytest.importorskip("neuralpredictors")
    source, store = tiny_tree
    training.check_same_window(store, source, "zarr", kind)
    # ... and the check can fail: a window one frame off differs.
    ours = training.ours(store, "zarr")
    trial_id = int(ours.split.trial_ids[ours.trials[0]])
    peer = training.as_dict(training.make_peer(source, offset=8, kind=kind)[trial_id])
    assert not np.allclose(ours[(0, 7)]["videos"].numpy(), peer["videos"].numpy())
    np.testing.assert_allclose(ours[(0, 8)]["videos"].numpy(), peer["videos"].numpy(), rtol=1e-5, atol=1e-5)


def test_free_samples_are_fresh_copies_of_a_real_sample(tiny_tree):
    """Row 7wf's DataLoader runs on samples shaped like MouseDataset's, each new."""
    pytest.importorskip("torch")
    _, store = tiny_tree
    ours = training.ours(store, "zarr")
    free = training.FreeSamples(ours)
    assert len(free) == len(ours)
    real, a, b = ours[0], free[3], free[5]
    assert sorted(a) == sorted(real)
    for key, value in real.items():
        if hasattr(value, "shape"):
            assert a[key].shape == value.shape and a[key].dtype == value.dtype, key
            assert a[key].data_ptr() != b[key].data_ptr(), key  # a fresh tensor per sample
        else:
            assert a[key] == free.sample[key], key  # the one sample's ids, copied as they are


def test_workers_bound_adds_the_loaders_own_cost_to_each_sample():
    # 0 workers: 5 ms a sample, 0.25 ms a free one; with workers 2.25 ms of CPU a free one.
    bound, sample, extra = training.workers_bound(200.0, 4000.0, 0.00225, 2)
    assert sample == pytest.approx(0.005)
    assert extra == pytest.approx(0.002)
    assert bound == pytest.approx(2 / 0.007)
    # The bound's ratio to 0 workers grows towards the cores' count as samples get dearer.
    dear, _, _ = training.workers_bound(2.0, 4000.0, 0.00225, 2)
    assert bound / 200.0 < dear / 2.0 < 2
    # Less CPU with workers than without (noise): no negative cost.
    assert training.workers_bound(200.0, 4000.0, 0.0001, 2)[2] == 0.0


def test_loader_cpu_counts_the_workers(tiny_tree):
    """Row 7wf's CPU per sample includes the workers': a DataLoader whose samples each
    burn CPU in the worker is charged at least that much per sample."""
    pytest.importorskip("torch")
    pytest.importorskip("psutil")
    _, store = tiny_tree
    busy = _Busy(training.FreeSamples(training.ours(store, "zarr")), 0.005)
    keys = list(range(len(busy))) * 2
    rate, cpu = training.loader_cpu(busy, keys, 2, None)
    assert rate > 0
    assert cpu >= 0.005


class _Busy:
    """A Dataset that spends ``seconds`` of CPU on each sample of ``inner``."""

    def __init__(self, inner, seconds):
        self.inner, self.seconds = inner, seconds

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, key):
        import time

        end = time.process_time() + self.seconds
        while time.process_time() < end:
            pass
        return self.inner[key]


def test_numpy_peer_keeps_every_trial_and_draws_inside_the_cut(tiny_tree):
    pytest.importorskip("torch")
    source, store = tiny_tree
    peer = training.NumpyPeer(source)
    ids = sensorium_zarr.open_mouse(store).split("train").trial_ids.tolist()
    for trial_id in ids * 2:
        sample = peer[trial_id]
        assert sample["videos"].shape[:2] == (1, training.FRAMES)
        assert not any(bool(sample[v].isnan().any()) for v in ("videos", "behavior", "pupil_center"))
    assert sorted(peer.cache) == sorted(ids), "the status quo caches every trial it loaded, forever"


@pytest.mark.parametrize("warm_up", [False, True])
def test_warm_rows_read_every_item_once_before_timing(warm_up):
    """A warm row runs both sides once over its items, untimed, before the timed
    repetitions: the page cache may have dropped what the start of the run read."""
    from benchmarks.timing import paired

    calls: list[tuple[str, int]] = []

    def side(name):
        def call(item):
            calls.append((name, item))
            return item
        return call

    paired(side("ours"), side("base"), [1, 2, 3], warm_up=warm_up)
    timed = [("ours", 1), ("base", 1), ("base", 2), ("ours", 2), ("ours", 3), ("base", 3)]
    first = [("ours", 1), ("base", 1), ("ours", 2), ("base", 2), ("ours", 3), ("base", 3)]
    assert calls == (first + timed if warm_up else timed)


def test_compared_warm_rows_warm_up_and_cold_rows_do_not(monkeypatch, tiny_sides):
    """``compare`` asks ``paired`` for the warm-up on warm rows only (a cold row's
    eviction before each call would undo it)."""
    from benchmarks import measure

    seen: dict[str, bool] = {}

    def fake_paired(ours, base, items, before=None, warm_up=False):
        seen[row_id] = warm_up
        return 0.0, 0.0, ours(items[0]), base(items[0])

    monkeypatch.setattr(measure, "paired", fake_paired)
    for row_id in ("3", "4a", "3c"):
        items = [0] if rows.row(row_id).over == "trials" else [1]
        measure.compare(tiny_sides, row_id, items)
    assert seen == {"3": True, "4a": True, "3c": False}
