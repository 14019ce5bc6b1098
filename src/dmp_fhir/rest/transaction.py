"""``POST /fhir`` with a ``transaction`` Bundle: every entry or none (FHIR R4 §3.1.0.11.2).

Planning happens first and writes nothing: entries are parsed, ids assigned, conditional
requests and references (``urn:uuid:``, ``Type?query``) resolved, an IHE MHD Provide Document
Bundle (ITI-65) checked against the French rules, replacements turned into the superseding of the
old document. The repository then writes the whole plan atomically (storage/journal.py) under
the caller's access policy; reads (GET entries) run last. Any failure answers one
OperationOutcome naming the failing entry, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import BadRequest, Conflict, FhirError, NotFound, Unprocessable, located
from ..feeds import check_structured_feed, is_structured_feed
from ..identifiers import claimed_identifier
from ..mhd import (
    Entry,
    check_provide_bundle,
    externalize_inline_content,
    is_submission_set,
    replaced_documents,
)
from ..registry import RESOURCE_TYPES
from ..repository import ID_PATTERN, ClaimOutcome, Repository, TransactionWrite, parse_etag
from ..storage.store import StoredVersion, format_instant, now_utc

MAX_ENTRIES = 1000
#: FHIR's processing order: deletes, creates, updates and patches, then reads.
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass(slots=True)
class PlannedEntry:
    index: int
    method: str
    rtype: str
    url: str
    raw: dict[str, Any]
    rid: str | None = None
    query: str | None = None  # conditional PUT/DELETE/PATCH, or a GET search
    resource: dict[str, Any] | None = None
    if_match: int | None = None
    existing: StoredVersion | None = None  # If-None-Exist matched: nothing to write
    result: StoredVersion | None = None
    token: str | None = None  # ``ifNoneExist`` on its own identifier: decided by a claim
    claim: ClaimOutcome | None = None


async def run_transaction(
    repo: Repository, bundle: dict[str, Any], base: str, *, echo: bool
) -> dict[str, Any]:
    """Plan, write atomically, then read; return the ``transaction-response`` Bundle."""
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise BadRequest("Bundle.entry must be an array.", code="structure", expression=("Bundle.entry",))
    if len(raw_entries) > MAX_ENTRIES:
        raise BadRequest(f"A transaction holds at most {MAX_ENTRIES} entries.", code="too-costly")
    async with repo.audit_scope("transaction", "Bundle"):
        # A conditional create that lost the race for its identifier's id to a concurrent post
        # fails the attempt (nothing stored); planning again then finds that resource.
        deadline = time.monotonic() + repo.settings.transaction_timeout_seconds + 1
        pause = 0.02
        while True:
            entries = [_parse_entry(i, e, base) for i, e in enumerate(raw_entries)]
            try:
                await _plan_and_write(repo, entries, base)
                break
            except FhirError as exc:
                if time.monotonic() > deadline or not await _lost_a_claim(repo, entries, exc):
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
        out: list[dict[str, Any]] = []
        for entry in entries:
            out.append(await _response_entry(repo, entry, base, echo=echo))
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "meta": {"lastUpdated": format_instant(now_utc())},
        "entry": out,
    }


async def _plan_and_write(repo: Repository, entries: list[PlannedEntry], base: str) -> None:
    try:
        await _plan_and_write_once(repo, entries, base)
    except BaseException:
        # An attempt that failed frees the masterIdentifiers it claimed: the next attempt (or
        # the sender's corrected Bundle) gets new ids and must not meet them.
        await asyncio.shield(repo.release_master_claims())
        raise


async def _plan_and_write_once(repo: Repository, entries: list[PlannedEntry], base: str) -> None:
    ids = await _assign_ids(repo, entries, base)
    for entry in entries:
        if entry.resource is not None:
            try:
                entry.resource = await _rewrite(repo, entry.resource, ids, base)
            except FhirError as exc:
                raise located(exc, entry.index) from None
    await _claim_identifiers(repo, entries)
    # An establishment system writes for the professional its documents declare.
    await repo.declare_sender(e.resource for e in entries if e.method in ("POST", "PUT"))
    writes, origin = await _plan_writes(repo, entries)
    if writes:
        try:
            results = await repo.transaction(writes)
        except FhirError as exc:
            if exc.about in origin:
                raise located(exc, origin[exc.about]) from None
            raise
        by_key = {(r.type, r.id): r for r in results}
        for entry in entries:
            if entry.rid is not None and entry.existing is None and entry.method != "GET":
                entry.result = by_key.get((entry.rtype, entry.rid))
            if entry.claim is not None:
                await repo.settle_claim(entry.rtype, entry.claim, entry.resource)


async def _claim_identifiers(repo: Repository, entries: list[PlannedEntry]) -> None:
    """Claim the identifiers of conditional creates (storage/claims.py), once references are
    resolved (the claim names the resource's patient). An entry whose identifier already names
    a resource the caller sees answers it; one that adopts an earlier claim's id takes that id,
    and the references of the other entries follow it."""
    moved: dict[str, str] = {}
    for entry in entries:
        if entry.token is None or entry.resource is None or entry.rid is None:
            continue
        try:
            outcome = await repo.claim_identifier(entry.rtype, entry.token, entry.resource)
        except FhirError as exc:
            raise located(exc, entry.index) from None
        old = f"{entry.rtype}/{entry.rid}"
        if outcome.existing is not None:
            entry.existing = outcome.existing
            moved[old] = f"{entry.rtype}/{outcome.existing.id}"
        elif outcome.claimed:
            entry.claim = outcome
            entry.rid = outcome.rid
            moved[old] = f"{entry.rtype}/{outcome.rid}"
    moved = {k: v for k, v in moved.items() if k != v}
    if moved:
        for entry in entries:
            if entry.resource is not None:
                entry.resource = _retarget(entry.resource, moved)
    keys = [(e.rtype, e.rid) for e in entries if e.method != "GET" and e.rid and e.existing is None]
    if len(set(keys)) != len(keys):
        raise BadRequest("A transaction may write each resource only once.", code="duplicate")


def _retarget(value: Any, moved: dict[str, str]) -> Any:
    """References to an entry whose id a claim changed (``Type/id`` after ``_rewrite``)."""
    if isinstance(value, list):
        return [_retarget(item, moved) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        k: moved.get(v, v) if k == "reference" and isinstance(v, str) else _retarget(v, moved)
        for k, v in value.items()
    }


async def _lost_a_claim(repo: Repository, entries: list[PlannedEntry], exc: FhirError) -> bool:
    """After a failed attempt (rolled back: nothing of ours remains), whether it failed for a
    race over a claimed id — a conflict, or a refusal of the entry that wrote it — that another
    post now holds. Any other failure stands at once."""
    failed = " ".join(x for issue in exc.issues for x in issue.expression)
    for entry in entries:
        if entry.claim is None:
            continue
        if not isinstance(exc, Conflict) and f"Bundle.entry[{entry.index}]" not in failed:
            continue
        if await repo.identifier_taken(entry.rtype, entry.claim.rid):
            return True
    return False


def _parse_entry(index: int, raw: Any, base: str) -> PlannedEntry:
    def bad(message: str, element: str = "request") -> BadRequest:
        return BadRequest(
            f"Bundle.entry[{index}]: {message}", expression=(f"Bundle.entry[{index}].{element}",)
        )

    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise bad("every transaction entry needs a request.")
    request = raw["request"]
    method = str(request.get("method", "")).upper()
    if method not in _ORDER:
        raise bad(f"unsupported method '{method}'.", "request.method")
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise bad("request.url is required.", "request.url")
    if url.startswith(base + "/"):
        url = url[len(base) + 1 :]
    try:
        parts = urlsplit(url)
    except ValueError:
        raise bad(f"'{url}' is not a URL.", "request.url") from None
    segments = [s for s in parts.path.split("/") if s]
    resource_in = raw.get("resource")
    if segments[:1] == ["Bundle"] and isinstance(resource_in, dict) and resource_in.get("type") == "document":
        raise Unprocessable(
            f"Bundle.entry[{index}]: a FHIR document (Bundle of type document) is not stored as a "
            "resource. The DMP keeps a document's bytes as they were signed and hashed: send them "
            "as a Binary (contentType application/fhir+json or application/fhir+xml; or CDA R2, "
            "PDF, text) that the DocumentReference's attachment points to, with the size and "
            "SHA-1 of those bytes. ITI-68 returns them unchanged.",
            code="not-supported",
            expression=(f"Bundle.entry[{index}].resource",),
        )
    if not segments or segments[0] not in RESOURCE_TYPES:
        raise bad(f"'{url}' names no supported resource type.", "request.url")
    entry = PlannedEntry(index, method, segments[0], url, raw)
    if method in ("GET", "HEAD"):
        entry.method = "GET"
        return entry
    if len(segments) == 2:
        if not ID_PATTERN.match(segments[1]):
            raise bad(f"'{segments[1]}' is not a valid id.", "request.url")
        entry.rid = segments[1]
    elif len(segments) != 1:
        raise bad(f"unsupported URL '{url}' for {method}.", "request.url")
    if parts.query:
        entry.query = parts.query
    if method == "POST" and (entry.rid is not None or entry.query):
        raise bad("POST goes to the type's URL (use ifNoneExist for a conditional create).", "request.url")
    if method in ("PUT", "DELETE", "PATCH") and entry.rid is None and not entry.query:
        raise bad(f"{method} needs an id or a search in its URL.", "request.url")
    if_match = request.get("ifMatch")
    entry.if_match = parse_etag(if_match) if isinstance(if_match, str) else None
    resource = raw.get("resource")
    if method in ("POST", "PUT", "PATCH"):
        if not isinstance(resource, dict):
            raise bad(f"{method} needs a resource.", "resource")
        if method != "PATCH" and resource.get("resourceType") != entry.rtype:
            raise bad(f"the resource is not a {entry.rtype}.", "resource.resourceType")
        entry.resource = dict(resource)
    return entry


async def _assign_ids(repo: Repository, entries: list[PlannedEntry], base: str) -> dict[str, str]:
    """Give every write entry its id, and map each ``fullUrl`` to ``Type/id``."""
    ids: dict[str, str] = {}
    for entry in sorted(entries, key=lambda e: _ORDER[e.method]):
        try:
            await _resolve_target(repo, entry)
        except FhirError as exc:
            raise located(exc, entry.index) from None
        full_url = entry.raw.get("fullUrl")
        if full_url is None:
            continue
        if not isinstance(full_url, str) or not full_url:
            raise BadRequest(f"Bundle.entry[{entry.index}].fullUrl must be a URI.", code="value")
        if full_url in ids:
            raise BadRequest(
                f"Bundle.entry[{entry.index}].fullUrl '{full_url}' appears twice.",
                code="duplicate",
                expression=(f"Bundle.entry[{entry.index}].fullUrl",),
            )
        target = entry.existing.id if entry.existing is not None else entry.rid
        if target is not None:
            ids[full_url] = f"{entry.rtype}/{target}"
    keys = [
        (e.rtype, e.rid) for e in entries if e.method != "GET" and e.rid is not None and e.existing is None
    ]
    if len(set(keys)) != len(keys):
        raise BadRequest("A transaction may write each resource only once.", code="duplicate")
    return ids


async def _resolve_target(repo: Repository, entry: PlannedEntry) -> None:
    if entry.method == "POST":
        condition = entry.raw["request"].get("ifNoneExist")
        if isinstance(condition, str) and condition:
            entry.existing = await repo.conditional_match(entry.rtype, condition)
            if entry.existing is not None:
                return
            entry.token = claimed_identifier(entry.rtype, condition, entry.resource)
        entry.rid = str(uuid.uuid4())
    elif entry.method in ("PUT", "DELETE", "PATCH") and entry.rid is None and entry.query:
        found = await repo.conditional_match(entry.rtype, entry.query)
        if found is not None:
            entry.rid = found.id
        elif entry.method == "PUT":
            entry.rid = str((entry.resource or {}).get("id") or uuid.uuid4())
        elif entry.method == "PATCH":
            raise NotFound(f"No {entry.rtype} matches '{entry.query}'.")
    if entry.method == "PUT" and entry.resource is not None:
        body_id = entry.resource.get("id")
        if body_id is not None and body_id != entry.rid:
            raise BadRequest(
                f"The resource id '{body_id}' does not match the entry's URL.",
                expression=(f"{entry.rtype}.id",),
            )


async def _rewrite(repo: Repository, value: Any, ids: dict[str, str], base: str) -> Any:
    """References to other entries (``fullUrl``), to this server's base, or conditional ones
    (``Type?search``) become plain ``Type/id``."""
    if isinstance(value, list):
        return [await _rewrite(repo, item, ids, base) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in ("reference", "url") and isinstance(item, str):
            out[key] = await _rewrite_reference(repo, key, item, ids, base)
        else:
            out[key] = await _rewrite(repo, item, ids, base)
    return out


async def _rewrite_reference(repo: Repository, key: str, value: str, ids: dict[str, str], base: str) -> str:
    if value in ids:
        return ids[value]
    if value.startswith("urn:uuid:") or value.startswith("urn:oid:"):
        if key == "reference" or value.startswith("urn:uuid:"):
            raise BadRequest(f"'{value}' is not the fullUrl of any entry of this Bundle.", code="not-found")
        return value
    if key != "reference":
        return value
    if value.startswith(base + "/"):
        value = value[len(base) + 1 :]
    rtype, sep, query = value.partition("?")
    if sep and rtype in RESOURCE_TYPES:
        found = await repo.conditional_match(rtype, query)
        if found is None:
            raise NotFound(f"No {rtype} matches the conditional reference '{value}'.")
        return f"{rtype}/{found.id}"
    return value


async def _plan_writes(
    repo: Repository, entries: list[PlannedEntry]
) -> tuple[list[TransactionWrite], dict[str, int]]:
    """The versions to write, in entry order, and the entry each comes from (by ``Type/id``);
    MHD rules apply to Provide Document Bundles."""
    writes: list[TransactionWrite] = []
    origin: dict[str, int] = {}
    views: list[Entry] = []
    for entry in entries:
        if entry.method == "GET" or entry.existing is not None or entry.rid is None:
            continue
        try:
            resource = await _target_resource(repo, entry)
        except FhirError as exc:
            raise located(exc, entry.index) from None
        views.append(Entry(entry.index, entry.rtype, entry.rid, resource))
    # Every resource is checked (R4) before the MHD rules reason on it; the DMP profiles run
    # in the write guards, after the policy (403 before 422).
    views = _validated(repo, views)
    if any(is_submission_set(v.resource) for v in views):
        known = len(views)
        views = externalize_inline_content(views)  # appends the Binaries it makes
        views = views[:known] + _validated(repo, views[known:])
        await check_provide_bundle(
            views, repo.lookup, repo.documents_with_identifier, repo.claim_master_identifier
        )
    if is_structured_feed(views, repo.matrix):
        await check_structured_feed(views, repo.lookup, repo.matrix)
    by_index = {e.index: e for e in entries}
    superseded: set[str] = set()
    for view in views:
        entry = by_index[view.index]
        if (view.rtype, view.rid) == (entry.rtype, entry.rid):
            post = entry.method == "POST"
            # An adopted id may be known to (being written by) a concurrent post: not "fresh".
            # One this post's claim made up is claimed with the other new ids; a concurrent
            # adopter that wrote it first fails the insert, and the attempt is planned again.
            fresh = post and (entry.claim is None or entry.claim.won)
            write = TransactionWrite(
                view.rtype, view.rid, view.resource, entry.if_match, post, fresh=fresh, validated=True
            )
        else:  # content the server took out of an inline attachment
            write = TransactionWrite(
                view.rtype, view.rid, view.resource, None, True, fresh=True, validated=True
            )
        writes.append(write)
        origin[view.key] = view.index
        for target in replaced_documents(view):
            try:
                writes.append(await _supersede(repo, view, target, superseded))
            except FhirError as exc:
                raise located(exc, view.index) from None
            origin[target] = view.index
    return writes, origin


def _validated(repo: Repository, views: list[Entry]) -> list[Entry]:
    out = []
    for view in views:
        if view.resource is not None:
            try:
                view = Entry(view.index, view.rtype, view.rid, repo.checked(view.resource, view.rtype))
            except FhirError as exc:
                raise located(exc, view.index) from None
        out.append(view)
    return out


async def _target_resource(repo: Repository, entry: PlannedEntry) -> dict[str, Any] | None:
    assert entry.rid is not None
    if entry.method == "DELETE":
        return None
    if entry.method == "PATCH":
        operations = _patch_operations(entry.resource or {})
        current, patched = await repo.patched(entry.rtype, entry.rid, operations)
        if entry.if_match is None:
            entry.if_match = current.version
        return patched
    resource = dict(entry.resource or {})
    resource["id"] = entry.rid
    return resource


def _patch_operations(resource: dict[str, Any]) -> Any:
    """A transaction PATCH entry carries its JSON Patch as a Binary (FHIR R4 §3.1.0.11.2)."""
    if resource.get("resourceType") != "Binary" or "json-patch" not in str(resource.get("contentType")):
        raise BadRequest(
            "A PATCH entry carries a Binary with contentType application/json-patch+json.",
            code="not-supported",
        )
    try:
        return json.loads(base64.b64decode(str(resource.get("data", "")), validate=True))
    except ValueError:
        raise BadRequest("The PATCH entry's Binary does not hold a JSON Patch.") from None


async def _supersede(repo: Repository, new: Entry, target: str, done: set[str]) -> TransactionWrite:
    """The replaced document becomes ``superseded`` in the same atomic step."""
    rtype, _, rid = target.partition("/")
    if rtype != "DocumentReference" or not ID_PATTERN.match(rid):
        raise Unprocessable(
            "relatesTo.target of a replacement must be a DocumentReference.",
            expression=(new.where("relatesTo"),),
        )
    if rid in done or rid == new.rid:
        raise Unprocessable(
            f"{target} is replaced twice in this Bundle.", expression=(new.where("relatesTo"),)
        )
    done.add(rid)
    old = await repo.read("DocumentReference", rid)
    resource = dict(old.resource or {})
    if resource.get("status") != "current":
        raise Unprocessable(
            f"{target} is '{resource.get('status')}': only a current document can be replaced.",
            code="business-rule",
            expression=(new.where("relatesTo"),),
        )
    if (resource.get("subject") or {}).get("reference") != ((new.resource or {}).get("subject") or {}).get(
        "reference"
    ):
        raise Unprocessable(
            "A replacement must be about the same patient as the document it replaces.",
            code="business-rule",
            expression=(new.where("subject"),),
        )
    resource["status"] = "superseded"
    resource.pop("meta", None)
    return TransactionWrite("DocumentReference", rid, resource, old.version, False)


async def _response_entry(repo: Repository, entry: PlannedEntry, base: str, *, echo: bool) -> dict[str, Any]:
    if entry.method == "GET":
        from .batch import error_entry, run_entry  # reads share the batch code path

        try:
            return await run_entry(repo, entry.raw, base)
        except FhirError as exc:
            # The writes are committed by now: a read that fails is answered in its entry.
            return error_entry(exc)
    version = entry.existing or entry.result
    if entry.existing is not None:
        status = "200 OK"
    elif entry.method == "DELETE":
        status = "204 No Content"
    elif version is not None and version.version == 1 and version.changed:
        status = "201 Created"
    else:
        status = "200 OK"
    response: dict[str, Any] = {"status": status}
    if version is not None and version.version:
        response["location"] = f"{version.type}/{version.id}/_history/{version.version}"
        response["etag"] = version.etag
        response["lastModified"] = format_instant(version.last_updated)
    out: dict[str, Any] = {"response": response}
    if entry.raw.get("fullUrl"):
        out["fullUrl"] = entry.raw["fullUrl"]
    if echo and version is not None and version.resource is not None and entry.method != "DELETE":
        out["resource"] = (await repo.materialize(version)).resource
    return out
