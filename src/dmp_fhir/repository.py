"""The per-request repository: the only door from the HTTP layer to the data.

Routes and operations receive a ``Repository`` (built per request with the caller's policy)
and never touch the store or the driver. Every read path merges the policy's filter into its
query; every write computes the search and policy fields in one place (``_fields``) and runs
the policy's write check against the current state (``_guard``).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .audit import Auditor, AuditRecord
from .audit.events import OUTCOME_MINOR_FAILURE, OUTCOME_SERIOUS_FAILURE
from .config import Settings
from .errors import (
    BadRequest,
    Conflict,
    FhirError,
    Gone,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from .jsonpatch import PatchError, apply_patch
from .lifecycle import consents as dmp_consents
from .lifecycle.identity import build_patient, ins_key
from .lifecycle.parameters import OperationParameters
from .mhd import check_find_documents
from .policy.base import AccessPolicy, WriteAction
from .policy.dmp import DIRECTORY_TYPES
from .policy.fields import HIDING_LABELS, actor_keys, policy_fields
from .policy.matrix import AccessMatrix
from .profiles import default_conformance
from .registry import RESOURCE_TYPES, ResourceType
from .search.cursor import Cursor
from .search.dates import parse_range
from .search.engine import SearchEngine, SearchRequest, SearchResult, eq_or_in, merge, reject_nul
from .search.extract import extract_search_fields
from .search.indexes import check_field_sizes
from .storage import ResourceStore, StoredVersion
from .storage.content import ContentStore
from .storage.records import CREATED, DmpRecords
from .storage.store import PlannedWrite, WriteGuard, format_instant, now_utc
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


@dataclass(frozen=True, slots=True)
class TransactionWrite:
    """One write of a transaction, its references already resolved (``resource`` None: delete)."""

    rtype: str
    rid: str
    resource: dict[str, Any] | None
    if_match: int | None = None
    create_only: bool = False
    fresh: bool = False  # a server-assigned id (POST): nobody else can have written it
    validated: bool = False  # already through ``validated`` (the planner checks before MHD rules)


#: A transaction writes documents before what depends on them (Binary, List): their policy
#: fields and write checks read the document as planned.
_TRANSACTION_ORDER = {"Patient": 0, "DocumentReference": 1}


#: Resource types that belong to one patient: destruction removes them (never AuditEvent).
PATIENT_OWNED = tuple(t for t in RESOURCE_TYPES if t not in DIRECTORY_TYPES and t != "AuditEvent")


def add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


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
        self._planned: dict[str, dict[str, Any]] = {}  # a transaction's documents, by Type/id
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
        if reference in self._planned:
            planned: dict[str, Any] = self._planned[reference]["resource"]
            return planned
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
            if rtype.name == "DocumentReference" and self.settings.require_iti67_parameters:
                check_find_documents(params)
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
        doc = await self.store.history_doc(rtype.name, check_id(rid), int(version))
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
        planned = self._planned

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
            await self.policy.check_write(rtype, action, new, current, planned=planned)

        return guard

    def validated(self, body: Any, rtype: str) -> dict[str, Any]:
        """The resource checked as every write checks it (planners check before they reason)."""
        return self._validated(body, rtype)

    def _validated(self, body: Any, rtype: str) -> dict[str, Any]:
        """The base R4 check, then the DMP profile of the type: every write path goes here."""
        resource = check_resource(body, expected_type=rtype)
        default_conformance().enforce(resource, self.settings.profile_enforcement)
        return resource

    def _split_content(
        self, rtype: str, resource: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, bytes]]:
        """Large Binary data goes to the content store: (stored resource, fields, blobs)."""
        data = resource.get("data")
        if rtype != "Binary" or not isinstance(data, str):
            return resource, {}, {}
        if len(data) * 3 // 4 <= self.settings.binary_inline_max_bytes:
            return resource, {}, {}
        raw = _decode(data, "Binary.data")
        content_id = ContentStore.new_id()
        stored = {k: v for k, v in resource.items() if k != "data"}
        return stored, {"_content": {"id": content_id, "size": len(raw)}}, {content_id: raw}

    async def content_of(self, version: StoredVersion) -> bytes:
        """The bytes of a Binary the caller has already been allowed to read."""
        if version.content_id is not None:
            return await self.store.content.get(version.content_id)
        data = (version.resource or {}).get("data")
        return _decode(data, "Binary.data") if isinstance(data, str) else b""

    def content_stream(self, version: StoredVersion) -> AsyncIterator[bytes] | None:
        """A readable Binary's content from the content store, piece by piece (None: inline)."""
        return self.store.content.stream(version.content_id) if version.content_id else None

    async def materialize(self, version: StoredVersion) -> StoredVersion:
        """The Binary as FHIR JSON: data from the content store put back in place."""
        if version.content_id is None or version.resource is None:
            return version
        data = base64.b64encode(await self.store.content.get(version.content_id)).decode("ascii")
        return replace(version, resource={**version.resource, "data": data}, content_id=None)

    async def create(self, type_name: str, body: Any, *, rid: str | None = None) -> WriteResult:
        """Create with a server-assigned id (the body's id, if any, is ignored as FHIR says)."""
        rtype = resource_type(type_name)
        self._writable(rtype)
        async with self._audited("create", rtype.name) as record:
            self.policy.require(rtype.name, "c")
            resource = self._validated(body, rtype.name)
            new_id = rid or str(uuid.uuid4())
            resource = {**resource, "id": new_id}
            fields = await self._fields(rtype.name, resource)
            kept, content_fields, blobs = self._split_content(rtype.name, resource)
            stored = await self.store.write(
                rtype.name,
                new_id,
                kept,
                {**fields, **content_fields},
                create_only=True,
                guard=self._guard(rtype.name, {"_rid": new_id, "resource": resource, **fields}),
                content=blobs,
            )
            record.touched.clear()
            self._note(rtype.name, {"_rid": new_id, "_v": stored.version, **fields})
            await self._refresh_dependents(rtype.name, new_id)
            return WriteResult(_with_data(stored, resource), created=True)

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
            resource = self._validated(body, rtype.name)
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
            kept, content_fields, blobs = self._split_content(rtype.name, resource)
            stored = await self.store.write(
                rtype.name,
                rid,
                kept,
                {**fields, **content_fields},
                if_match=if_match,
                skip_unchanged=skip_unchanged and not blobs,
                guard=self._guard(rtype.name, {"_rid": rid, "resource": resource, **fields}),
                content=blobs,
            )
            stored = _with_data(stored, resource)
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

    async def patch(
        self,
        type_name: str,
        rid: str,
        operations: Any,
        *,
        if_match: int | None = None,
    ) -> WriteResult:
        """JSON Patch (RFC 6902) applied to the current version, stored as a new version."""
        rtype = resource_type(type_name)
        async with self._audited("patch", rtype.name):
            current, patched = await self.patched(rtype.name, rid, operations)
            if if_match is not None and if_match != current.version:
                raise PreconditionFailed(
                    f"{rtype.name}/{rid} is at version {current.version}, not {if_match}.", code="conflict"
                )
            try:
                return await self.update(rtype.name, rid, patched, if_match=current.version)
            except PreconditionFailed:
                if if_match is not None:
                    raise
                raise Conflict(f"{rtype.name}/{rid} changed while it was patched; try again.") from None

    async def patched(
        self, type_name: str, rid: str, operations: Any
    ) -> tuple[StoredVersion, dict[str, Any]]:
        """The current version (as the caller may see it) and the resource the patch makes of it.

        A type in ``RESTRICTED_PATCH`` (DocumentReference: the French guide's metadata update)
        may change only the listed elements: the patched resource must equal the original
        everywhere else, or the patch is refused with 405 — whatever paths the patch used.
        """
        rtype = resource_type(type_name)
        self._writable(rtype)
        self.policy.require(rtype.name, "u")
        current = await self._read(rtype, rid)
        original = (await self.materialize(current)).resource or {}
        try:
            patched = apply_patch(original, operations)
        except PatchError as exc:
            raise Unprocessable(f"The JSON Patch cannot be applied: {exc}", code="processing") from None
        if not isinstance(patched, dict):
            raise Unprocessable("The JSON Patch must leave a resource (a JSON object).", code="processing")
        if patched.get("resourceType") != rtype.name or patched.get("id") != rid:
            raise Unprocessable("A patch cannot change resourceType or id.", code="processing")
        restricted = RESTRICTED_PATCH.get(rtype.name)
        if restricted is not None and restricted(original) != restricted(patched):
            raise MethodNotAllowed(
                f"A {rtype.name} patch may change only {RESTRICTED_PATCH_TEXT[rtype.name]}.",
                code="not-supported",
            )
        return current, patched

    def audit_scope(self, interaction: str, rtype: str) -> Any:
        """Group several calls (a transaction's reads and writes) under one audit event."""
        return self._audited(interaction, rtype)

    async def lookup(self, reference: str) -> dict[str, Any] | None:
        """A resource the caller may read, by ``Type/id`` (None when absent, deleted or hidden;
        403 when the whole record is refused), for consistency checks."""
        rtype, _, rid = reference.partition("/")
        if rtype not in RESOURCE_TYPES or not ID_PATTERN.match(rid):
            return None
        try:
            return (await self.read(rtype, rid)).resource
        except (NotFound, Gone):
            return None

    async def documents_with_identifier(self, token: str) -> list[str]:
        """Ids of live DocumentReferences carrying this ``system|value`` identifier."""
        docs = await self.store.find(
            "DocumentReference", {"_s_identifier": token, "_deleted": False}, projection={"_id": 1}, limit=10
        )
        return [d["_id"] for d in docs]

    async def transaction(self, writes: list[TransactionWrite]) -> list[StoredVersion]:
        """Every write or none (see storage/journal.py), each checked by the policy as usual.

        Documents are planned first so that their Binaries and submission sets are judged (and
        their policy fields computed) against the documents as they will be.
        """
        async with self._audited("transaction", "Bundle") as record:
            planning = len(record.touched)  # what the planning read stays in the event
            ordered = sorted(writes, key=lambda w: _TRANSACTION_ORDER.get(w.rtype, 2))
            for w in ordered:
                rtype = resource_type(w.rtype)
                self._writable(rtype)
                self.policy.require(w.rtype, "d" if w.resource is None else "c" if w.create_only else "u")
                check_id(w.rid)
            self._planned = {
                f"{w.rtype}/{w.rid}": {"_rid": w.rid, "resource": w.resource}
                for w in ordered
                if w.resource is not None
            }
            planned: list[PlannedWrite] = []
            try:
                for w in ordered:
                    resource = w.resource
                    if resource is None:
                        planned.append(
                            PlannedWrite(
                                w.rtype, w.rid, None, {}, w.if_match, guard=self._guard(w.rtype, None)
                            )
                        )
                        continue
                    if not w.validated:
                        resource = self._validated(resource, w.rtype)
                    fields = await self._fields(w.rtype, resource)
                    doc = self._planned[f"{w.rtype}/{w.rid}"]
                    doc.update(fields)
                    kept, content_fields, blobs = self._split_content(w.rtype, resource)
                    planned.append(
                        PlannedWrite(
                            w.rtype,
                            w.rid,
                            kept,
                            {**fields, **content_fields},
                            w.if_match,
                            w.create_only,
                            self._guard(w.rtype, doc),
                            blobs,
                            w.fresh,
                        )
                    )
                results = await self.store.write_atomically(
                    planned, timeout=self.settings.transaction_timeout_seconds
                )
            finally:
                self._planned = {}
            del record.touched[planning:]
            by_key = {}
            for w, p, result in zip(ordered, planned, results, strict=True):
                by_key[(w.rtype, w.rid)] = _with_data(result, w.resource or {})
                if result.changed:
                    fields = {k: v for k, v in p.fields.items() if k.startswith("_p_")}
                    self._note(w.rtype, {"_rid": w.rid, "_v": result.version, **fields})
            for w, result in zip(ordered, results, strict=True):
                if w.rtype == "DocumentReference" and result.version > 1:
                    await self._refresh_dependents(w.rtype, w.rid)
            return [by_key[(w.rtype, w.rid)] for w in writes]

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

    # -- lifecycle operations ($dmp-*) ---------------------------------------------------

    @asynccontextmanager
    async def _operation(self, name: str, rtype: str) -> AsyncIterator[AuditRecord]:
        async with self._audited("operation", rtype) as record:
            record.operation = name
            yield record

    def _note_patient(self, pid: str) -> None:
        self._note("Patient", {"_rid": pid, "_p_patient": pid}, version=False)

    async def _write_authorised(
        self,
        rtype: str,
        rid: str,
        resource: dict[str, Any],
        *,
        create_only: bool = False,
        if_match: int | None = None,
    ) -> StoredVersion:
        """A write inside an operation the policy already allowed (``check_operation``): the
        per-resource write rules (e.g. "only the patient writes Consents") do not apply."""
        resource = self._validated({**resource, "id": rid}, rtype)
        fields = await self._fields(rtype, resource)
        stored = await self.store.write(
            rtype, rid, resource, fields, create_only=create_only, if_match=if_match
        )
        self._note(rtype, {"_rid": rid, "_v": stored.version, **fields})
        await self._refresh_dependents(rtype, rid)
        return stored

    async def _live_patient(self, pid: str) -> dict[str, Any]:
        doc = await self.store.read_doc("Patient", {"_id": check_id(pid)})
        if doc is None or doc.get("_deleted"):
            raise NotFound(f"Patient/{pid} is not known.")
        return doc

    async def create_dmp(self, body: Any) -> WriteResult:
        """``POST Patient/$dmp-create``: one DMP per INS, decided by the ``dmp_ins`` claim.

        1. validate everything (identity, consent, representatives) — nothing is written yet;
        2. claim the INS: insert ``{_id: INS, patient: pid, state: pending}``; the unique
           ``_id`` lets exactly one concurrent creation win;
        3. write Patient/pid (``create_only``), the representatives and the creation Consent
           (fixed ids ``<pid>-rep-<n>``, ``<pid>-creation``: a repeat finds them and moves on);
        4. open the record (``dmp_record``) and settle the claim (``state: created``).

        A claim already ``created`` answers 409 naming the record (``Content-Location``). A
        claim still ``pending`` is a creation in progress or one that crashed between 2 and 4:
        this call adopts it — same pid — and completes the missing steps; whoever wrote the
        Patient answers 201, the other 409. So a crash never locks the INS: the next attempt
        converges on one complete record. A refusal after step 2 (before the Patient exists)
        releases the claim; a ``created`` claim whose Patient was destroyed is released too.
        """
        params = OperationParameters(body, "dmp-create")
        async with self._operation("dmp-create", "Patient") as record:
            self.policy.require("Patient", "c")
            caller = self.policy.caller
            ins = params.value("ins", "Identifier", required=True)
            key = ins_key(ins)
            patient = build_patient(
                ins=ins,
                birth_names=params.values("birthName", "String"),
                given_names=params.values("given", "String"),
                birth_date=params.value("birthDate", "Date", required=True),
                gender=params.value("gender", "Code", required=True),
                birthplace=params.value("birthPlace", "Code", required=True),
                extra=params.value("patient", "resource"),
            )
            if params.value("informationLeafletGiven", "Boolean", required=True) is not True:
                raise Unprocessable(
                    "The patient must have received the information leaflet before consenting.",
                    expression=("Parameters.parameter.where(name='informationLeafletGiven')",),
                )
            collector = params.value("consentCollector", "Reference") or (
                {"reference": caller.subject} if "/" in caller.subject else {"display": caller.subject}
            )
            moment = params.value("consentDate", "DateTime") or format_instant(now_utc())
            representatives = params.values("legalRepresentative", "resource")
            if caller.kind == "patient" and caller.patient is None:
                raise BadRequest("The token names no patient.", code="required")
            pid = caller.patient if caller.kind == "patient" and caller.patient else str(uuid.uuid4())
            await self.policy.check_operation(
                "dmp-create", "Patient", pid if caller.kind == "patient" else None
            )
            self._validated({**patient, "id": pid}, "Patient")
            for rp in representatives:
                if not isinstance(rp, dict) or rp.get("resourceType") != "RelatedPerson":
                    raise BadRequest("legalRepresentative must be a RelatedPerson.", code="structure")
                self._validated({**rp, "patient": {"reference": f"Patient/{pid}"}}, "RelatedPerson")
            consent = dmp_consents.creation_consent(pid, moment, collector, True)
            self._validated(consent, "Consent")

            records = DmpRecords(self.store.database)
            pid = await self._claim_ins(records, key, pid)
            self._note_patient(pid)
            record.touched.clear()
            won = False
            try:
                try:
                    await self._write_authorised("Patient", pid, patient, create_only=True)
                    won = True
                except Conflict:
                    # Another attempt wrote it: complete what is missing, then answer 409 — but
                    # only if that Patient is this INS's. A patient whose record exists (their
                    # token fixes the id) must not attach a new INS, representatives or consent.
                    existing = await self.store.read("Patient", pid)
                    if existing is None or existing.deleted or key not in _ins_keys(existing.resource):
                        await records.release(key, pid)
                        raise Conflict(
                            "This patient already has a DMP (under another identity).", code="duplicate"
                        ) from None
                for n, rp in enumerate(representatives, start=1):
                    rp = {**rp, "patient": {"reference": f"Patient/{pid}"}}
                    await self._create_if_absent("RelatedPerson", f"{pid}-rep-{n}", rp)
                consent = dmp_consents.creation_consent(pid, moment, collector, True)
                await self._create_if_absent("Consent", f"{pid}-creation", consent)
                if won or await records.get(pid) is None:
                    await records.put(pid, {"status": "open", "created_at": now_utc()})
                await records.settle(key)
            except BaseException:
                if await self.store.read_doc("Patient", {"_id": pid}) is None:
                    await records.release(key, pid)
                raise
            stored = await self.store.read("Patient", pid)
            assert stored is not None
            if not won:
                raise self._duplicate(pid)
            return WriteResult(stored, created=True)

    async def _claim_ins(self, records: DmpRecords, key: str, pid: str) -> str:
        """The patient id that owns the INS claim (see ``create_dmp``)."""
        for _ in range(5):
            existing = await records.claim(key, pid, now_utc())
            if existing is None:
                return pid
            owner = str(existing["patient"])
            if existing.get("state") == CREATED:
                if await self.store.read_doc("Patient", {"_id": owner}) is None:
                    await records.release(key, owner)  # destroyed: the INS is free again
                    continue
                raise self._duplicate(owner)
            if self.policy.caller.kind == "patient" and owner != pid:
                raise self._duplicate(owner)
            return owner  # pending: adopt it
        raise Conflict("The INS is being claimed concurrently; try again.", code="lock-error")

    def _duplicate(self, pid: str) -> Conflict:
        self._note_patient(pid)
        return Conflict(
            f"A DMP already exists for this INS: Patient/{pid}.",
            code="duplicate",
            headers={"Content-Location": f"{self.settings.base_url}/Patient/{pid}"},
        )

    async def _create_if_absent(self, rtype: str, rid: str, resource: dict[str, Any]) -> None:
        with suppress(Conflict):
            await self._write_authorised(rtype, rid, resource, create_only=True)

    async def manage_access(self, pid: str, body: Any) -> list[StoredVersion]:
        """``POST Patient/[id]/$dmp-access``: each decision is a Consent version (see
        ``lifecycle/consents.py`` for the shapes); returns the versions written."""
        params = OperationParameters(body, "dmp-access")
        async with self._operation("dmp-access", "Patient"):
            self.policy.require("Consent", "c")
            self.policy.require("Consent", "u")
            check_id(pid)
            self._note_patient(pid)
            action = params.value("action", "Code", required=True)
            if action not in dmp_consents.ACTIONS:
                raise BadRequest(
                    f"$dmp-access: action must be one of {', '.join(dmp_consents.ACTIONS)}.", code="value"
                )
            actor: dict[str, Any] | None = None
            if action in ("grant", "revoke", "block", "unblock"):
                actor = dmp_consents.check_actor(params.value("actor", "Reference", required=True))
            await self.policy.check_operation("dmp-access", "Patient", pid)
            await self._live_patient(pid)
            moment = format_instant(now_utc())
            if action in ("grant", "block", "oppose-emergency"):
                consent = dmp_consents.access_consent(pid, moment, action, actor)
                return [await self._write_authorised("Consent", str(uuid.uuid4()), consent, create_only=True)]
            keys = set(await actor_keys(actor, {}, self._resolve)) if actor else set()
            written = []
            for found in await self.store.find("Consent", {"_p_patient": pid, "_deleted": False}):
                doc: dict[str, Any] | None = found
                for _attempt in range(5):  # a concurrent change of the same Consent: judge it again
                    if doc is None or doc.get("_deleted"):
                        break
                    resource = doc["resource"]
                    if not dmp_consents.ends(resource, action, keys, list(doc.get("_p_actors") or ())):
                        break
                    ended = {**resource, "status": "inactive"}
                    try:
                        written.append(
                            await self._write_authorised(
                                "Consent", doc["_id"], ended, if_match=int(doc["_v"])
                            )
                        )
                        break
                    except PreconditionFailed:
                        doc = await self.store.read_doc("Consent", {"_id": doc["_id"]})
                else:
                    raise Conflict("The patient's Consents keep changing; try again.", code="lock-error")
            return written

    async def close_dmp(self, pid: str) -> dict[str, Any]:
        """``POST Patient/[id]/$dmp-close``: professionals lose access; the data is kept until
        ``retain_until`` (``retention_closed_years``), when ``dmp-fhir purge`` destroys it."""
        async with self._operation("dmp-close", "Patient"):
            self.policy.require("Patient", "u")
            check_id(pid)
            self._note_patient(pid)
            await self.policy.check_operation("dmp-close", "Patient", pid)
            await self._live_patient(pid)
            records = DmpRecords(self.store.database)
            current = await records.get(pid) or {}
            if current.get("status", "open") != "open":
                raise Conflict(f"The DMP of Patient/{pid} is not open.", code="business-rule")
            now = now_utc()
            state = {
                "status": "closed",
                "created_at": current.get("created_at"),
                "closed_at": now,
                "retain_until": add_years(now, self.settings.retention_closed_years),
            }
            await records.put(pid, state)
            return state

    async def reopen_dmp(self, pid: str) -> dict[str, Any]:
        """``POST Patient/[id]/$dmp-reopen``: within the retention period, all data comes back
        (nothing was removed at closure)."""
        async with self._operation("dmp-reopen", "Patient"):
            self.policy.require("Patient", "u")
            check_id(pid)
            self._note_patient(pid)
            await self.policy.check_operation("dmp-reopen", "Patient", pid)
            await self._live_patient(pid)
            records = DmpRecords(self.store.database)
            current = await records.get(pid) or {}
            if current.get("status") != "closed":
                raise Conflict(f"The DMP of Patient/{pid} is not closed.", code="business-rule")
            retain_until = current.get("retain_until")
            now = now_utc()
            if isinstance(retain_until, datetime) and retain_until.astimezone(UTC) <= now:
                raise Gone(f"The retention period of Patient/{pid}'s DMP is over.")
            state = {"status": "open", "created_at": current.get("created_at"), "reopened_at": now}
            await records.put(pid, state)
            return state

    async def destroy_dmp(self, pid: str) -> dict[str, int]:
        """``POST Patient/[id]/$dmp-destroy``: irreversible (see ``_destroy_patient``)."""
        async with self._operation("dmp-destroy", "Patient"):
            self.policy.require("Patient", "d")
            check_id(pid)
            self._note_patient(pid)
            await self.policy.check_operation("dmp-destroy", "Patient", pid)
            await self._live_patient(pid)
            return await self._destroy_patient(pid)

    async def _destroy_patient(self, pid: str) -> dict[str, int]:
        """Remove every version of everything about the patient, then the INS claim and the
        record. The record is marked ``destroying`` first (professionals are refused from
        then on); the Patient goes last, so a crash midway leaves a record that a re-run (or
        ``dmp-fhir purge``, which finishes ``destroying`` records) completes. AuditEvents
        stay: they hold references and codes, never content (README, "Destruction")."""
        records = DmpRecords(self.store.database)
        current = await records.get(pid) or {}
        await records.put(pid, {**{k: v for k, v in current.items() if k != "_id"}, "status": "destroying"})
        # A transaction still writing to this record would publish its versions after the
        # purge: finish what is decided, and let a running one end before destroying.
        await self.store.journal.recover()
        for rtype in PATIENT_OWNED:
            if await self.store.find(rtype, {"_p_patient": pid}, history=True, claimed=True, limit=1):
                raise Conflict(
                    "A transaction is writing to this record; the destruction resumes when you try again.",
                    code="lock-error",
                )
        binaries: set[str] = set()
        for history in (False, True):
            for doc in await self.store.find(
                "DocumentReference", {"_p_patient": pid}, history=history, projection={"_p_binaries": 1}
            ):
                binaries.update(doc.get("_p_binaries") or ())
        counts: dict[str, int] = {}
        for rtype in PATIENT_OWNED:
            if rtype != "Patient":
                counts[rtype] = await self.store.purge_patient(rtype, pid)
        for binary_id in sorted(binaries):
            counts["Binary"] = counts.get("Binary", 0) + await self.store.purge("Binary", binary_id)
        await self.store.purge_content(sorted(binaries))
        counts["Patient"] = await self.store.purge_patient("Patient", pid)
        await records.release_patient(pid)
        await records.remove(pid)
        return {k: v for k, v in counts.items() if v}

    async def destroy_document(self, rid: str) -> dict[str, int]:
        """``POST DocumentReference/[id]/$dmp-destroy``: one document, all its versions, its
        Binaries and their content; submission sets that listed it are re-labelled."""
        async with self._operation("dmp-destroy", "DocumentReference"):
            self.policy.require("DocumentReference", "d")
            doc = await self.store.read_doc("DocumentReference", {"_id": check_id(rid)})
            if doc is None:
                raise NotFound(f"DocumentReference/{rid} is not known.")
            live = (
                doc
                if not doc.get("_deleted")
                else await self.store.newest_history("DocumentReference", rid, live=True)
            )
            pid = (live or doc).get("_p_patient")
            await self.policy.check_operation(
                "dmp-destroy", "DocumentReference", pid if isinstance(pid, str) else None
            )
            if live is not None:
                await self._require_visible("DocumentReference", live, f"DocumentReference/{rid}")
            return await self._destroy_document(rid)

    async def _destroy_document(self, rid: str) -> dict[str, int]:
        binaries: set[str] = set()
        for history in (False, True):
            for doc in await self.store.find(
                "DocumentReference", {"_rid": rid}, history=history, projection={"_p_binaries": 1}
            ):
                binaries.update(doc.get("_p_binaries") or ())
        binaries.update(
            d["_id"] for d in await self.store.find("Binary", {"_p_document": rid}, projection={"_id": 1})
        )
        counts = {"DocumentReference": await self.store.purge("DocumentReference", rid), "Binary": 0}
        for binary_id in sorted(binaries):
            counts["Binary"] += await self.store.purge("Binary", binary_id)
        await self.store.purge_content(sorted(binaries))
        await self._refresh_dependents("DocumentReference", rid)
        return counts

    async def purge_expired(self, now: datetime) -> list[str]:
        """``dmp-fhir purge``: what the retention rules say must go, as of ``now``; one line
        per destruction, each audited. Running it twice removes nothing the second time."""
        await self.policy.check_operation("purge", "Patient", None)
        settings = self.settings
        records = DmpRecords(self.store.database)
        done: list[str] = []

        async def destroy(pid: str, why: str) -> None:
            async with self._operation("purge", "Patient"):
                self._note_patient(pid)
                counts = await self._destroy_patient(pid)
            removed = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing left"
            done.append(f"destroyed the DMP of Patient/{pid} ({why}): {removed}")

        for rec in await records.with_status("destroying"):
            await destroy(str(rec["_id"]), "an interrupted destruction")
        for rec in await records.with_status("closed"):
            until = rec.get("retain_until")
            if isinstance(until, datetime) and until.astimezone(UTC) <= now:
                await destroy(str(rec["_id"]), f"closed, retention ended {until.date().isoformat()}")
        for doc in await self.store.find("Patient", {"_s_deceased": "true", "_deleted": False}):
            death = _instant((doc.get("resource") or {}).get("deceasedDateTime"))
            if death is not None and add_years(death, settings.retention_after_death_years) <= now:
                await destroy(doc["_id"], f"deceased on {death.date().isoformat()}")
        by_patient: dict[str, list[dict[str, Any]]] = {}
        for doc in await self.store.find("DocumentReference", {"_p_keys": "SANTE_TRAVAIL"}):
            if isinstance(doc.get("_p_patient"), str):
                by_patient.setdefault(doc["_p_patient"], []).append(doc)
        for pid, docs in sorted(by_patient.items()):
            last = max(_visit(doc) for doc in docs)
            if add_years(last, settings.retention_occupational_years) <= now:
                async with self._operation("purge", "DocumentReference"):
                    self._note_patient(pid)
                    for doc in docs:
                        await self._destroy_document(doc["_id"])
                done.append(
                    f"destroyed the occupational-health section of Patient/{pid} "
                    f"(last visit {last.date().isoformat()}): DocumentReference {len(docs)}"
                )
        return done


def _instant(value: Any) -> datetime | None:
    """The start of a FHIR date/dateTime (None when absent or unreadable)."""
    found = parse_range(value) if isinstance(value, str) else None
    return found[0] if found else None


def _visit(doc: dict[str, Any]) -> datetime:
    """When a document's visit took place: context.period.start, else date, else storage time."""
    resource = doc.get("resource") or {}
    period = (resource.get("context") or {}).get("period") or {}
    found = _instant(period.get("start")) or _instant(resource.get("date"))
    moment: datetime = found or doc["_lu"]
    return moment.astimezone(UTC)


def _history_cursor(doc: dict[str, Any], *, by_version: bool) -> str:
    """Where the next history page starts (keyset: inserts between pages shift nothing);
    type history uses the search engine's (lastUpdated, id) cursor."""
    if by_version:
        return str(doc["_v"])
    return Cursor(key=(doc["_lu"], doc["_id"])).encode()


def _ins_keys(resource: Mapping[str, Any] | None) -> set[str]:
    """``system|value`` of every identifier of a Patient (INS keys among them)."""
    return {
        f"{i.get('system')}|{i.get('value')}"
        for i in (resource or {}).get("identifier") or ()
        if isinstance(i, dict)
    }


def _decode(data: Any, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise Unprocessable(f"{where} is not valid base64.", expression=(where,)) from None


def _with_data(version: StoredVersion, resource: Mapping[str, Any]) -> StoredVersion:
    """A just-written Binary answered with the data it was sent with."""
    if version.content_id is None or version.resource is None or "data" not in resource:
        return version
    return replace(version, resource={**version.resource, "data": resource["data"]}, content_id=None)


IS_ARCHIVED_EXT = "http://esante.gouv.fr/cisis/fhir/StructureDefinition/PDSm_isArchived"


def _document_outside_metadata(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A DocumentReference without what the French metadata update may change."""
    out = {k: v for k, v in resource.items() if k not in ("status", "securityLabel", "meta")}
    extensions = [
        e
        for e in resource.get("extension") or ()
        if not (isinstance(e, dict) and e.get("url") == IS_ARCHIVED_EXT)
    ]
    out.pop("extension", None)
    if extensions:
        out["extension"] = extensions
    return out


#: Types whose patches are limited (the French guide's metadata update), and what they may change.
RESTRICTED_PATCH = {"DocumentReference": _document_outside_metadata}
RESTRICTED_PATCH_TEXT = {"DocumentReference": "status, securityLabel and the isArchived extension"}


def _audited_type(rtype: str) -> bool:
    """Patient data is audited; reading the audit trail itself and the directory are not."""
    return rtype in {"Patient", "DocumentReference", "List", "Consent", "Binary", "RelatedPerson"}


def _int_cursor(cursor: str) -> int:
    if not cursor.isdigit():
        raise BadRequest("Invalid paging cursor.", code="value")
    return int(cursor)


def _keyset_cursor(cursor: str) -> tuple[datetime, str]:
    key = Cursor.decode(cursor).key
    if key is None:
        raise BadRequest("Invalid paging cursor.", code="value")
    return key
