"""Type-level search: ``GET /{type}`` and ``POST /{type}/_search`` (form-encoded)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadRequest, UnsupportedMediaType, operation_outcome
from ..registry import RESOURCE_TYPES
from ..search.engine import SearchRequest, SearchResult
from ..search.shaping import shape
from .body import media_type_of, read_bytes
from .bundles import page_link, searchset_bundle
from .context import Prefer, repository_of, settings_of
from .media import choose_format, fhir_response
from .openapi import search_form, search_parameters


async def run_search(request: Request, type_name: str, params: list[tuple[str, str]]) -> Response:
    fmt = choose_format(request)
    settings = settings_of(request)
    prefer = Prefer.parse(request.headers.get("prefer"))
    repo = await repository_of(request)
    req, result = await repo.search(type_name, params, strict=prefer.handling == "strict")
    entries = result_entries(req, result)
    base = settings.base_url
    kept = [(k, v) for k, v in params if k != "_cursor"]
    links = {"self": page_link(base, type_name, [*kept, *_cursor_param(params)])}
    if result.next_cursor is not None:
        links["next"] = page_link(base, type_name, kept, _cursor=result.next_cursor.encode())
    if result.previous_cursor is not None:
        links["previous"] = page_link(base, type_name, kept, _cursor=result.previous_cursor.encode())
    outcome = operation_outcome(req.warnings) if req.warnings else None
    bundle = searchset_bundle(base, entries, total=result.total, links=links, outcome=outcome)
    return fhir_response(bundle, fmt)


def result_entries(req: SearchRequest, result: SearchResult) -> list[tuple[str, dict[str, Any]]]:
    """(search mode, shaped resource) pairs: matches, then included resources."""
    entries = [("match", shape(d["resource"], req.summary, req.elements)) for d in result.matches]
    # R4: "the list of elements does not apply to included resources".
    entries += [("include", shape(d["resource"], req.summary, None)) for _, d in result.included]
    return entries


def _cursor_param(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in params if k == "_cursor"]


def build_router() -> APIRouter:
    router = APIRouter()
    for rtype in RESOURCE_TYPES.values():
        if not rtype.searchable:
            continue
        name = rtype.name

        async def search_get(request: Request, _name: str = name) -> Response:
            return await run_search(request, _name, list(request.query_params.multi_items()))

        async def search_post(request: Request, _name: str = name) -> Response:
            media = media_type_of(request)
            if media and media != "application/x-www-form-urlencoded":
                raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded parameters.")
            from urllib.parse import parse_qsl

            raw = await read_bytes(request, settings_of(request).max_body_bytes)
            try:
                form = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise BadRequest("The form body is not UTF-8.", code="structure") from None
            params = list(request.query_params.multi_items()) + form
            return await run_search(request, _name, params)

        router.add_api_route(
            f"/{name}",
            search_get,
            methods=["GET"],
            tags=[name],
            operation_id=f"search_{name}",
            summary=f"Search {name} resources",
            openapi_extra=search_parameters(name),
        )
        router.add_api_route(
            f"/{name}/_search",
            search_post,
            methods=["POST"],
            tags=[name],
            operation_id=f"search_post_{name}",
            summary=f"Search {name} resources (form-encoded)",
            openapi_extra={**search_parameters(name), **search_form(name)},
        )
    return router
