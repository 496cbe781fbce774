"""sensorium-zarr converter: Sensorium 2023 per-trial .npy trees into Zarr v3 stores.

Pipeline (one module a stage): ``source`` (find and check the input, reads headers
only) -> ``writer`` (one pass over the data, streaming train statistics) ->
``recompute`` (medians, statistics arrays) -> ``verify`` (compare store and source).
``convert`` ties them together; ``cli`` is the command line; ``sample`` writes synthetic
source trees for demos, tests and benchmarks.
"""

from .chunking import Chunking
from .convert import convert_all, convert_mouse
from .sample import SampleSpec, sample_spec, twin_spec, write_mouse, write_sample_tree
from .source import SourceLayout, find_sources, scan_source
from .verify import verify

__all__ = [
    "Chunking",
    "SampleSpec",
    "SourceLayout",
    "convert_all",
    "convert_mouse",
    "find_sources",
    "sample_spec",
    "scan_source",
    "twin_spec",
    "verify",
    "write_mouse",
    "write_sample_tree",
]
