#!/usr/bin/env python3
"""Convert Sensorium 2023 mouse folders or zips into Zarr stores.

    python scripts/convert_sensorium.py SOURCE... --out DIR [--overwrite] [--workers N]

Same as ``sensorium-zarr convert``; ``--help`` lists every option.
"""

import sys

from sensorium_zarr.converter import entry

if __name__ == "__main__":
    entry(["convert", *sys.argv[1:]])
