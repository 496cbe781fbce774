"""scripts/bench.py keeps working: a tiny run prints the machine description and a table
with every row and a measured number in each (never a timing assertion: the machine is
shared and noisy, and a tiny mouse says nothing about speed anyway)."""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest
from helpers import REAL_METADATA, REPO

TWIN = REAL_METADATA / "dynamic29156-11-10-Video-8744edeac3b4d1ce16b680916b5267ce"
WARM_ROWS = ["1", "1", "2", "1w", "3", "3d", "4a", "4b", "4m"]
COLD_ROWS = ["3c", "4ac", "4bc"]
LAST_ROWS = ["5", "6a", "6b", "6c", "5c", "6d", "5d"]
COLUMNS = ["#", "what", "sensorium-zarr", "baseline", "ratio", "target", "met?"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", REPO / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up in sys.modules while the class is created.
    sys.modules["bench"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench", None)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_tiny_benchmark_prints_every_row(bench, tmp_path, capsys):
    if not TWIN.is_dir():
        pytest.skip(f"{TWIN} is not here (shared/ must sit beside the repository)")
    pytest.importorskip("psutil")
    table = tmp_path / "table.md"
    work = tmp_path / "work"
    argv = ["--metadata", str(TWIN), "--scale", "0.02", "--repeats", "1", "--convert-repeats", "1",
            "--shards", "2", "--codec-trials", "1", "--work", str(work), "--markdown", str(table)]
    assert bench.main(argv) == 0
    captured = capsys.readouterr()
    text = table.read_text()
    assert text in captured.out
    assert "converting" in captured.err  # progress goes to stderr

    header = next(line for line in text.splitlines() if line.startswith("| #"))
    assert _cells(header) == COLUMNS
    rows = [_cells(line) for line in text.splitlines() if re.match(r"\| \d", line)]
    numbers = [row[0] for row in rows]
    cold_missing = "cold rows (3c, 4ac, 4bc) missing:" in text
    assert numbers == WARM_ROWS + ([] if cold_missing else COLD_ROWS) + LAST_ROWS
    for row in rows:
        assert len(row) == len(COLUMNS), row
        assert re.match(r"\d+(\.\d+)?", row[2]), row  # our measured value
        assert re.match(r"\d+(\.\d+)?", row[3]), row  # the baseline's
        assert re.match(r"\d+(\.\d+)?", row[4]), row  # their ratio
        assert row[6] in ("yes", "**no**", "-"), row
        assert (row[5] == "-") == (row[6] == "-"), row  # a verdict exactly where there is a target

    for word in ("cores", "RAM", "numpy", "zarr", "dask", "T_pad", "neurons", "trials", "scale 0.02"):
        assert word in text, word
    # Nothing of this run is left behind without --keep.
    assert not work.exists()


def test_generated_tree_is_reused(bench, tmp_path):
    """A second run with the same spec finds the tree of the first (with --keep) and says so."""
    if not TWIN.is_dir():
        pytest.skip(f"{TWIN} is not here")
    args = bench.parse_args(["--metadata", str(TWIN), "--scale", "0.01", "--work", str(tmp_path)])
    first, generated = bench.make_source(args, tmp_path)
    assert generated
    second, generated_again = bench.make_source(args, tmp_path)
    assert second == first and not generated_again
    other = bench.parse_args(["--metadata", str(TWIN), "--scale", "0.02", "--work", str(tmp_path)])
    _, regenerated = bench.make_source(other, tmp_path)
    assert regenerated  # a different spec is never mistaken for the one on disk
