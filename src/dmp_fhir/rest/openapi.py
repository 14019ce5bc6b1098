"""OpenAPI fragments for the generic FHIR routes, per resource type.

The handlers read the raw request (FHIR bodies are parsed and validated by the server itself),
so FastAPI cannot infer bodies or search parameters: they are described here, from the same
registry and search-parameter table the server uses, so that the description stays true.
"""

from __future__ import annotations

from typing import Any

from ..search.params import params_for

ID_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"^[A-Za-z0-9\-.]{1,64}$"}
FHIR_JSON = "application/fhir+json"
_COMMON_QUERY = ("_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_format")


def resource_body(type_name: str) -> dict[str, Any]:
    """A FHIR resource of ``type_name`` in JSON (or XML); the server checks the rest."""
    schema = {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": [type_name]}, "id": ID_SCHEMA},
        "additionalProperties": True,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                FHIR_JSON: {"schema": schema},
                "application/fhir+xml": {"schema": {"type": "string"}},
            },
        }
    }


def search_parameters(type_name: str) -> dict[str, Any]:
    """The type's search parameters, and the result parameters, as optional query strings."""
    names = sorted(params_for(type_name)) + list(_COMMON_QUERY)
    return {
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in dict.fromkeys(names)
        ]
    }


def search_form(type_name: str) -> dict[str, Any]:
    """``POST _search``: the same parameters, form-encoded."""
    properties = {name: {"type": "string"} for name in sorted(params_for(type_name))}
    return {
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": properties}}
            },
        }
    }


def bundle_body() -> dict[str, Any]:
    """``POST /``: a batch (or transaction) Bundle."""
    entry = {
        "type": "object",
        "properties": {
            "fullUrl": {"type": "string"},
            "resource": {"type": "object"},
            "request": {
                "type": "object",
                "required": ["method", "url"],
                "properties": {
                    "method": {"type": "string", "enum": ["GET", "POST", "PUT", "DELETE"]},
                    "url": {"type": "string"},
                },
            },
        },
    }
    schema = {
        "type": "object",
        "required": ["resourceType", "type"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["Bundle"]},
            "type": {"type": "string", "enum": ["batch", "transaction"]},
            "entry": {"type": "array", "items": entry},
        },
    }
    return {"requestBody": {"required": True, "content": {FHIR_JSON: {"schema": schema}}}}
