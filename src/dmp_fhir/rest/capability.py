"""The CapabilityStatement, generated from the registries so it only claims what exists."""

from __future__ import annotations

from typing import Any

from .. import FHIR_VERSION, __version__
from ..config import Settings
from ..profiles import Conformance
from ..registry import CONFORMANCE_TYPES, OPERATIONS, RESOURCE_TYPES, VALIDATE_OPERATION
from ..search.params import params_for

COMMON_PARAMS = ("_id", "_lastUpdated", "_tag", "_security", "_profile")

#: Formats this server reads and writes (a format is listed only once it works end to end).
FORMATS = ["json", "application/fhir+json", "xml", "application/fhir+xml"]


def capability_statement(settings: Settings, conformance: Conformance, *, started: str) -> dict[str, Any]:
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
            "operation": [_operation(*VALIDATE_OPERATION)],
        }
        _profiles(entry, conformance, rtype.name)
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
            entry["operation"] += [
                {"name": op.name, "definition": op.definition, "documentation": op.documentation}
                for op in operations
            ]
        resources.append(entry)
    resources += [_definition_entry(ct.name) for ct in CONFORMANCE_TYPES.values()]
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


def _operation(name: str, definition: str) -> dict[str, Any]:
    return {"name": name, "definition": definition}


def _profiles(entry: dict[str, Any], conformance: Conformance, rtype: str) -> None:
    """``profile``: the one every resource of the type meets; ``supportedProfile``: all of ours."""
    urls = conformance.profiles_of_type(rtype)
    default = conformance.default_profile(rtype)
    if default is not None:
        entry["profile"] = default
    if urls:
        entry["supportedProfile"] = urls


def _definition_entry(name: str) -> dict[str, Any]:
    ct = CONFORMANCE_TYPES[name]
    entry: dict[str, Any] = {
        "type": name,
        "documentation": ct.documentation,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            {"name": p.name, "type": p.type, "documentation": p.description} for p in ct.search_params
        ],
    }
    if ct.operations:
        entry["operation"] = [_operation(*op) for op in ct.operations]
    return entry
