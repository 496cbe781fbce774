"""PyTorch training loaders over converted stores (the optional ``torch`` extra:
``pip install 'sensorium-zarr[torch]'``). Importing ``sensorium_zarr`` never imports this.

``MouseDataset``: windows of the trials of one split of one mouse, standardized, as
tensors; ``SensoriumDataset``: one per mouse of a folder of stores; ``MouseBatchSampler``:
batches each from one mouse, mice interleaved, reproducible from a seed and resumable.
Samples are plain dicts of tensors, so loaders run in worker processes (fork or spawn).

Modules: ``_windows`` (which frames a sample holds), ``_dataset`` (one mouse), ``_multi``
(several mice, the batch sampler).
"""

from ._dataset import EXTRA_CHANNELS, MouseDataset
from ._multi import INTERLEAVE, MouseBatchSampler, SensoriumDataset
from ._windows import MODES, Windows

__all__ = [
    "MouseDataset",
    "SensoriumDataset",
    "MouseBatchSampler",
    "Windows",
    "MODES",
    "INTERLEAVE",
    "EXTRA_CHANNELS",
]
