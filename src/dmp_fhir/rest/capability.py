"""The CapabilityStatement, generated from the registries so it only claims what exists."""

from __future__ import annotations

from typing import Any

from .. import FHIR_VERSION, __version__
from ..config import Settings
from ..registry import OPERATIONS, RESOURCE_TYPES
from ..search.params import params_for

COMMON_PARAMS = ("_id", "_lastUpdated", "_tag", "_security", "_profile")

#: Formats this server reads and writes (a format is listed only once it works end to end).
FORMATS = ["json", "application/fhir+json", "xml", "application/fhir+xml"]


def capability_statement(settings: Settings, *, started: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for rtype in RESOURCE_TYPES.values():
        interactions = ["read", "vread", "history-instance", "history-type"]
        if rtype.client_writable:
            interactions += ["create", "update", "patch", "delete"]
        if rtype.searchable:
            interactions.append("search-type")
        entry: dict[str, Any] = {
            "type": rtype.name,
            "documentation": rtype.documentation,
            "interaction": [{"code": code} for code in interactions],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": rtype.client_writable,
            "conditionalCreate": rtype.client_writable,
            "conditionalRead": "not-supported",
            "conditionalUpdate": False,  # in transactions only (PUT Type?search entries)
            "conditionalDelete": "not-supported",
        }
        if rtype.searchable:
            params = params_for(rtype.name)
            entry["searchParam"] = [
                {
                    "name": p.name,
                    "type": p.type,
                    **({"definition": p.url} if p.url else {}),
                    **({"documentation": p.description} if p.description else {}),
                }
                for p in sorted(params.values(), key=lambda p: p.name)
            ]
        operations = [op for op in OPERATIONS if op.resource_type == rtype.name]
        if operations:
            entry["operation"] = [
                {"name": op.name, "definition": op.definition, "documentation": op.documentation}
                for op in operations
            ]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": started,
        "publisher": "dmp-fhir",
        "kind": "instance",
        "software": {"name": "dmp-fhir", "version": __version__},
        "implementation": {"description": "DMP FHIR server", "url": settings.base_url},
        "fhirVersion": FHIR_VERSION,
        "format": FORMATS,
        "rest": [
            {
                "mode": "server",
                "documentation": "The French shared health record (DMP) as FHIR R4.",
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
