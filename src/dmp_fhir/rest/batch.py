"""``POST /fhir`` with a ``batch`` Bundle: each entry is an independent request, run through
the same repository (and so the same access policy and audit) as the REST routes.

``transaction`` Bundles (all or nothing) are planned and written by ``rest.transaction``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadRequest, FhirError
from ..repository import Repository, parse_etag
from ..storage.store import StoredVersion, format_instant, now_utc
from .body import read_resource_body
from .bundles import searchset_bundle
from .context import repository_of, settings_of
from .media import choose_format, fhir_response
from .openapi import bundle_body
from .search_routes import result_entries
from .transaction import run_transaction

MAX_ENTRIES = 1000


def _entry_response(
    status: str,
    version: StoredVersion | None = None,
    *,
    base: str = "",
    resource: Any = None,
    outcome: Any = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"status": status}
    if version is not None and version.version:
        response["etag"] = version.etag
        response["lastModified"] = format_instant(version.last_updated)
        response["location"] = f"{base}/{version.type}/{version.id}/_history/{version.version}"
    if outcome is not None:
        response["outcome"] = outcome
    entry: dict[str, Any] = {"response": response}
    if resource is not None:
        entry["resource"] = resource
    return entry


async def run_entry(repo: Repository, entry: Any, base: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise BadRequest("Every batch entry needs a request.", code="required")
    request = entry["request"]
    method = str(request.get("method", "")).upper()
    url = str(request.get("url", ""))
    try:
        parts = urlsplit(url)
    except ValueError:
        raise BadRequest(f"Entry URL '{url}' is not a URL.", code="value") from None
    path = parts.path.strip("/")
    if base and url.startswith(base):
        path = url[len(base) :].split("?")[0].strip("/")
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise BadRequest(f"Entry URL '{url}' names no resource type.", code="value")
    rtype = segments[0]
    if method == "GET":
        if len(segments) == 1:
            params = parse_qsl(parts.query, keep_blank_values=True)
            req, hits = await repo.search(rtype, params)
            bundle = searchset_bundle(
                base, result_entries(req, hits), total=hits.total, links={"self": f"{base}/{url}"}
            )
            return _entry_response("200 OK", resource=bundle)
        if len(segments) == 2:
            found = await repo.materialize(await repo.read(rtype, segments[1]))
            return _entry_response("200 OK", found, base=base, resource=found.resource)
        if len(segments) == 4 and segments[2] == "_history":
            found = await repo.materialize(await repo.vread(rtype, segments[1], segments[3]))
            return _entry_response("200 OK", found, base=base, resource=found.resource)
        raise BadRequest(f"Unsupported GET entry '{url}'.", code="not-supported")
    if method == "POST" and len(segments) == 1:
        condition = request.get("ifNoneExist")
        if isinstance(condition, str) and condition:
            created = await repo.conditional_create(rtype, entry.get("resource"), condition)
            if not created.created:
                return _entry_response("200 OK", created.version, base=base)
        else:
            created = await repo.create(rtype, entry.get("resource"))
        return _entry_response("201 Created", created.version, base=base, resource=created.version.resource)
    if method == "PUT" and len(segments) == 2:
        if_match = parse_etag(request.get("ifMatch")) if request.get("ifMatch") else None
        result = await repo.update(rtype, segments[1], entry.get("resource"), if_match=if_match)
        status = "201 Created" if result.created else "200 OK"
        return _entry_response(status, result.version, base=base, resource=result.version.resource)
    if method == "DELETE" and len(segments) == 2:
        if_match = parse_etag(request.get("ifMatch")) if request.get("ifMatch") else None
        version = await repo.delete(rtype, segments[1], if_match=if_match)
        return _entry_response("204 No Content", version if version.version else None, base=base)
    raise BadRequest(f"Unsupported batch entry: {method} {url}.", code="not-supported")


def _check_independent(entries: list[Any]) -> None:
    """A batch's entries are independent requests (R4 §3.1.0.11.2): ``fullUrl`` values are
    unique, and no entry may refer to another one (only a transaction resolves those)."""
    full_urls: set[str] = set()
    for entry in entries:
        url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if isinstance(url, str):
            if url in full_urls:
                raise BadRequest(f"Two entries share the fullUrl '{url}'.", code="duplicate")
            full_urls.add(url)
    if not full_urls:
        return
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if any(ref in full_urls for ref in _references(resource)):
            raise BadRequest(
                "A batch entry refers to another entry of the batch; send a transaction instead.",
                code="invalid",
            )


def _references(value: Any, depth: int = 0) -> list[str]:
    """Every ``reference`` string inside ``value`` (bounded depth: bodies are checked later)."""
    if depth > 64:
        return []
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        for item in value.values():
            if isinstance(item, dict | list):
                found += _references(item, depth + 1)
        return found
    if isinstance(value, list):
        return [ref for item in value for ref in _references(item, depth + 1)]
    return []


def error_entry(exc: FhirError) -> dict[str, Any]:
    """A response entry for a request that failed on its own (batch entries, transaction reads)."""
    return _entry_response(_status_line(exc.status), outcome=exc.outcome())


def _status_line(status: int) -> str:
    from http import HTTPStatus

    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


async def _fresh_repository(request: Request) -> Repository:
    """A repository per entry: entries are independent requests (own audit event)."""
    request.state.repository = None
    return await repository_of(request)


def build_router() -> APIRouter:
    router = APIRouter()

    @router.post(
        "",
        tags=["system"],
        operation_id="batch",
        summary="Process a batch or transaction Bundle",
        openapi_extra=bundle_body(),
    )
    @router.post("/", include_in_schema=False)
    async def batch(request: Request) -> Response:
        fmt = choose_format(request)
        settings = settings_of(request)
        body = await read_resource_body(request, settings.max_body_bytes)
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            raise BadRequest("POST to the base URL takes a Bundle.", code="structure")
        kind = body.get("type")
        if kind == "transaction":
            repo = await repository_of(request)
            # Entries carry resources only on request: an ITI-65 answer stays small.
            echo = "representation" in (request.headers.get("prefer") or "")
            return fhir_response(await run_transaction(repo, body, settings.base_url, echo=echo), fmt)
        if kind != "batch":
            raise BadRequest("Only batch and transaction Bundles are processed here.", code="value")
        entries = body.get("entry") or []
        if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
            raise BadRequest(f"A batch holds at most {MAX_ENTRIES} entries.", code="too-costly")
        _check_independent(entries)
        await repository_of(request)  # authenticate once, before any entry runs
        out: list[dict[str, Any]] = []
        for entry in entries:
            repo = await _fresh_repository(request)
            try:
                out.append(await run_entry(repo, entry, settings.base_url))
            except FhirError as exc:
                out.append(error_entry(exc))
        bundle = {
            "resourceType": "Bundle",
            "type": "batch-response",
            "meta": {"lastUpdated": format_instant(now_utc())},
            "entry": out,
        }
        return fhir_response(bundle, fmt)

    return router
