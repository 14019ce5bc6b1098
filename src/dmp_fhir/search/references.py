"""Reference strings in one canonical stored form, shared by extraction and filters.

A resource may point to the same target as ``Patient/1``, ``Patient/1/_history/3`` or
``https://this.server/fhir/Patient/1``; a query may say ``1``, ``Patient/1`` or the full URL. Both
sides go through :func:`reference_keys`, so every spelling meets on the same stored strings:
``"Type/id"`` and ``"id"`` for a local target, the text as written for anything else.
"""

from __future__ import annotations

import re
from functools import lru_cache

_TYPE_ID = r"(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?"
_RELATIVE = re.compile(_TYPE_ID)
_URL_TAIL = re.compile(".*/" + _TYPE_ID)


def local_reference(text: str, base_url: str | None) -> tuple[str, str] | None:
    """``(type, id)`` when ``text`` names a resource of this server, else None.

    Relative references and absolute URLs under ``base_url`` are local; the ``_history`` part of a
    versioned reference is dropped (search matches the resource, whatever the version).
    """
    if base_url:
        base = base_url.rstrip("/") + "/"
        if text.startswith(base):
            text = text[len(base) :]
    match = _RELATIVE.fullmatch(text)
    if match is None:
        return None
    return match.group("type"), match.group("id")


@lru_cache(maxsize=4096)
def reference_keys(text: str, base_url: str | None) -> tuple[str, ...]:
    """The stored forms of a reference string: ``["Type/id", "id"]``, the text as written for an
    external URL or a ``urn:uuid:``/``urn:oid:``, nothing for a contained ``#id``."""
    text = text.strip()
    if not text or text.startswith("#"):
        return ()
    local = local_reference(text, base_url)
    if local is not None:
        rtype, rid = local
        return (f"{rtype}/{rid}", rid)
    return (text,)


def reference_type(text: str, base_url: str | None) -> str | None:
    """The target type a reference string names (relative, or the tail of an absolute URL)."""
    local = local_reference(text, base_url)
    if local is not None:
        return local[0]
    if text.startswith(("http://", "https://")):
        match = _URL_TAIL.fullmatch(text)
        if match is not None:
            return match.group("type")
    return None
