"""Conformance endpoints: the DMP definitions (read, search, ``ValueSet/$expand``) and
``POST [type]/$validate``.

The definitions are server configuration loaded from ``profiles/`` at start and served from
memory; they hold no patient data, so any authenticated caller may read them (the token is
still required: ``repository_of`` verifies it, 401 otherwise). ``$validate`` stores nothing and
returns no stored data.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadRequest, Issue, NotFound, Unprocessable, operation_outcome
from ..profiles import Conformance
from ..profiles.catalogue import expand, search_definitions
from ..profiles.structure import Profile
from ..registry import CONFORMANCE_TYPES, RESOURCE_TYPES
from ..validation import check_resource
from .body import read_resource_body
from .bundles import page_link, searchset_bundle
from .context import Prefer, repository_of, settings_of
from .media import choose_format, fhir_response


def conformance_of(request: Request) -> Conformance:
    conformance: Conformance = request.app.state.conformance
    return conformance


async def _authenticated(request: Request) -> Conformance:
    await repository_of(request)  # 401 without a valid token, like every data route
    return conformance_of(request)


def _definition(conformance: Conformance, rtype: str, rid: str) -> dict[str, Any]:
    found = conformance.resources[rtype].get(rid)
    if found is None:
        raise NotFound(f"{rtype}/{rid} is not known.")
    return found


def _value_set_by_url(conformance: Conformance, url: str) -> dict[str, Any]:
    found = next((vs for vs in conformance.resources["ValueSet"].values() if vs.get("url") == url), None)
    if found is None:
        raise NotFound(f"No ValueSet with url '{url}' on this server.")
    return found


async def _expand_response(request: Request, value_set: dict[str, Any]) -> Response:
    params = request.query_params
    offset = _non_negative(params.get("offset"), "offset") or 0
    count = _non_negative(params.get("count"), "count")
    body = expand(
        conformance_of(request), value_set, text_filter=params.get("filter"), offset=offset, count=count
    )
    return fhir_response(body, choose_format(request))


def _non_negative(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer, not '{raw}'.", code="value")
    return int(raw)


def _definition_routes(router: APIRouter, rtype: str) -> None:
    async def search(request: Request) -> Response:
        conformance = await _authenticated(request)
        settings = settings_of(request)
        params = list(request.query_params.multi_items())
        strict = Prefer.parse(request.headers.get("prefer")).handling == "strict"
        result = search_definitions(
            conformance, rtype, params, strict=strict, default_count=settings.default_page_size
        )
        base = settings.base_url
        links = {"self": page_link(base, rtype, params)}
        if result.offset + result.count < result.total:
            links["next"] = page_link(base, rtype, params, _offset=str(result.offset + result.count))
        outcome = operation_outcome(result.warnings) if result.warnings else None
        entries = [("match", r) for r in result.matches]
        bundle = searchset_bundle(base, entries, total=result.total, links=links, outcome=outcome)
        return fhir_response(bundle, choose_format(request))

    async def read(request: Request, rid: str) -> Response:
        conformance = await _authenticated(request)
        return fhir_response(_definition(conformance, rtype, rid), choose_format(request))

    routes: list[tuple[str, Any, str, str]] = [(f"/{rtype}", search, "search", f"Search {rtype} definitions")]
    if rtype == "ValueSet":

        async def expand_by_url(request: Request) -> Response:
            conformance = await _authenticated(request)
            url = request.query_params.get("url")
            if not url:
                raise BadRequest("ValueSet/$expand needs the url of a value set.", code="required")
            return await _expand_response(request, _value_set_by_url(conformance, url))

        async def expand_instance(request: Request, rid: str) -> Response:
            conformance = await _authenticated(request)
            return await _expand_response(request, _definition(conformance, "ValueSet", rid))

        routes += [
            ("/ValueSet/$expand", expand_by_url, "expand", "Expand a value set given by url"),
            ("/ValueSet/{rid}/$expand", expand_instance, "expand_instance", "Expand one value set"),
        ]
    routes.append((f"/{rtype}/{{rid}}", read, "read", f"Read a {rtype}"))
    for path, handler, op, summary in routes:
        router.add_api_route(
            path, handler, methods=["GET"], tags=[rtype], operation_id=f"{op}_{rtype}", summary=summary
        )


def _validate_route(router: APIRouter, rtype: str) -> None:
    async def validate(request: Request) -> Response:
        await _authenticated(request)
        body = await read_resource_body(request, settings_of(request).max_body_bytes)
        resource, profile_url, mode = _validate_input(body, request)
        outcome = validate_resource(request, rtype, resource, profile_url, mode)
        return fhir_response(outcome, choose_format(request))

    router.add_api_route(
        f"/{rtype}/$validate",
        validate,
        methods=["POST"],
        tags=[rtype],
        operation_id=f"validate_{rtype}",
        summary=f"Validate a {rtype} against the base model and its DMP profile (nothing is stored)",
    )


def _validate_input(body: Any, request: Request) -> tuple[Any, str | None, str | None]:
    """The resource, ``profile`` and ``mode`` from a bare resource or a Parameters body."""
    profile = request.query_params.get("profile")
    mode = request.query_params.get("mode")
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource: Any = None
        for param in body.get("parameter") or []:
            if not isinstance(param, dict):
                continue
            name = param.get("name")
            if name == "resource":
                resource = param.get("resource")
            elif name == "profile":
                profile = param.get("valueUri") or param.get("valueCanonical") or profile
            elif name == "mode":
                mode = param.get("valueCode") or mode
        if resource is None:
            raise BadRequest("The Parameters body has no 'resource' parameter.", code="required")
        if not isinstance(profile, str | None) or not isinstance(mode, str | None):
            raise BadRequest("'profile' is a canonical URL and 'mode' a code.", code="value")
        return resource, profile, mode
    return body, profile, mode


def validate_resource(
    request: Request, rtype: str, resource: Any, profile_url: str | None, mode: str | None
) -> dict[str, Any]:
    """The OperationOutcome of the checks a create/update would run (base model, then profiles)."""
    if mode not in (None, "create", "update", "delete"):
        raise BadRequest(f"Unknown $validate mode '{mode}'.", code="value")
    if mode == "delete":
        return operation_outcome(
            [Issue("informational", "valid: no content rule applies to a delete.", severity="information")]
        )
    conformance = conformance_of(request)
    profiles: list[Profile]
    if profile_url is not None:
        chosen = conformance.dmp_profile(profile_url)
        if chosen is None:
            raise BadRequest(
                f"Unknown profile '{profile_url}': this server checks its DMP profiles only.",
                code="not-supported",
            )
        profiles = [chosen]
    else:
        profiles = []
    try:
        checked = check_resource(resource, expected_type=rtype)
    except Unprocessable as exc:
        return operation_outcome(exc.issues)
    if profile_url is None:
        profiles = conformance.profiles_for(checked, settings_of(request).profile_enforcement)
    issues = conformance.validate(checked, profiles)
    if issues:
        return operation_outcome(issues)
    against = (
        ", ".join(" based on ".join(p.url for p in conformance.chain(chosen)) for chosen in profiles)
        or "no DMP profile"
    )
    message = f"valid: the R4 {rtype} model and {against}."
    return operation_outcome([Issue("informational", message, severity="information")])


def build_router() -> APIRouter:
    router = APIRouter()
    for rtype in CONFORMANCE_TYPES:
        _definition_routes(router, rtype)
    for name in RESOURCE_TYPES:
        _validate_route(router, name)
    return router
