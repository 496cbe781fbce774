#!/usr/bin/env bash
# Quick start 1: set up ./.venv and run the demo on the built-in sample.
set -euo pipefail
EXTRAS="[fast]"
source "$(dirname "$0")/setup.sh"
exec .venv/bin/python scripts/demo.py "$@"
