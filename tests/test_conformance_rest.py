"""Profiles over HTTP: writes are checked (422 with the element path), ``$validate`` stores
nothing, the definitions are served (read, search, ``$expand``) to authenticated callers only,
the CapabilityStatement names the profiles, and the server's own AuditEvents meet theirs."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dmp_fhir.profiles import default_conformance

from .policy_env import PolicyEnv, policy_env
from .test_policy_writes import document

pytestmark = pytest.mark.asyncio(loop_scope="session")

JSON = {"Content-Type": "application/fhir+json"}
SD = "https://dmp-fhir.example.org/fhir/StructureDefinition"
VS = "https://dmp-fhir.example.org/fhir/ValueSet"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


def kine_document() -> dict[str, Any]:
    return document("pat-002", "11506-3", "Practitioner/pra-kine-girard")


def expressions(outcome: dict[str, Any]) -> list[str]:
    return [e for issue in outcome["issue"] for e in issue.get("expression", [])]


# --------------------------------------------------------------------------- writes
async def test_a_write_breaking_the_profile_is_422_with_the_path(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    bad = kine_document()
    del bad["masterIdentifier"]
    bad["securityLabel"].append({"coding": [{"system": "urn:x-labels", "code": "TOP_SECRET"}]})
    response = await env.client.post("/DocumentReference", json=bad, headers={**kine, **JSON})
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert set(expressions(outcome)) == {
        "DocumentReference.masterIdentifier",
        "DocumentReference.securityLabel[1]",
    }
    assert all("dmp-documentreference" in i["diagnostics"] for i in outcome["issue"])
    assert (
        await env.client.post("/DocumentReference", json=kine_document(), headers={**kine, **JSON})
    ).status_code == 201


async def test_an_update_is_checked_too(env: PolicyEnv) -> None:
    gp = env.headers("gp_martin")
    # Dr Martin's own document: she may update it, so the profile speaks (a colleague's
    # document would be refused first, 403: permission before profile).
    current = (await env.client.get("/DocumentReference/doc-001-vsm", headers=gp)).json()
    broken = {**current, "status": "entered-in-error"}
    response = await env.client.put("/DocumentReference/doc-001-vsm", json=broken, headers={**gp, **JSON})
    assert response.status_code == 422
    assert expressions(response.json()) == ["DocumentReference.status"]


async def test_patients_practitioners_and_consents_are_checked(env: PolicyEnv) -> None:
    system = env.system()
    nameless = {
        "resourceType": "Practitioner",
        "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": "1"}],
    }
    response = await env.client.post("/Practitioner", json=nameless, headers={**system, **JSON})
    assert response.status_code == 422
    assert set(expressions(response.json())) == {"Practitioner.identifier", "Practitioner.name"}
    me = env.patient("pat-001")
    patient = (await env.client.get("/Patient/pat-001", headers=me)).json()
    del patient["birthDate"]
    response = await env.client.put("/Patient/pat-001", json=patient, headers={**me, **JSON})
    assert response.status_code == 422 and expressions(response.json()) == ["Patient.birthDate"]
    consent = (await env.client.get("/Consent/consent-001-permit-cardio", headers=me)).json()
    consent["provision"]["purpose"][0]["code"] = "HMARKT"
    response = await env.client.put(
        "/Consent/consent-001-permit-cardio", json=consent, headers={**me, **JSON}
    )
    assert response.status_code == 422 and expressions(response.json()) == ["Consent.provision.purpose[0]"]


async def test_unknown_extensions_are_kept(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    doc = kine_document()
    doc["extension"] = [
        {"url": "https://example.org/fhir/StructureDefinition/x-local-note", "valueString": "gardé"}
    ]
    created = await env.client.post("/DocumentReference", json=doc, headers={**kine, **JSON})
    assert created.status_code == 201, created.text
    read = await env.client.get(f"/DocumentReference/{created.json()['id']}", headers=kine)
    assert read.json()["extension"] == doc["extension"]


# --------------------------------------------------------------------------- $validate
async def test_validate_reports_without_storing(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    before = (
        await env.client.get(
            "/DocumentReference", headers=kine, params={"patient": "pat-002", "_total": "accurate"}
        )
    ).json()["total"]
    bad = kine_document()
    del bad["author"]
    response = await env.client.post("/DocumentReference/$validate", json=bad, headers={**kine, **JSON})
    assert response.status_code == 200
    assert expressions(response.json()) == ["DocumentReference.author"]
    good = await env.client.post(
        "/DocumentReference/$validate", json=kine_document(), headers={**kine, **JSON}
    )
    (issue,) = good.json()["issue"]
    assert issue["severity"] == "information" and issue["diagnostics"].startswith("valid")
    assert f"{SD}/dmp-documentreference" in issue["diagnostics"]
    after = (
        await env.client.get(
            "/DocumentReference", headers=kine, params={"patient": "pat-002", "_total": "accurate"}
        )
    ).json()["total"]
    assert after == before


async def test_validate_takes_parameters_and_a_profile(env: PolicyEnv) -> None:
    me = env.patient("pat-001")
    consent = (await env.client.get("/Consent/consent-001-permit-cardio", headers=me)).json()
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": consent},
            {"name": "profile", "valueUri": f"{SD}/dmp-consent-creation"},
        ],
    }
    response = await env.client.post("/Consent/$validate", json=params, headers={**me, **JSON})
    assert response.status_code == 200
    assert "Consent.category[0]" in expressions(response.json())  # not a creation consent
    base = copy.deepcopy(consent)
    base["dateTime"] = "le 3 mars"  # the R4 model check runs first
    response = await env.client.post("/Consent/$validate", json=base, headers={**me, **JSON})
    assert response.status_code == 200 and response.json()["issue"][0]["severity"] == "error"
    unknown = await env.client.post(
        "/Consent/$validate?profile=urn:x-unknown", json=consent, headers={**me, **JSON}
    )
    assert unknown.status_code == 400
    wrong_type = await env.client.post("/Patient/$validate", json=consent, headers={**me, **JSON})
    assert wrong_type.status_code == 400


async def test_validate_needs_a_token(env: PolicyEnv) -> None:
    response = await env.client.post("/DocumentReference/$validate", json=kine_document(), headers=JSON)
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"


# --------------------------------------------------------------------------- definitions
async def test_definitions_need_a_token_and_nothing_more(env: PolicyEnv) -> None:
    for path in (
        "/StructureDefinition",
        "/ValueSet/dmp-section",
        "/CodeSystem",
        f"/ValueSet/$expand?url={VS}/dmp-section",
    ):
        assert (await env.client.get(path)).status_code == 401, path
    # No patient data inside: an excluded actor (an insurer's physician) may read them too.
    insurer = env.headers(
        {"fhirUser": "Practitioner/pra-x", "profession": "10", "actor_category": "MEDECIN_CONSEIL_AMO"}
    )
    for headers in (env.patient("pat-003"), env.headers("kine"), env.system(), insurer):
        response = await env.client.get("/StructureDefinition/dmp-patient", headers=headers)
        assert response.status_code == 200 and response.json()["url"] == f"{SD}/dmp-patient"


async def test_definitions_read_and_search(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    everything = (await env.client.get("/StructureDefinition", headers=kine)).json()
    # 8 document-side profiles, dmp-folder, 7 for structured data, and the local statements of
    # the 5 FR Core profiles these derive from (profiles/fr-core/)
    assert everything["total"] == 21
    by_url = (
        await env.client.get("/ValueSet", headers=kine, params={"url": f"{VS}/dmp-security-label"})
    ).json()
    assert [e["resource"]["id"] for e in by_url["entry"]] == ["dmp-security-label"]
    by_name = (await env.client.get("/CodeSystem", headers=kine, params={"name": "DmpSection"})).json()
    assert [e["resource"]["id"] for e in by_name["entry"]] == ["dmp-section"]
    by_id = (
        await env.client.get("/StructureDefinition", headers=kine, params={"_id": "dmp-auditevent"})
    ).json()
    assert by_id["total"] == 1
    paged = (await env.client.get("/ValueSet", headers=kine, params={"_count": "5"})).json()
    assert len([e for e in paged["entry"] if e["search"]["mode"] == "match"]) == 5
    assert any(link["relation"] == "next" for link in paged["link"])
    unknown = (await env.client.get("/ValueSet", headers=kine, params={"publisher": "x"})).json()
    assert unknown["entry"][-1]["search"]["mode"] == "outcome"
    strict = await env.client.get(
        "/ValueSet", headers={**kine, "Prefer": "handling=strict"}, params={"publisher": "x"}
    )
    assert strict.status_code == 400
    assert (await env.client.get("/CodeSystem/nope", headers=kine)).status_code == 404


async def test_expand_by_url_and_instance_with_filter(env: PolicyEnv) -> None:
    me = env.patient("pat-001")
    by_url = await env.client.get("/ValueSet/$expand", headers=me, params={"url": f"{VS}/dmp-section"})
    assert by_url.status_code == 200
    expansion = by_url.json()["expansion"]
    assert expansion["total"] == 9
    assert {c["code"] for c in expansion["contains"]} >= {"SANTE_TRAVAIL", "ESPACE_PERSONNEL"}
    filtered = await env.client.get(
        "/ValueSet/dmp-security-label/$expand", headers=me, params={"filter": "masqu"}
    )
    assert [c["code"] for c in filtered.json()["expansion"]["contains"]] == ["MASQUE_PS"]
    nested = (await env.client.get("/ValueSet/dmp-document-category/$expand", headers=me)).json()
    assert nested["expansion"]["total"] == 12 + 9  # TRE_A03 classes + DMP sections
    assert (await env.client.get("/ValueSet/$expand", headers=me)).status_code == 400
    assert (await env.client.get("/ValueSet/$expand", headers=me, params={"url": "urn:x"})).status_code == 404
    assert (await env.client.get("/ValueSet/nope/$expand", headers=me)).status_code == 404
    bad_count = await env.client.get("/ValueSet/dmp-section/$expand", headers=me, params={"count": "-1"})
    assert bad_count.status_code == 400


# --------------------------------------------------------------------------- metadata, audit
async def test_capability_statement_names_the_profiles(env: PolicyEnv) -> None:
    cs = (await env.client.get("/metadata")).json()
    resources = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert resources["DocumentReference"]["profile"] == f"{SD}/dmp-documentreference"
    assert resources["Consent"]["supportedProfile"] == [
        f"{SD}/dmp-consent-access",
        f"{SD}/dmp-consent-creation",
    ]
    assert resources["Patient"]["operation"][0]["name"] == "validate"
    assert {"read", "search-type"} == {i["code"] for i in resources["ValueSet"]["interaction"]}
    assert resources["ValueSet"]["operation"][0]["name"] == "expand"
    assert "profile" not in resources["Binary"]


async def test_the_servers_audit_events_meet_their_profile(env: PolicyEnv) -> None:
    await env.client.get("/DocumentReference/doc-002-kine-bilan", headers=env.headers("kine"))
    await env.client.get("/Patient/pat-002")  # a refused login is recorded too
    trail = (
        await env.client.get("/AuditEvent", headers=env.patient("pat-002"), params={"patient": "pat-002"})
    ).json()
    events = [e["resource"] for e in trail["entry"] if e["search"]["mode"] == "match"]
    assert events
    conformance = default_conformance()
    for event in events:
        assert conformance.validate(event, conformance.profiles_for(event, "all")) == [], event


async def test_definitions_in_xml_and_in_the_openapi_description(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    xml = await env.client.get(
        "/StructureDefinition/dmp-patient", headers={**kine, "Accept": "application/fhir+xml"}
    )
    assert xml.status_code == 200 and '<StructureDefinition xmlns="http://hl7.org/fhir">' in xml.text
    expanded = await env.client.get("/ValueSet/dmp-section/$expand", headers=kine, params={"_format": "xml"})
    assert expanded.status_code == 200 and "SANTE_TRAVAIL" in expanded.text
    paths = (await env.client.get("/_openapi.json")).json()["paths"]
    assert {
        "/fhir/DocumentReference/$validate",
        "/fhir/ValueSet/$expand",
        "/fhir/ValueSet/{rid}/$expand",
    } <= set(paths)
