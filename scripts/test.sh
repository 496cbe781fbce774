#!/usr/bin/env bash
# Quick start 2: set up ./.venv with the test extra and run the test suite.
set -euo pipefail
EXTRAS=${EXTRAS:-"[test,fast,lint,xarray]"}
source "$(dirname "$0")/setup.sh"
exec .venv/bin/python -m pytest -q "$@"
