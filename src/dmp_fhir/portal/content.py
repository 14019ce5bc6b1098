"""A document's content shown on its page: plain text as is, a CDA document's narrative
sections as structured data (titles and text), nothing for a PDF (opened or downloaded)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from lxml import etree

from .api import ApiError, FhirApi
from .present import DocumentView

#: Larger contents are not previewed (they are still opened or downloaded).
MAX_PREVIEW_BYTES = 512 * 1024
CDA = "{urn:hl7-org:v3}"


@dataclass
class Preview:
    text: str | None = None
    title: str | None = None
    sections: list[tuple[str, str]] = field(default_factory=list)


PREVIEWED = ("text/plain", "text/xml", "application/xml", "application/hl7-v3+xml")


async def content_of(api: FhirApi, doc: DocumentView) -> bytes:
    """The document's bytes: its Binary through ITI-68, or the attachment's inline data."""
    if doc.binary is not None and doc.content_type:
        return await api.content(doc.binary, doc.content_type)
    if doc.data is not None:
        try:
            return base64.b64decode(doc.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(422, "Le contenu de ce document est illisible.") from exc
    raise ApiError(404, "Ce document n'a pas de contenu consultable.")


async def preview(api: FhirApi, doc: DocumentView) -> Preview | None:
    content_type = doc.content_type
    if not doc.has_content or content_type not in PREVIEWED:
        return None
    data = await content_of(api, doc)
    if len(data) > MAX_PREVIEW_BYTES:
        return None
    if content_type == "text/plain":
        return Preview(text=data.decode("utf-8", errors="replace"))
    return cda_preview(data)


def cda_preview(data: bytes) -> Preview | None:
    # No DTDs, no entities, no network: the document comes from a third party.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None
    if root.tag != f"{CDA}ClinicalDocument":
        return None
    title = root.findtext(f"{CDA}title")
    sections = []
    for section in root.iter(f"{CDA}section"):
        heading = section.findtext(f"{CDA}title") or "Section"
        text = section.find(f"{CDA}text")
        body = " ".join("".join(text.itertext()).split()) if text is not None else ""
        sections.append((heading.strip(), body))
    return Preview(title=title.strip() if title else None, sections=sections)
