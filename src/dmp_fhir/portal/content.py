"""A document's content shown on its page: plain text as is, a CDA document's narrative
sections as structured data (titles and text), nothing for a PDF (opened or downloaded)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .api import ApiError, FhirApi
from .present import DocumentView

#: Larger contents are not previewed (they are still opened or downloaded).
MAX_PREVIEW_BYTES = 512 * 1024
CDA = "{urn:hl7-org:v3}"


@dataclass
class Block:
    """One piece of a CDA section's narrative: a paragraph, a table or a list (text only:
    the narrative's markup is never passed through)."""

    kind: str  # "text", "table" or "list"
    text: str = ""
    head: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)


@dataclass
class Preview:
    text: str | None = None
    title: str | None = None
    sections: list[tuple[str, list[Block]]] = field(default_factory=list)


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
        sections.append((heading.strip(), narrative(text) if text is not None else []))
    return Preview(title=title.strip() if title else None, sections=sections)


def _flat(element: Any) -> str:
    return " ".join("".join(element.itertext()).split())


def _local(element: Any) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def narrative(text: Any) -> list[Block]:
    """The section's ``text`` as blocks: tables and lists keep their shape."""
    blocks: list[Block] = []
    if text.text and text.text.strip():
        blocks.append(Block("text", text=" ".join(text.text.split())))
    for child in text:
        kind = _local(child)
        if kind == "table":
            rows = [
                [_flat(cell) for cell in tr if _local(cell) in ("th", "td")] for tr in child.iter(f"{CDA}tr")
            ]
            first = next(child.iter(f"{CDA}tr"), None)
            has_head = child.find(f"{CDA}thead") is not None or (
                first is not None and all(_local(c) == "th" for c in first if _local(c) in ("th", "td"))
            )
            head = rows[0] if has_head and rows else []
            blocks.append(Block("table", head=head, rows=rows[1:] if head else rows))
        elif kind == "list":
            blocks.append(Block("list", items=[_flat(item) for item in child if _local(item) == "item"]))
        elif _flat(child):
            blocks.append(Block("text", text=_flat(child)))
        if child.tail and child.tail.strip():
            blocks.append(Block("text", text=" ".join(child.tail.split())))
    return blocks
