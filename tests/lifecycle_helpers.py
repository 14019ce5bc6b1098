"""Shared helpers for the DMP lifecycle tests: INS numbers, $dmp-create bodies, raw scans."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from .policy_env import PolicyEnv

INS_NIR_TEST = "urn:oid:1.2.250.1.213.1.4.10"
JSON = {"Content-Type": "application/fhir+json"}
_orders = itertools.count(100)


def new_ins(sex: int = 1, year: int = 85, month: int = 6) -> str:
    """A fictitious matricule INS (department 99, commune 999) with its right control key."""
    number = f"{sex}{year:02d}{month:02d}99999{next(_orders) % 1000:03d}"
    return number + f"{97 - int(number) % 97:02d}"


def create_body(
    ins: str, *, leaflet: bool = True, representatives: list[dict[str, Any]] | None = None, **patient: Any
) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "ins", "valueIdentifier": {"system": INS_NIR_TEST, "value": ins}},
        {"name": "birthName", "valueString": "FICTION"},
        {"name": "given", "valueString": "Camille"},
        {"name": "given", "valueString": "Anne"},
        {"name": "birthDate", "valueDate": "1985-06-01"},
        {"name": "gender", "valueCode": "female"},
        {"name": "birthPlace", "valueCode": "99999"},
        {"name": "informationLeafletGiven", "valueBoolean": leaflet},
    ]
    if patient:
        params.append({"name": "patient", "resource": {"resourceType": "Patient", **patient}})
    for rp in representatives or []:
        params.append({"name": "legalRepresentative", "resource": rp})
    return {"resourceType": "Parameters", "parameter": params}


def representative(family: str, given: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "active": True,
        "patient": {"reference": "Patient/placeholder"},
        "relationship": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": code}]},
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "GUARD"}]},
        ],
        "name": [{"family": family, "given": [given]}],
    }


async def create(env: PolicyEnv, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return await env.client.post("/Patient/$dmp-create", json=body, headers={**headers, **JSON})


async def operation(env: PolicyEnv, headers: dict[str, str], path: str, body: Any = None) -> Any:
    if body is None:
        return await env.client.post(path, headers=headers)
    return await env.client.post(path, json=body, headers={**headers, **JSON})


def access(action: str, actor: str | None = None) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": "action", "valueCode": action}]
    if actor:
        params.append({"name": "actor", "valueReference": {"reference": actor}})
    return {"resourceType": "Parameters", "parameter": params}


async def raw_hits(env: PolicyEnv, *needles: str) -> dict[str, int]:
    """Every collection of the raw database, every document: where do these strings occur?"""
    db = env.database.db
    hits: dict[str, int] = {}
    for name in await db.list_collection_names():
        async for doc in db[name].find({}):
            text = orjson.dumps(doc, default=str).decode()
            if any(n in text for n in needles):
                hits[name] = hits.get(name, 0) + 1
    return hits
