"""Regression tests for leaks a second reader found (each was reproduced before its fix)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .policy_env import PROFESSIONALS, PolicyEnv, policy_env
from .test_policy_writes import TRE_A05, document, post, status

pytestmark = pytest.mark.asyncio(loop_scope="session")
JSON = {"Content-Type": "application/fhir+json"}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


def pointing_at(doc: dict[str, Any], binary_id: str) -> dict[str, Any]:
    attachment = doc["content"][0]["attachment"]
    doc["content"][0]["attachment"] = {
        "contentType": "application/pdf",
        "url": f"Binary/{binary_id}",
        "size": attachment["size"],
        "hash": attachment["hash"],
    }
    return doc


async def ids(env: PolicyEnv, headers: dict[str, str], path: str, **params: str) -> set[str]:
    response = await env.client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"}


async def test_a_document_cannot_borrow_another_documents_binary(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    stolen = pointing_at(document("pat-002", "11506-3", "Practitioner/pra-kine-girard"), "bin-002-psy")
    assert (await post(env, kine, stolen)).status_code == 403
    assert await status(env, kine, "/Binary/bin-002-psy") == 404
    me = env.patient("pat-003")
    mine = pointing_at(document("pat-003", "EXPPAT_2", "Patient/pat-003", system=TRE_A05), "bin-003-rcp")
    assert (await post(env, me, mine)).status_code == 403
    assert await status(env, me, "/Binary/bin-003-rcp") == 404


async def test_binary_writes_follow_their_document(env: PolicyEnv) -> None:
    kine, gp = env.headers("kine"), env.headers("gp_nguyen")
    binary = (await env.client.get("/Binary/bin-002-presc-kine", headers=gp)).json()
    binary["data"] = base64.b64encode(b"forged").decode()
    response = await env.client.put("/Binary/bin-002-presc-kine", json=binary, headers={**kine, **JSON})
    assert response.status_code == 403
    assert (await env.client.delete("/Binary/bin-002-irm", headers=env.patient("pat-002"))).status_code == 403
    orphan = {"resourceType": "Binary", "contentType": "text/plain", "data": "eA=="}
    assert (await post(env, kine, orphan)).status_code == 403
    hidden_owner = {**orphan, "securityContext": {"reference": "DocumentReference/doc-002-psy"}}
    assert (await post(env, kine, hidden_owner)).status_code == 403
    absent_owner = {**orphan, "securityContext": {"reference": "DocumentReference/nope"}}
    refused = await post(env, kine, absent_owner)
    assert refused.status_code == 403
    assert refused.json() == (await post(env, kine, hidden_owner)).json(), "no existence oracle"


async def test_submission_sets_are_hidden_like_their_documents(env: PolicyEnv) -> None:
    assert "ss-003-onco" not in await ids(env, env.patient("pat-003"), "/List", patient="pat-003")
    kine = env.headers("kine")
    assert await ids(env, kine, "/List", patient="pat-002", item="DocumentReference/doc-002-psy") == set()
    assert await ids(env, kine, "/Patient", **{"_has:List:subject:title:contains": "psychiatrique"}) == set()
    assert "ss-002-psy" in await ids(env, env.headers("gp_nguyen"), "/List", patient="pat-002")
    assert "ss-002-psy" in await ids(env, env.patient("pat-002"), "/List", patient="pat-002")


async def test_a_patient_never_sees_another_patients_audit_entries(env: PolicyEnv) -> None:
    await env.client.get("/DocumentReference", headers=env.headers("gp_martin"), params={"status": "current"})
    trail = await env.client.get("/AuditEvent", headers=env.patient("pat-001"), params={"_count": "200"})
    refs = {
        e["what"]["reference"]
        for entry in trail.json().get("entry", [])
        for e in entry["resource"].get("entity", [])
        if "what" in e
    }
    assert refs and all(not r.startswith("Patient/") or r == "Patient/pat-001" for r in refs)
    assert not any(r.startswith(("DocumentReference/doc-004", "DocumentReference/doc-010")) for r in refs)


async def test_content_of_a_hidden_document_leaves_no_visible_trace(env: PolicyEnv) -> None:
    assert await status(env, env.headers("onco"), "/Binary/bin-003-rcp") == 200
    trail = await env.client.get(
        "/AuditEvent", headers=env.patient("pat-003"), params={"entity": "Binary/bin-003-rcp"}
    )
    assert trail.json().get("entry", []) == []


async def test_scopes_also_bind_includes(env: PolicyEnv) -> None:
    token = env.token(
        {"fhirUser": "Patient/pat-001", "patient": "pat-001"}, scope="patient/DocumentReference.rs"
    )
    headers = {"Authorization": f"Bearer {token}"}
    assert await status(env, headers, "/Patient/pat-001") == 403
    response = await env.client.get(
        "/DocumentReference",
        headers=headers,
        params={"patient": "pat-001", "_include": "DocumentReference:subject"},
    )
    kinds = {e["resource"]["resourceType"] for e in response.json()["entry"]}
    assert kinds == {"DocumentReference"}


async def test_an_excluded_actor_finds_nothing_even_their_own(env: PolicyEnv) -> None:
    insurer = env.headers("cardio", actor_category="MEDECIN_CONSEIL_AMO")
    response = await env.client.get("/DocumentReference", headers=insurer)
    assert response.status_code == 200 and not response.json().get("entry")


async def test_patient_cannot_take_over_a_professionals_document(env: PolicyEnv) -> None:
    me = env.patient("pat-001")
    current = (await env.client.get("/DocumentReference/doc-001-cs-cardio", headers=me)).json()
    current["type"] = {"coding": [{"system": TRE_A05, "code": "EXPPAT_2"}]}
    current["author"] = [{"reference": "Patient/pat-001"}]
    response = await env.client.put(
        "/DocumentReference/doc-001-cs-cardio", json=current, headers={**me, **JSON}
    )
    assert response.status_code == 403
    assert (await env.client.delete("/DocumentReference/doc-001-cs-cardio", headers=me)).status_code == 403


async def test_professional_writes_are_checked_whole(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    ghost = document("pat-002", "68599-0", "Practitioner/pra-psy-garnier")
    ghost["type"]["coding"].append({"system": "http://loinc.org", "code": "11506-3"})
    assert (await post(env, kine, ghost)).status_code == 403
    created = await post(env, kine, document("pat-002", "11506-3", "Practitioner/pra-kine-girard"))
    assert created.status_code == 201
    retyped = {**created.json(), "type": {"coding": [{"system": "http://loinc.org", "code": "34133-9"}]}}
    response = await env.client.put(
        f"/DocumentReference/{retyped['id']}", json=retyped, headers={**kine, **JSON}
    )
    assert response.status_code == 403
    assert (await env.client.delete("/List/ss-002-psy", headers=kine)).status_code == 404  # hidden
    assert await status(env, env.headers("gp_nguyen"), "/List/ss-002-psy") == 200


async def test_update_that_creates_needs_the_create_scope(env: PolicyEnv) -> None:
    token = env.token({"fhirUser": "Patient/pat-001", "patient": "pat-001"}, scope="patient/Consent.u")
    consent = (
        await env.client.get("/Consent/consent-001-permit-cardio", headers=env.patient("pat-001"))
    ).json()
    fresh = {k: v for k, v in consent.items() if k != "meta"} | {"id": "made-by-put"}
    response = await env.client.put(
        "/Consent/made-by-put", json=fresh, headers={"Authorization": f"Bearer {token}", **JSON}
    )
    assert response.status_code == 403


async def test_patients_read_their_identity_history(env: PolicyEnv) -> None:
    assert await status(env, env.patient("pat-001"), "/Patient/pat-001/_history") == 200
    assert await status(env, env.patient("pat-001"), "/Patient/pat-001/_history/1") == 200
    assert await status(env, env.headers("gp_martin"), "/Patient/pat-001/_history/1") == 200


async def test_deleting_twice_reveals_nothing(env: PolicyEnv) -> None:
    absent = await env.client.delete("/DocumentReference/never-existed", headers=env.headers("kine"))
    assert absent.status_code == 200 and "etag" not in absent.headers


async def test_a_deny_naming_a_role_blocks_its_practitioner(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    assert await status(env, kine, "/DocumentReference/doc-002-kine-bilan") == 200
    me = env.patient("pat-002")
    deny = (await env.client.get("/Consent/consent-002-permit-kine", headers=me)).json()
    deny = {k: v for k, v in deny.items() if k not in ("id", "meta")}
    deny["provision"] = {
        "type": "deny",
        "actor": [
            {
                "role": deny["provision"]["actor"][0]["role"],
                "reference": {"reference": "PractitionerRole/prr-kine-girard"},
            }
        ],
    }
    created = await post(env, me, deny)
    assert created.status_code == 201, created.text
    try:
        assert await status(env, kine, "/DocumentReference/doc-002-kine-bilan") == 403
    finally:
        await env.client.delete(f"/Consent/{created.json()['id']}", headers=me)
    assert await status(env, kine, "/DocumentReference/doc-002-kine-bilan") == 200


async def test_reassigning_the_gp_role_moves_the_access(env: PolicyEnv) -> None:
    system = env.system()
    role = (await env.client.get("/PractitionerRole/prr-gp-nguyen", headers=system)).json()
    moved = {**role, "practitioner": {"reference": "Practitioner/pra-cardio-roux"}}
    assert (
        await env.client.put("/PractitionerRole/prr-gp-nguyen", json=moved, headers={**system, **JSON})
    ).status_code == 200
    try:
        assert await status(env, env.headers("gp_nguyen"), "/DocumentReference/doc-002-psy") == 403
        assert await status(env, env.headers("cardio"), "/DocumentReference/doc-005-certif") == 200
    finally:
        await env.client.put("/PractitionerRole/prr-gp-nguyen", json=role, headers={**system, **JSON})
    assert PROFESSIONALS["gp_nguyen"]["fhirUser"] == "Practitioner/pra-gp-nguyen"
