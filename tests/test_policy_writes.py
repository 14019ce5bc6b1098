"""The DMP write rules (rule 4) and the record-level refusals (rule 1), with real tokens."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")

VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument"
)
TRE_A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
TRE_A03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
TRE_A11 = "https://mos.esante.gouv.fr/NOS/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"
LOINC = "http://loinc.org"
JSON = {"Content-Type": "application/fhir+json"}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


def document(
    pid: str, type_code: str, author: str, *, system: str = LOINC, labels: tuple[str, ...] = ()
) -> dict[str, Any]:
    content = f"document {type_code} for {pid}".encode()
    security = [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}
    ]
    security += [{"coding": [{"system": VISIBILITY, "code": code}]} for code in labels]
    return {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {"coding": [{"system": system, "code": type_code}]},
        "category": [{"coding": [{"system": TRE_A03, "code": "10"}]}],
        "subject": {"reference": f"Patient/{pid}"},
        "date": "2025-01-10T10:00:00+01:00",
        "author": [{"reference": author}],
        "securityLabel": security,
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(content).decode(),
                    "size": len(content),
                    "hash": base64.b64encode(hashlib.sha1(content).digest()).decode(),
                },
                "format": {"system": TRE_A11, "code": "urn:ihe:iti:xds-sd:text:2008"},
            }
        ],
    }


async def post(env: PolicyEnv, headers: dict[str, str], resource: dict[str, Any]) -> Any:
    return await env.client.post(f"/{resource['resourceType']}", json=resource, headers={**headers, **JSON})


async def relabel(
    env: PolicyEnv,
    headers: dict[str, str],
    doc_id: str,
    read_as: dict[str, str],
    add: tuple[str, ...] = (),
    remove: tuple[str, ...] = (),
) -> int:
    current = (await env.client.get(f"/DocumentReference/{doc_id}", headers=read_as)).json()
    labels = [c for c in current["securityLabel"] if c["coding"][0]["code"] not in remove]
    labels += [{"coding": [{"system": VISIBILITY, "code": code}]} for code in add]
    current["securityLabel"] = labels
    response = await env.client.put(f"/DocumentReference/{doc_id}", json=current, headers={**headers, **JSON})
    return response.status_code


async def status(env: PolicyEnv, headers: dict[str, str], path: str) -> int:
    return (await env.client.get(path, headers=headers)).status_code


async def test_professional_writes_what_the_matrix_allows(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    ok = await post(env, kine, document("pat-002", "11506-3", "Practitioner/pra-kine-girard"))
    assert ok.status_code == 201, ok.text
    refused = await post(env, kine, document("pat-002", "18748-4", "Practitioner/pra-kine-girard"))
    assert refused.status_code == 403
    unauthorised = await post(env, kine, document("pat-001", "11506-3", "Practitioner/pra-kine-girard"))
    assert unauthorised.status_code == 403


async def test_patient_writes_only_to_the_personal_space(env: PolicyEnv) -> None:
    me = env.patient("pat-001")
    ok = await post(env, me, document("pat-001", "EXPPAT_2", "Patient/pat-001", system=TRE_A05))
    assert ok.status_code == 201, ok.text
    refused = await post(env, me, document("pat-001", "11488-4", "Patient/pat-001"))
    assert refused.status_code == 403
    other = await post(env, me, document("pat-004", "EXPPAT_2", "Patient/pat-001", system=TRE_A05))
    assert other.status_code == 403


async def test_only_the_patient_masks_and_unmasks(env: PolicyEnv) -> None:
    gp, cardio, radio = env.headers("gp_nguyen"), env.headers("cardio"), env.headers("radio")
    me = env.patient("pat-002")
    assert await status(env, cardio, "/DocumentReference/doc-002-irm") == 200
    assert await relabel(env, cardio, "doc-002-irm", cardio, add=("MASQUE_PS",)) == 403
    assert await relabel(env, me, "doc-002-irm", me, add=("MASQUE_PS",)) == 200
    assert await status(env, cardio, "/DocumentReference/doc-002-irm") == 404
    assert await status(env, gp, "/DocumentReference/doc-002-irm") == 200
    assert await status(env, radio, "/DocumentReference/doc-002-irm") == 200, "the author still sees it"
    assert await relabel(env, me, "doc-002-irm", me, remove=("MASQUE_PS",)) == 200
    assert await status(env, cardio, "/DocumentReference/doc-002-irm") == 200


async def test_patient_cannot_edit_a_professionals_document(env: PolicyEnv) -> None:
    me = env.patient("pat-002")
    current = (await env.client.get("/DocumentReference/doc-002-irm", headers=me)).json()
    current["description"] = "edited by the patient"
    response = await env.client.put("/DocumentReference/doc-002-irm", json=current, headers={**me, **JSON})
    assert response.status_code == 403


async def test_author_lifts_invisibility_after_the_announcement(env: PolicyEnv) -> None:
    onco, me = env.headers("onco"), env.patient("pat-003")
    assert await status(env, me, "/DocumentReference/doc-003-rcp") == 404
    assert (
        await relabel(env, env.headers("gp_benali"), "doc-003-rcp", onco, remove=("INVISIBLE_PATIENT",))
        == 403
    )
    assert await relabel(env, onco, "doc-003-rcp", onco, remove=("INVISIBLE_PATIENT",)) == 200
    assert await status(env, me, "/DocumentReference/doc-003-rcp") == 200
    assert await relabel(env, onco, "doc-003-rcp", onco, add=("INVISIBLE_PATIENT",)) == 403


async def test_author_may_hide_a_new_document_from_the_patient(env: PolicyEnv) -> None:
    onco = env.headers("onco")
    created = await post(
        env,
        onco,
        document("pat-003", "34794-8", "Practitioner/pra-onco-lambert", labels=("INVISIBLE_PATIENT",)),
    )
    assert created.status_code == 201, created.text
    doc_id = created.json()["id"]
    assert await status(env, env.patient("pat-003"), f"/DocumentReference/{doc_id}") == 404
    not_author = await post(
        env,
        onco,
        document("pat-003", "34794-8", "Practitioner/pra-cardio-roux", labels=("INVISIBLE_PATIENT",)),
    )
    assert not_author.status_code == 403


async def test_consents_are_the_patients_own(env: PolicyEnv) -> None:
    pharma = env.headers("pharma")
    assert await status(env, pharma, "/Patient/pat-001") == 403
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
            ]
        },
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": "Patient/pat-001"},
        "dateTime": "2025-01-10T10:00:00+01:00",
        "policyRule": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]
        },
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "PRCP",
                            }
                        ]
                    },
                    "reference": {"reference": "Organization/org-pharmacie-halles"},
                }
            ],
        },
    }
    assert (await post(env, pharma, consent)).status_code == 403
    assert (await post(env, env.patient("pat-004"), consent)).status_code == 403
    created = await post(env, env.patient("pat-001"), consent)
    assert created.status_code == 201, created.text
    assert await status(env, pharma, "/Patient/pat-001") == 200
    assert await status(env, pharma, "/DocumentReference/doc-001-ordo") == 200
    assert await status(env, pharma, "/DocumentReference/doc-001-bio") == 404, "matrix: no lab results"
    revoked = {**created.json(), "status": "inactive"}
    response = await env.client.put(
        f"/Consent/{revoked['id']}", json=revoked, headers={**env.patient("pat-001"), **JSON}
    )
    assert response.status_code == 200
    assert await status(env, pharma, "/Patient/pat-001") == 403


async def test_closed_record_refuses_professionals_not_the_patient(env: PolicyEnv) -> None:
    await env.database.db["dmp_record"].insert_one({"_id": "pat-005", "status": "closed"})
    gp = env.headers("gp_nguyen")
    try:
        assert await status(env, gp, "/DocumentReference/doc-005-certif") == 403
        response = await env.client.get(
            "/DocumentReference", headers=gp, params={"patient": "pat-005", "status": "current"}
        )
        assert response.status_code == 403
        written = await post(env, gp, document("pat-005", "11488-4", "Practitioner/pra-gp-nguyen"))
        assert written.status_code == 403
        assert await status(env, env.patient("pat-005"), "/DocumentReference/doc-005-certif") == 200
    finally:
        await env.database.db["dmp_record"].delete_one({"_id": "pat-005"})
    assert await status(env, gp, "/DocumentReference/doc-005-certif") == 200


async def test_directory_is_written_by_directory_systems_only(env: PolicyEnv) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "819999999997"}],
        "name": [{"family": "NOUVEAU"}],
    }
    assert (await post(env, env.system(), practitioner)).status_code == 201
    assert (await post(env, env.headers("gp_martin"), practitioner)).status_code == 403
    assert (await post(env, env.patient("pat-001"), practitioner)).status_code == 403


async def test_patient_updates_their_own_identity_only(env: PolicyEnv) -> None:
    me = env.patient("pat-001")
    current = (await env.client.get("/Patient/pat-001", headers=me)).json()
    current["telecom"] = [{"system": "email", "value": "jeanne.dupuis@example.org"}]
    assert (await env.client.put("/Patient/pat-001", json=current, headers={**me, **JSON})).status_code == 200
    other = (await env.client.get("/Patient/pat-004", headers=env.patient("pat-004"))).json()
    response = await env.client.put("/Patient/pat-004", json=other, headers={**me, **JSON})
    assert response.status_code in (403, 404)


async def test_nobody_deletes_a_patient_or_writes_audit_events(env: PolicyEnv) -> None:
    me = env.patient("pat-001")
    assert (await env.client.delete("/Patient/pat-001", headers=me)).status_code == 403
    assert (await env.client.delete("/Patient/pat-001", headers=env.system())).status_code == 403
    event = {"resourceType": "AuditEvent"}
    assert (await post(env, me, event)).status_code == 405


async def test_masking_hides_every_version(env: PolicyEnv) -> None:
    """Masking the current version must not leave older versions readable by others."""
    me, cardio = env.patient("pat-002"), env.headers("cardio")
    versions_before = (await env.client.get("/DocumentReference/doc-002-irm", headers=me)).json()
    version = versions_before["meta"]["versionId"]
    assert await status(env, cardio, f"/DocumentReference/doc-002-irm/_history/{version}") == 200
    assert await relabel(env, me, "doc-002-irm", me, add=("MASQUE_PS",)) == 200
    try:
        assert await status(env, cardio, f"/DocumentReference/doc-002-irm/_history/{version}") == 404
        assert await status(env, cardio, "/DocumentReference/doc-002-irm/_history") == 404
        history = await env.client.get(
            "/DocumentReference/_history", headers=cardio, params={"_count": "1000"}
        )
        assert "doc-002-irm" not in {e["resource"]["id"] for e in history.json().get("entry", [])}
    finally:
        assert await relabel(env, me, "doc-002-irm", me, remove=("MASQUE_PS",)) == 200
