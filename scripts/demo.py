#!/usr/bin/env python3
"""The quick-start demo: write the built-in sample (two small mice, one folder, one zip),
convert both, verify them against their sources, summarize each store, and read a
standardized training batch back through the reader.

    python scripts/demo.py [--out DIR]      (default: ./sample)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import sensorium_zarr as sz
from sensorium_zarr.converter import convert_all, summarize, verify
from sensorium_zarr.testing import write_sample_tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sample"), help="working folder (default: ./sample)")
    args = parser.parse_args(argv)

    sources = write_sample_tree(args.out / "source", overwrite=True)
    print("sample sources:", *(f"  {p}" for p in sources), sep="\n")
    stores = convert_all(sources, args.out / "stores", overwrite=True, progress=False)
    for source, store in zip(sources, stores, strict=True):
        problems = verify(source, store)
        print()
        print(summarize(store))
        print(f"  verify: {'identical to the source' if not problems else problems}")
        if problems:
            return 1

    mice = sz.open_sensorium(args.out / "stores")
    mouse = next(iter(mice.values()))
    train = mouse.split("train", frames=slice(0, mouse.t_pad))
    batch = train.responses[:4].compute()
    videos = train.videos[:4].compute()
    print()
    print(f"{mouse.name}: standardized train batch (4 of {len(train)} trials)")
    print(f"  responses {batch.shape} {batch.dtype}: mean {np.nanmean(batch):.3f}, "
          f"std {np.nanstd(batch):.3f}, NaN (padding) {np.isnan(batch).mean():.1%}")
    print(f"  videos    {videos.shape} {videos.dtype}: mean {np.nanmean(videos):.3f}, std {np.nanstd(videos):.3f}")
    test = mouse.split("test")
    print(f"  test split: {len(test)} trials, {int((~test.has_responses).sum())} with withheld responses (NaN)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
