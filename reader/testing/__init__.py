"""Synthetic Sensorium 2023 source trees, with every quirk of the real data, for demos,
tests and benchmarks.

Entry points: ``write_sample_tree`` (the two small mice of the quick start, whose specs
``sample_tree_specs`` returns), ``sample_spec`` (a small synthetic mouse), ``twin_spec``
(a mouse shaped like a real one, from its public metadata) and ``write_mouse`` (a spec ->
a folder or zip on disk). Importing the reader or the converter never imports this
module, and this module never imports the converter.

The real dataset is 148 GB behind a slow download, so the demo, the tests and the
benchmarks run on trees written here instead. A tree follows ``SENSORIUM.md`` to the
letter, quirks included: trial ids that skip numbers (tier ``none``, no files), NaN
padding whose length differs by trial and by variable, trials with no padding at all,
withheld (all-zero) test responses, tiny negative responses, optional ``config.json``,
float32 or float64 files, Mac zips with ``__MACOSX`` junk. Responses are dense (a small
positive baseline under the events) or sparse (exact zeros but for about 10% of the
values, like the release's deconvolved traces). Data are deterministic from the spec's
seed, and a full-size twin is written one trial at a time, so memory stays bounded
whatever its size.

Modules: ``_spec`` (``SampleSpec``), ``_synthetic`` (``sample_spec``,
``sample_tree_specs``), ``_twin`` (``twin_spec``), ``_data`` (per-trial arrays),
``_statistics`` (the provided statistics), ``_sinks`` (folder or zip), ``_write``
(``write_mouse``, ``write_sample_tree``).
"""

from ._spec import DEFAULT_ACTIVE_FRACTION, RESPONSE_KINDS, SampleSpec
from ._synthetic import sample_spec, sample_tree_specs
from ._twin import twin_spec
from ._write import write_mouse, write_sample_tree

__all__ = [
    "DEFAULT_ACTIVE_FRACTION",
    "RESPONSE_KINDS",
    "SampleSpec",
    "sample_spec",
    "sample_tree_specs",
    "twin_spec",
    "write_mouse",
    "write_sample_tree",
]
