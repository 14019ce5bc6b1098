"""Storage of the audit trail: the append-only, hash-chained log and the served copies."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from .audit_copies import compare, served_form
from .database import Database
from .packing import pack

log = logging.getLogger(__name__)

LOG = "AuditEvent_history"
SERVED = "AuditEvent"
REPAIR_BATCH = 500


@dataclass(slots=True)
class RepairResult:
    """What ``AuditLog.repair`` did: ``_seq`` of each restored copy, ids of removed copies."""

    restored: list[int] = field(default_factory=list)  # missing copies written again
    rewritten: list[int] = field(default_factory=list)  # altered copies replaced
    removed: list[str] = field(default_factory=list)  # served events the log does not hold

    def __len__(self) -> int:
        return len(self.restored) + len(self.rewritten) + len(self.removed)


def _only_duplicates(exc: BulkWriteError) -> bool:
    errors = exc.details.get("writeErrors", [])
    return bool(errors) and all(e.get("code") == 11000 for e in errors)


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
            await self.db[LOG].insert_many([pack(doc) for doc in chained], ordered=True)
        except BulkWriteError as exc:
            raise ChainConflict(int(exc.details.get("nInserted", 0))) from None
        except DuplicateKeyError:
            raise ChainConflict(0) from None

    async def serve(self, chained: list[dict[str, Any]]) -> None:
        if not chained:
            return
        try:
            await self.db[SERVED].insert_many([pack(served_form(doc)) for doc in chained], ordered=False)
        except BulkWriteError as exc:
            # A start-up repair in another process copied it from the log first: same content.
            if not _only_duplicates(exc):
                raise

    async def repair_tail(self) -> int:
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
                await self.db[SERVED].insert_one(pack(served_form(doc)))
                copied += 1
            except DuplicateKeyError:
                pass  # a copy under that id exists (without a _seq of its own: ``repair`` fixes it)
            seq -= 1
        return copied

    async def repair(self) -> RepairResult:
        """Make every served copy equal its log entry: restore missing copies, rewrite altered
        ones (``audit_copies.py``), remove served events the log does not hold. Walks the whole
        log in batches (memory stays bounded), so a copy deleted long ago is restored too."""
        result = RepairResult()
        in_log: set[str] = set()
        batch: list[dict[str, Any]] = []
        async for doc in self.db[LOG].find({}).sort("_seq", ASCENDING):
            batch.append(doc)
            if len(batch) >= REPAIR_BATCH:
                await self._repair_batch(batch, result, in_log)
                batch = []
        await self._repair_batch(batch, result, in_log)
        async for doc in self.db[SERVED].find({}, {"_id": 1}):
            rid = str(doc["_id"])
            # Not seen in the walk: written since (the log always comes first), or forged.
            if rid not in in_log and await self.db[LOG].find_one({"_rid": rid}, {"_id": 1}) is None:
                await self.db[SERVED].delete_one({"_id": doc["_id"]})
                result.removed.append(rid)
        return result

    async def _repair_batch(
        self, batch: list[dict[str, Any]], result: RepairResult, in_log: set[str]
    ) -> None:
        if not batch:
            return
        ids = [doc["_rid"] for doc in batch]
        in_log.update(str(rid) for rid in ids)
        served = {doc["_id"]: doc async for doc in self.db[SERVED].find({"_id": {"$in": ids}})}
        for doc in batch:
            copy = served.get(doc["_rid"])
            if compare(doc, copy) is None:
                continue
            if copy is None:
                try:
                    await self.db[SERVED].insert_one(pack(served_form(doc)))
                except DuplicateKeyError:  # the writer served it meanwhile (same content)
                    continue
                result.restored.append(int(doc["_seq"]))
            else:
                await self.db[SERVED].replace_one({"_id": doc["_rid"]}, pack(served_form(doc)))
                result.rewritten.append(int(doc["_seq"]))

    async def in_order(self) -> AsyncIterator[dict[str, Any]]:
        async for doc in self.db[LOG].find({}).sort("_seq", ASCENDING):
            yield doc

    async def served_copies(self) -> dict[str, dict[str, Any]]:
        """id → served copy (keyed by ``_id``, which a tampered ``_rid`` does not move)."""
        return {str(doc["_id"]): doc async for doc in self.db[SERVED].find({})}

    async def entry_and_copy(self, rid: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The log entry and the served copy of event ``rid``, read now."""
        return await self.db[LOG].find_one({"_rid": rid}), await self.db[SERVED].find_one({"_id": rid})
