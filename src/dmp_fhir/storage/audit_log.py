"""Storage of the audit trail: the append-only, hash-chained log and the served copies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pymongo import ASCENDING, DESCENDING
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

    async def head(self) -> tuple[int, str | None]:
        cursor = self.db[LOG].find({}, {"_seq": 1, "_hash": 1}).sort("_seq", DESCENDING).limit(1)
        docs = await cursor.to_list(1)
        return (int(docs[0]["_seq"]), str(docs[0]["_hash"])) if docs else (0, None)

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
        """Copy to the served collection what a crash left only in the log."""
        cursor = self.db[SERVED].find({}, {"_seq": 1}).sort("_seq", DESCENDING).limit(1)
        served = await cursor.to_list(1)
        last = int(served[0]["_seq"]) if served and "_seq" in served[0] else 0
        copied = 0
        async for doc in self.db[LOG].find({"_seq": {"$gt": last}}).sort("_seq", ASCENDING):
            try:
                await self.db[SERVED].insert_one({**doc, "_id": doc["_rid"]})
                copied += 1
            except DuplicateKeyError:
                continue
        return copied

    async def in_order(self) -> AsyncIterator[dict[str, Any]]:
        async for doc in self.db[LOG].find({}).sort("_seq", ASCENDING):
            yield doc

    async def served_copies(self) -> dict[str, dict[str, Any]]:
        return {doc["_rid"]: doc async for doc in self.db[SERVED].find({})}
