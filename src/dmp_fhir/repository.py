"""The per-request repository: the only door from the HTTP layer to the data.

Routes and operations receive a ``Repository`` (built per request with the caller's policy)
and never touch the store or the driver. Every read path merges the policy's filter into its
query; every write computes the search and policy fields in one place (``_fields``) and runs
the policy's write check against the current state (``_guard``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .audit import Auditor, AuditRecord
from .audit.events import OUTCOME_MINOR_FAILURE, OUTCOME_SERIOUS_FAILURE
from .config import Settings
from .errors import BadRequest, FhirError, Gone, MethodNotAllowed, NotFound, PreconditionFailed
from .policy.base import AccessPolicy, WriteAction
from .policy.fields import HIDING_LABELS, policy_fields
from .policy.matrix import AccessMatrix
from .registry import RESOURCE_TYPES, ResourceType
from .search.cursor import Cursor
from .search.engine import SearchEngine, SearchRequest, SearchResult, eq_or_in, merge, reject_nul
from .search.extract import extract_search_fields
from .search.indexes import check_field_sizes
from .storage import ResourceStore, StoredVersion
from .storage.store import WriteGuard
from .validation import check_resource

#: FHIR's id syntax; ``\Z`` (``$`` would accept a trailing newline), and not only dots: "." and
#: ".." are path segments that every HTTP client rewrites.
ID_PATTERN = re.compile(r"^(?!\.+\Z)[A-Za-z0-9\-.]{1,64}\Z")
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d+)"?\s*$')


def parse_etag(value: str | None) -> int | None:
    """The version in ``W/"3"`` (or ``"3"``, ``3``); 412 for anything else."""
    if value is None:
        return None
    match = _ETAG.match(value)
    if not match:
        raise PreconditionFailed(f'Unreadable If-Match value {value!r}; expected W/"<version>".')
    return int(match.group(1))


def check_id(rid: str) -> str:
    if not ID_PATTERN.match(rid):
        raise BadRequest(f"'{rid}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}}).", code="value")
    return rid


def resource_type(name: str) -> ResourceType:
    rtype = RESOURCE_TYPES.get(name)
    if rtype is None:
        raise NotFound(f"Resource type '{name}' is not supported by this server.", code="not-supported")
    return rtype


@dataclass(frozen=True, slots=True)
class WriteResult:
    version: StoredVersion
    created: bool


class Repository:
    """CRUD, search and history for one caller, every path through its access policy."""

    def __init__(
        self,
        store: ResourceStore,
        settings: Settings,
        policy: AccessPolicy,
        matrix: AccessMatrix,
        audit: Auditor,
    ) -> None:
        self.store = store
        self.settings = settings
        self.policy = policy
        self.matrix = matrix
        self.audit = audit
        self._record: AuditRecord | None = None
        self.search_engine = SearchEngine(
            store,
            base_url=settings.base_url,
            scope=policy.scope,
            default_count=settings.default_page_size,
            max_count=settings.max_page_size,
        )

    # -- audit ------------------------------------------------------------------------

    @asynccontextmanager
    async def _audited(
        self, interaction: str, rtype: str, *, query: str | None = None
    ) -> AsyncIterator[AuditRecord]:
        """One AuditEvent per public call, on success and on failure (nested calls share it).

        The answer waits until the event is stored: no access goes unrecorded.
        """
        if self._record is not None:
            yield self._record
            return
        caller = self.policy.caller
        record = AuditRecord(interaction, rtype, caller=caller, query=query, secret=caller.secret_connection)
        self._record = record
        try:
            yield record
        except FhirError as exc:
            record.outcome = OUTCOME_MINOR_FAILURE if exc.status < 500 else OUTCOME_SERIOUS_FAILURE
            record.outcome_desc = f"{exc.status}: {exc.diagnostics}"
            if _audited_type(rtype) or record.patients:
                await self.audit.record(record)
            raise
        finally:
            self._record = None
        if _audited_type(rtype) or record.patients:
            await self.audit.record(record)

    def _note(self, rtype: str, doc: dict[str, Any], *, version: bool = True, labels: bool = True) -> None:
        """Add a touched resource (and its patient and labels) to the current audit record."""
        record = self._record
        if record is None:
            return
        pid = doc.get("_p_patient")
        rid = doc.get("_rid", doc.get("_id"))
        ref = f"{rtype}/{rid}" + (f"/_history/{doc['_v']}" if version and "_v" in doc else "")
        hiding = frozenset(doc.get("_p_labels") or ()) & HIDING_LABELS if labels else frozenset()
        record.touch(pid if isinstance(pid, str) else None, ref, hiding)

    # -- helpers ----------------------------------------------------------------------

    async def _refresh_dependents(self, rtype: str, rid: str) -> None:
        """Binaries a document owns and submission sets that list it are hidden like it:
        recompute their policy fields when the document changes."""
        if rtype != "DocumentReference":
            return
        for dependent, query in (
            ("Binary", {"_p_document": rid}),
            ("List", {"_s_item": f"DocumentReference/{rid}"}),
        ):
            for doc in await self.store.find(dependent, {**query, "_deleted": False}):
                fields = await policy_fields(dependent, doc["resource"], self.matrix, self._resolve)
                await self.store.set_fields(dependent, doc["_id"], fields)

    async def _fields(self, rtype: str, resource: dict[str, Any] | None) -> dict[str, Any]:
        """Search and policy fields: computed here, for every write path."""
        if resource is None:
            return {}
        fields = extract_search_fields(rtype, resource, base_url=self.settings.base_url)
        check_field_sizes(fields)
        fields.update(await policy_fields(rtype, resource, self.matrix, self._resolve))
        return fields

    async def _resolve(self, reference: str) -> dict[str, Any] | None:
        """Raw look-up for the policy fields (PractitionerRole, DocumentReference)."""
        rtype, _, rid = reference.partition("/")
        if rtype not in RESOURCE_TYPES or not ID_PATTERN.match(rid):
            return None
        found = await self.store.read(rtype, rid)
        return found.resource if found is not None and not found.deleted else None

    @staticmethod
    def _writable(rtype: ResourceType) -> None:
        if not rtype.client_writable:
            raise MethodNotAllowed(f"{rtype.name} resources are written by the server only.")

    async def _visible(self, rtype: str, doc: dict[str, Any]) -> bool:
        """Is this stored (current or history) document visible to the caller?"""
        if rtype == "Binary":
            return await self.policy.binary_visible(doc)
        scope = self.policy.scope(rtype)
        if scope is None:
            return False
        if not scope:
            return True
        history = "/" in str(doc["_id"])
        found = await self.store.find(
            rtype,
            merge({"_id": doc["_id"]}, scope),
            limit=1,
            history=history,
            projection={"_id": 1},
        )
        return bool(found)

    async def _require_visible(self, rtype: str, doc: dict[str, Any], what: str) -> None:
        """404 for what the caller may not see (403 when the whole record is refused)."""
        self._note(rtype, doc)
        pid = doc.get("_p_patient")
        await self.policy.prepare({pid} if isinstance(pid, str) else set())
        if not await self._visible(rtype, doc):
            await self.policy.explain_hidden(rtype, doc)
            raise NotFound(f"{what} is not known.")

    # -- search -----------------------------------------------------------------------

    async def search(
        self, type_name: str, params: list[tuple[str, str]], *, strict: bool = False
    ) -> tuple[SearchRequest, SearchResult]:
        rtype = resource_type(type_name)
        async with self._audited("search-type", rtype.name, query=urlencode(params)) as record:
            self.policy.require(rtype.name, "s")
            reject_nul(params)
            focus = await self._focus_patients(rtype.name, params)
            record.patients.update(focus)
            if focus:
                await self.policy.check_focus(focus)
            else:
                await self.policy.prepare()
            request = await self.search_engine.compile(rtype.name, params, strict=strict)
            result = await self.search_engine.execute(request)
            for doc in result.matches:
                self._note(rtype.name, doc)
            for included_type, doc in result.included:
                self._note(included_type, doc)
            return request, result

    async def _focus_patients(self, rtype: str, params: list[tuple[str, str]]) -> set[str]:
        """The patients a search names explicitly (the policy then decides for them alone)."""
        focus: set[str] = set()
        for key, value in params:
            name = key.split(":")[0]
            values = [v for v in value.split(",") if v]
            if (name in ("patient", "subject") and "." not in key) or (rtype == "Patient" and name == "_id"):
                for v in values:
                    tail = v.split("/_history/")[0].rstrip("/").split("/")
                    if len(tail) == 1 or tail[-2] == "Patient":
                        focus.add(tail[-1])
            elif key in (
                "patient.identifier",
                "subject.identifier",
                "patient:Patient.identifier",
                "subject:Patient.identifier",
            ) or (rtype == "Patient" and name == "identifier"):
                for v in values:
                    docs = await self.store.find(
                        "Patient",
                        {"_s_identifier": v, "_deleted": False},
                        projection={"_id": 1},
                        limit=50,
                    )
                    focus.update(d["_id"] for d in docs)
        return focus

    async def conditional_match(self, type_name: str, query: str) -> StoredVersion | None:
        """The one resource matching ``query`` (If-None-Exist and conditional writes).

        None when nothing matches; 412 when several do (FHIR's rule for conditional writes).
        Only what the caller may see is considered.
        """
        rtype = resource_type(type_name)
        params = parse_qsl(query.split("?", 1)[-1], keep_blank_values=True)
        if not params:
            raise BadRequest("A conditional request needs search parameters.", code="required")
        async with self._audited("search-type", rtype.name, query=urlencode(params)):
            return await self._conditional_match(rtype, params, query)

    async def _conditional_match(
        self, rtype: ResourceType, params: list[tuple[str, str]], query: str
    ) -> StoredVersion | None:
        type_name = rtype.name
        self.policy.require(rtype.name, "s")
        reject_nul(params)
        focus = await self._focus_patients(rtype.name, params)
        await self.policy.prepare(focus or None)
        request = await self.search_engine.compile(rtype.name, params, strict=True)
        docs = await self.store.find(rtype.name, request.filter, limit=2)
        if len(docs) > 1:
            raise PreconditionFailed(
                f"The condition '{query}' matches several {type_name} resources.", code="multiple-matches"
            )
        for doc in docs:
            self._note(rtype.name, doc)
        return StoredVersion.from_doc(rtype.name, docs[0]) if docs else None

    # -- reads ------------------------------------------------------------------------

    async def read(self, type_name: str, rid: str) -> StoredVersion:
        rtype = resource_type(type_name)
        async with self._audited("read", rtype.name):
            return await self._read(rtype, rid)

    async def _read(self, rtype: ResourceType, rid: str) -> StoredVersion:
        type_name = rtype.name
        self.policy.require(rtype.name, "r")
        doc = await self.store.read_doc(rtype.name, {"_id": check_id(rid)})
        if doc is None:
            raise NotFound(f"{type_name}/{rid} is not known.")
        if doc.get("_deleted"):
            newest = await self.store.newest_history(rtype.name, rid, live=True)
            if newest is not None:
                await self._require_visible(rtype.name, newest, f"{type_name}/{rid}")
            version = StoredVersion.from_doc(rtype.name, doc)
            raise Gone(f"{type_name}/{rid} was deleted.", headers={"ETag": version.etag})
        await self._require_visible(rtype.name, doc, f"{type_name}/{rid}")
        return StoredVersion.from_doc(rtype.name, doc)

    async def read_any_version(self, type_name: str, rid: str) -> StoredVersion:
        """The current version or tombstone: history stays readable after a delete."""
        rtype = resource_type(type_name)
        async with self._audited("read", rtype.name):
            return await self._read_any_version(rtype, rid)

    async def _read_any_version(self, rtype: ResourceType, rid: str) -> StoredVersion:
        type_name = rtype.name
        self.policy.require(rtype.name, "r")
        doc = await self.store.read_doc(rtype.name, {"_id": check_id(rid)})
        if doc is None:
            raise NotFound(f"{type_name}/{rid} is not known.")
        newest = (
            doc if not doc.get("_deleted") else await self.store.newest_history(rtype.name, rid, live=True)
        )
        if newest is not None:
            await self._require_visible(rtype.name, newest, f"{type_name}/{rid}")
        return StoredVersion.from_doc(rtype.name, doc)

    async def vread(self, type_name: str, rid: str, version: str) -> StoredVersion:
        rtype = resource_type(type_name)
        async with self._audited("vread", rtype.name):
            return await self._vread(rtype, rid, version)

    async def _vread(self, rtype: ResourceType, rid: str, version: str) -> StoredVersion:
        type_name = rtype.name
        self.policy.require(rtype.name, "r")
        if not version.isdigit():
            raise NotFound(f"Version '{version}' of {type_name}/{rid} is not known.")
        doc = await self.store.read_doc(f"{rtype.name}_history", {"_id": f"{check_id(rid)}/{int(version)}"})
        if doc is None:
            raise NotFound(f"Version {version} of {type_name}/{rid} is not known.")
        # A masked resource hides all its versions: the current state decides first.
        await self._read_any_version(rtype, rid)
        if doc.get("_deleted"):
            raise Gone(f"Version {version} of {type_name}/{rid} is a deletion.")
        await self._require_visible(rtype.name, doc, f"Version {version} of {type_name}/{rid}")
        return StoredVersion.from_doc(rtype.name, doc)

    # -- writes -----------------------------------------------------------------------

    def _guard(self, rtype: str, new: dict[str, Any] | None) -> WriteGuard:
        """The policy check run by the store against the current state, on every attempt."""

        async def guard(current: dict[str, Any] | None) -> None:
            if new is not None:
                self._note(rtype, new, version=False, labels=False)
                if current is None:
                    self.policy.require(rtype, "c")  # an update that creates needs 'c'
            if current is not None:
                await self._require_visible(rtype, current, f"{rtype}/{current['_id']}")
            if new is None and current is None:
                return
            action: WriteAction = "delete" if new is None else "update" if current else "create"
            await self.policy.check_write(rtype, action, new, current)

        return guard

    async def create(self, type_name: str, body: Any, *, rid: str | None = None) -> WriteResult:
        """Create with a server-assigned id (the body's id, if any, is ignored as FHIR says)."""
        rtype = resource_type(type_name)
        self._writable(rtype)
        async with self._audited("create", rtype.name) as record:
            self.policy.require(rtype.name, "c")
            resource = check_resource(body, expected_type=rtype.name)
            new_id = rid or str(uuid.uuid4())
            resource = {**resource, "id": new_id}
            fields = await self._fields(rtype.name, resource)
            stored = await self.store.write(
                rtype.name,
                new_id,
                resource,
                fields,
                create_only=True,
                guard=self._guard(rtype.name, {"_rid": new_id, "resource": resource, **fields}),
            )
            record.touched.clear()
            self._note(rtype.name, {"_rid": new_id, "_v": stored.version, **fields})
            await self._refresh_dependents(rtype.name, new_id)
            return WriteResult(stored, created=True)

    async def update(
        self,
        type_name: str,
        rid: str,
        body: Any,
        *,
        if_match: int | None = None,
        skip_unchanged: bool = False,
    ) -> WriteResult:
        """Update, or create with the client's id when the resource does not exist yet."""
        rtype = resource_type(type_name)
        self._writable(rtype)
        async with self._audited("update", rtype.name) as record:
            self.policy.require(rtype.name, "u")
            check_id(rid)
            resource = check_resource(body, expected_type=rtype.name)
            body_id = resource.get("id")
            if body_id is None:
                raise BadRequest(
                    "An update must carry the resource id in the body.",
                    code="required",
                    expression=(f"{rtype.name}.id",),
                )
            if body_id != rid:
                raise BadRequest(
                    f"The body's id '{body_id}' does not match the URL's id '{rid}'.",
                    code="invalid",
                    expression=(f"{rtype.name}.id",),
                )
            fields = await self._fields(rtype.name, resource)
            stored = await self.store.write(
                rtype.name,
                rid,
                resource,
                fields,
                if_match=if_match,
                skip_unchanged=skip_unchanged,
                guard=self._guard(rtype.name, {"_rid": rid, "resource": resource, **fields}),
            )
            if stored.version == 1 and stored.changed:
                record.interaction = "create"
            record.touched.clear()
            self._note(rtype.name, {"_rid": rid, "_v": stored.version, **fields})
            if stored.changed:
                await self._refresh_dependents(rtype.name, rid)
            return WriteResult(stored, created=stored.version == 1 and stored.changed)

    async def delete(self, type_name: str, rid: str, *, if_match: int | None = None) -> StoredVersion:
        rtype = resource_type(type_name)
        self._writable(rtype)
        async with self._audited("delete", rtype.name) as record:
            self.policy.require(rtype.name, "d")
            stored = await self.store.write(
                rtype.name,
                check_id(rid),
                None,
                {},
                if_match=if_match,
                guard=self._guard(rtype.name, None),
            )
            if stored.changed:
                # The event names the tombstone version, with the deleted one's patient/labels.
                record.touched[:] = [
                    (pid, f"{rtype.name}/{rid}/_history/{stored.version}", labels)
                    for pid, _, labels in record.touched[:1]
                ]
                await self._refresh_dependents(rtype.name, rid)
            return stored

    # -- history ----------------------------------------------------------------------

    async def history(
        self,
        type_name: str,
        rid: str | None,
        *,
        count: int,
        cursor: str | None = None,
        since: datetime | None = None,
    ) -> tuple[list[StoredVersion], str | None]:
        """One page of versions, newest first, and the cursor of the next page (keyset paging:
        inserts between pages shift nothing)."""
        rtype = resource_type(type_name)
        interaction = "history-instance" if rid is not None else "history-type"
        async with self._audited(interaction, rtype.name):
            return await self._history(rtype, rid, count=count, cursor=cursor, since=since)

    async def _history(
        self,
        rtype: ResourceType,
        rid: str | None,
        *,
        count: int,
        cursor: str | None,
        since: datetime | None,
    ) -> tuple[list[StoredVersion], str | None]:
        self.policy.require(rtype.name, "r")
        if rid is not None:
            await self._read_any_version(rtype, rid)
        else:
            await self.policy.prepare()
        scope = self.policy.scope(rtype.name)
        if scope is None:
            return [], None
        query: dict[str, Any] = {}
        if since is not None:
            query["_lu"] = {"$gte": since}
        if rid is not None:
            query["_rid"] = check_id(rid)
            sort = [("_v", -1)]
            if cursor is not None:
                query["_v"] = {"$lt": _int_cursor(cursor)}
        else:
            sort = [("_lu", -1), ("_id", -1)]
            if cursor is not None:
                moment, hid = _keyset_cursor(cursor)
                keyset = [{"_lu": {"$lt": moment}}, {"_lu": moment, "_id": {"$lt": hid}}]
                if since is not None:
                    query = {"$and": [query, {"$or": keyset}]}
                else:
                    query["$or"] = keyset
        docs = await self.store.find(
            rtype.name, merge(query, scope), sort=sort, limit=count + 1, history=True
        )
        more = len(docs) > count
        docs = docs[:count]
        cursor_next = _history_cursor(docs[-1], by_version=rid is not None) if more else None
        if rid is None and scope:
            # A masked resource hides all its versions: keep only those whose current
            # state the caller may see (the page may come out short; the cursor goes on).
            docs = await self._currently_visible(rtype.name, docs)
        for doc in docs:
            self._note(rtype.name, doc)
        return [StoredVersion.from_doc(rtype.name, doc) for doc in docs], cursor_next

    async def _currently_visible(self, rtype: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = sorted({doc["_rid"] for doc in docs})
        if not ids:
            return docs
        scope = self.policy.scope(rtype)
        if scope is None:
            return []
        # Tombstones keep the policy fields of what they deleted, so they are judged alike.
        visible = {
            d["_id"]
            for d in await self.store.find(
                rtype,
                merge({"_id": eq_or_in(ids)}, scope),
                projection={"_id": 1},
            )
        }
        return [doc for doc in docs if doc["_rid"] in visible]


def _history_cursor(doc: dict[str, Any], *, by_version: bool) -> str:
    """Where the next history page starts (keyset: inserts between pages shift nothing);
    type history uses the search engine's (lastUpdated, id) cursor."""
    if by_version:
        return str(doc["_v"])
    return Cursor(key=(doc["_lu"], doc["_id"])).encode()


def _audited_type(rtype: str) -> bool:
    """Patient data is audited; reading the audit trail itself and the directory are not."""
    return rtype in {"Patient", "DocumentReference", "List", "Consent", "Binary"}


def _int_cursor(cursor: str) -> int:
    if not cursor.isdigit():
        raise BadRequest("Invalid paging cursor.", code="value")
    return int(cursor)


def _keyset_cursor(cursor: str) -> tuple[datetime, str]:
    key = Cursor.decode(cursor).key
    if key is None:
        raise BadRequest("Invalid paging cursor.", code="value")
    return key
