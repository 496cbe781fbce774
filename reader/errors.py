"""Every error sensorium-zarr raises, shared by the reader and the converter.

Each subclasses the built-in exception callers already catch, so ``except ValueError``
or ``except FileNotFoundError`` keeps working. Messages fit on one line and say what,
where (file, trial id, array), expected against found, and how to fix it.
"""

from __future__ import annotations


class SensoriumZarrError(Exception):
    """Base of every sensorium-zarr error."""


class SourceError(SensoriumZarrError, ValueError):
    """A Sensorium source folder or zip is malformed; the message names the file."""


class StoreNotFoundError(SensoriumZarrError, FileNotFoundError):
    """The path is not a sensorium-zarr store."""


class StoreExistsError(SensoriumZarrError, FileExistsError):
    """A complete store is already there and ``overwrite`` was not asked for."""


class StoreReplacedError(StoreNotFoundError):
    """The store was replaced (``--overwrite``) or removed since it was opened."""


class OptionError(SensoriumZarrError, ValueError):
    """An option is out of its range, or asks for more than the machine can give."""


class OutputError(SensoriumZarrError, OSError):
    """The output cannot be written: a file, read-only, full, a URL, or locked by another
    conversion of the same mouse."""


class StoreFormatError(SensoriumZarrError, ValueError):
    """The store's attributes or arrays do not follow the format."""


class IncompleteStoreError(StoreFormatError):
    """The conversion that wrote the store never finished."""


class FormatVersionError(StoreFormatError):
    """The store was written in a format version this code does not read."""


class SelectionError(SensoriumZarrError, ValueError):
    """An unknown split or tier, or a frame window outside the trial."""


class VerificationError(SensoriumZarrError, ValueError):
    """A store does not hold what its source holds."""
