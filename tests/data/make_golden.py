"""Write ``golden-v<N>.zarr`` and ``golden-v<N>.json`` here for the current format version.

    python tests/data/make_golden.py

Run once per format version, when the version is introduced: a committed golden store
must never change, because it stands for the stores users already have. The JSON holds
what tests/test_format.py expects to read back from it (computed from the source files,
not from the store).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from sensorium_zarr import format as fmt  # noqa: E402
from sensorium_zarr.converter import Chunking, convert_mouse  # noqa: E402
from sensorium_zarr.testing import sample_spec, write_mouse  # noqa: E402


def main() -> int:
    store = HERE / f"golden-v{fmt.FORMAT_VERSION}.zarr"
    if store.exists():
        print(f"{store} exists; a golden store is never rewritten", file=sys.stderr)
        return 1
    spec = sample_spec("dynamic00009-1-1-Video-golden", n_neurons=3, n_trials=8, t_pad=6, height=4, width=5, seed=9)
    with tempfile.TemporaryDirectory() as tmp:
        source = write_mouse(spec, Path(tmp))
        # Response chunks cut along time too: the layout version 4 introduced.
        chunking = Chunking(frames_per_response_chunk=4)
        written = convert_mouse(source, Path(tmp) / "out", progress=False, chunking=chunking)
        tiers = np.load(source / "meta/trials/tiers.npy", allow_pickle=False)
        rank = {tier: k for k, tier in enumerate(fmt.TIERS)}
        ids = sorted(spec.trial_ids, key=lambda i: (rank[str(tiers[i])], i))
        row = {trial_id: k for k, trial_id in enumerate(spec.trial_ids)}
        data = {v: [np.load(source / "data" / v / f"{i}.npy", allow_pickle=False) for i in ids] for v in fmt.VARIABLES}
        train = [np.load(source / "data/responses" / f"{i}.npy", allow_pickle=False).astype(np.float64)
                 for i in ids if tiers[i] == "train"]
        expected = {
            "trial_id": ids,
            "tier": [str(tiers[i]) for i in ids],
            "valid_frames": spec.valid_frames_array()[[row[i] for i in ids]].tolist(),
            "has_responses": [not spec.is_withheld(i) for i in ids],
            **{v: {"nansum": float(np.nansum([np.nansum(a.astype(np.float64)) for a in arrays])),
                   "nan": int(sum(np.isnan(a).sum() for a in arrays))}
               for v, arrays in data.items()},
            "train_responses_std": np.nanstd(np.concatenate(train, axis=-1), axis=1).tolist(),
        }
        written.rename(store)
    (HERE / f"golden-v{fmt.FORMAT_VERSION}.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {store}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
