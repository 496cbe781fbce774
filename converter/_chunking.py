"""How each stored variable is chunked, sharded and compressed.

The defaults serve two access patterns (see docs/FORMAT.md, "Chunking", for the
measurements behind them): one whole trial (every variable), and one neuron across all
trials. Shards group ``trials_per_shard`` consecutive trials so a store has a few hundred
files, not the source's thousands; inside a shard, a response chunk is one trial by
``neurons_per_chunk`` neurons by all frames, so reading one neuron decodes only its chunk
of each trial. Every chunk ends in a CRC32C checksum, so corruption fails loudly on read.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from zarr.codecs import BloscCodec, Crc32cCodec

from sensorium_zarr import format as fmt

__all__ = ["Chunking"]


@dataclass(frozen=True)
class Chunking:
    trials_per_shard: int = 8
    neurons_per_chunk: int = 64
    frames_per_video_chunk: int = 64
    cname: str = "lz4"
    clevel: int = 5
    shuffle: str = "shuffle"

    def __post_init__(self) -> None:
        for name in ("trials_per_shard", "neurons_per_chunk", "frames_per_video_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"Chunking.{name} must be at least 1, got {getattr(self, name)}")

    def layout(self, variable: str, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """(chunk shape, shard shape or None) of ``variable`` stored with ``shape``."""
        trials, rest = self.trials_per_shard, shape[1:]
        if variable == fmt.RESPONSES:
            n_neurons, t_pad = rest
            per_chunk = min(self.neurons_per_chunk, n_neurons)
            chunk = (1, per_chunk, t_pad)
            shard = (trials, per_chunk * math.ceil(n_neurons / per_chunk), t_pad)
            return chunk, shard
        if variable == fmt.VIDEOS:
            t_pad, height, width = rest
            frames = min(self.frames_per_video_chunk, t_pad)
            chunk = (1, frames, height, width)
            shard = (trials, frames * math.ceil(t_pad / frames), height, width)
            return chunk, shard
        # behavior and pupil_center are a few kB per trial: one plain chunk per shard of trials.
        return (trials, *rest), None

    def compressors(self, itemsize: int) -> list[Any]:
        return [
            BloscCodec(cname=self.cname, clevel=self.clevel, shuffle=self.shuffle, typesize=itemsize),
            Crc32cCodec(),
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
