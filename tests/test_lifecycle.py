"""The life of a DMP through the API: creation, people, access management, closure, destruction."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dmp_fhir.audit import AuditTrail
from dmp_fhir.mhd import CLASS_SYSTEM, CONFIDENTIALITY, FORMAT_SYSTEM

from .lifecycle_helpers import JSON, access, create, create_body, new_ins, operation, raw_hits, representative
from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")

TRE_A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


async def new_dmp(env: PolicyEnv, **patient: Any) -> tuple[str, str]:
    """A DMP opened by Dr Martin, who is also its médecin traitant: (patient id, INS)."""
    ins = new_ins()
    patient.setdefault("generalPractitioner", [{"reference": "Practitioner/pra-gp-martin"}])
    response = await create(env, env.headers("gp_martin"), create_body(ins, **patient))
    assert response.status_code == 201, response.text
    return response.json()["id"], ins


async def status(env: PolicyEnv, headers: dict[str, str], path: str) -> int:
    return (await env.client.get(path, headers=headers)).status_code


# -- creation -------------------------------------------------------------------------------------


async def test_a_professional_opens_a_dmp_with_the_patients_consent(env: PolicyEnv) -> None:
    ins = new_ins()
    response = await create(env, env.headers("pharma"), create_body(ins))  # a pharmacy opens it
    assert response.status_code == 201, response.text
    patient = response.json()
    pid = patient["id"]
    assert response.headers["Location"].endswith(f"/Patient/{pid}/_history/1")
    assert patient["identifier"][0] == {
        "use": "official",
        "type": patient["identifier"][0]["type"],
        "system": "urn:oid:1.2.250.1.213.1.4.10",
        "value": ins,
    }
    assert patient["name"][0] == {
        "extension": [
            {
                "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name",
                "valueString": "Camille Anne",
            }
        ],
        "use": "official",
        "family": "FICTION",
        "given": ["Camille", "Anne"],
    }
    # FR Core INS Patient: the birthplace's INSEE code too.
    birth_place = next(e for e in patient["extension"] if e["url"].endswith("patient-birthPlace"))
    assert birth_place["valueAddress"]["extension"][0]["valueCoding"]["code"] == "99999"
    assert (patient["gender"], patient["birthDate"]) == ("female", "1985-06-01")
    me = env.patient(pid)
    consent = (await env.client.get(f"/Consent/{pid}-creation", headers=me)).json()
    assert consent["status"] == "active" and consent["patient"] == {"reference": f"Patient/{pid}"}
    collection = {e["url"]: e for e in consent["extension"][0]["extension"]}
    assert collection["collector"]["valueReference"] == {"reference": "Practitioner/pra-pharm-lemoine"}
    assert collection["informationLeafletGiven"]["valueBoolean"] is True
    assert (await env.database.db["dmp_record"].find_one({"_id": pid}))["status"] == "open"
    events = (await env.client.get("/AuditEvent", params={"patient": pid}, headers=me)).json()
    subtypes = [s["code"] for e in events["entry"] for s in e["resource"]["subtype"]]
    assert "dmp-create" in subtypes


async def test_one_dmp_per_ins(env: PolicyEnv) -> None:
    pid, ins = await new_dmp(env)
    again = await create(env, env.headers("cardio"), create_body(ins))
    assert again.status_code == 409
    assert again.headers["Content-Location"].endswith(f"/Patient/{pid}")
    assert again.json()["resourceType"] == "OperationOutcome"


async def test_concurrent_creations_yield_one_record(env: PolicyEnv) -> None:
    ins = new_ins()
    responses = await asyncio.gather(
        *(create(env, env.headers("gp_martin"), create_body(ins)) for _ in range(6))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 409, 409, 409, 409, 409]
    stored = await env.database.db["Patient"].count_documents({"_s_identifier": ins})
    assert stored == 1


async def test_a_crash_after_the_claim_does_not_lock_the_ins(env: PolicyEnv) -> None:
    ins = new_ins()
    key = f"urn:oid:1.2.250.1.213.1.4.10|{ins}"
    await env.database.db["dmp_ins"].insert_one({"_id": key, "patient": "crashed-1", "state": "pending"})
    response = await create(env, env.headers("gp_martin"), create_body(ins))
    assert response.status_code == 201, response.text
    assert response.json()["id"] == "crashed-1"  # the pending claim was adopted and completed
    assert (await env.database.db["dmp_ins"].find_one({"_id": key}))["state"] == "created"
    assert await status(env, env.patient("crashed-1"), "/Consent/crashed-1-creation") == 200


async def test_the_patient_opens_their_own_dmp(env: PolicyEnv) -> None:
    response = await create(env, env.patient("self-opened-1"), create_body(new_ins()))
    assert response.status_code == 201, response.text
    assert response.json()["id"] == "self-opened-1"
    collector = await env.client.get("/Consent/self-opened-1-creation", headers=env.patient("self-opened-1"))
    assert collector.json()["extension"][0]["extension"][0]["valueReference"] == {
        "reference": "Patient/self-opened-1"
    }


@pytest.mark.parametrize(
    ("who", "expected"),
    [("system", 403), ("none", 401), ("representative", 403), ("excluded", 403)],
)
async def test_wrong_callers_cannot_open_a_dmp(env: PolicyEnv, who: str, expected: int) -> None:
    headers = {
        "system": env.system(),
        "none": {},
        "representative": env.representative("rp-020-mere", "pat-020"),
        "excluded": env.headers(
            {"fhirUser": "Practitioner/x", "profession": "10", "actor_category": "MEDECIN_CONSEIL_AMO"}
        ),
    }[who]
    ins = new_ins()
    response = await create(env, headers, create_body(ins))
    assert response.status_code == expected, response.text
    assert await env.database.db["dmp_ins"].count_documents({"_id": {"$regex": ins}}) == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [("no-leaflet", 422), ("bad-key", 400), ("bad-system", 400), ("not-parameters", 400)],
)
async def test_bad_creation_requests(env: PolicyEnv, change: str, expected: int) -> None:
    ins = new_ins()
    body: Any = create_body(ins, leaflet=change != "no-leaflet")
    if change == "bad-key":
        body["parameter"][0]["valueIdentifier"]["value"] = ins[:13] + f"{(int(ins[13:]) + 1) % 100:02d}"
    elif change == "bad-system":
        body["parameter"][0]["valueIdentifier"]["system"] = "urn:oid:1.2.3"
    elif change == "not-parameters":
        body = {"resourceType": "Patient"}
    response = await create(env, env.headers("gp_martin"), body)
    assert response.status_code == expected, response.text
    assert await env.database.db["dmp_ins"].count_documents({}) >= 0  # nothing half-written:
    assert not await env.database.db["Patient"].find_one({"_s_identifier": ins})


async def test_a_plain_create_cannot_bypass_the_ins_claim(env: PolicyEnv) -> None:
    pid, ins = await new_dmp(env)
    me = env.patient(pid)
    patient = (await env.client.get(f"/Patient/{pid}", headers=me)).json()
    copy = {k: v for k, v in patient.items() if k not in ("id", "meta")}
    posted = await env.client.post("/Patient", json=copy, headers={**env.headers("gp_martin"), **JSON})
    assert posted.status_code == 403
    # Nor may the patient move their record to another INS.
    other = new_ins()
    patient["identifier"][0]["value"] = other
    put = await env.client.put(f"/Patient/{pid}", json=patient, headers={**me, **JSON})
    assert put.status_code == 403
    assert await env.database.db["Patient"].count_documents({"_s_identifier": ins}) == 1


# -- the record's people ---------------------------------------------------------------------------


async def test_a_minor_with_two_legal_representatives(env: PolicyEnv) -> None:
    ins = new_ins(sex=2, year=12)
    body = create_body(
        ins,
        representatives=[representative("FICTION", "Marc", "FTH"), representative("FICTION", "Lise", "MTH")],
        generalPractitioner=[{"reference": "Practitioner/pra-gp-martin"}],
    )
    response = await create(env, env.headers("gp_martin"), body)
    assert response.status_code == 201, response.text
    pid = response.json()["id"]
    me = env.patient(pid)
    found = (await env.client.get("/RelatedPerson", params={"patient": pid}, headers=me)).json()
    ids = sorted(e["resource"]["id"] for e in found["entry"])
    assert ids == [f"{pid}-rep-1", f"{pid}-rep-2"]
    # FR Core RelatedPerson: the DMP gives each representative an identifier.
    assert all(e["resource"]["identifier"][0]["value"] in ids for e in found["entry"])
    for rp in ids:
        parent = env.representative(rp, pid)
        assert await status(env, parent, f"/Patient/{pid}") == 200
        assert await status(env, parent, f"/RelatedPerson/{rp}") == 200
    # A RelatedPerson token for someone not linked to this patient reads nothing.
    assert await status(env, env.representative("rp-020-mere", pid), f"/Patient/{pid}") == 403
    assert await status(env, env.representative("no-such-rp", "pat-020"), "/Patient/pat-020") == 403
    # Professionals without access do not see the representatives either.
    assert await status(env, env.headers("kine"), f"/RelatedPerson/{pid}-rep-1") == 403
    assert await status(env, env.headers("gp_martin"), f"/RelatedPerson/{pid}-rep-1") == 200
    # Professionals do not write them; the patient does.
    rp = (await env.client.get(f"/RelatedPerson/{pid}-rep-1", headers=me)).json()
    rp["active"] = False
    put = await env.client.put(
        f"/RelatedPerson/{rp['id']}", json=rp, headers={**env.headers("gp_martin"), **JSON}
    )
    assert put.status_code == 403
    put = await env.client.put(f"/RelatedPerson/{rp['id']}", json=rp, headers={**me, **JSON})
    assert put.status_code == 200
    assert await status(env, env.representative(rp["id"], pid), f"/Patient/{pid}") == 403


async def test_the_patient_changes_gp_contacts_and_adds_directives(env: PolicyEnv) -> None:
    pid, _ = await new_dmp(env)
    me = env.patient(pid)
    patient = (await env.client.get(f"/Patient/{pid}", headers=me)).json()
    patient["generalPractitioner"] = [{"reference": "Practitioner/pra-gp-benali"}]
    patient["contact"] = [
        {
            "relationship": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "C"}]}
            ],
            "name": {"family": "FICTION", "given": ["Paul"]},
            "telecom": [{"system": "phone", "value": "01 99 00 99 01"}],
        }
    ]
    put = await env.client.put(f"/Patient/{pid}", json=patient, headers={**me, **JSON})
    assert put.status_code == 200, put.text
    assert await status(env, env.headers("gp_benali"), f"/Patient/{pid}") == 200
    # Dr Martin is no longer the GP but still authorised, as the DMP's creator, until revoked.
    assert await status(env, env.headers("gp_martin"), f"/Patient/{pid}") == 200
    revoke = access("revoke", "Practitioner/pra-gp-martin")
    assert (await operation(env, me, f"/Patient/{pid}/$dmp-access", revoke)).status_code == 200
    assert await status(env, env.headers("gp_martin"), f"/Patient/{pid}") == 403
    # A professional does not change the médecin traitant.
    put = await env.client.put(f"/Patient/{pid}", json=patient, headers={**env.headers("gp_benali"), **JSON})
    assert put.status_code == 403
    # Advance directives: a document of the personal space, by the patient.
    directives = personal_document(pid, "EXPPAT_3", "Directives anticipées")
    posted = await env.client.post("/DocumentReference", json=directives, headers={**me, **JSON})
    assert posted.status_code == 201, posted.text
    assert await status(env, env.headers("gp_benali"), f"/DocumentReference/{posted.json()['id']}") == 200


def personal_document(pid: str, code: str, text: str, binary: str | None = None) -> dict[str, Any]:
    data = text.encode()
    attachment: dict[str, Any] = {
        "contentType": "text/plain",
        "size": len(data),
        "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
        "title": text,
    }
    if binary:
        attachment["url"] = f"Binary/{binary}"
    else:
        attachment["data"] = base64.b64encode(data).decode()
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": TRE_A05, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "date": "2025-01-10T10:00:00+01:00",
        "author": [{"reference": f"Patient/{pid}"}],
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "category": [{"coding": [{"system": CLASS_SYSTEM, "code": "90"}]}],
        "securityLabel": [{"coding": [{"system": CONFIDENTIALITY, "code": "N"}]}],
        "content": [
            {
                "attachment": attachment,
                "format": {"system": FORMAT_SYSTEM, "code": "urn:ihe:iti:xds-sd:text:2008"},
            }
        ],
    }


# -- access management -----------------------------------------------------------------------------


async def test_the_patient_manages_access(env: PolicyEnv) -> None:
    pid, _ = await new_dmp(env)
    me, kine = env.patient(pid), env.headers("kine")
    path = f"/Patient/{pid}/$dmp-access"
    assert await status(env, kine, f"/Patient/{pid}") == 403
    granted = await operation(env, me, path, access("grant", "Practitioner/pra-kine-girard"))
    assert granted.status_code == 200, granted.text
    assert granted.json()["entry"][0]["resource"]["provision"]["type"] == "permit"
    assert await status(env, kine, f"/Patient/{pid}") == 200
    # Who may access: a search of the patient's Consents (theirs alone).
    consents = (
        await env.client.get("/Consent", params={"patient": pid, "status": "active"}, headers=me)
    ).json()
    assert len(consents["entry"]) == 3  # the creation consent, the creator's grant and the grant
    theirs = await env.client.get("/Consent", params={"patient": pid}, headers=kine)
    assert theirs.status_code == 403 or not theirs.json().get("entry")
    revoked = await operation(env, me, path, access("revoke", "Practitioner/pra-kine-girard"))
    assert [e["resource"]["status"] for e in revoked.json()["entry"]] == ["inactive"]
    assert revoked.json()["entry"][0]["resource"]["meta"]["versionId"] == "2"
    assert await status(env, kine, f"/Patient/{pid}") == 403
    # Blocking an establishment refuses even the médecin traitant who works there.
    await operation(env, me, path, access("block", "Organization/org-msp-aure"))
    assert await status(env, env.headers("gp_martin"), f"/Patient/{pid}") == 403
    await operation(env, me, path, access("unblock", "Organization/org-msp-aure"))
    assert await status(env, env.headers("gp_martin"), f"/Patient/{pid}") == 200
    # Emergency access: allowed by default, opposed, allowed again.
    er = env.headers("urgences", purpose_of_use="ETREAT")
    assert await status(env, er, f"/Patient/{pid}") == 200
    await operation(env, me, path, access("oppose-emergency"))
    assert await status(env, er, f"/Patient/{pid}") == 403
    await operation(env, me, path, access("allow-emergency"))
    assert await status(env, er, f"/Patient/{pid}") == 200
    events = (
        await env.client.get("/AuditEvent", params={"patient": pid, "_count": "200"}, headers=me)
    ).json()
    ops = [s["code"] for e in events["entry"] for s in e["resource"]["subtype"] if s["code"] == "dmp-access"]
    assert len(ops) == 6


@pytest.mark.parametrize("who", ["gp_martin", "other-patient", "system"])
async def test_only_the_patient_manages_access(env: PolicyEnv, who: str) -> None:
    pid, _ = await new_dmp(env)
    headers = {
        "gp_martin": env.headers("gp_martin"),
        "other-patient": env.patient("pat-001"),
        "system": env.system(),
    }[who]
    response = await operation(
        env, headers, f"/Patient/{pid}/$dmp-access", access("grant", "Practitioner/pra-kine-girard")
    )
    assert response.status_code == 403
    assert await status(env, env.headers("kine"), f"/Patient/{pid}") == 403


async def test_bad_access_requests(env: PolicyEnv) -> None:
    pid, _ = await new_dmp(env)
    me = env.patient(pid)
    path = f"/Patient/{pid}/$dmp-access"
    assert (await operation(env, me, path, access("share-everything"))).status_code == 400
    assert (await operation(env, me, path, access("grant"))).status_code == 400
    assert (await operation(env, me, path, access("grant", "Patient/pat-001"))).status_code == 400


# -- closure and reopening -------------------------------------------------------------------------


async def test_close_refuses_professionals_and_reopen_brings_everything_back(env: PolicyEnv) -> None:
    pid, _ = await new_dmp(env)
    me, gp = env.patient(pid), env.headers("gp_martin")
    assert await status(env, gp, f"/Patient/{pid}") == 200
    assert (await operation(env, gp, f"/Patient/{pid}/$dmp-close")).status_code == 403
    closed = await operation(env, me, f"/Patient/{pid}/$dmp-close")
    assert closed.status_code == 200, closed.text
    assert (await operation(env, me, f"/Patient/{pid}/$dmp-close")).status_code == 409
    assert await status(env, gp, f"/Patient/{pid}") == 403
    assert await status(env, me, f"/Patient/{pid}") == 200  # the patient still reads
    assert (await operation(env, me, f"/Patient/{pid}/$dmp-reopen")).status_code == 403
    assert (await operation(env, env.system(), f"/Patient/{pid}/$dmp-reopen")).status_code == 403
    reopened = await operation(env, gp, f"/Patient/{pid}/$dmp-reopen")
    assert reopened.status_code == 200, reopened.text
    assert await status(env, gp, f"/Patient/{pid}") == 200
    assert await status(env, me, f"/Consent/{pid}-creation") == 200
    assert (await operation(env, gp, f"/Patient/{pid}/$dmp-reopen")).status_code == 409


async def test_a_legal_representative_closes_a_minors_dmp(env: PolicyEnv) -> None:
    body = create_body(new_ins(sex=2, year=14), representatives=[representative("FICTION", "Lise", "MTH")])
    pid = (await create(env, env.headers("gp_martin"), body)).json()["id"]
    parent = env.representative(f"{pid}-rep-1", pid)
    assert (await operation(env, parent, f"/Patient/{pid}/$dmp-close")).status_code == 200
    assert (await env.database.db["dmp_record"].find_one({"_id": pid}))["status"] == "closed"


async def test_a_blocked_professional_cannot_reopen(env: PolicyEnv) -> None:
    pid, _ = await new_dmp(env)
    me = env.patient(pid)
    await operation(env, me, f"/Patient/{pid}/$dmp-access", access("block", "Practitioner/pra-cardio-roux"))
    await operation(env, me, f"/Patient/{pid}/$dmp-close")
    assert (await operation(env, env.headers("cardio"), f"/Patient/{pid}/$dmp-reopen")).status_code == 403


async def test_operations_on_unknown_patients(env: PolicyEnv) -> None:
    me = env.patient("nobody-1")
    assert (await operation(env, me, "/Patient/nobody-1/$dmp-close")).status_code == 404
    assert (await operation(env, me, "/Patient/nobody-1/$dmp-destroy")).status_code == 404
    assert (
        await operation(env, env.headers("gp_martin"), "/Patient/nobody-1/$dmp-reopen")
    ).status_code == 404


# -- destruction -----------------------------------------------------------------------------------


async def personal_document_with_binary(env: PolicyEnv, pid: str, tag: str) -> tuple[str, str]:
    """A personal-space document in two versions, with a Binary: (document id, Binary id)."""
    me = env.patient(pid)
    binary_id = f"bin-{tag}"
    doc = personal_document(pid, "EXPPAT_2", f"content {tag}", binary=binary_id)
    posted = await env.client.post("/DocumentReference", json=doc, headers={**me, **JSON})
    assert posted.status_code == 201, posted.text
    doc_id = posted.json()["id"]
    binary = {
        "resourceType": "Binary",
        "id": binary_id,
        "contentType": "text/plain",
        "securityContext": {"reference": f"DocumentReference/{doc_id}"},
        "data": base64.b64encode(f"content {tag}".encode()).decode(),
    }
    put = await env.client.put(f"/Binary/{binary_id}", json=binary, headers={**me, **JSON})
    assert put.status_code == 201, put.text
    updated = {**posted.json(), "description": f"second version {tag}"}
    put = await env.client.put(f"/DocumentReference/{doc_id}", json=updated, headers={**me, **JSON})
    assert put.status_code == 200, put.text
    return doc_id, binary_id


async def test_total_destruction_leaves_only_the_audit_facts(env: PolicyEnv) -> None:
    ins = new_ins()
    body = create_body(
        ins,
        representatives=[representative("FICTION", "Marc", "FTH")],
        generalPractitioner=[{"reference": "Practitioner/pra-gp-martin"}],
    )
    pid = (await create(env, env.headers("gp_martin"), body)).json()["id"]
    me, gp = env.patient(pid), env.headers("gp_martin")
    doc_id, binary_id = await personal_document_with_binary(env, pid, "total")
    await operation(env, me, f"/Patient/{pid}/$dmp-access", access("grant", "Practitioner/pra-kine-girard"))
    await operation(env, me, f"/Patient/{pid}/$dmp-close")
    await operation(env, gp, f"/Patient/{pid}/$dmp-reopen")
    assert (await operation(env, gp, f"/Patient/{pid}/$dmp-destroy")).status_code == 403
    assert (await operation(env, env.patient("pat-001"), f"/Patient/{pid}/$dmp-destroy")).status_code == 403
    assert set(await raw_hits(env, pid)) >= {"Patient", "Patient_history", "Consent", "RelatedPerson"}

    destroyed = await operation(env, me, f"/Patient/{pid}/$dmp-destroy")
    assert destroyed.status_code == 200, destroyed.text

    # The raw database: the patient's id survives only in the audit trail; the INS nowhere.
    assert set(await raw_hits(env, pid, doc_id, binary_id)) <= {"AuditEvent", "AuditEvent_history"}
    assert await raw_hits(env, ins) == {}
    assert await status(env, gp, f"/Patient/{pid}") in (404, 410)
    assert await status(env, me, f"/DocumentReference/{doc_id}") in (404, 410)
    assert await status(env, me, f"/Binary/{binary_id}") in (404, 410)
    found = (await env.client.get("/Patient", params={"identifier": ins}, headers=gp)).json()
    assert found.get("total", 0) == 0 and not found.get("entry")
    # The audit chain still verifies; the destruction itself is recorded.
    report = await AuditTrail(env.database, base_url=env.settings.base_url).verify()
    assert report.ok, report
    destroy_events = await env.database.db["AuditEvent"].count_documents({"_p_patient": pid})
    assert destroy_events > 0
    # The INS is free again: a new DMP may be opened (a new record, nothing comes back).
    again = await create(env, gp, create_body(ins))
    assert again.status_code == 201 and again.json()["id"] != pid


async def test_partial_destruction_of_one_document(env: PolicyEnv) -> None:
    pid, _ = await new_dmp(env)
    me = env.patient(pid)
    doc_id, binary_id = await personal_document_with_binary(env, pid, "partial")
    kept_id, kept_binary = await personal_document_with_binary(env, pid, "kept")
    assert (
        await operation(env, env.headers("gp_martin"), f"/DocumentReference/{doc_id}/$dmp-destroy")
    ).status_code == 403
    assert (
        await operation(env, env.patient("pat-001"), f"/DocumentReference/{doc_id}/$dmp-destroy")
    ).status_code == 403
    destroyed = await operation(env, me, f"/DocumentReference/{doc_id}/$dmp-destroy")
    assert destroyed.status_code == 200, destroyed.text
    assert set(await raw_hits(env, doc_id, binary_id, "content partial")) <= {
        "AuditEvent",
        "AuditEvent_history",
    }
    assert await status(env, me, f"/DocumentReference/{doc_id}") == 404
    assert await status(env, me, f"/DocumentReference/{doc_id}/_history/1") == 404
    assert await status(env, me, f"/Binary/{binary_id}") == 404
    search = (await env.client.get("/DocumentReference", params={"patient": pid}, headers=me)).json()
    assert {e["resource"]["id"] for e in search.get("entry", [])} == {kept_id}
    assert await status(env, me, f"/Binary/{kept_binary}") == 200
    assert (await operation(env, me, f"/DocumentReference/{doc_id}/$dmp-destroy")).status_code == 404


async def test_operations_are_in_the_capability_statement(env: PolicyEnv) -> None:
    statement = (await env.client.get("/metadata")).json()
    ops = {
        (r["type"], o["name"])
        for r in statement["rest"][0]["resource"]
        for o in r.get("operation", [])
        if o["name"].startswith("dmp-")
    }
    assert ops == {
        ("Patient", "dmp-create"),
        ("Patient", "dmp-access"),
        ("Patient", "dmp-close"),
        ("Patient", "dmp-reopen"),
        ("Patient", "dmp-destroy"),
        ("DocumentReference", "dmp-destroy"),
        *(
            (t, "dmp-destroy")
            for t in (
                "Observation",
                "DiagnosticReport",
                "MedicationDispense",
                "MedicationStatement",
                "Immunization",
                "AllergyIntolerance",
                "Condition",
            )
        ),
    }
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert "RelatedPerson" in types
