"""Every failure becomes an OperationOutcome with the right status — never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import FhirError, Issue, operation_outcome
from .media import fhir_response, safe_format

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    413: "too-costly",
    415: "not-supported",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError) -> Response:
        return fhir_response(exc.outcome(), safe_format(request), status=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        status = exc.status_code
        if status == 404:
            message = f"No FHIR endpoint at {request.url.path}."
        elif status == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        else:
            message = str(exc.detail)
        outcome = operation_outcome([Issue(_HTTP_CODES.get(status, "exception"), message)])
        return fhir_response(outcome, safe_format(request), status=status, headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> Response:
        issues = [
            Issue("invalid", f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}")
            for e in exc.errors()[:20]
        ]
        return fhir_response(operation_outcome(issues), safe_format(request), status=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        outcome = operation_outcome([Issue("exception", "Internal server error; the incident was logged.")])
        return fhir_response(outcome, safe_format(request), status=500)
