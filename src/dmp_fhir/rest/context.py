"""Per-request plumbing shared by the route modules: the repository, Prefer, headers."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..errors import Issue, operation_outcome
from ..repository import Repository
from ..storage.store import StoredVersion
from .media import Format, choose_format, fhir_response


@dataclass(frozen=True, slots=True)
class Prefer:
    """The parts of the ``Prefer`` header that FHIR defines."""

    return_: str = "representation"  # minimal | representation | OperationOutcome
    handling: str = "lenient"  # strict | lenient

    @classmethod
    def parse(cls, header: str | None) -> Prefer:
        values = {"return": "representation", "handling": "lenient"}
        for part in (header or "").split(","):
            for token in part.split(";"):
                name, _, value = token.strip().partition("=")
                name = name.strip().lower()
                value = value.strip().strip('"')
                if name == "return" and value in ("minimal", "representation", "OperationOutcome"):
                    values["return"] = value
                elif name == "handling" and value in ("strict", "lenient"):
                    values["handling"] = value
        return cls(values["return"], values["handling"])


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def repository_of(request: Request) -> Repository:
    """A repository bound to this request's caller (401 without a valid token)."""
    cached = getattr(request.state, "repository", None)
    if isinstance(cached, Repository):
        return cached
    state = request.app.state
    policy = await state.access.policy_for(request)
    repository = Repository(state.store, state.settings, policy, state.matrix, state.audit)
    request.state.repository = repository
    return repository


def version_headers(base: str, version: StoredVersion) -> dict[str, str]:
    return {
        "ETag": version.etag,
        "Last-Modified": format_datetime(version.last_updated, usegmt=True),
        "Location": f"{base}/{version.type}/{version.id}/_history/{version.version}",
    }


def write_response(
    request: Request,
    version: StoredVersion,
    *,
    status: int,
    message: str,
) -> Response:
    """The answer to a create/update, shaped by ``Prefer: return=``."""
    fmt: Format = choose_format(request)
    prefer = Prefer.parse(request.headers.get("prefer"))
    headers = version_headers(settings_of(request).base_url, version)
    body: Any
    if prefer.return_ == "minimal":
        body = None
    elif prefer.return_ == "OperationOutcome":
        body = operation_outcome([Issue("informational", message, severity="information")])
    else:
        body = version.resource
    return fhir_response(body, fmt, status=status, headers=headers)
