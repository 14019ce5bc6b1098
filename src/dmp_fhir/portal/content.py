"""A document's content shown on its page: plain text as is, a CDA document's narrative
sections as structured data (titles and text), nothing for a PDF (opened or downloaded)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from .api import FhirApi

#: Larger contents are not previewed (they are still opened or downloaded).
MAX_PREVIEW_BYTES = 512 * 1024
CDA = "{urn:hl7-org:v3}"


@dataclass
class Preview:
    text: str | None = None
    title: str | None = None
    sections: list[tuple[str, str]] = field(default_factory=list)


async def preview(api: FhirApi, binary: str | None, content_type: str | None) -> Preview | None:
    if binary is None or content_type not in (
        "text/plain",
        "text/xml",
        "application/xml",
        "application/hl7-v3+xml",
    ):
        return None
    data = await api.content(binary, content_type)
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
