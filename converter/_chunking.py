"""How each stored variable is chunked, sharded and compressed.

The defaults serve two access patterns (see docs/FORMAT.md, "Chunking", for the
measurements behind them): one whole trial (every variable), and one neuron across all
trials. Shards group ``trials_per_shard`` consecutive trials so a store has a few hundred
files, not the source's thousands; inside a shard, a response chunk is one trial by
``neurons_per_chunk`` neurons by all frames (or by ``frames_per_response_chunk`` frames),
so reading one neuron decodes only its chunk of each trial. Every chunk ends in a CRC32C
checksum, so corruption fails loudly on read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

from zarr.codecs import BloscCodec, Crc32cCodec

from sensorium_zarr import format as fmt
from sensorium_zarr.errors import OptionError

__all__ = ["Chunking", "positive_int"]

#: Blosc's compressors and shuffles, as ``BloscCodec`` spells them.
Cname = Literal["lz4", "lz4hc", "blosclz", "snappy", "zlib", "zstd"]
Shuffle = Literal["noshuffle", "shuffle", "bitshuffle"]
_CNAMES: tuple[str, ...] = get_args(Cname)
_SHUFFLES: tuple[str, ...] = get_args(Shuffle)


def positive_int(value: object, name: str) -> int:
    """``value`` if it is an integer of at least 1, else OptionError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"{name} must be an integer of at least 1, got {value!r}")
    if value < 1:
        raise OptionError(f"{name} must be at least 1, got {value}")
    return value


@dataclass(frozen=True)
class Chunking:
    trials_per_shard: int = 8
    neurons_per_chunk: int = 64
    frames_per_video_chunk: int = 64
    #: Frames per response chunk; None: every frame of the trial in one chunk.
    frames_per_response_chunk: int | None = None
    cname: Cname = "lz4"
    clevel: int = 5
    #: Blosc's shuffle for every per-trial variable but responses.
    shuffle: Shuffle = "shuffle"
    #: Blosc's shuffle for responses: byte shuffle makes float traces with full-entropy
    #: mantissas (dense, or mostly zero like deconvolved ones) larger and slower to decode.
    response_shuffle: Shuffle = "noshuffle"
    #: A per-trial variable is stored uncoded (format version 7: no Blosc, each chunk its
    #: values and their CRC32C, checked and copied on read) when Blosc saves less
    #: than this percentage of the bytes of the mouse's first trial; 0: always Blosc.
    min_blosc_saving: int = 10

    def __post_init__(self) -> None:
        for name in ("trials_per_shard", "neurons_per_chunk", "frames_per_video_chunk"):
            positive_int(getattr(self, name), f"Chunking.{name}")
        if self.frames_per_response_chunk is not None:
            positive_int(self.frames_per_response_chunk, "Chunking.frames_per_response_chunk")
        saving = self.min_blosc_saving
        if isinstance(saving, bool) or not isinstance(saving, int) or not 0 <= saving <= 100:
            raise OptionError(f"Chunking.min_blosc_saving must be an integer from 0 to 100, got {saving!r}")
        if isinstance(self.clevel, bool) or not isinstance(self.clevel, int) or not 0 <= self.clevel <= 9:
            raise OptionError(f"Chunking.clevel must be an integer from 0 to 9, got {self.clevel!r}")
        if self.cname not in _CNAMES:
            raise OptionError(f"Chunking.cname must be one of {', '.join(_CNAMES)}, got {self.cname!r}")
        for name in ("shuffle", "response_shuffle"):
            if getattr(self, name) not in _SHUFFLES:
                raise OptionError(
                    f"Chunking.{name} must be one of {', '.join(_SHUFFLES)}, got {getattr(self, name)!r}"
                )

    @classmethod
    def recorded(cls, options: Mapping[str, Any]) -> Chunking:
        """The chunking a store's ``chunking`` attribute records. Stores written before
        ``response_shuffle`` existed shuffled responses as every other variable; stores
        written before ``min_blosc_saving`` coded every variable with Blosc."""
        options = dict(options)
        options.setdefault("response_shuffle", options.get("shuffle", "shuffle"))
        options.setdefault("min_blosc_saving", 0)
        return cls(**options)

    def for_trials(self, n_trials: int) -> Chunking:
        """This chunking with shards of at most ``n_trials`` trials: zarr holds a whole
        shard in memory while it writes one, so a shard longer than the mouse would cost
        memory for trials that do not exist (and a huge ``trials_per_shard`` would abort
        the process), for an identical store."""
        return replace(self, trials_per_shard=max(1, min(self.trials_per_shard, n_trials)))

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
        chunk = [1, *rest]
        shard = [trials, *rest]
        cuts = [(rule.axis, getattr(self, rule.option))]
        if rule.time_option is not None:
            cuts.append(("time", getattr(self, rule.time_option)))
        for name, per in cuts:
            if per is None:  # an unset option: the axis stays whole
                continue
            # A shard holds the whole axis of its trials, rounded up to whole chunks.
            axis = dims.index(name)
            size = shape[axis]
            chunk[axis] = min(int(per), size)
            shard[axis] = chunk[axis] * math.ceil(size / chunk[axis]) if chunk[axis] else 0
        return tuple(chunk), tuple(shard)

    def shuffle_of(self, variable: str) -> Shuffle:
        return self.response_shuffle if variable == fmt.RESPONSES else self.shuffle

    def compressors(self, variable: str, itemsize: int, coded: bool = True) -> list[Any]:
        """The codecs after ``bytes`` of the per-trial ``variable``; without Blosc unless
        ``coded``."""
        checksum = Crc32cCodec()
        if not coded:
            return [checksum]
        return [BloscCodec(cname=self.cname, clevel=self.clevel, shuffle=self.shuffle_of(variable), typesize=itemsize),
                checksum]

    def to_dict(self) -> dict[str, Any]:
        # An unset option is left out, as stores written before it existed have it.
        return {k: v for k, v in asdict(self).items() if v is not None}
