"""Type- and instance-level interactions, generated per resource type from the registry.

Each supported type gets its own routes (so OpenAPI describes them per type and an unknown
type is simply not routed): create, read, vread, update, patch, delete, history, search.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadRequest, Issue, NotFound, UnsupportedMediaType, operation_outcome
from ..registry import RESOURCE_TYPES, ResourceType
from ..repository import parse_etag
from .body import JSON_PATCH, media_type_of, read_resource_body
from .bundles import history_bundle, page_link
from .context import repository_of, settings_of, version_headers, write_response
from .media import JSON_FORMAT, binary_content, choose_format, fhir_response, wants_raw_content
from .openapi import resource_body

Handler = Callable[..., Awaitable[Response]]


def _count_param(request: Request) -> int:
    settings = settings_of(request)
    raw = request.query_params.get("_count")
    if raw is None:
        return settings.default_page_size
    if not raw.isdigit():
        raise BadRequest(f"_count must be a non-negative integer, not '{raw}'.", code="value")
    return max(1, min(int(raw), settings.max_page_size))


def _since_param(request: Request) -> datetime | None:
    raw = request.query_params.get("_since")
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"_since must be an instant, not '{raw}'.", code="value") from None
    if moment.tzinfo is None:
        raise BadRequest("_since must carry a time zone.", code="value")
    return moment


def _make_handlers(rtype: ResourceType) -> dict[str, Handler]:
    name = rtype.name

    async def create(request: Request) -> Response:
        settings = settings_of(request)
        body = await read_resource_body(request, settings.max_body_bytes)
        repo = await repository_of(request)
        condition = request.headers.get("if-none-exist")
        if condition:
            result = await repo.conditional_create(name, body, condition)
            if not result.created:
                return write_response(
                    request, result.version, status=200, message="Resource already exists; nothing created."
                )
        else:
            result = await repo.create(name, body)
        return write_response(
            request, result.version, status=201, message=f"Created {name}/{result.version.id}."
        )

    async def read(request: Request, rid: str) -> Response:
        return await _version_response(request, name, rid, None)

    async def vread(request: Request, rid: str, vid: str) -> Response:
        return await _version_response(request, name, rid, vid)

    async def update(request: Request, rid: str) -> Response:
        settings = settings_of(request)
        body = await read_resource_body(request, settings.max_body_bytes)
        if_match = parse_etag(request.headers.get("if-match"))
        repo = await repository_of(request)
        result = await repo.update(name, rid, body, if_match=if_match)
        status = 201 if result.created else 200
        return write_response(request, result.version, status=status, message=f"Updated {name}/{rid}.")

    async def patch(request: Request, rid: str) -> Response:
        operations = await _patch_body(request)
        if_match = parse_etag(request.headers.get("if-match"))
        repo = await repository_of(request)
        result = await repo.patch(name, rid, operations, if_match=if_match)
        return write_response(request, result.version, status=200, message=f"Patched {name}/{rid}.")

    async def conditional_patch(request: Request) -> Response:
        """``PATCH [type]?search``: the French guide's metadata update names documents this way."""
        query = str(request.url.query)
        if not query:
            raise BadRequest("PATCH on a type needs search parameters naming one resource.", code="required")
        operations = await _patch_body(request)
        if_match = parse_etag(request.headers.get("if-match"))
        repo = await repository_of(request)
        async with repo.audit_scope("patch", name):
            found = await repo.conditional_match(name, query)
            if found is None:
                raise NotFound(f"No {name} matches '{query}'.")
            result = await repo.patch(name, found.id, operations, if_match=if_match)
        return write_response(request, result.version, status=200, message=f"Patched {name}/{found.id}.")

    async def delete(request: Request, rid: str) -> Response:
        fmt = choose_format(request)
        if_match = parse_etag(request.headers.get("if-match"))
        repo = await repository_of(request)
        version = await repo.delete(name, rid, if_match=if_match)
        headers = {"ETag": version.etag} if version.version else {}
        message = f"Deleted {name}/{rid}." if version.changed else f"{name}/{rid} was already absent."
        outcome = operation_outcome([Issue("informational", message, severity="information")])
        return fhir_response(outcome, fmt, status=200, headers=headers)

    async def instance_history(request: Request, rid: str) -> Response:
        return await _history(request, name, rid)

    async def type_history(request: Request) -> Response:
        return await _history(request, name, None)

    return {
        "create": create,
        "read": read,
        "vread": vread,
        "update": update,
        "delete": delete,
        "patch": patch,
        "conditional-patch": conditional_patch,
        "history-instance": instance_history,
        "history-type": type_history,
    }


async def _patch_body(request: Request) -> Any:
    if media_type_of(request) not in (JSON_PATCH, "application/json"):
        raise UnsupportedMediaType(
            f"PATCH takes a JSON Patch ({JSON_PATCH}); FHIRPath Patch is not supported."
        )
    return await read_resource_body(request, settings_of(request).max_body_bytes, allow_patch=True)


async def _version_response(request: Request, name: str, rid: str, vid: str | None) -> Response:
    """read (``vid`` None) or vread; a Binary asked for with a non-FHIR Accept is its bytes."""
    raw = name == "Binary" and wants_raw_content(request)
    fmt = JSON_FORMAT if raw else choose_format(request)
    repo = await repository_of(request)
    found = await (repo.read(name, rid) if vid is None else repo.vread(name, rid, vid))
    headers = version_headers(settings_of(request).base_url, found)
    del headers["Location"]
    if vid is None and request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    if raw:
        return binary_content(found, headers, repo.content_stream(found))
    found = await repo.materialize(found)
    return fhir_response(found.resource, fmt, headers=headers)


async def _history(request: Request, name: str, rid: str | None) -> Response:
    fmt = choose_format(request)
    settings = settings_of(request)
    repo = await repository_of(request)  # history() checks the resource itself (one audit event)
    count = _count_param(request)
    since = _since_param(request)
    versions, cursor = await repo.history(
        name, rid, count=count, cursor=request.query_params.get("_cursor"), since=since
    )
    versions = [await repo.materialize(v) for v in versions]
    path = f"{name}/{rid}/_history" if rid else f"{name}/_history"
    params = list(request.query_params.multi_items())
    bundle = history_bundle(
        settings.base_url,
        versions,
        self_link=page_link(settings.base_url, path, params),
        next_link=page_link(settings.base_url, path, params, _cursor=cursor) if cursor else None,
    )
    return fhir_response(bundle, fmt)


#: (path, handler, method, operation id prefix, summary, only for client-writable types)
_ROUTES: tuple[tuple[str, str, str, str, str, bool], ...] = (
    ("/{n}/_history", "history-type", "GET", "history_type", "History of all {n} resources", False),
    ("/{n}", "create", "POST", "create", "Create a {n}", True),
    ("/{n}", "conditional-patch", "PATCH", "conditional_patch", "Patch the one {n} a search names", True),
    ("/{n}/{{rid}}", "read", "GET", "read", "Read a {n}", False),
    ("/{n}/{{rid}}", "update", "PUT", "update", "Update (or create) a {n}", True),
    ("/{n}/{{rid}}", "delete", "DELETE", "delete", "Delete a {n}", True),
    ("/{n}/{{rid}}", "patch", "PATCH", "patch", "Patch a {n} (JSON Patch)", True),
    ("/{n}/{{rid}}/_history", "history-instance", "GET", "history_instance", "History of one {n}", False),
    ("/{n}/{{rid}}/_history/{{vid}}", "vread", "GET", "vread", "Read a version of a {n}", False),
)


def build_router() -> APIRouter:
    """One set of routes per registered type (``_history`` before ``{rid}``)."""
    router = APIRouter()
    for rtype in RESOURCE_TYPES.values():
        handlers = _make_handlers(rtype)
        n = rtype.name
        tags: list[str | Any] = [n]
        for path, key, method, op, summary, writable_only in _ROUTES:
            if writable_only and not rtype.client_writable:
                continue
            router.add_api_route(
                path.format(n=n),
                handlers[key],
                methods=[method],
                status_code=201 if key == "create" else 200,
                tags=tags,
                operation_id=f"{op}_{n}",
                summary=summary.format(n=n),
                openapi_extra=resource_body(n) if key in ("create", "update") else None,
            )
    return router
