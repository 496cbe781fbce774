#!/usr/bin/env bash
# Quick start 2: set up ./.venv with the test extras (and torch) and run the test suite.
set -euo pipefail
EXTRAS=${EXTRAS:-"[test,fast,lint,xarray,s3]"}
source "$(dirname "$0")/setup.sh"
# torch for the loader's tests, pinned: this is the CPU build the machine has on disk,
# where an unpinned torch would download a CUDA build of several GB.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
# One pytest worker per core (pytest-xdist): most tests wait on processes, servers and
# files as much as they compute, so two workers on two cores halve the wall time.
exec .venv/bin/python -m pytest -q -n auto "$@"
