"""The DMP's own bookkeeping beside the FHIR resources: INS claims and record status.

``dmp_ins``    one document per INS, ``{_id: "<system>|<value>", patient, state, at}``: its
               unique ``_id`` decides "one DMP per INS" (FerretDB has no atomic
               read-modify-write; an insert either wins or raises DuplicateKeyError).
``dmp_record`` one document per patient, ``{_id: patient id, status, closed_at,
               retain_until, …}``; ``status`` is ``open``, ``closed`` or ``destroying``. The
               access policy reads it (anything but ``open`` refuses professionals).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from ..errors import Conflict
from .database import Database

INS_CLAIMS = "dmp_ins"
RECORDS = "dmp_record"

PENDING = "pending"
CREATED = "created"


class DmpRecords:
    def __init__(self, database: Database) -> None:
        self.db = database.db

    # -- INS claims --------------------------------------------------------------------

    async def claim(self, ins_key: str, pid: str, moment: datetime) -> dict[str, Any] | None:
        """Claim the INS for ``pid``: None when this call won, else the existing claim."""
        for _ in range(10):
            try:
                await self.db[INS_CLAIMS].insert_one(
                    {"_id": ins_key, "patient": pid, "state": PENDING, "at": moment}
                )
                return None
            except DuplicateKeyError:
                existing = await self.db[INS_CLAIMS].find_one({"_id": ins_key})
                if existing is not None:
                    return existing
                # released meanwhile: try again
        raise Conflict("Too many concurrent creations for this INS; try again.", code="lock-error")

    async def settle(self, ins_key: str) -> None:
        await self.db[INS_CLAIMS].update_one({"_id": ins_key}, {"$set": {"state": CREATED}})

    async def release(self, ins_key: str, pid: str) -> None:
        """Drop a claim, only if it still names ``pid`` (never another creation's claim)."""
        await self.db[INS_CLAIMS].delete_one({"_id": ins_key, "patient": pid})

    async def release_patient(self, pid: str) -> int:
        return int((await self.db[INS_CLAIMS].delete_many({"patient": pid})).deleted_count)

    # -- record status ------------------------------------------------------------------

    async def get(self, pid: str) -> dict[str, Any] | None:
        return await self.db[RECORDS].find_one({"_id": pid})

    async def put(self, pid: str, fields: dict[str, Any]) -> None:
        """Replace the record's status document (a whole-document write: no partial state)."""
        for _ in range(10):
            try:
                await self.db[RECORDS].replace_one({"_id": pid}, {"_id": pid, **fields}, upsert=True)
                return
            except DuplicateKeyError:  # concurrent upserts of a new _id: it exists now, replace it
                continue

    async def with_status(self, status: str) -> list[dict[str, Any]]:
        return await self.db[RECORDS].find({"status": status}).to_list(None)

    async def remove(self, pid: str) -> None:
        await self.db[RECORDS].delete_one({"_id": pid})
