"""Storage of the audit trail: the append-only, hash-chained log and the served copies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from .database import Database

LOG = "AuditEvent_history"
SERVED = "AuditEvent"


class ChainConflict(Exception):
    """Another writer took a link of the chain; ``written`` events of the batch were stored."""

    def __init__(self, written: int) -> None:
        super().__init__(f"chain conflict after {written} events")
        self.written = written


class AuditLog:
    def __init__(self, database: Database) -> None:
        self.db = database.db

    async def ensure_index(self) -> None:
        """``_seq`` is unique: the index, not a counter, decides who takes the next link."""
        existing = set((await self.db[LOG].index_information()).keys())
        if "_seq_1" not in existing:
            await self.db[LOG].create_index([("_seq", ASCENDING)], unique=True, name="_seq_1")

    async def head(self, at_least: int = 0) -> tuple[int, str | None]:
        """The chain's last link, found by ``_seq`` equalities alone (indexed everywhere):
        an exponential probe past ``at_least`` (a link known to exist, or 0), then a binary
        search — O(log n) lookups, never a scan or a sort of the log."""
        low = at_least if at_least > 0 and await self._link(at_least) else 0
        step = 1
        high = low + step
        while await self._link(high):
            low, step = high, step * 2
            high = low + step
        while high - low > 1:
            middle = (low + high) // 2
            if await self._link(middle):
                low = middle
            else:
                high = middle
        if low == 0:
            return 0, None
        found = await self._link(low)
        assert found is not None
        return low, str(found["_hash"])

    async def _link(self, seq: int) -> dict[str, Any] | None:
        return await self.db[LOG].find_one({"_seq": seq}, {"_seq": 1, "_hash": 1})

    async def append(self, chained: list[dict[str, Any]]) -> None:
        """Insert into the log in order; ChainConflict if a ``_seq`` was taken meanwhile."""
        try:
            await self.db[LOG].insert_many(chained, ordered=True)
        except BulkWriteError as exc:
            raise ChainConflict(int(exc.details.get("nInserted", 0))) from None
        except DuplicateKeyError:
            raise ChainConflict(0) from None

    async def serve(self, chained: list[dict[str, Any]]) -> None:
        if chained:
            await self.db[SERVED].insert_many([{**doc, "_id": doc["_rid"]} for doc in chained], ordered=False)

    async def repair(self) -> int:
        """Copy to the served collection what a crash left only in the log.

        A writer stores a batch in the log, then its served copies: a crash in between leaves
        the newest links without copies. Walk back from the head while a link has no copy —
        one lookup when nothing is missing, whatever the log holds.
        """
        seq, _ = await self.head()
        copied = 0
        while seq > 0 and await self.db[SERVED].find_one({"_seq": seq}, {"_id": 1}) is None:
            doc = await self.db[LOG].find_one({"_seq": seq})
            if doc is None:
                break  # a gap in the log: for ``dmp-fhir audit verify`` to report
            try:
                await self.db[SERVED].insert_one({**doc, "_id": doc["_rid"]})
                copied += 1
            except DuplicateKeyError:
                pass  # a copy under that id exists (without a _seq of its own: verify says so)
            seq -= 1
        return copied

    async def in_order(self) -> AsyncIterator[dict[str, Any]]:
        async for doc in self.db[LOG].find({}).sort("_seq", ASCENDING):
            yield doc

    async def served_copies(self) -> dict[str, dict[str, Any]]:
        return {doc["_rid"]: doc async for doc in self.db[SERVED].find({})}
