"""Content negotiation and rendering: the one place that chooses JSON or XML.

JSON is the stored form; XML is produced from the outgoing JSON as the very last step, so the
JSON path never pays for it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import NotAcceptable
from ..storage.store import StoredVersion

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"

#: ``_format`` values and Accept media types, and the format each one means.
_FORMAT_ALIASES: dict[str, str] = {
    "json": "json",
    "application/fhir+json": "json",
    "application/json": "json",
    "application/json+fhir": "json",
    "xml": "xml",
    "application/fhir+xml": "xml",
    "application/xml": "xml",
    "application/xml+fhir": "xml",
    "text/xml": "xml",
    "*/*": "json",
    "application/*": "json",
}


@dataclass(frozen=True, slots=True)
class Format:
    """How to write a response."""

    xml: bool = False
    pretty: bool = False

    @property
    def media_type(self) -> str:
        return f"{FHIR_XML if self.xml else FHIR_JSON}; charset=utf-8"


JSON_FORMAT = Format()


def parse_accept(header: str) -> list[tuple[str, float]]:
    """Media ranges of an Accept header, best first (stable for equal q-values)."""
    ranges: list[tuple[str, float, int]] = []
    for index, part in enumerate(header.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        if not media:
            continue
        quality = 1.0
        for param in pieces[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = max(0.0, min(1.0, float(value)))
                except ValueError:
                    quality = 0.0
        ranges.append((media, quality, index))
    ranges.sort(key=lambda r: (-r[1], r[2]))
    return [(media, quality) for media, quality, _ in ranges]


def choose_format(request: Request) -> Format:
    """The response format: ``_format`` wins over ``Accept``; JSON is the default."""
    pretty = request.query_params.get("_pretty", "").lower() == "true"
    requested = request.query_params.get("_format")
    if requested:
        kind = _FORMAT_ALIASES.get(requested.split(";")[0].strip().lower())
        if kind is None:
            raise NotAcceptable(f"Unsupported _format '{requested}'. Use json or xml.")
        return Format(xml=kind == "xml", pretty=pretty)
    accept = request.headers.get("accept")
    if not accept:
        return Format(pretty=pretty)
    for media, quality in parse_accept(accept):
        if quality <= 0:
            continue
        kind = _FORMAT_ALIASES.get(media)
        if kind is not None:
            return Format(xml=kind == "xml", pretty=pretty)
    raise NotAcceptable(
        f"None of the accepted media types ({accept}) is available; use {FHIR_JSON} or {FHIR_XML}."
    )


def safe_format(request: Request) -> Format:
    """The format for an error answer: what the client asked for, or JSON."""
    try:
        return choose_format(request)
    except NotAcceptable:
        return JSON_FORMAT


def dumps(body: Any, fmt: Format) -> bytes:
    if fmt.xml:
        from ..formats.xml import render_fhir_xml

        return render_fhir_xml(body, pretty=fmt.pretty)
    return orjson.dumps(body, option=orjson.OPT_INDENT_2 if fmt.pretty else 0)


def fhir_response(
    body: Any | None,
    fmt: Format = JSON_FORMAT,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """A FHIR response: ``body`` is a resource dict (or None for an empty body)."""
    if body is None:
        return Response(status_code=status, headers=headers)
    return Response(dumps(body, fmt), status_code=status, headers=headers, media_type=fmt.media_type)


_RESOURCE_MEDIA = frozenset(
    {"application/fhir+json", "application/fhir+xml", "application/json+fhir", "application/xml+fhir", "*/*"}
)


def wants_raw_content(request: Request) -> bool:
    """A Binary is answered with its own bytes when the client asks for no FHIR format
    (IHE ITI-68 retrieve; FHIR's rule for Binary)."""
    accept = request.headers.get("accept")
    if request.query_params.get("_format") or not accept:
        return False
    # Only FHIR's own media types ask for the resource: a CDA retrieved with text/xml or
    # application/xml, or a JSON document with application/json, is its content.
    asked = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return not asked & _RESOURCE_MEDIA


def binary_content(
    version: StoredVersion, headers: dict[str, str], stream: AsyncIterator[bytes] | None = None
) -> Response:
    """The decoded content of a stored Binary, with its own content type.

    Inline data is decoded here; content kept in the content store arrives as ``stream``.
    """
    resource = version.resource or {}
    media = str(resource.get("contentType", "application/octet-stream"))
    # Stored content is untrusted: never sniffed, never rendered in this origin.
    safe = {
        **headers,
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": "attachment",
        "Content-Security-Policy": "sandbox",
    }
    if stream is not None:
        if version.content_size is not None:
            safe["Content-Length"] = str(version.content_size)
        return StreamingResponse(stream, headers=safe, media_type=media)
    try:
        content = base64.b64decode(resource.get("data", ""), validate=True)
    except (binascii.Error, ValueError):
        content = b""
    return Response(content, headers=safe, media_type=media)
