"""Throwaway databases for tests and benchmarks, and the only function that drops a database.

A test or a benchmark pointed at a real server (``MONGODB_URL``) must never destroy a record
store: it asks for a fresh name here, and :func:`drop_disposable` refuses to drop anything
else — a name without a disposable prefix, or one this process did not hand out.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

DISPOSABLE_PREFIXES = ("test", "bench", "load")
_NAME = re.compile(rf"^(?:{'|'.join(DISPOSABLE_PREFIXES)})_[a-z0-9_]*[0-9a-f]{{12}}$")
_handed_out: set[str] = set()


class NotDisposable(RuntimeError):
    """Raised instead of dropping a database that was not made to be thrown away."""


def disposable_name(prefix: str = "test", label: str = "") -> str:
    """A new database name, ``<prefix>_[<label>_]<12 hex>``, remembered as droppable."""
    if prefix not in DISPOSABLE_PREFIXES:
        raise ValueError(f"disposable databases are named {DISPOSABLE_PREFIXES}_…, not {prefix!r}_…")
    middle = f"{re.sub(r'[^a-z0-9]+', '_', label.lower()).strip('_')}_" if label else ""
    name = f"{prefix}_{middle}{uuid.uuid4().hex[:12]}"
    _handed_out.add(name)
    return name


def adopt_disposable(name: str) -> None:
    """Declare droppable a disposable name made in another process of this run (a server
    subprocess of a test uses the name its parent handed out)."""
    check_disposable_pattern(name)
    _handed_out.add(name)


def check_disposable_pattern(name: str) -> None:
    if not _NAME.match(name):
        raise NotDisposable(f"refusing to drop database {name!r}: not a disposable test/benchmark name")


def check_disposable(name: str) -> None:
    """Raise unless ``name`` is disposable *and* was handed out by this process."""
    check_disposable_pattern(name)
    if name not in _handed_out:
        raise NotDisposable(f"refusing to drop database {name!r}: this process did not create it")


async def drop_disposable(client: Any, name: str) -> None:
    """Drop ``name`` through an ``AsyncMongoClient``, if it is disposable."""
    check_disposable(name)
    await client.drop_database(name)
    _handed_out.discard(name)


def drop_disposable_sync(client: Any, name: str) -> None:
    """:func:`drop_disposable` for a synchronous ``MongoClient``."""
    check_disposable(name)
    client.drop_database(name)
    _handed_out.discard(name)
