"""Work measured in child processes (conversion, the bare read, the write floor), with
their wall time and peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

CONVERT = """
import json, logging, sys, time
from pathlib import Path
from sensorium_zarr.converter import Chunking, convert_mouse
# The converter logs its stage times at INFO; they end up in the child's stderr file.
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
source, out, engine, options = sys.argv[1:5]
chunking = Chunking(**json.loads(options)) if options else None
start = time.perf_counter()
store = convert_mouse(Path(source), Path(out), overwrite=True, progress=False, engine=engine or None,
                      chunking=chunking)
print(json.dumps({"seconds": time.perf_counter() - start, "store": str(store)}))
"""

# The baseline for a conversion: discover and np.load every file once, serially.
READ = """
import json, os, sys, time
import numpy as np
start = time.perf_counter()
n = 0
for d, _, names in os.walk(sys.argv[1]):
    for name in sorted(names):
        if name.endswith(".npy"):
            n += np.load(os.path.join(d, name), allow_pickle=False).nbytes
print(json.dumps({"seconds": time.perf_counter() - start, "bytes": n}))
"""

# A floor for any converter writing a store of this size: the same number of bytes
# written to fresh files (64 MB each, about a shard) from memory, with no reading,
# encoding or statistics. Page-cache writes, like the converter's (neither syncs).
WRITE = """
import json, os, sys, time
import numpy as np
target, nbytes = sys.argv[1], int(sys.argv[2])
block = np.random.default_rng(0).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
os.makedirs(target)
start = time.perf_counter()
written = k = 0
while written < nbytes:
    n = min(len(block), nbytes - written)
    with open(os.path.join(target, f"{k}.bin"), "wb") as f:
        f.write(memoryview(block)[:n])
    written, k = written + n, k + 1
print(json.dumps({"seconds": time.perf_counter() - start, "bytes": written}))
"""


@dataclass(frozen=True)
class ChildRun:
    seconds: float  # timed inside the child: no interpreter start, no imports
    process_seconds: float  # the whole child process, from the parent
    peak_rss: int  # bytes
    output: dict[str, Any]


def psutil_module() -> Any:
    """psutil, or exit with how to install it (the library itself never needs it)."""
    try:
        import psutil
    except ImportError:
        raise SystemExit(
            "scripts/bench.py needs psutil to watch the conversion's memory: "
            "pip install psutil (or pip install -e '.[test]')"
        ) from None
    return psutil


def run_child(code: str, args: Sequence[str], logs: Path) -> ChildRun:
    """Run ``python -c code args`` and measure its peak RSS.

    The peak comes from the kernel's high-water mark of that very child (``wait4``'s
    ``ru_maxrss``, not RUSAGE_CHILDREN, which would mix in every earlier child), and from
    psutil polling of the child and its descendants in case the work is spread over
    processes; the larger of the two is reported.
    """
    psutil = psutil_module()
    out_path, err_path = logs.with_suffix(".out"), logs.with_suffix(".err")
    start = time.perf_counter()
    # Output goes to files so a chatty child can never block on a full pipe while we poll.
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=err, cwd=REPO)
    polled = 0
    watched = psutil.Process(proc.pid)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            tree = [watched, *watched.children(recursive=True)]
            polled = max(polled, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass  # the child (or one of its own) just ended
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child process failed ({proc.returncode}):\n{err_path.read_text()[-4000:]}")
    output = json.loads(out_path.read_text().strip().splitlines()[-1])
    output["stderr"] = err_path.read_text()
    return ChildRun(output["seconds"], elapsed, max(usage.ru_maxrss * 1024, polled), output)


def stage_lines(stderr: str) -> list[str]:
    """The converter's own per-stage timings (``<stage> stage: <seconds> s``) from its log."""
    return [line.strip() for line in stderr.splitlines() if " stage: " in line]
