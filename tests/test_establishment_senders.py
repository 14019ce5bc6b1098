"""Establishment systems as senders (authentification indirecte): a hospital, a laboratory and a
pharmacy feed ITI-65 bundles whose author is a contained PDSm PractitionerRole; every DMP rule is
decided for that author, and each refusal says why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .policy_env import PolicyEnv, policy_env
from .sender_bundles import sender_bundle

pytestmark = pytest.mark.asyncio(loop_scope="session")

JSON = {"Content-Type": "application/fhir+json"}
CHU = {"client_id": "dpi-chu", "organization": "Organization/org-chu-bellerive", "finess": "990010019"}
LABO = {"client_id": "sil-biolam", "organization": "Organization/org-labo-biolam"}
PHARMACY = {"client_id": "lgo-halles", "organization": "Organization/org-pharmacie-halles"}
CARDIO = "819999990047"  # pra-cardio-roux, CHU
BIOLOGIST = "819999990088"  # pra-bio-chevalier, laboratory
PHARMACIST = "819999990138"  # pra-pharm-lemoine, pharmacy


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


async def access(env: PolicyEnv, pid: str, action: str, actor: str) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "action", "valueCode": action},
            {"name": "actor", "valueReference": {"reference": actor}},
        ],
    }
    r = await env.client.post(f"/Patient/{pid}/$dmp-access", json=body, headers=env.patient(pid))
    assert r.status_code == 200, r.text


async def documents_of(env: PolicyEnv, pid: str) -> int:
    return len(await env.database.db["DocumentReference"].find({"_p_patient": pid}).to_list(None))


async def send(env: PolicyEnv, system: dict[str, Any], bundle: dict[str, Any]) -> Any:
    return await env.client.post("", json=bundle, headers={**env.headers(system), **JSON})


def created(response: Any, rtype: str) -> str:
    for entry in response.json()["entry"]:
        location = entry["response"]["location"]
        if location.startswith(f"{rtype}/"):
            return str(location.split("/")[1])
    raise AssertionError(response.text)


async def test_hospital_feeds_a_discharge_summary_for_its_cardiologist(env: PolicyEnv) -> None:
    r = await send(env, CHU, sender_bundle("Patient/pat-002", CARDIO, "1990010019"))
    assert r.status_code == 200, r.text
    doc_id = created(r, "DocumentReference")
    # The author (cardiologist, authorised through the CHU) reads it; so does the patient.
    read = await env.client.get(f"/DocumentReference/{doc_id}", headers=env.headers("cardio"))
    assert read.status_code == 200
    # The AuditEvent names the system (with its establishment) and the declared professional.
    events = await env.client.get(
        "/AuditEvent", params={"patient": "pat-002", "_count": "200"}, headers=env.patient("pat-002")
    )
    transaction = [
        e["resource"]
        for e in events.json().get("entry", [])
        if any(s.get("code") == "transaction" for s in e["resource"].get("subtype", []))
        and any(
            f"DocumentReference/{doc_id}" in (x.get("what") or {}).get("reference", "")
            for x in e["resource"].get("entity", [])
        )
    ]
    assert transaction, events.text
    agents = transaction[0]["agent"]
    assert agents[0]["who"]["reference"] == "Practitioner/pra-cardio-roux"
    assert agents[1]["who"]["display"] == "dpi-chu"
    assert agents[1]["who"]["identifier"]["value"] == "990010019"


async def test_laboratory_feeds_a_lab_report_once_the_patient_authorised_it(env: PolicyEnv) -> None:
    bundle = sender_bundle("Patient/pat-009", BIOLOGIST, "1990020026", type_code="11502-2")
    refused = await send(env, LABO, bundle)
    assert refused.status_code == 403, refused.text
    assert "not authorised" in refused.text
    await access(env, "pat-009", "grant", "Organization/org-labo-biolam")
    bundle = sender_bundle("Patient/pat-009", BIOLOGIST, "1990020026", type_code="11502-2")
    r = await send(env, LABO, bundle)
    assert r.status_code == 200, r.text


async def test_pharmacy_feeds_a_dispensation(env: PolicyEnv) -> None:
    bundle = sender_bundle("Patient/pat-004", PHARMACIST, "1990040040", type_code="60593-1")
    r = await send(env, PHARMACY, bundle)
    assert r.status_code == 200, r.text


async def test_a_system_token_without_organisation_is_refused(env: PolicyEnv) -> None:
    before = await documents_of(env, "pat-002")
    r = await send(env, {"client_id": "dpi-chu"}, sender_bundle("Patient/pat-002", CARDIO, "1990010019"))
    assert r.status_code == 403
    assert "organisation" in r.text and "names none" in r.text
    assert await documents_of(env, "pat-002") == before


async def test_an_author_from_another_organisation_is_refused(env: PolicyEnv) -> None:
    before = await documents_of(env, "pat-002")
    r = await send(env, CHU, sender_bundle("Patient/pat-002", BIOLOGIST, "1990020026", type_code="11502-2"))
    assert r.status_code == 403
    assert "names no professional of Organization/org-chu-bellerive" in r.text
    assert await documents_of(env, "pat-002") == before


async def test_an_author_whose_profession_may_not_write_the_type_is_refused(env: PolicyEnv) -> None:
    before = await documents_of(env, "pat-004")
    r = await send(env, PHARMACY, sender_bundle("Patient/pat-004", PHARMACIST, "1990040040"))
    assert r.status_code == 403
    assert "matrix" in r.text
    assert await documents_of(env, "pat-004") == before


async def test_a_patient_who_blocked_the_establishment_gets_nothing_from_it(env: PolicyEnv) -> None:
    await access(env, "pat-005", "grant", "Organization/org-labo-biolam")
    await access(env, "pat-005", "block", "Organization/org-labo-biolam")
    before = await documents_of(env, "pat-005")
    bundle = sender_bundle("Patient/pat-005", BIOLOGIST, "1990020026", type_code="11502-2")
    r = await send(env, LABO, bundle)
    assert r.status_code == 403
    assert "blocked" in r.text
    assert await documents_of(env, "pat-005") == before


async def test_a_plain_document_create_by_a_system_is_decided_for_its_author(env: PolicyEnv) -> None:
    bundle = sender_bundle("Patient/pat-002", CARDIO, "1990010019")
    document = bundle["entry"][1]["resource"]
    data = bundle["entry"][2]["resource"]["data"]
    document["content"][0]["attachment"].pop("url")
    document["content"][0]["attachment"]["data"] = data
    r = await env.client.post("/DocumentReference", json=document, headers={**env.headers(CHU), **JSON})
    assert r.status_code == 201, r.text


async def test_reads_name_the_professional_on_whose_behalf(env: PolicyEnv) -> None:
    r = await send(env, CHU, sender_bundle("Patient/pat-002", CARDIO, "1990010019"))
    doc_id = created(r, "DocumentReference")
    # Without a professional, an establishment system reads the directory only.
    assert (await env.client.get(f"/DocumentReference/{doc_id}", headers=env.headers(CHU))).status_code == 403
    acting = env.headers({**CHU, "on_behalf_of": CARDIO})
    assert (await env.client.get(f"/DocumentReference/{doc_id}", headers=acting)).status_code == 200
    # A professional of another organisation is not the CHU's to name.
    stranger = env.headers({**CHU, "on_behalf_of": BIOLOGIST})
    r = await env.client.get(f"/DocumentReference/{doc_id}", headers=stranger)
    assert r.status_code == 403 and "not a professional of" in r.text
    # The claim needs the establishment.
    r = await env.client.get("/Organization", headers=env.headers({"client_id": "x", "on_behalf_of": CARDIO}))
    assert r.status_code == 401


async def test_summary_keeps_the_contained_author_it_points_to(env: PolicyEnv) -> None:
    r = await send(env, CHU, sender_bundle("Patient/pat-002", CARDIO, "1990010019"))
    doc_id = created(r, "DocumentReference")
    found = await env.client.get(
        "/DocumentReference",
        params={"_id": doc_id, "_summary": "true"},
        headers=env.patient("pat-002"),
    )
    resource = found.json()["entry"][0]["resource"]
    assert resource["author"] == [{"reference": "#author"}]
    assert {c["id"] for c in resource["contained"]} == {"author", "author-person", "author-org"}
    elements = await env.client.get(
        "/DocumentReference",
        params={"_id": doc_id, "_elements": "status"},
        headers=env.patient("pat-002"),
    )
    assert "contained" not in elements.json()["entry"][0]["resource"]


async def test_a_fhir_document_is_sent_as_a_binary_of_its_bytes(env: PolicyEnv) -> None:
    import base64
    import hashlib
    import json

    fhir_document = {"resourceType": "Bundle", "type": "document", "entry": []}
    as_entry = sender_bundle("Patient/pat-002", CARDIO, "1990010019")
    as_entry["entry"][2] = {
        "fullUrl": as_entry["entry"][2]["fullUrl"],
        "resource": fhir_document,
        "request": {"method": "POST", "url": "Bundle"},
    }
    r = await send(env, CHU, as_entry)
    assert r.status_code == 422 and "application/fhir+json" in r.text, r.text
    # The bytes as a Binary: stored, retrieved unchanged by ITI-68.
    data = json.dumps(fhir_document).encode()
    bundle = sender_bundle("Patient/pat-002", CARDIO, "1990010019", content=data)
    bundle["entry"][2]["resource"]["contentType"] = "application/fhir+json"
    bundle["entry"][1]["resource"]["content"][0]["attachment"]["contentType"] = "application/fhir+json"
    r = await send(env, CHU, bundle)
    assert r.status_code == 200, r.text
    binary_id = created(r, "Binary")
    acting = env.headers({**CHU, "on_behalf_of": CARDIO})
    got = await env.client.get(f"/Binary/{binary_id}", headers={**acting, "Accept": "application/fhir+json"})
    assert got.status_code == 200
    stored = got.json()
    assert base64.b64decode(stored["data"]) == data
    assert hashlib.sha1(data).digest()
