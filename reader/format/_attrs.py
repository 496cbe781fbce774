"""The root attributes of a store (``attrs["sensorium_zarr"]``), parsed strictly.

One ``parse_<field>`` per attribute returns the checked value or raises
``StoreFormatError`` naming the store, the attribute, what was expected and what was
found, on one line. Nothing is coerced: ``"false"`` is not a bool, ``2.9`` and ``True``
are not ints, ``"train"`` is not a list of tiers. Keys this version does not define are
ignored, so a later converter may add one without breaking older readers.

Completeness is one rule, ``is_complete``, used by every entry point that opens a store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import FormatVersionError, IncompleteStoreError, StoreFormatError
from ._names import (
    ATTRS_KEY,
    FRAME_RATE_HZ,
    STATISTICS_TIER,
    SUPPORTED_FORMAT_VERSIONS,
    VARIABLES,
    ordered_tiers,
)

__all__ = [
    "MouseAttrs",
    "is_complete",
    "require_complete",
    "parse_format_version",
    "PARSERS",
]

#: Longest repr of a bad value a message shows (a config object could be large).
_SHOWN = 60


def _bad(where: str, key: str, expected: str, found: object) -> StoreFormatError:
    shown = repr(found)
    if len(shown) > _SHOWN:
        shown = shown[: _SHOWN - 3] + "..."
    shown = "nothing (missing)" if found is _MISSING else f"{shown} ({type(found).__name__})"
    return StoreFormatError(f"{where}: attribute '{ATTRS_KEY}.{key}' must be {expected}, found {shown}")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _int(value: object, where: str, key: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(where, key, f"an integer >= {minimum}", value)
    return value


def _str(value: object, where: str, key: str, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise _bad(where, key, "a string" if empty else "a non-empty string", value)
    return value


def _str_list(value: object, where: str, key: str) -> tuple[str, ...]:
    # JSON has lists only; a str is a sequence too, and must not become one-letter items.
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _bad(where, key, "a list of strings", value)
    return tuple(value)


def _str_dict(value: object, where: str, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _bad(where, key, "an object of strings", value)
    return dict(value)


def parse_format_version(value: object, where: str) -> int:
    """The format version, or ``FormatVersionError`` if this code does not read it.
    ``value`` may also be the whole attribute object, as callers of earlier releases
    passed it (no version is an object)."""
    if isinstance(value, Mapping):
        value = value.get("format_version", _MISSING)
    if value is _MISSING:
        raise _bad(where, "format_version", "an integer", value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(where, "format_version", "an integer", value)
    if value not in SUPPORTED_FORMAT_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_FORMAT_VERSIONS))
        raise FormatVersionError(
            f"{where}: format version {value} is not supported by this reader "
            f"(supported: {supported}); upgrade sensorium-zarr or re-convert the source"
        )
    return value


def parse_complete(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(where, "complete", "true or false", value)
    return value


def parse_mouse(value: object, where: str) -> str:
    return _str(value, where, "mouse", empty=False)


def parse_n_trials(value: object, where: str) -> int:
    return _int(value, where, "n_trials", minimum=0)


def parse_n_neurons(value: object, where: str) -> int:
    return _int(value, where, "n_neurons", minimum=0)


def parse_t_pad(value: object, where: str) -> int:
    return _int(value, where, "t_pad", minimum=1)


def parse_source(value: object, where: str) -> str:
    return _str(value, where, "source")


def parse_source_dtypes(value: object, where: str) -> dict[str, str]:
    """One entry per variable: the source files' numpy dtype(s), comma separated."""
    dtypes = _str_dict(value, where, "source_dtypes")
    if set(dtypes) != set(VARIABLES):
        raise _bad(where, "source_dtypes", f"an object with keys {', '.join(VARIABLES)}", value)
    return dtypes


def parse_stored_dtypes(value: object, where: str) -> dict[str, str]:
    """One numpy dtype per variable; the reader builds its arrays with them."""
    dtypes = _str_dict(value, where, "stored_dtypes")
    if set(dtypes) != set(VARIABLES):
        raise _bad(where, "stored_dtypes", f"an object with keys {', '.join(VARIABLES)}", value)
    for name in dtypes.values():
        try:
            np.dtype(name)
        except TypeError:
            raise _bad(where, "stored_dtypes", "numpy dtype names", value) from None
    return dtypes


def parse_tiers(value: object, where: str) -> tuple[str, ...]:
    """Tier names, each once, in experiment order. Names other than the known tiers are
    kept (sorted after the known ones, as the converter orders them) but must be usable as
    a path segment, since each names an ``index/<tier>`` array."""
    tiers = _str_list(value, where, "tiers")
    if any(not t or "/" in t or t in (".", "..") for t in tiers):
        raise _bad(where, "tiers", "tier names usable as a path segment", value)
    if len(set(tiers)) != len(tiers) or tiers != ordered_tiers(set(tiers)):
        raise _bad(where, "tiers", f"distinct tier names in experiment order {list(ordered_tiers(set(tiers)))}", value)
    return tiers


def parse_converter_version(value: object, where: str) -> str:
    return _str(value, where, "converter_version")


def parse_config(value: object, where: str) -> dict[str, Any] | None:
    if value is not None and not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
        raise _bad(where, "config", "an object or null", value)
    return value


def parse_frame_rate(value: object, where: str) -> int:
    return _int(value, where, "frame_rate", minimum=1)


def parse_variables(value: object, where: str) -> tuple[str, ...]:
    """Exactly ``VARIABLES``: the order of every per-variable axis, which the reader assumes."""
    variables = _str_list(value, where, "variables")
    if variables != VARIABLES:
        raise _bad(where, "variables", f"the list {list(VARIABLES)}", value)
    return variables


def parse_statistics_tier(value: object, where: str) -> str:
    if value != STATISTICS_TIER:
        raise _bad(where, "statistics_tier", repr(STATISTICS_TIER), value)
    return STATISTICS_TIER


def parse_lossy(value: object, where: str) -> tuple[str, ...]:
    return _str_list(value, where, "lossy")


def parse_uint8_variables(value: object, where: str) -> tuple[str, ...]:
    """Variables whose array holds their values as ``uint8`` (format version 8): distinct,
    in ``VARIABLES`` order, and only variables with a float dtype in ``stored_dtypes``
    (checked by ``MouseAttrs.from_dict``)."""
    names = _str_list(value, where, "uint8_variables")
    if len(set(names)) != len(names) or not set(names) <= set(VARIABLES) or names != tuple(
        v for v in VARIABLES if v in names
    ):
        raise _bad(where, "uint8_variables", f"distinct variable names in the order {list(VARIABLES)}", value)
    return names


def parse_chunking(value: object, where: str) -> dict[str, Any]:
    """The converter's chunking options: names to integers or strings."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, str)) and not isinstance(v, bool) for k, v in value.items()
    ):
        raise _bad(where, "chunking", "an object of integers and strings", value)
    return dict(value)


#: Every attribute's parser, by key, with its default (``_MISSING``: required).
PARSERS: dict[str, tuple[Callable[[object, str], Any], Any]] = {
    "format_version": (parse_format_version, _MISSING),
    "complete": (parse_complete, _MISSING),
    "mouse": (parse_mouse, _MISSING),
    "n_trials": (parse_n_trials, _MISSING),
    "n_neurons": (parse_n_neurons, _MISSING),
    "t_pad": (parse_t_pad, _MISSING),
    "source": (parse_source, _MISSING),
    "source_dtypes": (parse_source_dtypes, _MISSING),
    "stored_dtypes": (parse_stored_dtypes, _MISSING),
    "tiers": (parse_tiers, _MISSING),
    "converter_version": (parse_converter_version, _MISSING),
    "config": (parse_config, None),
    "frame_rate": (parse_frame_rate, FRAME_RATE_HZ),
    "variables": (parse_variables, list(VARIABLES)),
    "statistics_tier": (parse_statistics_tier, STATISTICS_TIER),
    "lossy": (parse_lossy, []),
    "chunking": (parse_chunking, {}),
    "uint8_variables": (parse_uint8_variables, []),
}


def _field(data: Mapping[str, Any], key: str, where: str) -> Any:
    parse, default = PARSERS[key]
    value = data.get(key, default)
    if value is _MISSING:
        raise _bad(where, key, _EXPECTED_WHEN_MISSING.get(key, "present"), _MISSING)
    return parse(value, where)


_EXPECTED_WHEN_MISSING = {"complete": "true or false", "format_version": "an integer"}


def is_complete(data: Mapping[str, Any], where: str) -> bool:
    """The completion rule, the same for every entry point: ``complete`` is ``true``.
    ``false`` means the conversion never finished; a missing or non-bool value is not
    a store of this format (``StoreFormatError``)."""
    return bool(_field(data, "complete", where))


def require_complete(data: Mapping[str, Any], where: str) -> None:
    """Raise ``IncompleteStoreError`` unless ``is_complete``."""
    if not is_complete(data, where):
        raise _incomplete(where)


def _incomplete(where: str) -> IncompleteStoreError:
    return IncompleteStoreError(
        f"{where}: the conversion that wrote this store never finished; run the converter again on the source"
    )


@dataclass(frozen=True)
class MouseAttrs:
    """The root attributes of a store, under ``attrs[ATTRS_KEY]``.

    The converter writes them with ``complete=False`` when it starts and rewrites them with
    ``complete=True`` as its very last step, so a reader can tell a finished store.
    """

    format_version: int
    complete: bool
    mouse: str
    n_trials: int
    n_neurons: int
    t_pad: int
    source: str
    source_dtypes: dict[str, str]
    stored_dtypes: dict[str, str]
    tiers: tuple[str, ...]
    converter_version: str
    config: dict[str, Any] | None = None
    frame_rate: int = FRAME_RATE_HZ
    variables: tuple[str, ...] = VARIABLES
    statistics_tier: str = STATISTICS_TIER
    lossy: tuple[str, ...] = ()
    chunking: dict[str, Any] = field(default_factory=dict)
    #: Variables stored as ``uint8`` (format version 8; see ``array_dtype``).
    uint8_variables: tuple[str, ...] = ()

    def array_dtype(self, variable: str) -> str:
        """The numpy dtype of ``variable``'s array: ``uint8`` for a variable of
        ``uint8_variables`` (its real frames' values, which are integers 0..255; padding
        frames hold 0 and read as NaN, from ``valid_frames``), else ``stored_dtypes``'s,
        which is always the dtype a reader returns."""
        return "uint8" if variable in self.uint8_variables else self.stored_dtypes[variable]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "complete": self.complete,
            "mouse": self.mouse,
            "n_trials": self.n_trials,
            "n_neurons": self.n_neurons,
            "t_pad": self.t_pad,
            "source": self.source,
            "source_dtypes": dict(self.source_dtypes),
            "stored_dtypes": dict(self.stored_dtypes),
            "tiers": list(self.tiers),
            "converter_version": self.converter_version,
            "config": self.config,
            "frame_rate": self.frame_rate,
            "variables": list(self.variables),
            "statistics_tier": self.statistics_tier,
            "lossy": list(self.lossy),
            "chunking": dict(self.chunking),
            # Written only where a variable is listed: before version 8 the key must be absent.
            **({"uint8_variables": list(self.uint8_variables)} if self.uint8_variables else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str, *, complete_only: bool = True) -> MouseAttrs:
        """Parse the attributes of the store at ``where``: every field strictly, the format
        version first (an unsupported one raises ``FormatVersionError`` before anything
        else is judged), then, unless ``complete_only`` is false, the completion rule
        (``IncompleteStoreError``). Any other problem is a ``StoreFormatError`` naming
        ``where`` and the attribute."""
        if not isinstance(data, Mapping):
            raise StoreFormatError(f"{where}: attribute '{ATTRS_KEY}' must be an object, found {type(data).__name__}")
        _field(data, "format_version", where)
        values = {key: _field(data, key, where) for key in PARSERS}
        if complete_only and not values["complete"]:
            raise _incomplete(where)
        coded = values["uint8_variables"]
        if coded and values["format_version"] < 8:
            raise _bad(where, "uint8_variables", f"empty in a format version {values['format_version']} store", coded)
        if any(np.dtype(values["stored_dtypes"][v]).kind != "f" for v in coded):
            raise _bad(where, "uint8_variables", "only variables whose stored_dtypes are float", coded)
        return cls(**values)
