"""The outermost HTTP layer: request id, size and time limits, security headers, access log,
and the last-resort 500 — so that every answer, even a failure, is hardened the same way.

The access log records method, path, the *names* of the query parameters (never their values:
a search by ``identifier`` or ``family`` carries patient identity), status, duration and the
request id; never a body, never a header.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import orjson
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..errors import Issue, operation_outcome

access_log = logging.getLogger("dmp_fhir.access")
error_log = logging.getLogger("dmp_fhir.errors")

#: A client-supplied X-Request-ID is kept only when it is this harmless.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: API answers are data, never a page: nothing may be loaded, framed or run from them.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: The interactive API docs page (Swagger UI) loads its script and style from a CDN.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
    "https://fastapi.tiangolo.com; connect-src 'self'; frame-ancestors 'none'"
)

#: The patient portal's pages: scripts, styles and images from its own static files only (no
#: inline script or style anywhere), forms posted to itself only.
PORTAL_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PORTAL_PREFIX = "/portal/"


class HardeningMiddleware:
    """Pure ASGI (no response buffering), installed outside every route and error handler."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.docs_path = f"{settings.base_path}/_docs"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state: dict[str, Any] = {"status": 0}
        path: str = scope.get("path", "")

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                self._secure(MutableHeaders(scope=message), request_id, path)
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.settings.max_body_bytes:
                await self._fail(
                    send_hardened,
                    413,
                    Issue(
                        "too-costly",
                        f"The request body is larger than the {self.settings.max_body_bytes} bytes allowed.",
                    ),
                )
            else:
                async with asyncio.timeout(self.settings.request_timeout_seconds or None):
                    await self.app(scope, receive, send_hardened)
        except TimeoutError:
            error_log.warning("request timed out", extra={"request_id": request_id, "event": "timeout"})
            if not state["status"]:
                await self._fail(
                    send_hardened,
                    503,
                    Issue("timeout", "The request took longer than the server allows; try again."),
                    {"Retry-After": "1"},
                )
        except Exception:
            error_log.exception("unhandled error", extra={"request_id": request_id, "event": "error"})
            if not state["status"]:
                await self._fail(
                    send_hardened, 500, Issue("exception", "Internal server error; the incident was logged.")
                )
        finally:
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": path,
                    "params": _param_names(scope),
                    "status": state["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )

    def _secure(self, headers: MutableHeaders, request_id: str, path: str) -> None:
        headers["X-Request-ID"] = request_id
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        # The portal's pages say same-origin: with no-referrer, browsers post forms with
        # ``Origin: null``, and the portal checks the Origin of every form it receives.
        headers["Referrer-Policy"] = "same-origin" if path.startswith(PORTAL_PREFIX) else "no-referrer"
        if path.startswith(PORTAL_PREFIX):
            if "content-security-policy" not in headers:  # a portal route may narrow it further
                headers["Content-Security-Policy"] = PORTAL_CSP
        else:
            headers["Content-Security-Policy"] = DOCS_CSP if path == self.docs_path else API_CSP
        if "cache-control" not in headers:
            headers["Cache-Control"] = "no-store"
        if self.settings.hsts_max_age_seconds > 0:
            headers["Strict-Transport-Security"] = (
                f"max-age={self.settings.hsts_max_age_seconds}; includeSubDomains"
            )

    @staticmethod
    async def _fail(send: Send, status: int, issue: Issue, headers: dict[str, str] | None = None) -> None:
        body = orjson.dumps(operation_outcome([issue]))
        raw = [
            (b"content-type", b"application/fhir+json; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _request_id(scope: Scope) -> str:
    given = _header(scope, b"x-request-id")
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    return int(raw) if raw and raw.isdigit() else None


def _param_names(scope: Scope) -> list[str] | None:
    """The query parameter names (values may identify a patient), sorted, at most 50."""
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    if not query:
        return None
    names = {part.split("=", 1)[0][:64] for part in query.split("&") if part}
    return sorted(names)[:50]
