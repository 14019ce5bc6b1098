"""Structured data written (issue 18): per-type CRUD, history, XML; laboratory transaction
feeds all or nothing; pharmacy dispensations one by one or in a batch, idempotent on their
identifier; the write rules (author, matrix, consents, the patient's personal space and mask);
destruction. Its own database: these tests change the samples."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .lifecycle_helpers import access, operation, raw_hits
from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")

JSON = {"Content-Type": "application/fhir+json"}
XML = {"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"}
UCUM = "http://unitsofmeasure.org"
LAB_IDS = "urn:oid:1.2.250.1.999.2002.9"
PHARMACY_IDS = "urn:oid:1.2.250.1.999.4004.9"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
BIOLOGIST = {
    "fhirUser": "Practitioner/pra-bio-chevalier",
    "profession": "10",
    "specialty": "SM03",
    "organization": "Organization/org-labo-biolam",
}
GP_AUTHOR = {"reference": "PractitionerRole/prr-gp-martin"}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


def cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


#: One resource of each type for pat-004, written by the médecin traitant (who writes every
#: section but occupational health), with a search that finds it and one that does not.
EXAMPLES: dict[str, tuple[dict[str, Any], dict[str, str], dict[str, str]]] = {
    "Observation": (
        {
            "status": "final",
            "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")],
            "code": cc("http://loinc.org", "8867-4"),
            "subject": {"reference": "Patient/pat-004"},
            "effectiveDateTime": "2025-01-07T09:00:00+01:00",
            "performer": [GP_AUTHOR],
            "valueQuantity": {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"},
        },
        {"code": "http://loinc.org|8867-4", "value-quantity": "72|http://unitsofmeasure.org|/min"},
        {"value-quantity": "ge73"},
    ),
    "DiagnosticReport": (
        {
            "identifier": [{"system": LAB_IDS, "value": "crud-dr"}],
            "status": "final",
            "category": [cc("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")],
            "code": cc("http://loinc.org", "11502-2"),
            "subject": {"reference": "Patient/pat-004"},
            "effectiveDateTime": "2025-01-07",
            "performer": [GP_AUTHOR],
            "result": [{"reference": "Observation/obs-004-hb"}],
        },
        {"result": "Observation/obs-004-hb", "date": "2025-01-07", "category": "LAB"},
        {"status": "preliminary"},
    ),
    "MedicationDispense": (
        {
            "identifier": [{"system": PHARMACY_IDS, "value": "crud-disp"}],
            "status": "completed",
            "type": cc(ACT_CODE, "FFC"),  # complétude (FR Core: 1..1)
            "medicationCodeableConcept": {"text": "AMOXICILLINE 1 g"},
            "quantity": {"value": 1, "unit": "boîte", "system": UCUM, "code": "{box}"},  # FR Core: 1..1
            "subject": {"reference": "Patient/pat-004"},
            "performer": [{"actor": GP_AUTHOR}],
            "whenHandedOver": "2025-01-08T10:00:00+01:00",
        },
        {"whenhandedover": "2025-01-08", "performer": "PractitionerRole/prr-gp-martin"},
        {"whenhandedover": "lt2000"},
    ),
    "MedicationStatement": (
        {
            "status": "active",
            "medicationCodeableConcept": cc("http://www.whocc.no/atc", "C10AA05"),
            "subject": {"reference": "Patient/pat-004"},
            "informationSource": GP_AUTHOR,
            "effectivePeriod": {"start": "2025-01-02"},  # FR Core: effective[x] only Period
        },
        {"code": "C10AA05", "effective": "ge2025"},  # an open period: from 2025 on
        {"status": "stopped"},
    ),
    "Immunization": (
        {
            "status": "completed",
            "vaccineCode": cc("http://www.whocc.no/atc", "J07AL02"),
            "patient": {"reference": "Patient/pat-004"},
            "occurrenceDateTime": "2025-01-09",
            "lotNumber": "PNEU2501",
            "performer": [{"actor": GP_AUTHOR}],
        },
        {"vaccine-code": "J07AL02", "lot-number": "pneu2501", "date": "2025-01"},
        {"status": "not-done"},
    ),
    "AllergyIntolerance": (
        {
            "clinicalStatus": cc(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"
            ),
            "code": cc("http://snomed.info/sct", "294505008"),
            "patient": {"reference": "Patient/pat-004"},
            "recorder": GP_AUTHOR,
            "recordedDate": "2025-01-10",
        },
        {"code": "294505008", "clinical-status": "active", "date": "2025-01-10"},
        {"criticality": "high"},
    ),
    "Condition": (
        {
            "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
            "code": cc("http://hl7.org/fhir/sid/icd-10", "J45"),
            "subject": {"reference": "Patient/pat-004"},
            "recorder": GP_AUTHOR,
            "onsetDateTime": "2024-12-01",
        },
        {"code": "J45", "onset-date": "2024-12"},
        {"clinical-status": "resolved"},
    ),
}


@pytest.mark.parametrize("rtype", sorted(EXAMPLES))
async def test_crud_search_history_and_xml_per_type(env: PolicyEnv, rtype: str) -> None:
    gp = env.headers("gp_martin")
    resource, finds, misses = copy.deepcopy(EXAMPLES[rtype])
    created = await env.client.post(
        f"/{rtype}", headers={**gp, **JSON}, json={"resourceType": rtype, **resource}
    )
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    assert created.headers["etag"] == 'W/"1"'

    read = await env.client.get(f"/{rtype}/{rid}", headers=gp)
    assert read.status_code == 200 and read.json()["meta"]["versionId"] == "1"
    for params in ({**finds, "patient": "pat-004", "_id": rid}, {"_id": rid, "_lastUpdated": "ge2020"}):
        found = await env.client.get(f"/{rtype}", headers=gp, params=params)
        assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [rid], (params, found.text)
    missed = await env.client.get(
        f"/{rtype}", headers=gp, params={**misses, "patient": "pat-004", "_id": rid}
    )
    assert "entry" not in missed.json()

    # XML: read as XML, send that XML back as the update, get the same resource in JSON
    xml = await env.client.get(f"/{rtype}/{rid}", headers={**gp, "Accept": "application/fhir+xml"})
    assert xml.status_code == 200 and xml.text.startswith("<"), xml.text
    updated = await env.client.put(f"/{rtype}/{rid}", headers={**gp, **XML}, content=xml.text)
    assert updated.status_code == 200, updated.text
    again = (await env.client.get(f"/{rtype}/{rid}", headers=gp)).json()
    assert again["meta"]["versionId"] == "2"
    strip = {"meta", "id"}
    assert {k: v for k, v in again.items() if k not in strip} == {
        k: v for k, v in read.json().items() if k not in strip
    }

    assert (await env.client.get(f"/{rtype}/{rid}/_history/1", headers=gp)).status_code == 200
    assert (await env.client.delete(f"/{rtype}/{rid}", headers=gp)).status_code in (200, 204)
    assert (await env.client.get(f"/{rtype}/{rid}", headers=gp)).status_code == 410
    history = (await env.client.get(f"/{rtype}/{rid}/_history", headers=gp)).json()
    assert history["total"] == 3 if "total" in history else len(history["entry"]) == 3
    assert len(history["entry"]) == 3

    # the patient reads it, and its history; an unauthorised professional is refused
    assert (
        await env.client.get(f"/{rtype}/{rid}/_history/2", headers=env.patient("pat-004"))
    ).status_code == 200
    assert (
        await env.client.get(f"/{rtype}/{rid}/_history/2", headers=env.headers("kine"))
    ).status_code == 403


async def test_validate_covers_the_structured_profiles(env: PolicyEnv) -> None:
    gp = env.headers("gp_martin")
    resource = {"resourceType": "Observation", **copy.deepcopy(EXAMPLES["Observation"][0])}
    resource["status"] = "done"  # not an observation-status
    del resource["performer"]
    response = await env.client.post("/Observation/$validate", headers={**gp, **JSON}, json=resource)
    assert response.status_code == 200
    issues = response.json()["issue"]
    expressions = {x for i in issues for x in i.get("expression", [])}
    assert {"Observation.status", "Observation.performer"} <= expressions, issues
    # Permission before profile (issue 16): without a performer the GP is not its author (403);
    # with one, the profile's refusal of the status is what remains (422).
    unauthored = await env.client.post("/Observation", headers={**gp, **JSON}, json=resource)
    assert unauthored.status_code == 403
    badly_coded = {
        "resourceType": "Observation",
        **copy.deepcopy(EXAMPLES["Observation"][0]),
        "status": "done",
    }
    refused = await env.client.post("/Observation", headers={**gp, **JSON}, json=badly_coded)
    assert refused.status_code == 422, refused.text
    capability = (await env.client.get("/metadata")).json()
    profiles = {r["type"]: r.get("profile") for r in capability["rest"][0]["resource"]}
    assert (
        profiles["Immunization"] == "https://dmp-fhir.example.org/fhir/StructureDefinition/dmp-immunization"
    )
    assert {"Observation", "DiagnosticReport", "MedicationDispense", "Condition"} <= set(profiles)


async def test_value_quantity_search_converts_the_documented_ucum_units(env: PolicyEnv) -> None:
    """Glucose reported in g/L, mg/dL and mmol/L by different laboratories: a search in one unit
    of a dimension finds the values stored in the others (search/ucum.py)."""
    gp = env.headers("gp_martin")
    made: dict[str, str] = {}
    for name, value, code in (("gL", 0.95, "g/L"), ("mgdL", 110, "mg/dL"), ("mmolL", 5.3, "mmol/L")):
        resource = {
            "resourceType": "Observation",
            **copy.deepcopy(EXAMPLES["Observation"][0]),
            "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")],
            "code": cc("http://loinc.org", "2339-0"),
            "valueQuantity": {"value": value, "unit": code, "system": UCUM, "code": code},
        }
        created = await env.client.post("/Observation", headers={**gp, **JSON}, json=resource)
        assert created.status_code == 201, created.text
        made[name] = created.json()["id"]

    async def found(value: str) -> set[str]:
        params = {"patient": "pat-004", "code": "http://loinc.org|2339-0", "value-quantity": value}
        answer = await env.client.get("/Observation", headers=gp, params=params)
        assert answer.status_code == 200, answer.text
        return {e["resource"]["id"] for e in answer.json().get("entry", [])}

    names = {v: k for k, v in made.items()}
    assert {names[i] for i in await found(f"ge1|{UCUM}|g/L")} == {"mgdL"}  # 110 mg/dL = 1.10 g/L
    assert {names[i] for i in await found(f"95|{UCUM}|mg/dL")} == {"gL"}  # 0.95 g/L = 95 mg/dL
    assert {names[i] for i in await found(f"lt100|{UCUM}|mg/dL")} == {"gL"}
    assert {names[i] for i in await found(f"5300|{UCUM}|umol/L")} == {"mmolL"}
    assert {names[i] for i in await found(f"gt5|{UCUM}|mmol/L")} == {"mmolL"}
    # another dimension, or a unit searched without its system, is matched as written
    assert await found(f"gt0|{UCUM}|mmol/L") == {made["mmolL"]}
    assert {names[i] for i in await found("110||mg/dL")} == {"mgdL"}
    assert await found("0.95||mg/dL") == set()


async def test_loading_an_unchanged_resource_again_reindexes_it(env: PolicyEnv) -> None:
    """A database written before the unit conversion existed: ``dmp-fhir load`` of the same
    samples adds no version but gives the current copies the search fields they lack."""
    db = env.database.db
    before = await db["Observation"].find_one({"_id": "obs-004-k"})
    assert before is not None and before["_s_value_quantity_canon_unit"] == ["mmol/L"]
    await db["Observation"].update_one(
        {"_id": "obs-004-k"}, {"$unset": {"_s_value_quantity_canon": "", "_s_value_quantity_canon_unit": ""}}
    )
    repo = await env.internal_repository()
    again = await repo.update("Observation", "obs-004-k", before["resource"], skip_unchanged=True)
    assert not again.version.changed and again.version.version == before["_v"]
    after = await db["Observation"].find_one({"_id": "obs-004-k"})
    assert after == before


FR_CORE_CONDITION = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-condition"
DMP_CONDITION = "https://dmp-fhir.example.org/fhir/StructureDefinition/dmp-condition"


async def test_fr_core_constraints_apply_on_write_and_in_validate(env: PolicyEnv) -> None:
    """dmp-condition derives from FR Core's Condition profile: FR Core's clinicalStatus 1..1, which
    the DMP profile does not restate, refuses the write (422 naming FR Core) and $validate reports
    it; declaring the FR Core profile alone escapes nothing; the CapabilityStatement lists ours."""
    gp = {**env.headers("gp_martin"), **JSON}
    resource = {"resourceType": "Condition", **copy.deepcopy(EXAMPLES["Condition"][0])}
    resource["identifier"] = [{"system": LAB_IDS, "value": "fr-core-1"}]
    del resource["clinicalStatus"]
    refused = await env.client.post("/Condition", headers=gp, json=resource)
    assert refused.status_code == 422, refused.text
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(
        FR_CORE_CONDITION in i["diagnostics"] and i.get("expression") == ["Condition.clinicalStatus"]
        for i in outcome["issue"]
    ), outcome
    assert await count_identifier(env, "Condition", f"{LAB_IDS}|fr-core-1") == 0
    validated = await env.client.post("/Condition/$validate", headers=gp, json=resource)
    assert validated.status_code == 200
    assert any(FR_CORE_CONDITION in i["diagnostics"] for i in validated.json()["issue"])
    # meta.profile naming FR Core: still the DMP profile and its parent (recorder is the DMP's rule)
    declared = {**resource, "meta": {"profile": [FR_CORE_CONDITION]}}
    del declared["recorder"]
    both = await env.client.post("/Condition/$validate", headers=gp, json=declared)
    diagnostics = " ".join(i["diagnostics"] for i in both.json()["issue"])
    assert FR_CORE_CONDITION in diagnostics and f"{DMP_CONDITION}, rule Condition.recorder" in diagnostics
    only_fr_core = await env.client.post(
        "/Condition/$validate", headers=gp, json=resource, params={"profile": FR_CORE_CONDITION}
    )
    assert only_fr_core.status_code == 400  # a partial statement of FR Core is no profile to claim
    valid = await env.client.post(
        "/Condition/$validate", headers=gp, json={"resourceType": "Condition", **EXAMPLES["Condition"][0]}
    )
    message = valid.json()["issue"][0]["diagnostics"]
    assert f"{DMP_CONDITION} based on {FR_CORE_CONDITION}" in message, message
    capability = (await env.client.get("/metadata")).json()
    entry = next(r for r in capability["rest"][0]["resource"] if r["type"] == "Condition")
    assert entry["profile"] == DMP_CONDITION and entry["supportedProfile"] == [DMP_CONDITION]
    definition = await env.client.get("/StructureDefinition/fr-core-condition", headers=gp)
    assert definition.status_code == 200 and definition.json()["url"] == FR_CORE_CONDITION


# -- pharmacy feeds ---------------------------------------------------------------------------


def dispense(n: int, *, pid: str = "pat-004", performer: str = "prr-pharm-lemoine") -> dict[str, Any]:
    return {
        "resourceType": "MedicationDispense",
        "identifier": [{"system": PHARMACY_IDS, "value": f"feed-{pid}-{n}"}],
        "status": "completed",
        "type": cc(ACT_CODE, "FFC"),
        "medicationCodeableConcept": {
            "coding": [{"system": "urn:oid:1.2.250.1.213.2.3.2", "code": f"340099900{n:04d}"}],
            "text": f"Spécialité {n}",
        },
        "subject": {"reference": f"Patient/{pid}"},
        "performer": [{"actor": {"reference": f"PractitionerRole/{performer}"}}],
        "quantity": {"value": 1, "unit": "boîte", "system": UCUM, "code": "{box}"},
        "whenHandedOver": f"2025-02-{n:02d}T10:00:00+01:00",
    }


async def count_identifier(env: PolicyEnv, rtype: str, token: str) -> int:
    return await env.database.db[rtype].count_documents({"_s_identifier": token, "_deleted": False})


async def test_a_pharmacy_posts_dispensations_idempotently(env: PolicyEnv) -> None:
    pharma = env.headers("pharma")
    condition = {"If-None-Exist": f"identifier={PHARMACY_IDS}|feed-pat-004-1"}
    first = await env.client.post(
        "/MedicationDispense", headers={**pharma, **JSON, **condition}, json=dispense(1)
    )
    assert first.status_code == 201, first.text
    again = await env.client.post(
        "/MedicationDispense", headers={**pharma, **JSON, **condition}, json=dispense(1)
    )
    assert again.status_code == 200
    assert again.headers["location"] == first.headers["location"]
    assert await count_identifier(env, "MedicationDispense", f"{PHARMACY_IDS}|feed-pat-004-1") == 1


async def test_a_pharmacy_batch_is_idempotent_and_judged_entry_by_entry(env: PolicyEnv) -> None:
    pharma = env.headers("pharma")

    def batch() -> dict[str, Any]:
        entries = [
            {
                "resource": dispense(n, pid=pid),
                "request": {
                    "method": "POST",
                    "url": "MedicationDispense",
                    "ifNoneExist": f"identifier={PHARMACY_IDS}|feed-{pid}-{n}",
                },
            }
            for n, pid in ((2, "pat-004"), (3, "pat-004"), (4, "pat-004"), (5, "pat-002"))
        ]
        return {"resourceType": "Bundle", "type": "batch", "entry": entries}

    first = await env.client.post("/", headers={**pharma, **JSON}, json=batch())
    assert first.status_code == 200, first.text
    statuses = [e["response"]["status"] for e in first.json()["entry"]]
    assert statuses[:3] == ["201 Created"] * 3
    assert statuses[3].startswith("403")  # the pharmacy is not authorised by pat-002
    second = await env.client.post("/", headers={**pharma, **JSON}, json=batch())
    assert [e["response"]["status"] for e in second.json()["entry"]][:3] == ["200 OK"] * 3
    for n in (2, 3, 4):
        assert await count_identifier(env, "MedicationDispense", f"{PHARMACY_IDS}|feed-pat-004-{n}") == 1
    assert await count_identifier(env, "MedicationDispense", f"{PHARMACY_IDS}|feed-pat-002-5") == 0


async def test_write_rules_for_professionals(env: PolicyEnv) -> None:
    pharma = env.headers("pharma")
    # not its own dispensation: the author is another pharmacist
    other = dispense(6, performer="prr-gp-martin")
    assert (
        await env.client.post("/MedicationDispense", headers={**pharma, **JSON}, json=other)
    ).status_code == 403
    # a laboratory result is outside what a pharmacist writes (matrix)
    lab = {
        "resourceType": "Observation",
        "status": "final",
        "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")],
        "code": cc("http://loinc.org", "2345-7"),
        "subject": {"reference": "Patient/pat-004"},
        "performer": [{"reference": "PractitionerRole/prr-pharm-lemoine"}],
        "valueQuantity": {"value": 1.1, "unit": "g/L", "system": UCUM, "code": "g/L"},
    }
    refused = await env.client.post("/Observation", headers={**pharma, **JSON}, json=lab)
    assert refused.status_code == 403 and "matrix" in refused.text
    # a vaccination is (87273-9, vaccination note)
    vaccination = {"resourceType": "Immunization", **copy.deepcopy(EXAMPLES["Immunization"][0])}
    vaccination["performer"] = [{"actor": {"reference": "PractitionerRole/prr-pharm-lemoine"}}]
    assert (
        await env.client.post("/Immunization", headers={**pharma, **JSON}, json=vaccination)
    ).status_code == 201
    # only the author changes a resource: the GP may not rewrite the pharmacist's dispensation
    disp = (await env.client.get("/MedicationDispense/disp-004-202401-metformine", headers=pharma)).json()
    disp["note"] = [{"text": "changed"}]
    gp_put = await env.client.put(
        "/MedicationDispense/disp-004-202401-metformine",
        headers={**env.headers("gp_martin"), **JSON},
        json=disp,
    )
    assert gp_put.status_code == 403
    own_put = await env.client.put(
        "/MedicationDispense/disp-004-202401-metformine", headers={**pharma, **JSON}, json=disp
    )
    assert own_put.status_code == 200
    # the physiotherapist authorised by pat-002 writes no structured data there
    condition = {"resourceType": "Condition", **copy.deepcopy(EXAMPLES["Condition"][0])}
    condition["subject"] = {"reference": "Patient/pat-002"}
    condition["recorder"] = {"reference": "PractitionerRole/prr-kine-girard"}
    assert (
        await env.client.post("/Condition", headers={**env.headers("kine"), **JSON}, json=condition)
    ).status_code == 403


async def test_the_patient_declares_treatments_in_the_personal_space_and_masks_results(
    env: PolicyEnv,
) -> None:
    me = env.patient("pat-004")
    statement = {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": {"text": "Magnésium"},
        "subject": {"reference": "Patient/pat-004"},
        "informationSource": {"reference": "Patient/pat-004"},
    }
    assert (
        await env.client.post("/MedicationStatement", headers={**me, **JSON}, json=statement)
    ).status_code == 403
    statement["meta"] = {
        "tag": [
            {"system": "https://dmp-fhir.example.org/fhir/CodeSystem/dmp-section", "code": "ESPACE_PERSONNEL"}
        ]
    }
    created = await env.client.post("/MedicationStatement", headers={**me, **JSON}, json=statement)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    assert (
        await env.client.get(f"/MedicationStatement/{rid}", headers=env.headers("gp_martin"))
    ).status_code == 200
    assert (
        await env.client.get(f"/MedicationStatement/{rid}", headers=env.headers("pharma"))
    ).status_code == 404

    # masking a result: a new version; emergency physicians no longer see it, the GP still does
    hb = (await env.client.get("/Observation/obs-004-hb", headers=me)).json()
    changed = copy.deepcopy(hb)
    changed["valueQuantity"]["value"] = 15.0
    assert (
        await env.client.put("/Observation/obs-004-hb", headers={**me, **JSON}, json=changed)
    ).status_code == 403
    hb.setdefault("meta", {})["security"] = [
        {
            "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument",
            "code": "MASQUE_PS",
        }
    ]
    masked = await env.client.put("/Observation/obs-004-hb", headers={**me, **JSON}, json=hb)
    assert masked.status_code == 200, masked.text
    glass = env.headers("urgences", purpose_of_use="ETREAT")
    assert (await env.client.get("/Observation/obs-004-hb", headers=glass)).status_code == 404
    report = await env.client.get("/DiagnosticReport/dr-004-nfs-iono", headers=glass)
    assert report.status_code == 200  # the report stays visible, its masked result does not
    included = await env.client.get(
        "/DiagnosticReport",
        headers=glass,
        params={"patient": "pat-004", "_include": "DiagnosticReport:result", "_count": "50"},
    )
    ids = {e["resource"]["id"] for e in included.json()["entry"] if e["search"]["mode"] == "include"}
    assert len(ids) == 11 and "obs-004-hb" not in ids
    assert (
        await env.client.get("/Observation/obs-004-hb", headers=env.headers("gp_martin"))
    ).status_code == 200
    assert (await env.client.get("/Observation/obs-004-hb", headers=env.headers("pharma"))).status_code == 404


# -- laboratory feeds -------------------------------------------------------------------------


def master(tag: str) -> str:
    """A document's masterIdentifier no sample comes near."""
    return f"urn:oid:2.25.99990{int(tag, 16)}77770"


def lab_bundle(pid: str, tag: str, results: int = 10, *, with_document: bool = True) -> dict[str, Any]:
    """A laboratory's transaction: a DiagnosticReport, its results and, as an IHE MHD
    Provide Document Bundle, the CR de biologie (submission set + DocumentReference + Binary)."""
    performer = [
        {"reference": "PractitionerRole/prr-bio-chevalier"},
        {"reference": "Organization/org-labo-biolam"},
    ]
    observations = [
        {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{tag}{n:06d}",
            "resource": {
                "resourceType": "Observation",
                "identifier": [{"system": LAB_IDS, "value": f"{tag}-{n}"}],
                "status": "final",
                "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")],
                "code": cc("http://loinc.org", "2345-7"),
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": "2025-03-03T08:00:00+01:00",
                "performer": performer,
                "valueQuantity": {"value": 0.8 + n / 100, "unit": "g/L", "system": UCUM, "code": "g/L"},
                "referenceRange": [
                    {"low": {"value": 0.7, "unit": "g/L"}, "high": {"value": 1.1, "unit": "g/L"}}
                ],
            },
            "request": {
                "method": "POST",
                "url": "Observation",
                "ifNoneExist": f"identifier={LAB_IDS}|{tag}-{n}",
            },
        }
        for n in range(1, results + 1)
    ]
    report_url = f"urn:uuid:00000000-0000-4000-9000-{tag}000000"
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": report_url,
            "resource": {
                "resourceType": "DiagnosticReport",
                "identifier": [{"system": LAB_IDS, "value": f"{tag}-report"}],
                "status": "final",
                "category": [cc("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")],
                "code": cc("http://loinc.org", "11502-2"),
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": "2025-03-03T08:00:00+01:00",
                "performer": performer,
                "result": [{"reference": o["fullUrl"]} for o in observations],
            },
            "request": {"method": "POST", "url": "DiagnosticReport"},
        },
        *observations,
    ]
    if with_document:
        data = f"CR de biologie {tag}".encode()
        doc_url, bin_url = (
            f"urn:uuid:00000000-0000-4000-a000-{tag}000000",
            f"urn:uuid:00000000-0000-4000-b000-{tag}000000",
        )
        entries += [
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-c000-" + tag + "000000",
                "resource": {
                    "resourceType": "List",
                    "status": "current",
                    "mode": "working",
                    "code": cc("https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes", "submissionset"),
                    "subject": {"reference": f"Patient/{pid}"},
                    "date": "2025-03-03T18:00:00+01:00",
                    "source": {"reference": "PractitionerRole/prr-bio-chevalier"},
                    "entry": [{"item": {"reference": doc_url}}],
                },
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": doc_url,
                "resource": {
                    "resourceType": "DocumentReference",
                    "masterIdentifier": {
                        "system": "urn:ietf:rfc:3986",
                        "value": master(tag),
                    },
                    "status": "current",
                    "type": cc("http://loinc.org", "11502-2"),
                    "category": [
                        cc(
                            "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument",
                            "10",
                        )
                    ],
                    "subject": {"reference": f"Patient/{pid}"},
                    "date": "2025-03-03T18:00:00+01:00",
                    "author": [{"reference": "PractitionerRole/prr-bio-chevalier"}],
                    "securityLabel": [cc("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "N")],
                    "content": [
                        {
                            "attachment": {
                                "contentType": "text/plain",
                                "url": bin_url,
                                "size": len(data),
                                "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
                                "title": "CR de biologie",
                            },
                            "format": {
                                "system": "https://mos.esante.gouv.fr/NOS/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode",
                                "code": "urn:ihe:lab:xd-lab:2008",
                            },
                        }
                    ],
                    "context": {
                        "period": {"start": "2025-03-03T08:00:00+01:00"},
                        "related": [{"reference": report_url}],
                    },
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": bin_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "text/plain",
                    "securityContext": {"reference": doc_url},
                    "data": base64.b64encode(data).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def stored(env: PolicyEnv, tag: str) -> dict[str, Any]:
    db = env.database.db
    return {
        "Observation": await db["Observation_history"].count_documents(
            {"_s_identifier": {"$regex": f"^{LAB_IDS}\\|{tag}-"}}
        ),
        "DiagnosticReport": await db["DiagnosticReport_history"].count_documents(
            {"_s_identifier": f"{LAB_IDS}|{tag}-report"}
        ),
        "DocumentReference": sorted(
            set(await raw_hits(env, master(tag))) - {"AuditEvent", "AuditEvent_history"}
        ),
    }


async def test_a_laboratory_transaction_stores_the_report_its_results_and_its_document(
    env: PolicyEnv,
) -> None:
    grant = await operation(
        env,
        env.patient("pat-001"),
        "/Patient/pat-001/$dmp-access",
        access("grant", "Organization/org-labo-biolam"),
    )
    assert grant.status_code == 200, grant.text
    lab = env.headers(BIOLOGIST)
    bundle = lab_bundle("pat-001", "a1")
    answer = await env.client.post("/", headers={**lab, **JSON}, json=bundle)
    assert answer.status_code == 200, answer.text
    assert all(e["response"]["status"].startswith("201") for e in answer.json()["entry"])
    gp = env.headers("gp_martin")
    report = await env.client.get(
        "/DiagnosticReport",
        headers=gp,
        params={
            "identifier": f"{LAB_IDS}|a1-report",
            "_include": "DiagnosticReport:result",
            "_revinclude": "DocumentReference:related",
        },
    )
    modes = [(e["resource"]["resourceType"], e["search"]["mode"]) for e in report.json()["entry"]]
    assert modes.count(("Observation", "include")) == 10
    assert ("DocumentReference", "include") in modes and ("DiagnosticReport", "match") in modes
    # the same Bundle again: the results are conditional creates, the report and document are not
    again = await env.client.post(
        "/", headers={**lab, **JSON}, json=lab_bundle("pat-001", "a1", with_document=False)
    )
    assert again.status_code == 200, again.text
    assert [e["response"]["status"] for e in again.json()["entry"]][1:] == ["200 OK"] * 10
    assert (await stored(env, "a1"))["Observation"] == 10


@pytest.mark.parametrize(
    "breakage",
    ["invalid status", "another patient", "not the author", "result of another patient"],
)
async def test_a_laboratory_transaction_failing_on_its_seventh_result_stores_nothing(
    env: PolicyEnv, breakage: str
) -> None:
    tag = {
        "invalid status": "b1",
        "another patient": "b2",
        "not the author": "b3",
        "result of another patient": "b4",
    }[breakage]
    bundle = lab_bundle("pat-001", tag)
    seventh = bundle["entry"][7]["resource"]
    if breakage == "invalid status":
        seventh["status"] = "validated"
    elif breakage == "another patient":
        seventh["subject"] = {"reference": "Patient/pat-002"}
    elif breakage == "not the author":
        seventh["performer"] = [{"reference": "PractitionerRole/prr-gp-martin"}]
    else:
        seventh["subject"] = {"reference": "Patient/pat-004"}
    await operation(
        env,
        env.patient("pat-001"),
        "/Patient/pat-001/$dmp-access",
        access("grant", "Organization/org-labo-biolam"),
    )
    answer = await env.client.post("/", headers={**env.headers(BIOLOGIST), **JSON}, json=bundle)
    assert answer.status_code in (403, 422), answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    if answer.status_code == 422:
        assert any("Bundle.entry[7]" in x for i in outcome["issue"] for x in i.get("expression", [])), outcome
    assert await stored(env, tag) == {"Observation": 0, "DiagnosticReport": 0, "DocumentReference": []}


async def test_the_patient_destroys_one_structured_resource(env: PolicyEnv) -> None:
    path = "/MedicationDispense/disp-004-202402-ramipril/$dmp-destroy"
    assert (await operation(env, env.headers("gp_martin"), path)).status_code == 403
    assert (await operation(env, env.patient("pat-002"), path)).status_code == 403
    destroyed = await operation(env, env.patient("pat-004"), path)
    assert destroyed.status_code == 200, destroyed.text
    db = env.database.db
    for collection in ("MedicationDispense", "MedicationDispense_history"):
        assert await db[collection].count_documents({"_rid": "disp-004-202402-ramipril"}) == 0
    assert (await operation(env, env.patient("pat-004"), path)).status_code == 404
    capability = (await env.client.get("/metadata")).json()
    ops = {(r["type"], o["name"]) for r in capability["rest"][0]["resource"] for o in r.get("operation", [])}
    assert {("Observation", "dmp-destroy"), ("Condition", "dmp-destroy")} <= ops


async def test_destroying_the_record_removes_its_structured_data(env: PolicyEnv) -> None:
    """Last: it destroys pat-004."""
    db = env.database.db
    assert await db["MedicationDispense"].count_documents({"_p_patient": "pat-004"}) >= 24
    destroyed = await operation(env, env.patient("pat-004"), "/Patient/pat-004/$dmp-destroy")
    assert destroyed.status_code == 200, destroyed.text
    for rtype in EXAMPLES:
        for collection in (rtype, f"{rtype}_history"):
            assert await db[collection].count_documents({"_p_patient": "pat-004"}) == 0, collection
    hits = await raw_hits(env, "disp-004-202401-metformine", "obs-004-hb", "allergy-004-penicilline")
    assert set(hits) <= {"AuditEvent", "AuditEvent_history"}, hits
    assert json.dumps(hits)  # the trail keeps references, never content
