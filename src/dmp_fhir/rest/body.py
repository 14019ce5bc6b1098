"""Reading request bodies: size limit, content type, and parsing into FHIR JSON."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from ..errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}
_XML_TYPES = {"application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir"}
JSON_PATCH = "application/json-patch+json"


def media_type_of(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_bytes(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than the {limit} bytes allowed.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than the {limit} bytes allowed.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise BadRequest("The request body is empty.", code="structure")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}", code="structure") from None
    except RecursionError:  # pragma: no cover - orjson limits depth itself
        raise BadRequest("The body is nested too deeply.", code="structure") from None


async def read_resource_body(request: Request, limit: int, *, allow_patch: bool = False) -> Any:
    """Parse a resource (JSON or XML) from the body; the result is always FHIR JSON."""
    media = media_type_of(request)
    if allow_patch and media == JSON_PATCH:
        return parse_json(await read_bytes(request, limit))
    if media in _XML_TYPES:
        raw = await read_bytes(request, limit)
        from ..formats.xml import XmlFormatError, parse_fhir_xml

        try:
            return parse_fhir_xml(raw, max_bytes=limit)
        except XmlFormatError as exc:
            raise BadRequest(f"The body is not acceptable FHIR XML: {exc}", code="structure") from None
    if media and media not in _JSON_TYPES:
        raise UnsupportedMediaType(
            f"Unsupported Content-Type '{media}': send application/fhir+json or application/fhir+xml."
        )
    return parse_json(await read_bytes(request, limit))
