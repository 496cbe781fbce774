"""sensorium-zarr converter: Sensorium 2023 per-trial .npy trees into Zarr v3 stores.

Entry points: ``convert_mouse`` / ``convert_all`` (a source -> a store), ``verify`` (a
store against its source) and ``main`` (the ``sensorium-zarr`` command line; ``entry``
runs it as the program).

Pipeline, one private module a stage: ``_source`` (find and check the input, reads
headers only) -> ``_writer`` (one pass over the data, streaming train statistics) ->
``_recompute`` (medians, statistics arrays) -> ``_verify`` (compare store and source);
``_convert`` ties them together and ``_cli`` is the command line. Synthetic source trees
live in ``sensorium_zarr.testing``.
"""

from ._chunking import Chunking
from ._cli import entry, main, summarize
from ._convert import convert_all, convert_mouse
from ._source import SourceLayout, find_sources, scan_source
from ._verify import verify

__all__ = [
    "Chunking",
    "SourceLayout",
    "convert_all",
    "convert_mouse",
    "entry",
    "find_sources",
    "main",
    "scan_source",
    "summarize",
    "verify",
]
