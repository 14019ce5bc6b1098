"""The DMP lifecycle operations (``$dmp-create`` …), one route per entry of
``registry.OPERATIONS``; each calls one Repository method (policy and audit live there)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ..errors import Issue, operation_outcome
from ..registry import CLINICAL_TYPES, OPERATIONS, Operation
from ..storage.store import format_instant
from .body import read_resource_body
from .context import repository_of, settings_of, write_response
from .media import choose_format, fhir_response

Handler = Callable[..., Awaitable[Response]]


def _info(request: Request, message: str) -> Response:
    outcome = operation_outcome([Issue("informational", message, severity="information")])
    return fhir_response(outcome, choose_format(request))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v) or "nothing"


async def _create(request: Request) -> Response:
    body = await read_resource_body(request, settings_of(request).max_body_bytes)
    result = await (await repository_of(request)).lifecycle.create_dmp(body)
    return write_response(
        request, result.version, status=201, message=f"Created Patient/{result.version.id}."
    )


async def _access(request: Request, rid: str) -> Response:
    body = await read_resource_body(request, settings_of(request).max_body_bytes)
    written = await (await repository_of(request)).lifecycle.manage_access(rid, body)
    base = settings_of(request).base_url
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "collection",
        "total": len(written),
        "entry": [{"fullUrl": f"{base}/Consent/{v.id}", "resource": v.resource} for v in written],
    }
    return fhir_response(bundle, choose_format(request))


async def _close(request: Request, rid: str) -> Response:
    state = await (await repository_of(request)).lifecycle.close_dmp(rid)
    until: datetime = state["retain_until"]
    return _info(
        request, f"The DMP of Patient/{rid} is closed; its data is kept until {format_instant(until)}."
    )


async def _reopen(request: Request, rid: str) -> Response:
    await (await repository_of(request)).lifecycle.reopen_dmp(rid)
    return _info(request, f"The DMP of Patient/{rid} is open again.")


async def _destroy_patient(request: Request, rid: str) -> Response:
    counts = await (await repository_of(request)).lifecycle.destroy_dmp(rid)
    return _info(request, f"The DMP of Patient/{rid} is destroyed; removed: {_counts(counts)}.")


async def _destroy_document(request: Request, rid: str) -> Response:
    counts = await (await repository_of(request)).lifecycle.destroy_document(rid)
    return _info(request, f"DocumentReference/{rid} is destroyed; removed: {_counts(counts)}.")


_HANDLERS: dict[tuple[str, str], Handler] = {
    ("Patient", "dmp-create"): _create,
    ("Patient", "dmp-access"): _access,
    ("Patient", "dmp-close"): _close,
    ("Patient", "dmp-reopen"): _reopen,
    ("Patient", "dmp-destroy"): _destroy_patient,
    ("DocumentReference", "dmp-destroy"): _destroy_document,
}


def _destroy_structured(rtype: str) -> Handler:
    async def destroy(request: Request, rid: str) -> Response:
        counts = await (await repository_of(request)).lifecycle.destroy_document(rid, rtype)
        return _info(request, f"{rtype}/{rid} is destroyed; removed: {_counts(counts)}.")

    return destroy


_HANDLERS.update({(rtype, "dmp-destroy"): _destroy_structured(rtype) for rtype in sorted(CLINICAL_TYPES)})


def handler_for(operation: Operation) -> Handler:
    return _HANDLERS[(operation.resource_type, operation.name)]


def build_router() -> APIRouter:
    router = APIRouter()
    for op in OPERATIONS:
        router.add_api_route(
            op.path,
            handler_for(op),
            methods=["POST"],
            tags=[op.resource_type],
            operation_id=f"{op.name.replace('-', '_')}_{op.resource_type}",
            summary=op.documentation,
        )
    return router
