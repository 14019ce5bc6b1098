"""Independent reads sent together, a few at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

#: How many commands are in flight at once: FerretDB v1 serves each on its own connection, and
#: a transaction of hundreds of entries must not open hundreds.
READ_CONCURRENCY = 8


async def bounded_gather(calls: list[Awaitable[T]], limit: int = READ_CONCURRENCY) -> list[T]:
    """``asyncio.gather`` with at most ``limit`` of ``calls`` in flight, results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(c) for c in calls)))
