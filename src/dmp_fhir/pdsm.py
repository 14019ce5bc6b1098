"""The PDSm elements the server reads, under both canonical URLs the guide has used.

PDSm moved from the legacy CI-SIS URLs (``http://esante.gouv.fr/cisis/fhir/…``, 2.x) to the
ANS guide's (``https://interop.esante.gouv.fr/ig/fhir/pdsm/…``, 3.x). Senders use either: every
element is read under both, and written under the current one (``canonical_extensions``).
"""

from __future__ import annotations

from typing import Any

IS_ARCHIVED_EXT = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
LEGACY_IS_ARCHIVED_EXT = "http://esante.gouv.fr/cisis/fhir/StructureDefinition/PDSm_isArchived"
#: Current first.
IS_ARCHIVED_EXTS = (IS_ARCHIVED_EXT, LEGACY_IS_ARCHIVED_EXT)
#: Legacy URL → current URL, for every renamed element the server reads.
RENAMED = {LEGACY_IS_ARCHIVED_EXT: IS_ARCHIVED_EXT}


def canonical_extensions(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource with its top-level PDSm extensions under their current URL."""
    extensions = resource.get("extension")
    if not isinstance(extensions, list) or not any(
        isinstance(e, dict) and e.get("url") in RENAMED for e in extensions
    ):
        return resource
    renamed = [
        {**e, "url": RENAMED[e["url"]]} if isinstance(e, dict) and e.get("url") in RENAMED else e
        for e in extensions
    ]
    return {**resource, "extension": renamed}
