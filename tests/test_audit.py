"""The audit trail: the exact event each interaction leaves, refusals, the chain, bursts."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dmp_fhir.audit import AuditTrail

from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")
JSON = {"Content-Type": "application/fhir+json"}
RESTFUL = "http://hl7.org/fhir/restful-interaction"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


async def last_event(env: PolicyEnv) -> dict[str, Any]:
    docs = await env.database.db["AuditEvent"].find({}).sort("_seq", -1).limit(1).to_list(1)
    resource: dict[str, Any] = docs[0]["resource"]
    return resource


async def event_count(env: PolicyEnv) -> int:
    return await env.database.db["AuditEvent"].count_documents({})


def subtype(event: dict[str, Any]) -> str:
    return str(event["subtype"][0]["code"])


def entity_refs(event: dict[str, Any]) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", []) if "what" in e]


async def test_read_leaves_one_exact_event(env: PolicyEnv) -> None:
    before = await event_count(env)
    response = await env.client.get("/DocumentReference/doc-002-irm", headers=env.headers("gp_nguyen"))
    assert response.status_code == 200
    assert await event_count(env) == before + 1
    event = await last_event(env)
    assert event["type"]["code"] == "rest"
    assert subtype(event) == "read" and event["action"] == "R" and event["outcome"] == "0"
    agent = event["agent"][0]
    assert agent["who"]["reference"] == "Practitioner/pra-gp-nguyen" and agent["requestor"] is True
    assert agent["role"][0]["coding"][0]["code"] == "10"
    assert agent["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert entity_refs(event) == ["Patient/pat-002", "DocumentReference/doc-002-irm/_history/1"]
    assert event["source"]["observer"]["display"] == "dmp-fhir"


@pytest.mark.parametrize(
    ("path", "interaction", "action"),
    [
        ("/DocumentReference/doc-002-irm/_history/1", "vread", "R"),
        ("/DocumentReference/doc-002-irm/_history", "history-instance", "R"),
        ("/DocumentReference?patient=pat-002&status=current", "search-type", "E"),
        ("/Patient/pat-002", "read", "R"),
    ],
)
async def test_each_read_kind(env: PolicyEnv, path: str, interaction: str, action: str) -> None:
    response = await env.client.get(path, headers=env.headers("gp_nguyen"))
    assert response.status_code == 200
    event = await last_event(env)
    assert (subtype(event), event["action"], event["outcome"]) == (interaction, action, "0")
    assert "Patient/pat-002" in entity_refs(event)


async def test_search_event_carries_the_query(env: PolicyEnv) -> None:
    await env.client.get(
        "/DocumentReference",
        headers=env.headers("kine"),
        params={"patient": "pat-002", "type": "http://loinc.org|11506-3"},
    )
    event = await last_event(env)
    query = next(e for e in event["entity"] if "query" in e)
    assert base64.b64decode(query["query"]).decode() == (
        "patient=pat-002&type=http%3A%2F%2Floinc.org%7C11506-3"
    )
    assert entity_refs(event) == ["Patient/pat-002", "DocumentReference/doc-002-kine-bilan/_history/1"]


async def test_writes_leave_create_update_delete_events(env: PolicyEnv) -> None:
    me = env.patient("pat-001")
    consent = (await env.client.get("/Consent/consent-001-permit-cardio", headers=me)).json()
    new = {k: v for k, v in consent.items() if k not in ("id", "meta")}
    created = await env.client.post("/Consent", json=new, headers={**me, **JSON})
    assert created.status_code == 201
    cid = created.json()["id"]
    event = await last_event(env)
    assert (subtype(event), event["action"]) == ("create", "C")
    assert entity_refs(event) == ["Patient/pat-001", f"Consent/{cid}/_history/1"]
    updated = await env.client.put(
        f"/Consent/{cid}", json={**created.json(), "status": "inactive"}, headers={**me, **JSON}
    )
    assert updated.status_code == 200
    assert (subtype(await last_event(env)), (await last_event(env))["action"]) == ("update", "U")
    assert (await env.client.delete(f"/Consent/{cid}", headers=me)).status_code == 200
    event = await last_event(env)
    assert (subtype(event), event["action"], entity_refs(event)[-1]) == (
        "delete",
        "D",
        f"Consent/{cid}/_history/3",
    )


async def test_refusals_leave_failure_events(env: PolicyEnv) -> None:
    response = await env.client.get("/DocumentReference/doc-001-ordo", headers=env.headers("kine"))
    assert response.status_code == 403
    event = await last_event(env)
    assert event["outcome"] == "4" and subtype(event) == "read"
    assert event["outcomeDesc"].startswith("403")
    assert "Patient/pat-001" in entity_refs(event), "the patient sees the refused attempt"
    unauthenticated = await env.client.get("/Patient/pat-001")
    assert unauthenticated.status_code == 401
    event = await last_event(env)
    assert event["outcome"] == "4" and event["outcomeDesc"].startswith("401")
    assert event["agent"][0]["who"]["display"] == "unauthenticated"


async def test_break_glass_is_listed_for_the_patient(env: PolicyEnv) -> None:
    glass = env.headers("urgences", purpose_of_use="ETREAT")
    assert (await env.client.get("/DocumentReference/doc-005-certif", headers=glass)).status_code == 200
    mine = await env.client.get(
        "/AuditEvent", headers=env.patient("pat-005"), params={"patient": "pat-005", "purpose": "ETREAT"}
    )
    assert mine.status_code == 200
    events = [e["resource"] for e in mine.json()["entry"]]
    assert len(events) == 1
    assert events[0]["agent"][0]["who"]["reference"] == "Practitioner/pra-urg-moreau"
    other = await env.client.get("/AuditEvent", headers=env.patient("pat-004"), params={"patient": "pat-005"})
    assert other.status_code == 403


async def test_patient_reads_the_whole_trail_newest_first(env: PolicyEnv) -> None:
    await env.client.get("/Patient/pat-002", headers=env.headers("cardio"))
    trail = await env.client.get(
        "/AuditEvent", headers=env.patient("pat-002"), params={"patient": "pat-002", "_count": "5"}
    )
    bundle = trail.json()
    recorded = [e["resource"]["recorded"] for e in bundle["entry"]]
    assert recorded == sorted(recorded, reverse=True)
    assert bundle["entry"][0]["resource"]["agent"][0]["who"]["reference"] == "Practitioner/pra-cardio-roux"
    assert any(link["relation"] == "next" for link in bundle["link"])


async def test_events_about_hidden_documents_stay_hidden_from_the_patient(env: PolicyEnv) -> None:
    await env.client.get("/DocumentReference/doc-003-rcp", headers=env.headers("onco"))
    trail = await env.client.get(
        "/AuditEvent", headers=env.patient("pat-003"), params={"patient": "pat-003", "_count": "100"}
    )
    refs = {r for e in trail.json().get("entry", []) for r in entity_refs(e["resource"])}
    assert not any("doc-003-rcp" in r for r in refs)


async def test_burst_of_500_concurrent_reads_leaves_500_events(env: PolicyEnv) -> None:
    headers = env.headers("gp_martin")
    before = await env.database.db["AuditEvent"].count_documents({"_s_subtype": f"{RESTFUL}|read"})
    responses = await asyncio.gather(
        *(env.client.get("/Patient/pat-001", headers=headers) for _ in range(500))
    )
    assert all(r.status_code == 200 for r in responses)
    after = await env.database.db["AuditEvent"].count_documents({"_s_subtype": f"{RESTFUL}|read"})
    assert after - before == 500


async def test_chain_verifies_then_names_the_altered_event(env: PolicyEnv) -> None:
    trail = AuditTrail(env.database, base_url=env.settings.base_url)
    report = await trail.verify()
    assert report.ok and report.checked > 500
    victim = await env.database.db["AuditEvent_history"].find_one({"_seq": 42})
    assert victim is not None
    await env.database.db["AuditEvent_history"].update_one(
        {"_id": victim["_id"]}, {"$set": {"resource": {**victim["resource"], "outcome": "0", "action": "C"}}}
    )
    report = await trail.verify()
    assert not report.ok
    assert report.broken_at == 42 and report.event_id == victim["_rid"]
    await env.database.db["AuditEvent_history"].replace_one({"_id": victim["_id"]}, victim)
    assert (await trail.verify()).ok


async def test_audit_events_are_immutable(env: PolicyEnv) -> None:
    event = await last_event(env)
    me = env.patient("pat-002")
    assert (
        await env.client.put(f"/AuditEvent/{event['id']}", json=event, headers={**me, **JSON})
    ).status_code == 405
    assert (await env.client.delete(f"/AuditEvent/{event['id']}", headers=me)).status_code == 405
