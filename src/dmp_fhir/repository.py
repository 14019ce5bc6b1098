"""The per-request repository: the only door from the HTTP layer to the data.

Routes and operations receive a ``Repository`` (built per request with the caller's policy)
and never touch the store or the driver. Every read path merges the policy's filter into its
query; every write computes the search and policy fields in one place (``_fields``) and runs
the policy's write check against the current state (``_guard``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from .audit import Auditor, AuditRecord, NullAuditor
from .audit.events import OUTCOME_MINOR_FAILURE, OUTCOME_SERIOUS_FAILURE
from .auth.caller import system_caller
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
from .identifiers import claimed_identifier, patient_of_resource
from .jsonpatch import PatchError, apply_patch
from .mhd import (
    Entry,
    check_find_documents,
    check_plain_document,
    duplicate_document,
    externalize_inline_content,
)
from .pdsm import IS_ARCHIVED_EXTS, canonical_extensions
from .policy.base import AccessPolicy, Unrestricted, WriteAction
from .policy.fields import HIDING_LABELS, policy_fields
from .policy.match import admits
from .policy.matrix import AccessMatrix, load_matrix
from .profiles import default_conformance
from .registry import CLINICAL_TYPES, RESOURCE_TYPES, ResourceType
from .search.cursor import Cursor
from .search.engine import SearchEngine, SearchRequest, SearchResult, eq_or_in, merge, reject_nul
from .search.extract import extract_search_fields
from .search.indexes import check_field_sizes
from .storage import ResourceStore, StoredVersion
from .storage.claims import Claim, claim_key
from .storage.content import ContentStore
from .storage.store import PlannedWrite, WriteGuard
from .validation import check_resource

#: FHIR's id syntax; ``\Z`` (``$`` would accept a trailing newline), and not only dots: "." and
#: ".." are path segments that every HTTP client rewrites.
if TYPE_CHECKING:
    from .lifecycle.operations import LifecycleOperations

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
class ClaimOutcome:
    """What an identifier claim decided for a conditional create (see ``claim_identifier``)."""

    rid: str  # the id to create (when ``existing`` is None)
    existing: StoredVersion | None = None  # the resource the identifier already names: answer it
    claimed: bool = False  # ``rid`` is the claim's: written with create_only
    won: bool = False  # this call made ``rid`` up (an adopted id may already be being written)
    key: str = ""
    claim_patient: str | None = None  # the patient the claim names (an adopter may differ)


@dataclass(frozen=True, slots=True)
class TransactionWrite:
    """One write of a transaction, its references already resolved (``resource`` None: delete)."""

    rtype: str
    rid: str
    resource: dict[str, Any] | None
    if_match: int | None = None
    create_only: bool = False
    fresh: bool = False  # a server-assigned id (POST): nobody else can have written it
    validated: bool = False  # already through ``checked`` (the planner checks before MHD rules)


_DIRECTORY = frozenset({"Practitioner", "PractitionerRole", "Organization"})

#: A transaction writes documents before what depends on them (Binary, List): their policy
#: fields and write checks read the document as planned.
_TRANSACTION_ORDER = {"Patient": 0, "DocumentReference": 1}


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
        #: masterIdentifier claims this request made: (key, id), released if its write fails.
        self._master_claims: list[tuple[str, str]] = []
        self._directory: dict[str, dict[str, Any] | None] = {}  # directory look-ups of this request
        self.search_engine = SearchEngine(
            store,
            base_url=settings.base_url,
            scope=policy.scope,
            default_count=settings.default_page_size,
            max_count=settings.max_page_size,
        )

    @classmethod
    def internal(
        cls, store: ResourceStore, settings: Settings, job: str, audit: Auditor | None = None
    ) -> Repository:
        """A repository for an internal job (sample loading, retention purge, test and benchmark
        set-up): explicit, unrestricted, never built for an HTTP request. ``audit`` defaults to
        none (set-up data is not an access)."""
        return cls(store, settings, Unrestricted(system_caller(job)), load_matrix(), audit or NullAuditor())

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
            await asyncio.shield(self.release_master_claims())
            record.outcome = OUTCOME_MINOR_FAILURE if exc.status < 500 else OUTCOME_SERIOUS_FAILURE
            record.outcome_desc = f"{exc.status}: {exc.diagnostics}"
            if _audited_type(rtype) or record.patients:
                await self.audit.record(record)
            raise
        except BaseException:
            await asyncio.shield(self.release_master_claims())
            raise
        finally:
            self._record = None
        self._master_claims = []  # written: the claims stay with their documents
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
                fields.pop("_p_authors", None)  # decided when that version was written
                await self.store.set_fields(dependent, doc["_id"], fields)

    async def _fields(
        self, rtype: str, resource: dict[str, Any] | None, *, rid: str | None = None
    ) -> dict[str, Any]:
        """Search and policy fields: computed here, for every write path."""
        if resource is None:
            return {}
        fields = extract_search_fields(rtype, resource, base_url=self.settings.base_url)
        check_field_sizes(fields)
        fields.update(await policy_fields(rtype, resource, self.matrix, self._resolve))
        if "_p_authors" in fields and rtype in ("DocumentReference", "List"):
            # Co-authorship grants nothing by itself: only authors entitled to write it count
            # — the writer of this version, or those the previous version already counted.
            named = list(fields["_p_authors"])
            entitled = set(await self.policy.authorship(rtype, resource, named, self._resolve))
            others = set(named) - entitled  # only they need the previous version's word
            if rid is not None and others:
                previous = await self.store.read_doc(rtype, {"_id": rid})
                if previous is not None and not previous.get("_deleted"):
                    entitled |= set(previous.get("_p_authors") or ()) & others
            fields["_p_authors"] = sorted(entitled)
        return fields

    async def _resolve(self, reference: str) -> dict[str, Any] | None:
        """Raw look-up for the policy fields (PractitionerRole, DocumentReference)."""
        rtype, _, rid = reference.partition("/")
        if rtype not in RESOURCE_TYPES or not ID_PATTERN.match(rid):
            return None
        if reference in self._planned:
            planned: dict[str, Any] = self._planned[reference]["resource"]
            return planned
        if rtype in _DIRECTORY and reference in self._directory:
            return self._directory[reference]
        found = await self.store.read(rtype, rid)
        resource = found.resource if found is not None and not found.deleted else None
        if rtype in _DIRECTORY:
            # A request does not change the directory it reads: the authors of a transaction's
            # fifty documents are one look-up, not fifty.
            self._directory[reference] = resource
        return resource

    @staticmethod
    def _writable(rtype: ResourceType) -> None:
        if not rtype.client_writable:
            raise MethodNotAllowed(f"{rtype.name} resources are written by the server only.")

    async def _visible(self, rtype: str, doc: dict[str, Any]) -> bool:
        """Is this stored (current or history) document visible to the caller?"""
        if rtype == "Binary":
            return await self.policy.binary_visible(doc)
        return await admits(self.store, rtype, doc, self.policy.scope(rtype))

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
                await self.policy.check_focus(focus, rtype.name)
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
        # The caller's own facts (a professional's roles) do not depend on the document.
        doc, _ = await asyncio.gather(
            self.store.read_doc(rtype.name, {"_id": check_id(rid)}), self.policy.prepare(set())
        )
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

    async def declare_sender(self, resources: Iterable[Any]) -> None:
        """An establishment system's write: its policy decides for the professional these
        resources declare from now on (policy/senders.py); the audit record names both."""
        caller = await self.policy.declare_sender([r for r in resources if isinstance(r, Mapping)])
        if self._record is not None:
            self._record.caller = caller

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
            if new is not None:
                # Permission before profile: who may not write learns nothing of the profile.
                self.conform(new["resource"], rtype)

        return guard

    async def _write_document(
        self, resource: dict[str, Any], *, create: bool, if_match: int | None, fresh: bool = False
    ) -> StoredVersion | None:
        """A plain create/update of a DocumentReference runs ITI-65's document rules (mhd.py):
        inline content is checked (size, SHA-1) and moved to a Binary bound to the document,
        written with it atomically; the masterIdentifier must be new. Returns the stored
        document when it was written here (inline content), None when the plain write goes on."""
        rid = str(resource["id"])
        entries = externalize_inline_content([Entry(-1, "DocumentReference", rid, resource)])
        entries = [entries[0]] + [
            Entry(e.index, e.rtype, e.rid, self.checked(e.resource, e.rtype)) for e in entries[1:]
        ]
        await check_plain_document(
            entries, self.documents_with_identifier, self.lookup, self.claim_master_identifier
        )
        if len(entries) == 1:
            return None
        writes = [
            TransactionWrite(
                "DocumentReference", rid, resource, if_match, create, fresh=fresh, validated=True
            ),
            *(
                TransactionWrite(e.rtype, e.rid, e.resource, None, True, fresh=True, validated=True)
                for e in entries[1:]
            ),
        ]
        results = await self.transaction(writes)
        return results[0]

    def validated(self, body: Any, rtype: str) -> dict[str, Any]:
        """The base R4 check, then the DMP profile of the type (writes the policy allowed
        already: the lifecycle operations')."""
        resource = self.checked(body, rtype)
        self.conform(resource, rtype)
        return resource

    def checked(self, body: Any, rtype: str) -> dict[str, Any]:
        """The base R4 check: what the policy and planners may reason on. The DMP profile
        runs in the write guard, after the policy's check (403 before 422)."""
        resource = check_resource(body, expected_type=rtype)
        return canonical_extensions(resource) if rtype in ("DocumentReference", "List") else resource

    def conform(self, resource: dict[str, Any], rtype: str) -> None:
        default_conformance().enforce(resource, self.settings.profile_enforcement)

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
            await self.declare_sender([body])
            self.policy.require(rtype.name, "c")
            resource = self.checked(body, rtype.name)
            fresh = rid is None  # a server-assigned id: nothing can refer to it or race for it yet
            new_id = rid or str(uuid.uuid4())
            resource = {**resource, "id": new_id}
            if rtype.name == "DocumentReference":
                done = await self._write_document(resource, create=True, if_match=None, fresh=fresh)
                if done is not None:
                    return WriteResult(done, created=True)
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
                fresh=fresh,
            )
            record.touched.clear()
            self._note(rtype.name, {"_rid": new_id, "_v": stored.version, **fields})
            if not fresh:
                await self._refresh_dependents(rtype.name, new_id)
            return WriteResult(_with_data(stored, resource), created=True)

    # -- conditional create: one resource per business identifier ---------------------

    async def conditional_create(self, type_name: str, body: Any, condition: str) -> WriteResult:
        """``POST`` with ``If-None-Exist`` (or a batch entry's ``ifNoneExist``): the one resource
        matching ``condition`` (200, nothing written), else a new one (201).

        When the condition is the resource's own ``identifier=system|value``, an identifier claim
        decides (storage/claims.py): of concurrent first posts exactly one is stored and every
        other one answers with it, as a later re-post does. A post that meets the claimed id
        being written by a running transaction waits for it (at most the transaction timeout).
        """
        existing = await self.conditional_match(type_name, condition)
        if existing is not None:
            return WriteResult(existing, created=False)
        rtype = resource_type(type_name)
        token = claimed_identifier(rtype.name, condition, body)
        if token is None:
            return await self.create(rtype.name, body)
        self._writable(rtype)
        async with self._audited("create", rtype.name) as record:
            await self.declare_sender([body])
            self.policy.require(rtype.name, "c")
            resource = self.checked(body, rtype.name)  # an invalid body claims nothing
            deadline = time.monotonic() + self.settings.transaction_timeout_seconds + 1
            pause = 0.02
            while True:
                outcome = await self.claim_identifier(rtype.name, token, resource)
                if outcome.existing is not None:
                    record.interaction = "read"  # the caller is answered, not creating
                    return WriteResult(outcome.existing, created=False)
                if not outcome.claimed:  # the identifier's resource is hidden from the caller
                    return await self.create(rtype.name, body)
                try:
                    result = await self.create(rtype.name, body, rid=outcome.rid)
                except FhirError:
                    # Lost the race for the claimed id (another post wrote it, or a transaction
                    # is writing it): claim again, which now answers that resource. A refusal
                    # of our own (nobody holds the id) stands.
                    taken = await self.identifier_taken(rtype.name, outcome.rid)
                    if not taken or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.5)
                    continue
                await self.settle_claim(rtype.name, outcome, result.version.resource)
                return result

    async def claim_identifier(self, rtype: str, token: str, resource: dict[str, Any]) -> ClaimOutcome:
        """Claim ``token`` for a new ``rtype`` (storage/claims.py).

        The claim names the id to create — a new one, or an earlier claimer's that nothing holds
        yet (adopted: a crashed or refused post blocks nothing). When the id already holds a live
        resource carrying the identifier, that resource is the answer if the caller may see it;
        if not, the caller's resource is created apart, unclaimed (a refusal would tell them
        the hidden resource exists). A claim naming a deleted resource, or one that no longer
        carries the identifier, is stale: dropped, and claimed again.
        """
        patient = patient_of_resource(rtype, resource, self.matrix)
        claim, doc = await self._claim_held(rtype, token, str(uuid.uuid4()), patient)
        outcome = ClaimOutcome(
            claim.rid, claimed=True, won=claim.won, key=claim.key, claim_patient=claim.patient
        )
        if doc is None:
            return outcome  # ours, or an adopted id nothing holds yet
        pid = doc.get("_p_patient")
        await self.policy.prepare({pid} if isinstance(pid, str) else set())
        if not await self._visible(rtype, doc):
            return ClaimOutcome(str(uuid.uuid4()))
        self._note(rtype, doc)
        return ClaimOutcome(claim.rid, existing=StoredVersion.from_doc(rtype, doc))

    async def _claim_held(
        self, rtype: str, token: str, rid: str, patient: str | None, *, abandoned_after: float | None = None
    ) -> tuple[Claim, dict[str, Any] | None]:
        """Claim ``token`` for ``rid`` (storage/claims.py): the claim, and the live resource that
        already holds it (None when the claim is ours or names an id nothing holds yet).

        A claim naming a deleted resource, or one that no longer carries the identifier, is stale:
        dropped (only if it still names that id) and claimed again. So is a claim naming nothing
        that is older than ``abandoned_after`` seconds, when given: a write that never completed."""
        key = claim_key(rtype, token)
        claims = self.store.claims
        for _ in range(10):
            claim = await claims.claim(rtype, key, rid, patient)
            if claim.won or claim.rid == rid:
                return claim, None
            holder = await self.store.read_doc(rtype, {"_id": claim.rid})
            if holder is not None:
                if not holder.get("_deleted") and token in (holder.get("_s_identifier") or ()):
                    return claim, holder
            elif (
                abandoned_after is None
                or claim.at is None
                or (datetime.now(UTC) - claim.at).total_seconds() < abandoned_after
            ):
                return claim, None
            await claims.release(key, claim.rid)  # stale: take it over
        raise Conflict("Too many concurrent creations with this identifier; try again.", code="lock-error")

    async def settle_claim(self, rtype: str, outcome: ClaimOutcome, resource: dict[str, Any] | None) -> None:
        """After writing an adopted id about another patient than its first claimer named: the
        claim follows the resource (destroying that patient releases it)."""
        if not outcome.claimed or resource is None:
            return
        patient = patient_of_resource(rtype, resource, self.matrix)
        if patient != outcome.claim_patient:
            await self.store.claims.set_patient(outcome.key, outcome.rid, patient)

    async def identifier_taken(self, rtype: str, rid: str) -> bool:
        """Whether any version of ``rtype/rid`` exists, published or claimed by a transaction."""
        return await self.store.newest_history(rtype, check_id(rid)) is not None

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
            await self.declare_sender([body])
            self.policy.require(rtype.name, "u")
            check_id(rid)
            resource = self.checked(body, rtype.name)
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
            if rtype.name == "DocumentReference":
                done = await self._write_document(resource, create=False, if_match=if_match)
                if done is not None:
                    return WriteResult(done, created=done.version == 1)
            fields = await self._fields(rtype.name, resource, rid=rid)
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

    async def claim_master_identifier(self, doc: Entry, token: str) -> None:
        """Take a document's masterIdentifier under a unique key (storage/claims.py), or 409.

        The search of ``check_master_identifiers`` sees stored documents only; of two
        submissions of one document at the same time (a retry after a timeout), only one wins
        the key. A claim naming a live document with this masterIdentifier is a duplicate; one
        naming a deleted or re-identified document is stale and taken over; one naming nothing
        yet is a submission in progress (409, send again) until the transaction timeout has
        passed — then it is the remains of a write that never completed, and taken over. A
        request that fails releases its claims (``release_master_claims``)."""
        patient = patient_of_resource("DocumentReference", doc.resource or {}, self.matrix)
        claim, holder = await self._claim_held(
            "DocumentReference",
            token,
            doc.rid,
            patient,
            abandoned_after=self.settings.transaction_timeout_seconds + 5,
        )
        if claim.won:
            self._master_claims.append((claim.key, doc.rid))
        elif claim.rid == doc.rid:
            return  # ours already (an update, or a document created by a conditional post)
        elif holder is not None:
            raise duplicate_document(doc, token)
        else:
            raise Conflict(
                f"A document with masterIdentifier {token.partition('|')[2]} is being "
                "submitted by another request; send again once it has finished.",
                code="conflict",
                expression=(doc.where("masterIdentifier"),),
            )

    async def release_master_claims(self) -> None:
        """After a failed write: free the masterIdentifiers it claimed (each only if it still
        names our id), so that the corrected submission is not kept waiting."""
        made, self._master_claims = self._master_claims, []
        for key, rid in made:
            await self.store.claims.release(key, rid)

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
                f"{w.rtype}/{w.rid}": {"_rid": w.rid, "resource": w.resource, "_fresh": w.fresh}
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
                        resource = self.checked(resource, w.rtype)
                    fields = await self._fields(w.rtype, resource, rid=None if w.fresh else w.rid)
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
                # The store runs the entries' checks together: the policy's facts about their
                # patients are read once, before, not once per entry.
                await self.policy.prepare(
                    {p.fields["_p_patient"] for p in planned if isinstance(p.fields.get("_p_patient"), str)}
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

    @property
    def lifecycle(self) -> LifecycleOperations:
        """The ``$dmp-*`` operations, through this repository (lifecycle/operations.py)."""
        from .lifecycle.operations import LifecycleOperations

        return LifecycleOperations(self)

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


def _document_outside_metadata(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A DocumentReference without what the French metadata update may change."""
    out = {k: v for k, v in resource.items() if k not in ("status", "securityLabel", "meta")}
    extensions = [
        e
        for e in resource.get("extension") or ()
        if not (isinstance(e, dict) and e.get("url") in IS_ARCHIVED_EXTS)
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
    return rtype in {"Patient", "DocumentReference", "List", "Consent", "Binary", "RelatedPerson"} or (
        rtype in CLINICAL_TYPES
    )


def _int_cursor(cursor: str) -> int:
    if not cursor.isdigit():
        raise BadRequest("Invalid paging cursor.", code="value")
    return int(cursor)


def _keyset_cursor(cursor: str) -> tuple[datetime, str]:
    key = Cursor.decode(cursor).key
    if key is None:
        raise BadRequest("Invalid paging cursor.", code="value")
    return key
