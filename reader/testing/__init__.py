"""Synthetic Sensorium 2023 source trees for demos, tests and benchmarks.

Entry points: ``write_sample_tree`` (the built-in two-mouse sample), ``sample_spec`` (a
small synthetic mouse), ``twin_spec`` (a mouse shaped like a real one, from its public
metadata) and ``write_mouse`` (a spec -> a folder or zip on disk). Importing the reader
or the converter never imports this module.
"""

from ._sample import SampleSpec, sample_spec, sample_tree_specs, twin_spec, write_mouse, write_sample_tree

__all__ = [
    "SampleSpec",
    "sample_spec",
    "sample_tree_specs",
    "twin_spec",
    "write_mouse",
    "write_sample_tree",
]
