"""The hash chain that makes the trail tamper-evident.

Every event stored in ``AuditEvent_history`` (the append-only log) carries ``_seq`` (1, 2, 3 …,
unique: the index decides which writer takes the next link), ``_prev`` (the previous event's
hash) and ``_hash`` = SHA-256(``_prev`` + the event's canonical JSON). Changing, removing or
inserting one event breaks the chain from there on; ``dmp-fhir audit verify`` names the first
broken link. (Anyone able to rewrite the whole tail could recompute it: keep the head hash that
``verify`` prints somewhere else to detect that too.)
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS = "0" * 64


def event_hash(previous: str, resource: Mapping[str, Any]) -> str:
    canonical = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(previous.encode() + canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    checked: int
    head: str
    broken_at: int | None = None  # the ``_seq`` of the first bad link
    event_id: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


async def verify_chain(
    log: AsyncIterator[Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]] | None = None
) -> ChainReport:
    """Walk the log in ``_seq`` order; ``current`` (id → served copy) is compared too, so a
    change to the copy clients read is caught as well."""
    previous = GENESIS
    expected = 1
    checked = 0
    async for doc in log:
        seq = doc.get("_seq")
        resource = doc.get("resource") or {}
        rid = str(resource.get("id", doc.get("_rid", "?")))
        if seq != expected:
            return ChainReport(
                checked, previous, expected, rid, f"event #{expected} is missing (found #{seq})"
            )
        if doc.get("_prev") != previous:
            return ChainReport(checked, previous, expected, rid, "link to the previous event broken")
        digest = event_hash(previous, resource)
        if doc.get("_hash") != digest:
            return ChainReport(checked, previous, expected, rid, "event content altered")
        if current is not None:
            served = current.get(rid)
            if served is not None and served.get("resource") != resource:
                return ChainReport(checked, previous, expected, rid, "the served copy differs from the log")
        previous = digest
        expected += 1
        checked += 1
    return ChainReport(checked, previous)
