"""Versioned resource storage: current copies plus an insert-only history.

The write protocol (see docs/storage.md and shared mongodb.md) never relies on an atomic
update, which FerretDB does not provide:

1. insert version ``n+1`` into ``T_history`` — its unique ``(_rid, _v)`` key decides the winner;
   a loser re-reads and retries (or answers 412 when the client asked for ``If-Match``);
2. publish the winner into ``T`` (``replace_one`` upsert);
3. re-read the newest history version and republish it if a slower writer overwrote it.

A crash between 1 and 2 leaves the current copy one version behind, never ahead of history;
the next write of that resource repairs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from ..errors import Conflict, PreconditionFailed
from .database import Database

#: Called with the current stored document (or None) before a version is written; raising
#: refuses the write. It runs again on every retry, so it always judges the latest state.
WriteGuard = Callable[[dict[str, Any] | None], Awaitable[None]]

#: Writers that lose the race for a version retry this many times before giving up.
MAX_WRITE_ATTEMPTS = 100


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One version of a resource as stored (``resource`` is None for a tombstone)."""

    type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    resource: dict[str, Any] | None
    changed: bool = True  # False when an update was a no-op

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @classmethod
    def from_doc(cls, rtype: str, doc: Mapping[str, Any]) -> StoredVersion:
        return cls(
            type=rtype,
            id=doc["_rid"],
            version=int(doc["_v"]),
            last_updated=doc["_lu"].astimezone(UTC),
            deleted=bool(doc.get("_deleted")),
            resource=doc.get("resource"),
        )


def now_utc() -> datetime:
    """BSON dates hold milliseconds: truncate so what we serve equals what we store."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def format_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal apart from the server-maintained meta fields."""

    def strip(res: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(res)
        meta = dict(out.get("meta") or {})
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
        if meta:
            out["meta"] = meta
        else:
            out.pop("meta", None)
        return out

    return strip(a) == strip(b)


class ResourceStore:
    """Raw, policy-free storage. Only the repository layer calls it."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.db = database.db

    # -- reads ------------------------------------------------------------------------

    async def read(self, rtype: str, rid: str) -> StoredVersion | None:
        doc = await self.db[rtype].find_one({"_id": rid})
        return StoredVersion.from_doc(rtype, doc) if doc else None

    async def read_doc(self, rtype: str, query: Mapping[str, Any]) -> dict[str, Any] | None:
        return await self.db[rtype].find_one(dict(query))

    async def vread(self, rtype: str, rid: str, version: int) -> StoredVersion | None:
        doc = await self.db[f"{rtype}_history"].find_one({"_id": f"{rid}/{version}"})
        return StoredVersion.from_doc(rtype, doc) if doc else None

    async def newest_history(self, rtype: str, rid: str, *, live: bool = False) -> dict[str, Any] | None:
        """The newest version in history (``live``: the newest that is not a deletion)."""
        query: dict[str, Any] = {"_rid": rid}
        if live:
            query["_deleted"] = False
        cursor = self.db[f"{rtype}_history"].find(query).sort("_v", DESCENDING).limit(1)
        docs = await cursor.to_list(1)
        return docs[0] if docs else None

    async def find(
        self,
        rtype: str,
        query: Mapping[str, Any],
        *,
        sort: list[tuple[str, int]] | None = None,
        limit: int = 0,
        skip: int = 0,
        history: bool = False,
        projection: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        coll = self.db[f"{rtype}_history" if history else rtype]
        cursor = coll.find(dict(query), projection=dict(projection) if projection else None)
        if sort:
            cursor = cursor.sort(sort)
        if skip:
            cursor = cursor.skip(skip)
        if limit:
            cursor = cursor.limit(limit)
        return await cursor.to_list(None)

    async def count(self, rtype: str, query: Mapping[str, Any], *, history: bool = False) -> int:
        coll = self.db[f"{rtype}_history" if history else rtype]
        return await coll.count_documents(dict(query))

    # -- writes -----------------------------------------------------------------------

    async def write(
        self,
        rtype: str,
        rid: str,
        resource: dict[str, Any] | None,
        extra_fields: Mapping[str, Any],
        *,
        if_match: int | None = None,
        create_only: bool = False,
        skip_unchanged: bool = False,
        guard: WriteGuard | None = None,
    ) -> StoredVersion:
        """Write a new version (``resource=None`` writes a tombstone) and return it.

        ``extra_fields`` are the extracted search/policy fields stored beside the resource.
        ``create_only`` refuses to overwrite a live resource (409); ``if_match`` demands that
        the current version is exactly that number (412 otherwise).
        """
        current_coll = self.db[rtype]
        history_coll = self.db[f"{rtype}_history"]
        for _attempt in range(MAX_WRITE_ATTEMPTS):
            current = await current_coll.find_one({"_id": rid})
            base = int(current["_v"]) if current else 0
            live = current is not None and not current.get("_deleted")
            if guard is not None:
                await guard(current if live else None)
            if if_match is not None and if_match != base:
                raise PreconditionFailed(
                    f"{rtype}/{rid} is at version {base}, not {if_match}.",
                    code="conflict",
                )
            if create_only and live:
                raise Conflict(f"{rtype}/{rid} already exists.", code="duplicate")
            if resource is None and not live:
                # Deleting what is absent or already deleted changes nothing (and says the
                # same in both cases: no version, no ETag).
                return StoredVersion(rtype, rid, 0, now_utc(), True, None, changed=False)
            if (
                skip_unchanged
                and live
                and current is not None
                and resource is not None
                and _same_content(current["resource"], resource)
            ):
                return StoredVersion(
                    rtype, rid, base, current["_lu"], False, current["resource"], changed=False
                )
            version = base + 1
            moment = now_utc()
            if resource is None and current is not None:
                # A deletion keeps the policy fields of what it deletes: who may see the
                # resource may see that it was deleted, nobody else.
                extra_fields = {k: v for k, v in current.items() if k.startswith("_p_")}
            doc = self._document(rtype, rid, version, moment, resource, extra_fields)
            try:
                await history_coll.insert_one({**doc, "_id": f"{rid}/{version}"})
            except DuplicateKeyError:
                # Another writer took this version, or a crash left history ahead: repair, retry.
                await self._publish_newest(rtype, rid)
                if if_match is not None:
                    raise PreconditionFailed(
                        f"{rtype}/{rid} was changed concurrently; version {if_match} is stale.",
                        code="conflict",
                    ) from None
                await asyncio.sleep(0)
                continue
            await self._publish(rtype, rid, doc)
            return StoredVersion.from_doc(rtype, doc)
        raise Conflict(f"Too many concurrent writers on {rtype}/{rid}; try again.", code="lock-error")

    @staticmethod
    def _document(
        rtype: str,
        rid: str,
        version: int,
        moment: datetime,
        resource: dict[str, Any] | None,
        extra_fields: Mapping[str, Any],
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {"_id": rid, "_rid": rid, "_v": version, "_lu": moment}
        if resource is None:
            doc["_deleted"] = True
            doc["resource"] = None
        else:
            meta = dict(resource.get("meta") or {})
            meta["versionId"] = str(version)
            meta["lastUpdated"] = format_instant(moment)
            stored = {"resourceType": rtype, "id": rid, **resource}
            stored["id"] = rid
            stored["meta"] = meta
            doc["_deleted"] = False
            doc["resource"] = stored
        doc.update(extra_fields)
        return doc

    async def _publish(self, rtype: str, rid: str, doc: dict[str, Any]) -> None:
        """Make ``doc`` the current copy unless a newer version already won."""
        await self._replace_current(rtype, rid, doc)
        await self._publish_newest(rtype, rid)

    async def _publish_newest(self, rtype: str, rid: str) -> None:
        """Converge the current copy on the newest history version."""
        for _ in range(MAX_WRITE_ATTEMPTS):
            newest = await self.newest_history(rtype, rid)
            if newest is None:
                return
            current = await self.db[rtype].find_one({"_id": rid}, projection={"_v": 1})
            if current is not None and int(current["_v"]) == int(newest["_v"]):
                return
            newest["_id"] = rid
            await self._replace_current(rtype, rid, newest)
        # Still racing after many rounds: the last writer's own check will converge it.

    async def _replace_current(self, rtype: str, rid: str, doc: dict[str, Any]) -> None:
        for _ in range(MAX_WRITE_ATTEMPTS):
            try:
                await self.db[rtype].replace_one({"_id": rid}, doc, upsert=True)
                return
            except DuplicateKeyError:
                # Concurrent upserts of a new _id: the document exists now; replace it.
                await asyncio.sleep(0)

    async def set_fields(self, rtype: str, rid: str, fields: Mapping[str, Any]) -> None:
        """Refresh derived (policy) fields of the current copy; the resource is untouched."""
        await self.db[rtype].update_one({"_id": rid}, {"$set": dict(fields)})

    async def purge(self, rtype: str, rid: str) -> int:
        """Remove every version of one resource (destruction, not a FHIR delete)."""
        removed = (await self.db[f"{rtype}_history"].delete_many({"_rid": rid})).deleted_count
        removed += (await self.db[rtype].delete_many({"_id": rid})).deleted_count
        return removed

    async def purge_patient(self, rtype: str, pid: str) -> int:
        """Remove every version of every ``rtype`` resource of one patient (``_p_patient`` is
        a top-level equality: pushed down by FerretDB). History first: a crash leaves current
        copies, which a re-run still finds."""
        removed = (await self.db[f"{rtype}_history"].delete_many({"_p_patient": pid})).deleted_count
        removed += (await self.db[rtype].delete_many({"_p_patient": pid})).deleted_count
        return removed

    async def purge_content(self, binary_ids: list[str]) -> int:
        """Remove document content stored outside the Binary collections.

        Today every byte lives in the Binary resources that ``purge``/``purge_patient`` remove,
        so there is nothing more to do. This is the single hook for content storage added
        later (GridFS for large Binaries): it must delete the content of these Binaries.
        """
        return 0
