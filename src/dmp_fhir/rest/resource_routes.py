"""Type- and instance-level interactions, generated per resource type from the registry.

Each supported type gets its own routes (so OpenAPI describes them per type and an unknown
type is simply not routed): create, read, vread, update, delete, history, search.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadRequest, Issue, operation_outcome
from ..registry import RESOURCE_TYPES, ResourceType
from ..repository import parse_etag
from .body import read_resource_body
from .bundles import history_bundle, page_link
from .context import repository_of, settings_of, version_headers, write_response
from .media import JSON_FORMAT, binary_content, choose_format, fhir_response, wants_raw_content

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
            existing = await repo.conditional_match(name, condition)
            if existing is not None:
                return write_response(
                    request, existing, status=200, message="Resource already exists; nothing created."
                )
        result = await repo.create(name, body)
        return write_response(
            request, result.version, status=201, message=f"Created {name}/{result.version.id}."
        )

    async def read(request: Request, rid: str) -> Response:
        raw = name == "Binary" and wants_raw_content(request)
        fmt = JSON_FORMAT if raw else choose_format(request)
        repo = await repository_of(request)
        found = await repo.read(name, rid)
        headers = version_headers(settings_of(request).base_url, found)
        del headers["Location"]
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        if raw:
            return binary_content(found, headers)
        return fhir_response(found.resource, fmt, headers=headers)

    async def vread(request: Request, rid: str, vid: str) -> Response:
        raw = name == "Binary" and wants_raw_content(request)
        fmt = JSON_FORMAT if raw else choose_format(request)
        repo = await repository_of(request)
        found = await repo.vread(name, rid, vid)
        headers = version_headers(settings_of(request).base_url, found)
        del headers["Location"]
        if raw:
            return binary_content(found, headers)
        return fhir_response(found.resource, fmt, headers=headers)

    async def update(request: Request, rid: str) -> Response:
        settings = settings_of(request)
        body = await read_resource_body(request, settings.max_body_bytes)
        if_match = parse_etag(request.headers.get("if-match"))
        repo = await repository_of(request)
        result = await repo.update(name, rid, body, if_match=if_match)
        status = 201 if result.created else 200
        return write_response(request, result.version, status=status, message=f"Updated {name}/{rid}.")

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
        "history-instance": instance_history,
        "history-type": type_history,
    }


async def _history(request: Request, name: str, rid: str | None) -> Response:
    fmt = choose_format(request)
    settings = settings_of(request)
    repo = await repository_of(request)
    if rid is not None:
        await repo.read_any_version(name, rid)
    count = _count_param(request)
    since = _since_param(request)
    versions, cursor = await repo.history(
        name, rid, count=count, cursor=request.query_params.get("_cursor"), since=since
    )
    path = f"{name}/{rid}/_history" if rid else f"{name}/_history"
    params = list(request.query_params.multi_items())
    bundle = history_bundle(
        settings.base_url,
        versions,
        self_link=page_link(settings.base_url, path, params),
        next_link=page_link(settings.base_url, path, params, _cursor=cursor) if cursor else None,
    )
    return fhir_response(bundle, fmt)


def build_router() -> APIRouter:
    """One set of routes per registered type."""
    router = APIRouter()
    for rtype in RESOURCE_TYPES.values():
        h = _make_handlers(rtype)
        n = rtype.name
        tags: list[str | Any] = [n]
        router.add_api_route(
            f"/{n}/_history",
            h["history-type"],
            methods=["GET"],
            tags=tags,
            operation_id=f"history_type_{n}",
            summary=f"History of all {n} resources",
        )
        if rtype.client_writable:
            router.add_api_route(
                f"/{n}",
                h["create"],
                methods=["POST"],
                status_code=201,
                tags=tags,
                operation_id=f"create_{n}",
                summary=f"Create a {n}",
            )
        router.add_api_route(
            f"/{n}/{{rid}}",
            h["read"],
            methods=["GET"],
            tags=tags,
            operation_id=f"read_{n}",
            summary=f"Read a {n}",
        )
        if rtype.client_writable:
            router.add_api_route(
                f"/{n}/{{rid}}",
                h["update"],
                methods=["PUT"],
                tags=tags,
                operation_id=f"update_{n}",
                summary=f"Update (or create) a {n}",
            )
            router.add_api_route(
                f"/{n}/{{rid}}",
                h["delete"],
                methods=["DELETE"],
                tags=tags,
                operation_id=f"delete_{n}",
                summary=f"Delete a {n}",
            )
        router.add_api_route(
            f"/{n}/{{rid}}/_history",
            h["history-instance"],
            methods=["GET"],
            tags=tags,
            operation_id=f"history_instance_{n}",
            summary=f"History of one {n}",
        )
        router.add_api_route(
            f"/{n}/{{rid}}/_history/{{vid}}",
            h["vread"],
            methods=["GET"],
            tags=tags,
            operation_id=f"vread_{n}",
            summary=f"Read a version of a {n}",
        )
    return router
