"""Where a store lives when it is not a local folder: a URL (``s3://``, ``gs://``,
``az://``, ``https://`` read-only, any scheme obstore knows) plus storage options.
Entry points: ``is_url``, ``Remote``, ``describe``.

The store layer is zarr's ``ObjectStore`` over obstore (the ``s3`` extra): against the
same S3 server it opened a mouse in a third of FsspecStore's time and read one trial in
about 60% of it (measured for the object-storage issue; numbers in docs/FORMAT.md).

A ``Remote`` is plain data (the URL and the options), so it pickles to Dask and DataLoader
workers, which build their own client from it; the client is cached per process. A
process forked after its parent made a client cannot make requests at all (obstore's
runtime does not survive a fork): it is refused with one line (``require_usable``)
instead of hanging; spawned workers are unaffected.
Credentials not in the options come from the standard environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``,
and the equivalents of the other clouds), which obstore reads itself.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SensoriumZarrError

__all__ = ["is_url", "Remote", "describe", "missing_extra"]

# A scheme of two letters or more, then "://"; one letter would be a Windows drive.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
# pathlib folds "s3://b" into "s3:/b": still a URL, never a folder named "s3:".
_FOLDED_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/(?!/)")

EXTRA = "pip install 'sensorium-zarr[s3]'"


def is_url(location: object) -> bool:
    """Whether ``location`` is a URL string (not a local path)."""
    return isinstance(location, str) and bool(_URL.match(location))


def looks_like_folded_url(location: object) -> bool:
    return bool(_FOLDED_URL.match(str(location)))


def missing_extra(what: str) -> SensoriumZarrError:
    return SensoriumZarrError(f"{what}: object storage needs the obstore package: {EXTRA}")


@dataclass(frozen=True)
class Remote:
    """A store (or a folder of stores) at ``url``; ``options`` are obstore's config keys
    (``endpoint``, ``access_key_id``, ``secret_access_key``, ``region``, ...), with
    ``client_options`` and ``retry_config`` passed on as obstore takes them."""

    url: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> Remote:
        if not is_url(url):
            raise SensoriumZarrError(f"{url}: not a URL (expected scheme://bucket/path)")
        items = tuple(sorted((str(k), _frozen(v)) for k, v in (storage_options or {}).items()))
        return cls(url.rstrip("/"), items)

    @property
    def where(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def read_only_scheme(self) -> bool:
        return self.url.split("://", 1)[0].lower() in ("http", "https")

    def child(self, name: str) -> Remote:
        return Remote(f"{self.url}/{name}", self.options)

    def store(self, read_only: bool = True) -> Any:
        """zarr's ``ObjectStore`` rooted at this URL (one client per process)."""
        return _zarr_store(self, read_only)

    def objects(self) -> Any:
        """The obstore store rooted at this URL, for what zarr's API does not offer
        (conditional writes, ETags, listing, ranged reads); one per process."""
        return _obstore(self)

    def __str__(self) -> str:
        return self.url


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, tuple) and all(isinstance(i, tuple) and len(i) == 2 for i in value):
        return {k: _thawed(v) for k, v in value}
    return value


#: Whether this process, or one it was forked from, made an obstore client.
_CLIENTS_MADE = False
#: Whether this process was forked from one that had made an obstore client.
_FORKED_AFTER_CLIENTS = False


def require_usable(where: str) -> None:
    """SensoriumZarrError if this process cannot send requests to object storage: a
    forked child of a process that had made an obstore client. obstore runs requests on
    one Rust (tokio) runtime per process, started with the first client and never made
    again; a child inherits it without its threads, so a request there would wait forever
    (with a client of its own too), and could take the parent's wakeups with it."""
    if _FORKED_AFTER_CLIENTS:
        raise SensoriumZarrError(
            f"{where}: this process was forked from one that had used object storage, where obstore cannot "
            "send requests (they would hang); start worker processes with 'spawn' or 'forkserver' (e.g. "
            "DataLoader(multiprocessing_context='spawn')), or fork before opening the store"
        )


@functools.lru_cache(maxsize=64)
def _obstore(remote: Remote) -> Any:
    global _CLIENTS_MADE
    require_usable(remote.url)
    try:
        from obstore.store import from_url
    except ImportError:
        raise missing_extra(remote.url) from None
    _CLIENTS_MADE = True
    config = {k: _thawed(v) for k, v in remote.options}
    client_options = dict(config.pop("client_options", None) or {})
    retry_config = config.pop("retry_config", None)
    endpoint = str(config.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT") or "")
    if endpoint.startswith("http://"):
        # A plain-HTTP endpoint is a local or private server the user named on purpose.
        client_options.setdefault("allow_http", True)
    try:
        # obstore types the options per scheme; they are the user's, checked by obstore.
        options: dict[str, Any] = {"config": config or None, "client_options": client_options or None,
                                   "retry_config": retry_config}
        return from_url(remote.url, **options)
    except Exception as e:  # obstore's configuration errors
        raise SensoriumZarrError(f"{remote.url}: {describe(e)}") from None


@functools.lru_cache(maxsize=64)
def _zarr_store(remote: Remote, read_only: bool) -> Any:
    from zarr.storage import ObjectStore

    if not read_only and remote.read_only_scheme:
        raise SensoriumZarrError(f"{remote.url}: HTTP(S) stores are read-only; write to s3://, gs:// or az://")
    return ObjectStore(_obstore(remote), read_only=read_only)


_CODE = re.compile(r"<Code>(?P<code>[A-Za-z]+)</Code>(?:<Message>(?P<message>[^<]*)</Message>)?")
_HINTS = {
    "NoSuchBucket": "no such bucket",
    "InvalidAccessKeyId": "the access key is not known; check AWS_ACCESS_KEY_ID or storage_options",
    "SignatureDoesNotMatch": "the credentials were refused; check AWS_SECRET_ACCESS_KEY or storage_options",
    "AccessDenied": "access denied; check the credentials' permissions",
}


def describe(error: BaseException) -> str:
    """One line for an obstore (or zarr-wrapped) error: the server's error code and
    message when it sent one, not obstore's many-line debug dump."""
    text = str(error)
    found = _CODE.search(text)
    if found:
        code = found["code"]
        hint = _HINTS.get(code)
        return f"{code}: {hint}" if hint else f"{code}: {found['message'] or 'refused by the server'}"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    if "credential" in first.lower() or "unauthenticated" in type(error).__name__.lower():
        return f"{first}; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or storage_options"
    return first[:300]


def is_storage_error(error: BaseException) -> bool:
    """Whether ``error`` comes from obstore (a failed request, refused credentials)."""
    try:
        from obstore.exceptions import BaseError
    except ImportError:
        return False
    return isinstance(error, BaseError)


def _after_fork_in_child() -> None:
    global _FORKED_AFTER_CLIENTS
    _FORKED_AFTER_CLIENTS = _CLIENTS_MADE
    # The parent's clients hold its connections (and its runtime): never this process's.
    _obstore.cache_clear()
    _zarr_store.cache_clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
