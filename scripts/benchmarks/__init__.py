"""The sensorium-zarr benchmark: a converted store against the per-trial .npy tree it
came from, measured side by side in one run (``python scripts/bench.py``).

Modules: ``rows`` (the table, as data: ids, baselines, directions, targets), ``sides``
(our reads and the .npy baseline, sharing the reader's arithmetic), ``timing``,
``cache`` and ``children`` (how things are measured), ``measure`` (one function per group
of rows), ``s3`` and ``cluster`` (the optional groups, --s3 and --cluster), ``report``
(the markdown table), ``runner`` (the command line).
"""
