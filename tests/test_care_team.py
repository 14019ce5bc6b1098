"""The care team's authorisation: the creator of a DMP, grants a professional records on the
patient's word given in person, an establishment's authorisation covering its professionals, and
the occupational physician's absolute limit (regressions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .lifecycle_helpers import JSON, access, create, create_body, new_ins, operation
from .policy_env import PolicyEnv, policy_env
from .sender_bundles import sender_bundle

pytestmark = pytest.mark.asyncio(loop_scope="session")
TRE_A07 = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument"
)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


def attested(actor: str | None = None, attestation: str | None = "patient-present") -> dict[str, Any]:
    body = access("grant", actor)
    if attestation is not None:
        body["parameter"].append({"name": "attestation", "valueCode": attestation})
    return body


async def consents(env: PolicyEnv, pid: str) -> list[dict[str, Any]]:
    return [d["resource"] for d in await env.database.db["Consent"].find({"_p_patient": pid}).to_list(None)]


async def feed(env: PolicyEnv, who: str, pid: str, rpps: str) -> Any:
    bundle = sender_bundle(f"Patient/{pid}", rpps, "1990010019")
    return await env.client.post("", json=bundle, headers={**env.headers(who, rpps=rpps), **JSON})


async def test_the_creator_feeds_the_record_just_opened_and_the_patient_can_revoke(env: PolicyEnv) -> None:
    r = await create(env, env.headers("cardio"), create_body(new_ins()))
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    fed = await feed(env, "cardio", pid, "819999990047")
    assert fed.status_code == 200, fed.text
    grants = [c for c in await consents(env, pid) if c["id"] == f"{pid}-creator"]
    assert (
        grants
        and grants[0]["provision"]["actor"][0]["reference"]["reference"] == "Practitioner/pra-cardio-roux"
    )
    # The patient sees the grant and revokes it: the creator is then refused.
    seen = await env.client.get("/Consent", params={"patient": pid}, headers=env.patient(pid))
    assert f"{pid}-creator" in seen.text
    revoked = await operation(
        env, env.patient(pid), f"/Patient/{pid}/$dmp-access", access("revoke", "Practitioner/pra-cardio-roux")
    )
    assert revoked.status_code == 200, revoked.text
    assert (await env.client.get(f"/Patient/{pid}", headers=env.headers("cardio"))).status_code == 403


async def test_a_professional_records_the_grant_given_in_person(env: PolicyEnv) -> None:
    path = "/Patient/pat-012/$dmp-access"
    kine = env.headers("kine")
    assert (await env.client.get("/Patient/pat-012", headers=kine)).status_code == 403
    # No attestation, or another professional: refused, nothing written.
    before = len(await consents(env, "pat-012"))
    r = await operation(env, kine, path, attested(attestation=None))
    assert r.status_code == 403 and "patient-present" in r.text
    r = await operation(env, kine, path, attested("Practitioner/pra-cardio-roux"))
    assert r.status_code == 403 and "never for another" in r.text
    assert len(await consents(env, "pat-012")) == before
    r = await operation(env, kine, path, attested())
    assert r.status_code == 200, r.text
    consent = r.json()["entry"][0]["resource"] if "entry" in r.json() else None
    assert (await env.client.get("/Patient/pat-012", headers=kine)).status_code == 200
    stored = [c for c in await consents(env, "pat-012") if "extension" in c and c["status"] == "active"]
    assert any(e["extension"][1]["valueCode"] == "patient-present" for c in stored for e in c["extension"])
    del consent
    # The AuditEvent says what was attested.
    events = await env.client.get(
        "/AuditEvent", params={"patient": "pat-012", "_count": "200"}, headers=env.patient("pat-012")
    )
    assert "patient-present" in events.text
    # The patient revokes it.
    r = await operation(env, env.patient("pat-012"), path, access("revoke", "Practitioner/pra-kine-girard"))
    assert r.status_code == 200
    assert (await env.client.get("/Patient/pat-012", headers=kine)).status_code == 403


async def test_a_blocked_professional_cannot_grant_themself(env: PolicyEnv) -> None:
    # pat-003 blocked Dr Nguyen (samples/20-consents.json).
    before = len(await consents(env, "pat-003"))
    r = await operation(env, env.headers("gp_nguyen"), "/Patient/pat-003/$dmp-access", attested())
    assert r.status_code == 403 and "blocked" in r.text
    assert len(await consents(env, "pat-003")) == before


async def test_a_professional_of_a_blocked_establishment_cannot_grant_themself(env: PolicyEnv) -> None:
    blocked = await operation(
        env,
        env.patient("pat-013"),
        "/Patient/pat-013/$dmp-access",
        access("block", "Organization/org-chu-bellerive"),
    )
    assert blocked.status_code == 200
    r = await operation(env, env.headers("psy"), "/Patient/pat-013/$dmp-access", attested())
    assert r.status_code == 403 and "blocked" in r.text


async def test_an_establishments_authorisation_covers_its_professionals(env: PolicyEnv) -> None:
    # pat-002 authorised the CHU: its cardiologist is authorised by their PractitionerRole,
    # even with a token that does not name the organisation.
    claims = {
        k: v
        for k, v in {
            "fhirUser": "Practitioner/pra-cardio-roux",
            "profession": "10",
            "specialty": "SM04",
        }.items()
    }
    r = await env.client.get("/Patient/pat-002", headers=env.headers(claims))
    assert r.status_code == 200, r.text


async def test_an_occupational_physician_named_gp_stays_in_their_section(env: PolicyEnv) -> None:
    # Regression: an SM25 physician named médecin traitant used to get the GP's view.
    repo = await env.internal_repository()
    patient = (await repo.read("Patient", "pat-001")).resource or {}
    gps = [*patient.get("generalPractitioner", []), {"reference": "Practitioner/pra-mdt-dubois"}]
    patient = {**patient, "generalPractitioner": gps}
    patient.pop("meta", None)
    await repo.update("Patient", "pat-001", patient)
    params = {"patient": "pat-001", "_count": "100"}
    every = await env.client.get("/DocumentReference", params=params, headers=env.patient("pat-001"))
    assert len(every.json().get("entry", [])) > 0
    found = await env.client.get("/DocumentReference", params=params, headers=env.headers("mdt"))
    assert found.status_code == 200, found.text
    assert found.json().get("entry", []) == []  # pat-001 has no occupational-health document


IDE = {
    "fhirUser": "Practitioner/pra-ide-bernard",
    "profession": "60",
    "organization": "Organization/org-msp-aure",
}


async def test_co_authorship_grants_nothing_by_itself(env: PolicyEnv) -> None:
    # Regression: an authorised professional named an unauthorised one as co-author, and so
    # opened the record to them ("author keeps access").
    bundle = sender_bundle("Patient/pat-001", "819999990013", "1990050056", type_code="11488-4")
    document = bundle["entry"][1]["resource"]
    document["author"] += [
        {"reference": "Practitioner/pra-kine-girard"},  # another establishment: not entitled
        {"reference": "PractitionerRole/prr-ide-bernard"},  # a colleague of the writer's MSP
    ]
    r = await env.client.post(
        "", json=bundle, headers={**env.headers("gp_martin", rpps="819999990013"), **JSON}
    )
    assert r.status_code == 200, r.text
    doc_id = next(
        e["response"]["location"].split("/")[1]
        for e in r.json()["entry"]
        if e["response"]["location"].startswith("DocumentReference/")
    )
    kine = await env.client.get(f"/DocumentReference/{doc_id}", headers=env.headers("kine"))
    assert kine.status_code == 403, kine.text
    colleague = await env.client.get(f"/DocumentReference/{doc_id}", headers=env.headers(IDE))
    assert colleague.status_code == 200, colleague.text
    stored = await env.database.db["DocumentReference"].find_one({"_id": doc_id})
    assert "Practitioner/pra-kine-girard" not in stored["_p_authors"]
    assert "PractitionerRole/prr-ide-bernard" in stored["_p_authors"]
    # The patient masking it (a new version written by the patient) keeps the authors counted.
    me = env.patient("pat-001")
    current = (await env.client.get(f"/DocumentReference/{doc_id}", headers=me)).json()
    current["securityLabel"].append({"coding": [{"system": TRE_A07, "code": "MASQUE_PS"}]})
    masked = await env.client.put(f"/DocumentReference/{doc_id}", json=current, headers={**me, **JSON})
    assert masked.status_code == 200, masked.text
    stored = await env.database.db["DocumentReference"].find_one({"_id": doc_id})
    assert "PractitionerRole/prr-ide-bernard" in stored["_p_authors"]
    colleague = await env.client.get(f"/DocumentReference/{doc_id}", headers=env.headers(IDE))
    assert colleague.status_code == 200, colleague.text


async def test_permission_comes_before_the_profile(env: PolicyEnv) -> None:
    # A document that fails the DMP profile (no type, no date…), from a caller who may not write
    # for this patient: 403, and the refusal says nothing of the profile.
    bad = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/pat-001"},
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
        "author": [{"reference": "Practitioner/pra-gp-martin"}],
        "content": [{"attachment": {"contentType": "text/plain", "url": "https://example.org/x"}}],
    }
    r = await env.client.post("/DocumentReference", json=bad, headers={**env.headers("kine"), **JSON})
    assert r.status_code == 403, r.text
    assert "profile" not in r.text.lower()
    # The patient's own GP, who may write, learns what the profile wants.
    r = await env.client.post("/DocumentReference", json=bad, headers={**env.headers("gp_martin"), **JSON})
    assert r.status_code == 422, r.text
