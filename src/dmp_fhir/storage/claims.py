"""Identifier claims: one resource per (type, business identifier) for conditional creates.

A conditional create (``If-None-Exist: identifier=system|value``, a batch or transaction entry's
``ifNoneExist``) is a search and then a create: two concurrent first posts both find nothing.
FerretDB has no atomic read-modify-write, so the decision "which id does this identifier get"
is one insert under a unique key, as for the INS (``records.py``):

``dmp_identifier``  ``{_id: "<Type>|<system>|<value>", type, rid, patient, at}``

The first insert wins and names the resource id; every later claimer *adopts* that id and
writes it with ``create_only``, so the unique ``(_rid, _v)`` key of history lets exactly one
version 1 exist whoever comes first: the others meet it and answer with it. A claim whose owner
crashed before writing therefore blocks nothing: the next attempt adopts its id and writes it.
A claim that names a deleted resource, or one that no longer carries the identifier, is stale
and is dropped (conditionally on its id, never another writer's claim) before claiming again.
Destruction releases the claims of what it destroys.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo.errors import DuplicateKeyError

from ..errors import Conflict
from .database import Database

IDENTIFIER_CLAIMS = "dmp_identifier"


@dataclass(frozen=True, slots=True)
class Claim:
    key: str
    rid: str  # the resource id the identifier belongs to
    won: bool  # this call inserted the claim (else it names an earlier claimer's id)
    patient: str | None = None  # the patient the claim names
    at: datetime | None = None  # when the claim was made


def claim_key(rtype: str, token: str) -> str:
    """``Type|system|value`` (a type name holds no ``|``, so the key is unambiguous)."""
    return f"{rtype}|{token}"


class IdentifierClaims:
    def __init__(self, database: Database) -> None:
        self.collection = database.db[IDENTIFIER_CLAIMS]

    async def claim(self, rtype: str, key: str, rid: str, patient: str | None) -> Claim:
        """Claim ``key`` for ``rid``, or learn the id an earlier claim gave it."""
        for _ in range(10):
            try:
                await self.collection.insert_one(
                    {"_id": key, "type": rtype, "rid": rid, "patient": patient, "at": datetime.now(UTC)}
                )
                return Claim(key, rid, won=True, patient=patient)
            except DuplicateKeyError:
                existing = await self.collection.find_one({"_id": key})
                if existing is not None:
                    made = existing.get("at")
                    return Claim(
                        key,
                        str(existing["rid"]),
                        won=False,
                        patient=existing.get("patient"),
                        at=made.astimezone(UTC) if isinstance(made, datetime) else None,
                    )
                # released meanwhile: try again
        raise Conflict("Too many concurrent creations with this identifier; try again.", code="lock-error")

    async def release(self, key: str, rid: str) -> None:
        """Drop a claim, only if it still names ``rid``."""
        await self.collection.delete_one({"_id": key, "rid": rid})

    async def set_patient(self, key: str, rid: str, patient: str | None) -> None:
        """An adopted id written about another patient than its first claimer named: destruction
        of that patient must find the claim."""
        await self.collection.update_one({"_id": key, "rid": rid}, {"$set": {"patient": patient}})

    async def release_resource(self, rtype: str, rid: str) -> int:
        """Claims naming a destroyed resource."""
        return int((await self.collection.delete_many({"rid": rid, "type": rtype})).deleted_count)

    async def release_patient(self, pid: str) -> int:
        return int((await self.collection.delete_many({"patient": pid})).deleted_count)
