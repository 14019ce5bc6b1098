"""The hash chain that makes the trail tamper-evident.

Every event stored in ``AuditEvent_history`` (the append-only log) carries ``_seq`` (1, 2, 3 …,
unique: the index decides which writer takes the next link), ``_prev`` (the previous event's
hash) and ``_hash`` = SHA-256(``_prev`` + the event's canonical JSON). Changing, removing or
inserting one event breaks the chain from there on; ``dmp-fhir audit verify`` names the first
broken link, and checks the served copies against the log (``storage/audit_copies.py``).
(Anyone able to rewrite the whole tail could recompute it: keep the head hash that ``verify``
prints somewhere else to detect that too.)
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..storage.audit_copies import MAX_LISTED, ServedDifference, compare

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
    #: Served copies that do not match their log entry (at most ``MAX_LISTED``).
    served: tuple[ServedDifference, ...] = ()
    served_problems: int = 0  # the exact count

    @property
    def chain_ok(self) -> bool:
        return self.broken_at is None

    @property
    def ok(self) -> bool:
        return self.broken_at is None and not self.served_problems


async def verify_chain(
    log: AsyncIterator[Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]] | None = None
) -> ChainReport:
    """Walk the log in ``_seq`` order; with ``current`` (id → served copy), also check every
    served copy against its log entry (``storage/audit_copies.py``) and report each difference,
    plus the served events the log lacks. The chain stops at its first broken link; the served copies
    of the events before it are all checked."""
    previous = GENESIS
    expected = 1
    checked = 0
    differences: list[ServedDifference] = []
    count = 0
    seen: set[str] = set()
    broken: tuple[int, str, str] | None = None

    def note(difference: ServedDifference) -> None:
        nonlocal count
        count += 1
        if len(differences) < MAX_LISTED:
            differences.append(difference)

    async for doc in log:
        seq = doc.get("_seq")
        resource = doc.get("resource") or {}
        rid = str(resource.get("id", doc.get("_rid", "?")))
        if seq != expected:
            broken = (expected, rid, f"event #{expected} is missing (found #{seq})")
        elif doc.get("_prev") != previous:
            broken = (expected, rid, "link to the previous event broken")
        elif doc.get("_hash") != (digest := event_hash(previous, resource)):
            broken = (expected, rid, "event content altered")
        if broken is not None:
            break
        if current is not None:
            seen.add(str(doc.get("_rid")))
            problem = compare(doc, current.get(str(doc.get("_rid"))))
            if problem is not None:
                note(ServedDifference(expected, rid, problem))
        previous = digest
        expected += 1
        checked += 1
    if current is not None and broken is None:
        for rid, served in current.items():
            if rid not in seen:
                seq = served.get("_seq")
                note(ServedDifference(seq if isinstance(seq, int) else None, rid,
                                      "a served event that is not in the log"))  # fmt: skip
    if broken is not None:
        at, rid, reason = broken
        return ChainReport(checked, previous, at, rid, reason, tuple(differences), count)
    return ChainReport(checked, previous, served=tuple(differences), served_problems=count)
