#!/usr/bin/env bash
# Linters, as CI runs them: ruff over the tree, mypy over the package (strict on the
# format and the reader). Needs ./.venv with ruff and mypy (scripts/test.sh makes it).
set -euo pipefail
status=0
cd "$(dirname "$0")/.."
.venv/bin/ruff check . || status=1
# mypy cannot follow the editable install's import hook, and the package is assembled
# from two folders (pyproject's package-dir), so it checks a tree of links laid out
# as the package is installed.
tree=build/typecheck
rm -rf "$tree"
mkdir -p "$tree/sensorium_zarr"
cp -rs "$PWD/reader/." "$tree/sensorium_zarr/"
cp -rs "$PWD/converter/." "$tree/sensorium_zarr/converter/"
MYPYPATH="$tree" .venv/bin/mypy -p sensorium_zarr || status=1
exit $status
