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
from typing import Any, Literal, get_args

from zarr.codecs import BloscCodec, Crc32cCodec

from sensorium_zarr import format as fmt

__all__ = ["Chunking"]

#: Blosc's compressors and shuffles (zarr's names).
Cname = Literal["lz4", "lz4hc", "blosclz", "snappy", "zlib", "zstd"]
Shuffle = Literal["noshuffle", "shuffle", "bitshuffle"]


@dataclass(frozen=True)
class Chunking:
    trials_per_shard: int = 8
    neurons_per_chunk: int = 64
    frames_per_video_chunk: int = 64
    cname: Cname = "lz4"
    clevel: int = 5
    shuffle: Shuffle = "shuffle"

    def __post_init__(self) -> None:
        for name in ("trials_per_shard", "neurons_per_chunk", "frames_per_video_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"Chunking.{name} must be at least 1, got {getattr(self, name)}")
        for name, allowed in (("cname", get_args(Cname)), ("shuffle", get_args(Shuffle))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Chunking.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    def layout(self, variable: str, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """(chunk shape, shard shape or None) of ``variable`` stored with ``shape``."""
        expected = fmt.spec(fmt.FORMAT_VERSION).lookup(variable)[0]
        if not isinstance(expected.dims, tuple) or isinstance(expected.chunks, fmt.Whole):
            raise ValueError(f"{variable}: not a per-trial variable")
        return self.layout_rule(expected.chunks, expected.dims, shape)

    def layout_rule(
        self, rule: fmt.TrialShards | fmt.TrialBlocks, dims: tuple[str, ...], shape: tuple[int, ...]
    ) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """(chunk shape, shard shape or None) of an array with ``dims`` and ``shape`` under
        the format's chunk ``rule``, with these options."""
        trials, rest = self.trials_per_shard, shape[1:]
        if isinstance(rule, fmt.TrialBlocks):
            # behavior and pupil_center are a few kB per trial: one plain chunk per shard of trials.
            return (trials, *rest), None
        axis = dims.index(rule.axis)
        size = shape[axis]
        per_chunk = min(int(getattr(self, rule.option)), size)
        chunk = [1, *rest]
        shard = [trials, *rest]
        chunk[axis] = per_chunk
        shard[axis] = per_chunk * math.ceil(size / per_chunk) if per_chunk else 0
        return tuple(chunk), tuple(shard)

    def compressors(self, itemsize: int) -> list[Any]:
        return [
            BloscCodec(cname=self.cname, clevel=self.clevel, shuffle=self.shuffle, typesize=itemsize),
            Crc32cCodec(),
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
