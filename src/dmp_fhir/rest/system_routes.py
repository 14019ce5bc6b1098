"""System-level endpoints: metadata and health."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ..errors import Issue, operation_outcome
from .media import choose_format, fhir_response


def build_router() -> APIRouter:
    router = APIRouter()

    @router.get("/metadata", tags=["system"], operation_id="capabilities", summary="The CapabilityStatement")
    async def metadata(request: Request) -> Response:
        return fhir_response(request.app.state.capability, choose_format(request))

    @router.get(
        "/_health",
        tags=["system"],
        operation_id="health",
        summary="Liveness and readiness (the database answers)",
    )
    async def health(request: Request) -> Response:
        fmt = choose_format(request)
        if await request.app.state.database.ping():
            outcome = operation_outcome(
                [Issue("informational", "ok: database reachable", severity="information")]
            )
            return fhir_response(outcome, fmt)
        outcome = operation_outcome([Issue("transient", "database unreachable")])
        return fhir_response(outcome, fmt, status=503)

    return router
