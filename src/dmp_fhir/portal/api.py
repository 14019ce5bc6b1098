"""The FHIR API as the signed-in person sees it.

The portal never touches the repository: every read and write is an HTTP request to this
same server's FHIR API (in process, through ``httpx.ASGITransport``), carrying the person's
own bearer token. So the routes, the access policy and the audit trail apply exactly as to
any other client — a document the API hides from the patient cannot appear on a page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
from starlette.types import ASGIApp

FHIR_JSON = "application/fhir+json"
#: Searches follow ``next`` links up to this many entries (a record's documents, Consents).
MAX_ENTRIES = 1000


class ApiError(Exception):
    """A refusal or failure of the API, with the OperationOutcome's first diagnostics."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class SearchResult:
    matches: list[dict[str, Any]] = field(default_factory=list)
    included: dict[str, dict[str, Any]] = field(default_factory=dict)  # "Type/id" -> resource
    next_url: str | None = None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    for issue in body.get("issue") or [] if isinstance(body, dict) else []:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
        if text:
            return str(text)
    return f"HTTP {response.status_code}"


class FhirApi:
    def __init__(self, app: ASGIApp, base_url: str, token: str) -> None:
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": FHIR_JSON},
            timeout=None,  # the server's own request timeout applies to the inner requests
        )

    async def __aenter__(self) -> FhirApi:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise ApiError(response.status_code, _message(response))
        return response

    async def read(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = self._check(await self._client.get(f"/{path}")).json()
        return result

    async def search(
        self,
        rtype: str,
        params: Iterable[tuple[str, str]],
        *,
        limit: int = MAX_ENTRIES,
        url: str | None = None,
    ) -> SearchResult:
        """One search, following ``next`` links until ``limit`` matches (or one page if
        ``limit`` is the page size): ``url`` resumes from a ``next`` link."""
        result = SearchResult()
        response = await (
            self._client.get(url) if url else self._client.get(f"/{rtype}", params=list(params))
        )
        while True:
            bundle = self._check(response).json()
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") or {}
                if (entry.get("search") or {}).get("mode") == "include":
                    result.included[f"{resource.get('resourceType')}/{resource.get('id')}"] = resource
                elif resource.get("resourceType") == rtype:
                    result.matches.append(resource)
            nxt = next(
                (link["url"] for link in bundle.get("link") or [] if link.get("relation") == "next"), None
            )
            result.next_url = nxt
            if nxt is None or len(result.matches) >= limit:
                return result
            response = await self._client.get(nxt)

    async def operation(self, path: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"resourceType": "Parameters", "parameter": parameters}
        response = self._check(
            await self._client.post(f"/{path}", json=body, headers={"Content-Type": FHIR_JSON})
        )
        result: dict[str, Any] = response.json() if response.content else {}
        return result

    async def patch(self, path: str, operations: list[dict[str, Any]], version: str | None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json-patch+json"}
        if version:
            headers["If-Match"] = f'W/"{version}"'
        response = self._check(await self._client.patch(f"/{path}", json=operations, headers=headers))
        result: dict[str, Any] = response.json() if response.content else {}
        return result

    async def content(self, binary_ref: str, content_type: str) -> bytes:
        """ITI-68: the document's bytes (``Accept`` = its media type)."""
        response = self._check(await self._client.get(f"/{binary_ref}", headers={"Accept": content_type}))
        return response.content
