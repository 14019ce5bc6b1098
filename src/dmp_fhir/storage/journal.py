"""All-or-nothing writes of many resources without multi-document transactions.

FerretDB has no transactions and its updates are not atomic, so a FHIR ``transaction`` is made
atomic by a journal whose every decision is a single insert under a unique key:

1. **begin** — insert ``_transactions/{tx}``: the resources and content blobs it will write and
   a deadline;
2. **claim** — insert each new version into ``T_history`` marked ``_tx: tx`` (the unique
   ``(_rid, _v)`` key makes the claim exclusive). Marked versions are invisible: reads, vreads
   and history skip them, and current copies are untouched, so nothing of the transaction shows;
3. **decide** — insert ``_transaction_outcomes/{tx}`` = ``committed``. Whoever inserts first
   decides: the owner commits (never after its own deadline), or a recovery sweep, once the
   deadline has passed, aborts (an abort's outcome is kept a day, so no late commit can land);
4. **roll forward** — publish the claimed versions as current copies, drop the marks, delete the
   journal entries. An abort instead deletes the claimed versions and blobs.

A crash before 3 leaves invisible versions that the sweep removes after the deadline (nothing
was ever visible); a crash after 3 leaves a decided transaction that the sweep — at start-up and
then periodically — rolls forward. Either way every entry or none becomes visible. A plain write
that meets a claimed version settles it the same way or, while its transaction is undecided and
within its deadline, answers 409.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pymongo.errors import DuplicateKeyError, PyMongoError

from .content import ContentStore
from .gather import bounded_gather

if TYPE_CHECKING:
    from .store import ResourceStore

log = logging.getLogger(__name__)

TRANSACTIONS = "_transactions"
OUTCOMES = "_transaction_outcomes"

Outcome = Literal["committed", "aborted"]

#: How long an abort's outcome outlives it (far longer than any transaction's deadline).
TOMBSTONE_LIFETIME = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a reader does with a claimed version: publish, drop, wait, or look again."""

    outcome: Outcome | None
    gone: bool = False  # neither the journal entry nor an outcome exists: nothing left to decide


class TransactionJournal:
    def __init__(self, store: ResourceStore, content: ContentStore) -> None:
        self.store = store
        self.content = content
        self.transactions = store.db[TRANSACTIONS]
        self.outcomes = store.db[OUTCOMES]

    # -- owner side -------------------------------------------------------------------

    async def begin(
        self, tx: str, resources: Iterable[tuple[str, str]], content_ids: Iterable[str], timeout: float
    ) -> None:
        started = datetime.now(UTC)
        await self.transactions.insert_one(
            {
                "_id": tx,
                "started": started,
                "deadline": started + timedelta(seconds=timeout),
                # "Type/id" strings: FerretDB v1 stores no nested arrays.
                "resources": [f"{rtype}/{rid}" for rtype, rid in resources],
                "content": list(content_ids),
            }
        )

    async def decide(self, tx: str, outcome: Outcome) -> Outcome:
        """Record the outcome unless one exists; return the outcome that holds."""
        try:
            await self.outcomes.insert_one({"_id": tx, "outcome": outcome, "at": datetime.now(UTC)})
            return outcome
        except DuplicateKeyError:
            found = await self.outcomes.find_one({"_id": tx})
            if found is None:
                # Gone already: only a finished commit forgets its outcome (an abort's stays a day).
                return "committed"
            decided: Outcome = found["outcome"]
            return decided

    # -- settling ---------------------------------------------------------------------

    async def settle(self, tx: str) -> Settlement:
        """The outcome of ``tx``; an undecided one past its deadline is aborted here."""
        found = await self.outcomes.find_one({"_id": tx})
        if found is not None:
            return Settlement(found["outcome"])
        entry = await self.transactions.find_one({"_id": tx}, projection={"deadline": 1})
        if entry is None:
            # Finished between our reads (the journal entry goes before the outcome).
            found = await self.outcomes.find_one({"_id": tx})
            return Settlement(found["outcome"]) if found else Settlement(None, gone=True)
        if entry["deadline"].replace(tzinfo=UTC) <= datetime.now(UTC):
            return Settlement(await self.decide(tx, "aborted"))
        return Settlement(None)

    async def finish(self, tx: str) -> Outcome | None:
        """Carry a decided transaction to its end (idempotent); None while undecided."""
        entry = await self.transactions.find_one({"_id": tx})
        if entry is None:
            return None
        settlement = await self.settle(tx)
        if settlement.outcome is None:
            return None
        by_type: dict[str, list[str]] = defaultdict(list)
        for key in entry["resources"]:
            rtype, _, rid = key.partition("/")
            by_type[rtype].append(rid)
        if settlement.outcome == "committed":
            await self.roll_forward(tx, await self.claimed_versions(tx, by_type))
        else:
            await self.roll_back(tx, by_type, entry.get("content") or [])
        return settlement.outcome

    async def roll_forward(
        self, tx: str, claimed: list[tuple[str, dict[str, Any]]], *, fresh: frozenset[str] = frozenset()
    ) -> None:
        """Publish every version the transaction claimed, then forget the transaction.

        ``fresh`` resources (``Type/id``) got their id from the server in this transaction: no
        other writer can know it yet, so there is nothing to converge with.
        """
        new_by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        known: list[tuple[str, dict[str, Any]]] = []
        for rtype, doc in claimed:
            if f"{rtype}/{doc['_rid']}" in fresh:
                new_by_type[rtype].append(doc)
            else:
                known.append((rtype, doc))
        # One document per update, in sequence: a process killed in the middle of a
        # multi-document update (a bulk replace, an update_many) was seen to leave FerretDB v1
        # hung when the recovery repeated it; single-document writes are safe to repeat.
        for rtype, doc in known:
            await self.store.publish_claimed(rtype, doc)
        for rtype, docs in new_by_type.items():
            await self.store.publish_fresh(rtype, docs)
        # One update per version, by _id (FerretDB pushes that down; an $in would scan). In
        # sequence: many concurrent updates of one collection stall FerretDB's PostgreSQL backend.
        for rtype, doc in claimed:
            await self.store.db[f"{rtype}_history"].update_one(
                {"_id": f"{doc['_rid']}/{doc['_v']}", "_tx": tx}, {"$unset": {"_tx": ""}}
            )
        # Is there a newer version of any of them? Reads only (a convergence is rare), together.
        await bounded_gather([self.store.settle_published(t, d["_rid"], int(d["_v"])) for t, d in known])
        await self._forget(tx)

    async def claimed_versions(
        self, tx: str, by_type: dict[str, list[str]]
    ) -> list[tuple[str, dict[str, Any]]]:
        """The versions ``tx`` claimed, found again after a crash (one ``_rid`` look-up each)."""
        out: list[tuple[str, dict[str, Any]]] = []
        for rtype, rids in by_type.items():
            history = self.store.db[f"{rtype}_history"]
            for rid in rids:
                out += [(rtype, doc) async for doc in history.find({"_rid": rid, "_tx": tx})]
        return out

    async def roll_back(self, tx: str, by_type: dict[str, list[str]], content_ids: Iterable[str]) -> None:
        """Remove every version the transaction claimed and its content blobs."""
        for rtype, rids in by_type.items():
            history = self.store.db[f"{rtype}_history"]
            for rid in rids:  # one plain equality each: FerretDB pushes it down, not an $in
                await history.delete_many({"_rid": rid, "_tx": tx})
        await self.content.delete(content_ids)
        await self._forget(tx, keep_outcome=True)

    async def _forget(self, tx: str, *, keep_outcome: bool = False) -> None:
        """Delete the journal entry, then (for a commit) its outcome.

        An abort's outcome stays as a tombstone for a day: an owner that outlived its deadline
        can then never insert a late ``committed`` — its insert meets the tombstone's key.
        """
        await self.transactions.delete_one({"_id": tx})
        if not keep_outcome:
            await self.outcomes.delete_one({"_id": tx})

    # -- recovery ---------------------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """Finish every decided transaction and abort those past their deadline."""
        counts = {"committed": 0, "aborted": 0, "pending": 0}
        async for entry in self.transactions.find({}, projection={"_id": 1}):
            outcome = await self.finish(entry["_id"])
            counts[outcome or "pending"] += 1
        expired = datetime.now(UTC) - TOMBSTONE_LIFETIME
        await self.outcomes.delete_many({"outcome": "aborted", "at": {"$lt": expired}})
        return counts

    async def sweep(self, *, interval: float) -> None:
        """Run :meth:`recover` every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.recover()
            except PyMongoError:
                log.exception("transaction recovery sweep failed; retrying")

    async def pending(self) -> int:
        return len(await self.transactions.find({}, projection={"_id": 1}).to_list(None))
