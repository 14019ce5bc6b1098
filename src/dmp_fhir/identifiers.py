"""Which conditional creates an identifier claim decides (storage/claims.py), and about whom.

A laboratory's or a pharmacy's re-post names its resource by business identifier:
``If-None-Exist: identifier=system|value`` (or a Bundle entry's ``ifNoneExist``). Exactly that
condition — one ``identifier`` parameter, one ``system|value`` token, both parts present, no
modifier, no escape — carried by the resource itself is claimed. Any other condition stays a
search then a create, as FHIR describes it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from .policy.fields import patient_of
from .policy.matrix import AccessMatrix
from .search.extract import compile_path, walk
from .search.params import get_param

#: Where each non-clinical patient-data type names its patient (clinical types: the matrix).
_PATIENT_ELEMENT = {
    "DocumentReference": "subject",
    "List": "subject",
    "Consent": "patient",
    "RelatedPerson": "patient",
}


def claimed_identifier(rtype: str, condition: str, resource: Any) -> str | None:
    """The ``system|value`` token a conditional create claims, or None."""
    params = parse_qsl(condition.split("?", 1)[-1], keep_blank_values=True)
    if len(params) != 1 or params[0][0] != "identifier":
        return None
    token = params[0][1]
    system, sep, value = token.partition("|")
    if not sep or not system or not value or "|" in value or "\\" in token or "," in token:
        return None
    return token if token in carried_identifiers(rtype, resource) else None


def carried_identifiers(rtype: str, resource: Any) -> set[str]:
    """``system|value`` of every identifier the type's ``identifier`` search parameter reads."""
    param = get_param(rtype, "identifier")
    if param is None or not isinstance(resource, dict):
        return set()
    out: set[str] = set()
    for path in param.paths:
        for identifier in walk(resource, compile_path(path), None):
            if isinstance(identifier, dict):
                system, value = identifier.get("system"), identifier.get("value")
                if isinstance(system, str) and isinstance(value, str) and system and value:
                    out.add(f"{system}|{value}")
    return out


def patient_of_resource(rtype: str, resource: dict[str, Any], matrix: AccessMatrix) -> str | None:
    """The patient a resource is about, as the policy fields say (``_p_patient``)."""
    if rtype == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    spec = matrix.structured.get(rtype)
    element = spec.patient if spec is not None else _PATIENT_ELEMENT.get(rtype)
    return patient_of(resource.get(element)) if element else None
