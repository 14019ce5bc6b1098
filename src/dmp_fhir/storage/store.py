"""Versioned resource storage: current copies plus an insert-only history.

The write protocol (see docs/storage.md and shared mongodb.md) never relies on an atomic
update, which FerretDB does not provide:

1. insert version ``n+1`` into ``T_history`` — its unique ``(_rid, _v)`` key decides the winner;
   a loser re-reads and retries (or answers 412 when the client asked for ``If-Match``);
2. publish the winner into ``T`` (``replace_one`` upsert);
3. re-read the newest history version and republish it if a slower writer overwrote it.

A crash between 1 and 2 leaves the current copy one version behind, never ahead of history;
the next write of that resource repairs it.

Writes of several resources that must succeed or fail together go through
:meth:`ResourceStore.write_atomically` and the journal (storage/journal.py): their versions are
claimed invisibly (marked ``_tx``) and published only once one insert has decided the commit.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ..errors import BadRequest, Conflict, FhirError, PreconditionFailed
from .claims import IdentifierClaims
from .content import ContentStore
from .database import Database
from .gather import bounded_gather
from .journal import TransactionJournal
from .packing import pack

#: Called with the current stored document (or None) before a version is written; raising
#: refuses the write. It runs again on every retry, so it always judges the latest state.
WriteGuard = Callable[[dict[str, Any] | None], Awaitable[None]]

#: Writers that lose the race for a version retry this many times before giving up.
MAX_WRITE_ATTEMPTS = 100


class _Unread:
    """Marks "the current copy was not read yet" (None means "read: there is none")."""


UNREAD = _Unread()


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
    content_id: str | None = None  # Binary data kept in the content store (resource has no data)
    content_size: int | None = None

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
            content_id=(doc.get("_content") or {}).get("id"),
            content_size=(doc.get("_content") or {}).get("size"),
        )


@dataclass(slots=True)
class PlannedWrite:
    """One resource version of an all-or-nothing write (``resource`` None: a deletion)."""

    rtype: str
    rid: str
    resource: dict[str, Any] | None
    fields: Mapping[str, Any]
    if_match: int | None = None
    create_only: bool = False
    guard: WriteGuard | None = None
    content: dict[str, bytes] = field(default_factory=dict)  # blobs to store first, by id
    fresh: bool = False  # the server just made up this id: no current version can exist


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
        self.content = ContentStore(database)
        self.journal = TransactionJournal(self, self.content)
        self.claims = IdentifierClaims(database)

    # -- reads ------------------------------------------------------------------------

    async def read(self, rtype: str, rid: str) -> StoredVersion | None:
        doc = await self.db[rtype].find_one({"_id": rid})
        return StoredVersion.from_doc(rtype, doc) if doc else None

    async def read_doc(self, rtype: str, query: Mapping[str, Any]) -> dict[str, Any] | None:
        return await self.db[rtype].find_one(dict(query))

    async def vread(self, rtype: str, rid: str, version: int) -> StoredVersion | None:
        doc = await self.history_doc(rtype, rid, version)
        return StoredVersion.from_doc(rtype, doc) if doc else None

    async def history_doc(self, rtype: str, rid: str, version: int) -> dict[str, Any] | None:
        """One stored version; a version claimed by an unfinished transaction does not exist yet."""
        doc = await self.db[f"{rtype}_history"].find_one({"_id": f"{rid}/{version}"})
        return None if doc is None or "_tx" in doc else doc

    async def newest_history(self, rtype: str, rid: str, *, live: bool = False) -> dict[str, Any] | None:
        """The newest version in history (``live``: the newest published one that is not a
        deletion; otherwise versions claimed by a transaction count too)."""
        query: dict[str, Any] = {"_rid": rid}
        if live:
            query["_deleted"] = False
            query["_tx"] = {"$exists": False}
        cursor = self.db[f"{rtype}_history"].find(query).sort("_v", DESCENDING).limit(-1)
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
        claimed: bool = False,
    ) -> list[dict[str, Any]]:
        """Documents of ``T`` or (``history``) ``T_history``; versions claimed by an unfinished
        transaction are invisible, unless ``claimed`` asks for them alone."""
        coll = self.db[f"{rtype}_history" if history else rtype]
        if history:
            query = {**query, "_tx": {"$exists": claimed}}
        cursor = coll.find(dict(query), projection=dict(projection) if projection else None)
        if sort:
            cursor = cursor.sort(sort)
        if skip:
            cursor = cursor.skip(skip)
        if limit:
            cursor = cursor.limit(-limit if _one_batch(rtype, limit, projection) else limit)
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
        content: Mapping[str, bytes] | None = None,
        fresh: bool = False,
    ) -> StoredVersion:
        """Write a new version (``resource=None`` writes a tombstone) and return it.

        ``extra_fields`` are the extracted search/policy fields stored beside the resource.
        ``create_only`` refuses to overwrite a live resource (409); ``if_match`` demands that
        the current version is exactly that number (412 otherwise). ``content`` blobs are
        stored first and removed again if the write fails. ``fresh``: the server just made up
        ``rid``, so no other writer can know it — no current copy to read, none to converge with.
        """
        planned = PlannedWrite(
            rtype, rid, resource, extra_fields, if_match, create_only, guard, dict(content or {}), fresh
        )
        await self._store_content(planned)
        try:
            claimed = await self._claim(planned, skip_unchanged=skip_unchanged)
        except BaseException:
            await asyncio.shield(self.content.delete(planned.content))
            raise
        if isinstance(claimed, StoredVersion):
            await asyncio.shield(self.content.delete(planned.content))
            return claimed
        if planned.fresh and claimed["_v"] == 1:
            await self._replace_current(rtype, rid, claimed)
        else:
            await self._publish(rtype, rid, claimed)
        return StoredVersion.from_doc(rtype, claimed)

    async def _store_content(self, w: PlannedWrite) -> None:
        """Upload a write's blobs first, named after their resource (``purge_content`` finds
        those of a write that never completed by that name)."""
        for content_id, data in w.content.items():
            await self.content.put(content_id, data, metadata={"resource": f"{w.rtype}/{w.rid}"})

    async def _claim(
        self,
        w: PlannedWrite,
        *,
        tx: str | None = None,
        skip_unchanged: bool = False,
        current: dict[str, Any] | _Unread | None = UNREAD,
    ) -> dict[str, Any] | StoredVersion:
        """Insert the next history version of ``w`` (marked ``_tx`` inside a transaction).

        ``current``: the current copy, when the caller read it already (a transaction reads
        them all at once); a lost race on the version key reads it again.
        Returns the inserted document, or a StoredVersion when there was nothing to write.
        """
        rtype, rid = w.rtype, w.rid
        current_coll = self.db[rtype]
        history_coll = self.db[f"{rtype}_history"]
        known: dict[str, Any] | _Unread | None = None if w.fresh else current
        for _attempt in range(MAX_WRITE_ATTEMPTS):
            current = await current_coll.find_one({"_id": rid}) if isinstance(known, _Unread) else known
            known = UNREAD
            doc = await self._next_version(w, current, tx=tx, skip_unchanged=skip_unchanged)
            if isinstance(doc, StoredVersion):
                return doc
            version = doc["_v"]
            try:
                await history_coll.insert_one(pack({**doc, "_id": f"{rid}/{version}"}))
            except DuplicateKeyError:
                # Another writer took this version, or a crash left history ahead: repair, retry.
                await self.converge(rtype, rid)
                if w.if_match is not None:
                    raise PreconditionFailed(
                        f"{rtype}/{rid} was changed concurrently; version {w.if_match} is stale.",
                        code="conflict",
                    ) from None
                await asyncio.sleep(0)
                continue
            return doc
        raise Conflict(f"Too many concurrent writers on {rtype}/{rid}; try again.", code="lock-error")

    async def _next_version(
        self,
        w: PlannedWrite,
        current: dict[str, Any] | None,
        *,
        tx: str | None = None,
        skip_unchanged: bool = False,
    ) -> dict[str, Any] | StoredVersion:
        """The history document ``w`` writes over ``current`` (guard and preconditions judged
        against it), or a StoredVersion when there is nothing to write."""
        rtype, rid, resource = w.rtype, w.rid, w.resource
        base = int(current["_v"]) if current else 0
        live = current is not None and not current.get("_deleted")
        if w.guard is not None:
            await w.guard(current if live else None)
        if w.if_match is not None and w.if_match != base:
            raise PreconditionFailed(
                f"{rtype}/{rid} is at version {base}, not {w.if_match}.", code="conflict"
            )
        if w.create_only and live:
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
            await self._refresh_search_fields(rtype, rid, current, w.fields)
            return StoredVersion(rtype, rid, base, current["_lu"], False, current["resource"], changed=False)
        extra_fields = w.fields
        if resource is None and current is not None:
            # A deletion keeps the policy fields of what it deletes: who may see the
            # resource may see that it was deleted, nobody else.
            extra_fields = {k: v for k, v in current.items() if k.startswith("_p_")}
        doc = self._document(rtype, rid, base + 1, now_utc(), resource, extra_fields)
        if tx is not None:
            doc["_tx"] = tx
        return doc

    async def write_atomically(self, writes: list[PlannedWrite], *, timeout: float) -> list[StoredVersion]:
        """Write every planned version or none (see storage/journal.py), in order.

        Guards run against the state each write meets; any refusal or failure aborts the lot.
        """
        keys = [(w.rtype, w.rid) for w in writes]
        if len(set(keys)) != len(keys):
            raise BadRequest("A transaction may write each resource only once.", code="invalid")
        tx = uuid.uuid4().hex
        content_ids = [cid for w in writes for cid in w.content]
        await self.journal.begin(tx, keys, content_ids, timeout)
        claims: list[dict[str, Any] | StoredVersion] = []
        fresh_docs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        fresh_guards: list[tuple[PlannedWrite, Awaitable[None]]] = []
        deadline = time.monotonic() + timeout
        try:
            currents = await self._current_copies([w for w in writes if not w.fresh])
            for w in writes:
                if time.monotonic() > deadline:
                    raise _timed_out(timeout)
                await self._store_content(w)
                try:
                    if w.fresh and w.resource is not None:
                        # Nobody can hold this id: checked below (in parallel, no current state
                        # to wait for), claimed with the others of its type.
                        if w.guard is not None:
                            fresh_guards.append((w, w.guard(None)))
                        doc = self._document(w.rtype, w.rid, 1, now_utc(), w.resource, w.fields)
                        doc["_tx"] = tx
                        fresh_docs[w.rtype].append({**doc, "_id": f"{w.rid}/1"})
                        claims.append(doc)
                    else:
                        # One by one: a claim meets the state its predecessors left. (Claiming
                        # these together in one insert was measured faster, but a process killed
                        # in the middle of such multi-document writes left FerretDB v1 hung.)
                        # The current copies were read together beforehand: a transaction's own
                        # claims never change them, and a concurrent writer that did loses
                        # (or wins) on the unique version key exactly as before.
                        claims.append(await self._claim(w, tx=tx, current=currents[(w.rtype, w.rid)]))
                except FhirError as exc:
                    exc.about = exc.about or f"{w.rtype}/{w.rid}"
                    raise
            outcomes = await asyncio.gather(*(guard for _, guard in fresh_guards), return_exceptions=True)
            for (w, _), result in zip(fresh_guards, outcomes, strict=True):
                if isinstance(result, FhirError):
                    result.about = result.about or f"{w.rtype}/{w.rid}"
                if isinstance(result, BaseException):
                    raise result
            for rtype, docs in fresh_docs.items():
                try:
                    await self.db[f"{rtype}_history"].insert_many([pack(d) for d in docs], ordered=True)
                except BulkWriteError:
                    raise Conflict("A server-assigned id is already taken; send again.") from None
            if time.monotonic() > deadline:  # past it, the sweep may already have aborted us
                raise _timed_out(timeout)
            outcome = await self.journal.decide(tx, "committed")
        except BaseException:
            for _, guard in fresh_guards:  # checks never started when an earlier write failed
                if inspect.iscoroutine(guard):
                    guard.close()
            await asyncio.shield(self._abort(tx, keys, content_ids))
            raise
        if outcome != "committed":
            await asyncio.shield(self._abort(tx, keys, content_ids))
            raise Conflict(
                "The transaction outlived its deadline and was rolled back; nothing was stored.",
                code="timeout",
            )
        results: list[StoredVersion] = []
        claimed_docs: list[tuple[str, dict[str, Any]]] = []
        for w, claim in zip(writes, claims, strict=True):
            if isinstance(claim, StoredVersion):
                results.append(claim)
            else:
                claimed_docs.append((w.rtype, claim))
                results.append(StoredVersion.from_doc(w.rtype, claim))
        fresh = frozenset(f"{w.rtype}/{w.rid}" for w in writes if w.fresh)
        await asyncio.shield(self.journal.roll_forward(tx, claimed_docs, fresh=fresh))
        return results

    async def _current_copies(
        self, writes: list[PlannedWrite]
    ) -> dict[tuple[str, str], dict[str, Any] | None]:
        """The current copy of each resource, read concurrently (a few at a time: one
        single-document read each, the shape FerretDB pushes down; an ``$in`` would scan)."""
        found = await bounded_gather([self.db[w.rtype].find_one({"_id": w.rid}) for w in writes])
        return {(w.rtype, w.rid): doc for w, doc in zip(writes, found, strict=True)}

    async def _abort(self, tx: str, keys: list[tuple[str, str]], content_ids: list[str]) -> None:
        await self.journal.decide(tx, "aborted")
        await self.journal.roll_back(tx, _group(keys), content_ids)

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
        await self.settle_published(rtype, rid, int(doc["_v"]))

    async def settle_published(self, rtype: str, rid: str, version: int) -> None:
        """After publishing ``version``: converge only if a newer version exists.

        A writer of version n+1 read version n (or later) as current before claiming, so it
        publishes after us or meets our copy; a slower writer of an older version finds ours in
        history when it runs this same check. One look-up by ``_id`` settles the usual case.
        """
        newer = await self.db[f"{rtype}_history"].find_one({"_id": f"{rid}/{version + 1}"}, {"_id": 1})
        if newer is not None:
            await self.converge(rtype, rid)

    async def publish_fresh(self, rtype: str, docs: list[dict[str, Any]]) -> None:
        """Publish versions 1 of ids this transaction made up, in one insert. Some may be
        published already — by a re-run after a crash, or by a concurrent conditional create
        that met an identifier this transaction claimed (its convergence publishes our committed
        version): those are replaced one by one, each followed by the newer-version check, so a
        version written since is never overwritten for good."""
        current = [{**{k: v for k, v in doc.items() if k != "_tx"}, "_id": doc["_rid"]} for doc in docs]
        try:
            await self.db[rtype].insert_many([pack(d) for d in current], ordered=False)
        except BulkWriteError:
            for doc in current:
                await self._replace_current(rtype, doc["_id"], doc)
                await self.settle_published(rtype, doc["_id"], int(doc["_v"]))

    async def publish_claimed(self, rtype: str, doc: dict[str, Any]) -> None:
        """Publish a version claimed by a committed transaction (its mark dropped)."""
        current = {k: v for k, v in doc.items() if k != "_tx"}
        current["_id"] = doc["_rid"]
        await self._replace_current(rtype, doc["_rid"], current)

    async def converge(self, rtype: str, rid: str) -> None:
        """Converge the current copy on the newest history version.

        A newest version claimed by a transaction is settled first: published if it committed,
        removed if it aborted; while its transaction is still running the resource is locked (409).
        """
        for _ in range(MAX_WRITE_ATTEMPTS):
            # Two independent reads, sent together; the loop absorbs any race between them.
            newest, current = await asyncio.gather(
                self.newest_history(rtype, rid), self.db[rtype].find_one({"_id": rid}, projection={"_v": 1})
            )
            if newest is None:
                return
            tx = newest.get("_tx")
            if tx is not None:
                settlement = await self.journal.settle(tx)
                if settlement.outcome is None and not settlement.gone:
                    raise Conflict(
                        f"{rtype}/{rid} is being written by a transaction in progress; try again.",
                        code="lock-error",
                    )
                # A mark whose transaction is gone is a late claim of an aborted one (a
                # committed transaction drops its marks before it forgets itself): remove it.
                # The removal is conditional on the mark, so a stale read removes nothing.
                if settlement.outcome == "aborted" or settlement.gone:
                    await self.db[f"{rtype}_history"].delete_one({"_id": newest["_id"], "_tx": tx})
                    continue
                if settlement.outcome == "committed":
                    await self.publish_claimed(rtype, newest)
                    await self.db[f"{rtype}_history"].update_one(
                        {"_id": newest["_id"], "_tx": tx}, {"$unset": {"_tx": ""}}
                    )
                await asyncio.sleep(0)
                continue
            if current is not None and int(current["_v"]) == int(newest["_v"]):
                return
            newest["_id"] = rid
            await self._replace_current(rtype, rid, newest)
        # Still racing after many rounds: the last writer's own check will converge it.

    async def _replace_current(self, rtype: str, rid: str, doc: dict[str, Any]) -> None:
        for _ in range(MAX_WRITE_ATTEMPTS):
            try:
                await self.db[rtype].replace_one({"_id": rid}, pack(doc), upsert=True)
                return
            except DuplicateKeyError:
                # Concurrent upserts of a new _id: the document exists now; replace it.
                await asyncio.sleep(0)

    async def _refresh_search_fields(
        self, rtype: str, rid: str, current: Mapping[str, Any], fields: Mapping[str, Any]
    ) -> None:
        """An unchanged resource written again (``dmp-fhir load``) whose search fields this
        version of the server extracts differently (a new parameter, a unit conversion): its
        current copy is re-indexed, no version is added. One write, only when something differs."""
        stale = {k: v for k, v in fields.items() if k.startswith("_s_") and current.get(k) != v}
        gone = {k: "" for k in current if k.startswith("_s_") and k not in fields}
        update: dict[str, Any] = {}
        if stale:
            update["$set"] = stale
        if gone:
            update["$unset"] = gone
        if update:
            await self.db[rtype].update_one({"_id": rid, "_v": current["_v"]}, update)

    async def set_fields(self, rtype: str, rid: str, fields: Mapping[str, Any]) -> None:
        """Refresh derived (policy) fields of the current copy; the resource is untouched."""
        await self.db[rtype].update_one({"_id": rid}, {"$set": dict(fields)})

    async def purge(self, rtype: str, rid: str) -> int:
        """Remove every version of one resource and its content (destruction, not a FHIR delete)."""
        history = self.db[f"{rtype}_history"]
        await self.content.delete(await self._content_ids({"_rid": rid}, rtype))
        removed = (await history.delete_many({"_rid": rid})).deleted_count
        removed += (await self.db[rtype].delete_many({"_id": rid})).deleted_count
        return removed

    async def purge_patient(self, rtype: str, pid: str) -> int:
        """Remove every version of every ``rtype`` resource of one patient, and their content
        (``_p_patient`` is a top-level equality: pushed down by FerretDB). History first: a crash
        leaves current copies, which a re-run still finds."""
        history = self.db[f"{rtype}_history"]
        await self.content.delete(await self._content_ids({"_p_patient": pid}, rtype))
        removed = (await history.delete_many({"_p_patient": pid})).deleted_count
        removed += (await self.db[rtype].delete_many({"_p_patient": pid})).deleted_count
        return removed

    async def purge_content(self, binary_ids: list[str]) -> int:
        """Remove the content-store blobs of these Binaries: those their versions point to and
        those uploaded for them by a write that never completed (named in the blob's metadata)."""
        blobs: list[str] = []
        for binary_id in binary_ids:
            blobs += await self._content_ids({"_rid": binary_id}, "Binary")
            files = self.db["content.files"].find({"metadata.resource": f"Binary/{binary_id}"}, {"_id": 1})
            blobs += [f["_id"] async for f in files]
        return await self.content.delete(sorted(set(blobs)))

    async def _content_ids(self, query: Mapping[str, Any], rtype: str) -> list[str]:
        if rtype != "Binary":
            return []
        docs = await self.db["Binary_history"].find(dict(query), projection={"_content": 1}).to_list(None)
        return [d["_content"]["id"] for d in docs if isinstance(d.get("_content"), dict)]


#: A page this small fits in one reply batch (16 MiB) unless its documents carry content.
ONE_BATCH_LIMIT = 101


def _one_batch(rtype: str, limit: int, projection: Mapping[str, Any] | None) -> bool:
    """Ask for a single batch (a negative limit) when the answer surely fits in one: no server
    cursor is kept open (FerretDB v2 persists one per query otherwise, at several ms each).
    Binaries may carry up to 256 KiB inline each, so their pages keep a cursor."""
    small = rtype != "Binary" or (projection is not None and "resource" not in projection)
    return limit == 1 or (limit <= ONE_BATCH_LIMIT and small)


def _timed_out(timeout: float) -> Conflict:
    return Conflict(
        f"The transaction did not complete within {timeout:g} s; nothing was stored.", code="timeout"
    )


def _group(keys: list[tuple[str, str]]) -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = defaultdict(list)
    for rtype, rid in keys:
        by_type[rtype].append(rid)
    return by_type
