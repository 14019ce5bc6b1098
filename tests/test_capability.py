"""The CapabilityStatement tells the truth, and health answers."""

from __future__ import annotations

import httpx

from dmp_fhir.registry import CONFORMANCE_TYPES, RESOURCE_TYPES


async def test_metadata_lists_what_is_implemented(client: httpx.AsyncClient) -> None:
    response = await client.get("/metadata")
    assert response.status_code == 200
    cs = response.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    resources = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert set(resources) == set(RESOURCE_TYPES) | set(CONFORMANCE_TYPES)
    codes = {t: {i["code"] for i in r["interaction"]} for t, r in resources.items()}
    assert {"read", "vread", "update", "delete", "create", "history-instance"} <= codes["Patient"]
    assert "create" not in codes["AuditEvent"] and "update" not in codes["AuditEvent"]
    patient_params = {p["name"] for p in resources["Patient"]["searchParam"]}
    assert {"identifier", "family", "birthdate", "_id", "_lastUpdated"} <= patient_params


async def test_metadata_needs_no_body_and_health_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/_health")
    assert response.status_code == 200
    assert response.json()["issue"][0]["severity"] == "information"
