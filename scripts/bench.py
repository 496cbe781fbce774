#!/usr/bin/env python3
"""Benchmark a converted store against the per-trial .npy tree it came from.

    python scripts/bench.py [--metadata DIR | --source MOUSE_DIR] [--scale F] [--repeats N]
                            [--convert-repeats N] [--work DIR] [--keep] [--markdown FILE]
                            [--engine zarr|zarrs] [--no-cold] [--shards N] [--codec-trials N]
                            [--arithmetic-trials N] [--seed N] [--s3] [--cluster]
                            [--cluster-mice N] [--cluster-scale F] [--cluster-workers N]

The benchmark itself is the package beside this file, ``benchmarks`` (its rows, with
their baselines and targets, are in ``benchmarks/rows.py``); running this file puts
``scripts/`` on ``sys.path``, where Python finds it.
"""

import sys

from benchmarks.runner import main

if __name__ == "__main__":
    sys.exit(main())
