"""The output side of a conversion into object storage, where there is no rename and no
``flock``. Entry points: ``remote_lock``, ``clear_store``, ``store_state``.

The protocol (docs/FORMAT.md, "Completion"): the store is written under its final
prefix. Its root ``zarr.json`` is the first object written, with ``complete: false``, and
rewritten with ``complete: true`` as the very last write, after every chunk; a reader
refuses a store that is not complete, so it never takes a half-written one for done.
Replacing a store (``--overwrite``, or an incomplete one left by a crash) first rewrites
its root with ``complete: false``, then deletes every other object, the root last: at
every moment the prefix holds either the old complete store, or something a reader
refuses. A run that dies anywhere leaves an incomplete store, which the next run of the
same conversion deletes and writes again.

``.<mouse>.zarr.lock`` beside the store keeps two conversions of a mouse apart. It is
created with a conditional put (``If-None-Match: *``), so of two writers exactly one gets
it; it names its holder (host, pid, a random token) and the holder rewrites it every
``REFRESH`` seconds. A lock whose holder is a dead process of this host, or that has not
been refreshed for ``STALE`` seconds, is taken over with a put conditional on its ETag,
so of two writers taking over one lock only one wins.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sensorium_zarr import format as fmt
from sensorium_zarr._location import Remote, describe, is_storage_error
from sensorium_zarr.errors import OutputError

__all__ = ["remote_lock", "clear_store", "store_state", "REFRESH", "STALE"]

log = logging.getLogger("sensorium_zarr")

#: Seconds between the lock holder's rewrites of its lock.
REFRESH = 30.0
#: Seconds without a rewrite after which a lock is taken for a crashed writer's.
STALE = 300.0

ROOT = "zarr.json"


def _lock_path(final: Remote) -> tuple[Any, str]:
    parent, _, name = final.url.rpartition("/")
    return Remote(parent, final.options).objects(), f".{name}.lock"


def _alive_here(holder: dict[str, Any]) -> bool:
    """Whether the lock's holder is a live process, as far as this host can tell."""
    if holder.get("host") != socket.gethostname():
        return True  # another machine's: only its refreshes tell
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


@contextmanager
def remote_lock(final: Remote) -> Iterator[None]:
    """Hold the lock object of store ``final`` for the block, or raise OutputError naming
    the conversion that holds it."""
    import obstore
    from obstore.exceptions import AlreadyExistsError, PreconditionError

    objects, key = _lock_path(final)
    body = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
    data = json.dumps(body).encode()
    for _ in range(3):
        try:
            etag = obstore.put(objects, key, data, mode="create")["e_tag"]
            break
        except AlreadyExistsError:
            pass
        try:
            head = obstore.head(objects, key)
            holder = json.loads(bytes(obstore.get(objects, key).bytes()))
        except FileNotFoundError:
            continue  # released meanwhile: try again
        except ValueError:
            holder = {}
        age = (datetime.now(UTC) - head["last_modified"]).total_seconds()
        if _alive_here(holder) and age < STALE:
            who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "unknown writer"
            raise OutputError(
                f"{final}: another conversion ({who}) is writing this store; wait for it to end or stop it "
                f"(a lock not refreshed for {STALE:.0f} s is taken over)"
            )
        try:
            etag = obstore.put(objects, key, data, mode={"e_tag": head["e_tag"]})["e_tag"]
            log.warning("%s: took over the lock of a conversion that is gone (%s)", final, holder or "unreadable")
            break
        except (PreconditionError, FileNotFoundError):
            continue  # someone else took it over, or released it, first
    else:
        raise OutputError(f"{final}: could not take the lock {key}; another conversion keeps taking it")

    stop = threading.Event()
    current = [etag]

    def refresh() -> None:
        while not stop.wait(REFRESH):
            try:
                current[0] = obstore.put(objects, key, data, mode={"e_tag": current[0]})["e_tag"]
            except Exception as e:  # the next refresh may succeed; the writer must not die of it
                log.warning("%s: could not refresh the lock (%s)", final, describe(e))

    thread = threading.Thread(target=refresh, name="sensorium-zarr-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            obstore.delete(objects, key)
        except Exception as e:
            if not is_storage_error(e) and not isinstance(e, OSError):
                raise
            log.warning("%s: could not remove the lock %s (%s)", final, key, describe(e))


def store_state(final: Remote) -> str | None:
    """None when no store is at ``final``, else "complete" or "incomplete"."""
    import obstore

    try:
        raw = bytes(obstore.get(final.objects(), ROOT).bytes())
    except FileNotFoundError as e:
        if "NoSuchBucket" in str(e):
            raise
        return None
    try:
        attrs = json.loads(raw).get("attributes", {}).get(fmt.ATTRS_KEY, {})
        return "complete" if fmt.is_complete(attrs, str(final)) else "incomplete"
    except (ValueError, AttributeError, TypeError):
        return "incomplete"


def clear_store(final: Remote) -> None:
    """Delete every object of the store at ``final``, so that no reader ever sees it
    complete meanwhile: its root is marked incomplete first and deleted last."""
    import obstore

    objects = final.objects()
    try:
        raw: bytes | None = bytes(obstore.get(objects, ROOT).bytes())
    except FileNotFoundError:
        raw = None
    if raw is not None:
        try:
            meta = json.loads(raw)
            attrs = meta["attributes"][fmt.ATTRS_KEY]
            attrs["complete"] = False
            obstore.put(objects, ROOT, json.dumps(meta).encode())
        except (ValueError, KeyError, TypeError):
            pass  # not a store of ours: nothing a reader would take for complete
    paths = [meta["path"] for batch in obstore.list(objects) for meta in batch]
    others = [p for p in paths if p != ROOT]
    started = time.perf_counter()
    for lo in range(0, len(others), 1000):
        obstore.delete(objects, others[lo : lo + 1000])
    if raw is not None or ROOT in paths:
        obstore.delete(objects, ROOT)
    if paths:
        log.info("%s: deleted %d objects in %.1f s", final, len(paths), time.perf_counter() - started)
