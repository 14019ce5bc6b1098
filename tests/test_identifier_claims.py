"""Conditional creates on a business identifier under concurrency (issue 18): concurrent first
posts of one identifier — plain POSTs, pharmacy batches, laboratory transactions, and a mix —
store exactly one resource and every answer is the one a re-post gets; a claim left by a crash
or a refused post blocks nothing; a deleted resource frees its identifier; destruction releases
the claims. Its own database: these tests change the samples."""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dmp_fhir.mhd import SourceDocument, provide_bundle
from dmp_fhir.storage.claims import IDENTIFIER_CLAIMS

from .lifecycle_helpers import access, operation, raw_hits
from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")

JSON = {"Content-Type": "application/fhir+json"}
UCUM = "http://unitsofmeasure.org"
LAB_IDS = "urn:oid:1.2.250.1.999.2002.7"
PHARMACY_IDS = "urn:oid:1.2.250.1.999.4004.7"
BIOLOGIST = {
    "fhirUser": "Practitioner/pra-bio-chevalier",
    "profession": "10",
    "specialty": "SM03",
    "organization": "Organization/org-labo-biolam",
}
CONCURRENT = 8


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        grant = await operation(
            e,
            e.patient("pat-001"),
            "/Patient/pat-001/$dmp-access",
            access("grant", "Organization/org-labo-biolam"),
        )
        assert grant.status_code == 200, grant.text
        yield e


ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def dispense(value: str, *, pid: str = "pat-004") -> dict[str, Any]:
    return {
        "resourceType": "MedicationDispense",
        "identifier": [{"system": PHARMACY_IDS, "value": value}],
        "status": "completed",
        "type": cc(ACT_CODE, "FFC"),  # complétude: first fill, complete (FR Core: 1..1)
        "medicationCodeableConcept": {
            "coding": [{"system": "urn:oid:1.2.250.1.213.2.3.2", "code": "3400930000001"}],
            "text": "RAMIPRIL 5 mg",
        },
        "subject": {"reference": f"Patient/{pid}"},
        "performer": [{"actor": {"reference": "PractitionerRole/prr-pharm-lemoine"}}],
        "quantity": {"value": 1, "unit": "boîte", "system": UCUM, "code": "{box}"},
        "whenHandedOver": "2025-04-01T10:00:00+02:00",
    }


def condition(system: str, value: str) -> str:
    return f"identifier={system}|{value}"


async def stored(env: PolicyEnv, rtype: str, system: str, value: str) -> list[str]:
    """Ids of live resources carrying the identifier (raw: whatever the policy would show)."""
    docs = env.database.db[rtype].find({"_s_identifier": f"{system}|{value}", "_deleted": False}, {"_id": 1})
    return [d["_id"] async for d in docs]


async def claims(env: PolicyEnv, rtype: str, system: str, value: str) -> list[dict[str, Any]]:
    return await env.database.db[IDENTIFIER_CLAIMS].find({"_id": f"{rtype}|{system}|{value}"}).to_list(None)


def lab_bundle(tag: str, results: int = 8) -> dict[str, Any]:
    """A laboratory report and its results, every entry a conditional create on its identifier
    (what a laboratory system re-posts when it is unsure a send arrived)."""
    performer = [{"reference": "PractitionerRole/prr-bio-chevalier"}]
    observations = [
        {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{tag}{n:06d}",
            "resource": {
                "resourceType": "Observation",
                "identifier": [{"system": LAB_IDS, "value": f"{tag}-{n}"}],
                "status": "final",
                "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")],
                "code": cc("http://loinc.org", "2345-7"),
                "subject": {"reference": "Patient/pat-001"},
                "effectiveDateTime": "2025-03-03T08:00:00+01:00",
                "performer": performer,
                "valueQuantity": {"value": 0.8 + n / 100, "unit": "g/L", "system": UCUM, "code": "g/L"},
            },
            "request": {
                "method": "POST",
                "url": "Observation",
                "ifNoneExist": condition(LAB_IDS, f"{tag}-{n}"),
            },
        }
        for n in range(1, results + 1)
    ]
    report = {
        "fullUrl": f"urn:uuid:00000000-0000-4000-9000-{tag}000000",
        "resource": {
            "resourceType": "DiagnosticReport",
            "identifier": [{"system": LAB_IDS, "value": f"{tag}-report"}],
            "status": "final",
            "category": [cc("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")],
            "code": cc("http://loinc.org", "11502-2"),
            "subject": {"reference": "Patient/pat-001"},
            "effectiveDateTime": "2025-03-03T08:00:00+01:00",
            "performer": performer,
            "result": [{"reference": o["fullUrl"]} for o in observations],
        },
        "request": {
            "method": "POST",
            "url": "DiagnosticReport",
            "ifNoneExist": condition(LAB_IDS, f"{tag}-report"),
        },
    }
    return {"resourceType": "Bundle", "type": "transaction", "entry": [report, *observations]}


# -- plain POSTs ---------------------------------------------------------------------------------


async def test_concurrent_first_posts_store_one_resource(env: PolicyEnv) -> None:
    headers = {**env.headers("pharma"), **JSON, "If-None-Exist": condition(PHARMACY_IDS, "c-1")}
    answers = await asyncio.gather(
        *(
            env.client.post("/MedicationDispense", headers=headers, json=dispense("c-1"))
            for _ in range(CONCURRENT)
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * (CONCURRENT - 1) + [201], [a.text for a in answers]
    ids = await stored(env, "MedicationDispense", PHARMACY_IDS, "c-1")
    assert len(ids) == 1
    # every answer names that resource, as a re-post's does
    assert {a.headers["location"].split("/_history")[0].rsplit("/", 1)[1] for a in answers} == set(ids)
    again = await env.client.post("/MedicationDispense", headers=headers, json=dispense("c-1"))
    assert again.status_code == 200 and again.headers["location"] == answers[0].headers["location"]
    [claim] = await claims(env, "MedicationDispense", PHARMACY_IDS, "c-1")
    assert claim["rid"] == ids[0] and claim["patient"] == "pat-004"


async def test_concurrent_pharmacy_batches_store_each_dispensation_once(env: PolicyEnv) -> None:
    def batch() -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {
                    "resource": dispense(f"b-{n}"),
                    "request": {
                        "method": "POST",
                        "url": "MedicationDispense",
                        "ifNoneExist": condition(PHARMACY_IDS, f"b-{n}"),
                    },
                }
                for n in range(4)
            ],
        }

    headers = {**env.headers("pharma"), **JSON}
    answers = await asyncio.gather(
        *(env.client.post("/", headers=headers, json=batch()) for _ in range(CONCURRENT))
    )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    for n in range(4):
        statuses = sorted(a.json()["entry"][n]["response"]["status"] for a in answers)
        assert statuses == ["200 OK"] * (CONCURRENT - 1) + ["201 Created"], statuses
        locations = {a.json()["entry"][n]["response"]["location"] for a in answers}
        assert len(locations) == 1
        assert len(await stored(env, "MedicationDispense", PHARMACY_IDS, f"b-{n}")) == 1


# -- laboratory transactions ---------------------------------------------------------------------


async def test_concurrent_laboratory_transactions_store_one_report(env: PolicyEnv) -> None:
    headers = {**env.headers(BIOLOGIST), **JSON}
    answers = await asyncio.gather(
        *(env.client.post("/", headers=headers, json=lab_bundle("c1")) for _ in range(4))
    )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    created = [a for a in answers if a.json()["entry"][0]["response"]["status"] == "201 Created"]
    assert len(created) == 1
    reports = await stored(env, "DiagnosticReport", LAB_IDS, "c1-report")
    assert len(reports) == 1
    results = []
    for n in range(1, 9):
        ids = await stored(env, "Observation", LAB_IDS, f"c1-{n}")
        assert len(ids) == 1, (n, ids)
        results.append(f"Observation/{ids[0]}")
    for answer in answers:  # every answer names the stored resources
        locations = [e["response"]["location"].split("/_history")[0] for e in answer.json()["entry"]]
        assert locations == [f"DiagnosticReport/{reports[0]}", *results]
    report = await env.client.get(f"/DiagnosticReport/{reports[0]}", headers=env.headers("gp_martin"))
    assert [r["reference"] for r in report.json()["result"]] == results


async def test_a_transaction_and_plain_posts_racing_for_one_identifier(env: PolicyEnv) -> None:
    lab = {**env.headers(BIOLOGIST), **JSON}
    single = lab_bundle("m1")["entry"][1]["resource"]
    posts = [
        env.client.post(
            "/Observation", headers={**lab, "If-None-Exist": condition(LAB_IDS, "m1-1")}, json=single
        )
        for _ in range(3)
    ]
    answers = await asyncio.gather(env.client.post("/", headers=lab, json=lab_bundle("m1")), *posts)
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
    ids = await stored(env, "Observation", LAB_IDS, "m1-1")
    assert len(ids) == 1
    in_bundle = answers[0].json()["entry"][1]["response"]["location"]
    assert in_bundle.startswith(f"Observation/{ids[0]}/")
    assert all(f"/Observation/{ids[0]}/" in a.headers["location"] for a in answers[1:])


async def test_a_refused_transaction_stores_nothing_and_its_claims_block_nothing(env: PolicyEnv) -> None:
    headers = {**env.headers(BIOLOGIST), **JSON}
    broken = lab_bundle("r1")
    broken["entry"][7]["resource"]["status"] = "validated"  # not an Observation status
    refused = await env.client.post("/", headers=headers, json=broken)
    assert refused.status_code == 422, refused.text
    assert await stored(env, "Observation", LAB_IDS, "r1-1") == []
    # a claim it left names an id nothing holds: the corrected Bundle adopts it
    answer = await env.client.post("/", headers=headers, json=lab_bundle("r1"))
    assert answer.status_code == 200, answer.text
    assert all(e["response"]["status"] == "201 Created" for e in answer.json()["entry"])
    for n in range(1, 9):
        ids = await stored(env, "Observation", LAB_IDS, f"r1-{n}")
        assert len(ids) == 1
        held = await claims(env, "Observation", LAB_IDS, f"r1-{n}")
        assert [c["rid"] for c in held] == ids


async def test_concurrent_conditional_creates_of_a_document(env: PolicyEnv) -> None:
    """DocumentReference's ``identifier`` parameter reads its masterIdentifier too: concurrent
    posts of one document (inline content, made a Binary in the same atomic write) store one."""
    bundle = provide_bundle(
        "Patient/pat-001", "PractitionerRole/prr-gp-martin", [SourceDocument(b"%PDF-1.4 c")]
    )
    doc = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    attachment = doc["content"][0]["attachment"]
    attachment.pop("url")
    attachment["data"] = base64.b64encode(b"%PDF-1.4 c").decode()
    master = doc["masterIdentifier"]
    headers = {
        **env.headers("gp_martin"),
        **JSON,
        "If-None-Exist": condition(master["system"], master["value"]),
    }
    answers = await asyncio.gather(
        *(env.client.post("/DocumentReference", headers=headers, json=doc) for _ in range(6))
    )
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201], [a.text for a in answers]
    ids = await stored(env, "DocumentReference", master["system"], master["value"])
    assert len(ids) == 1
    binaries = await env.database.db["Binary"].count_documents({"_p_document": ids[0]})
    assert binaries == 1


# -- crashes, deletions, destruction -------------------------------------------------------------


async def test_a_claim_left_by_a_crash_blocks_nothing(env: PolicyEnv) -> None:
    """A post that claimed and died before writing: the next post adopts the id and writes it."""
    key = f"MedicationDispense|{PHARMACY_IDS}|crash-1"
    await env.database.db[IDENTIFIER_CLAIMS].insert_one(
        {"_id": key, "type": "MedicationDispense", "rid": "crashed-claim-1", "patient": "pat-004"}
    )
    headers = {**env.headers("pharma"), **JSON, "If-None-Exist": condition(PHARMACY_IDS, "crash-1")}
    answers = await asyncio.gather(
        *(env.client.post("/MedicationDispense", headers=headers, json=dispense("crash-1")) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], [a.text for a in answers]
    assert await stored(env, "MedicationDispense", PHARMACY_IDS, "crash-1") == ["crashed-claim-1"]


async def test_a_deleted_or_changed_resource_frees_its_identifier(env: PolicyEnv) -> None:
    pharma = {**env.headers("pharma"), **JSON}
    first = await env.client.post(
        "/MedicationDispense",
        headers={**pharma, "If-None-Exist": condition(PHARMACY_IDS, "d-1")},
        json=dispense("d-1"),
    )
    assert first.status_code == 201, first.text
    rid = first.json()["id"]
    # the médecin traitant may delete it (not the pharmacist of another's record matters here)
    repo = await env.internal_repository()
    await repo.delete("MedicationDispense", rid)
    again = await env.client.post(
        "/MedicationDispense",
        headers={**pharma, "If-None-Exist": condition(PHARMACY_IDS, "d-1")},
        json=dispense("d-1"),
    )
    assert again.status_code == 201, again.text
    assert again.json()["id"] != rid
    # an update that drops the identifier frees it too
    changed = copy.deepcopy(again.json())
    changed["identifier"] = [{"system": PHARMACY_IDS, "value": "d-1-renumbered"}]
    await repo.update("MedicationDispense", changed["id"], changed)
    third = await env.client.post(
        "/MedicationDispense",
        headers={**pharma, "If-None-Exist": condition(PHARMACY_IDS, "d-1")},
        json=dispense("d-1"),
    )
    assert third.status_code == 201, third.text
    assert third.json()["id"] not in (rid, changed["id"])
    [claim] = await claims(env, "MedicationDispense", PHARMACY_IDS, "d-1")
    assert claim["rid"] == third.json()["id"]


async def test_a_hidden_resource_with_the_identifier_is_not_revealed(env: PolicyEnv) -> None:
    """The identifier names a vaccination the patient masked from professionals (MASQUE_PS):
    the pharmacist's own post is stored apart, as the search alone would have it, and learns
    nothing of the hidden one."""

    def vaccination(**extra: Any) -> dict[str, Any]:
        return {
            "resourceType": "Immunization",
            "identifier": [{"system": PHARMACY_IDS, "value": "v-1"}],
            "status": "completed",
            "vaccineCode": cc("http://www.whocc.no/atc", "J07BB02"),
            "patient": {"reference": "Patient/pat-004"},
            "occurrenceDateTime": "2025-10-15",
            "performer": [{"actor": {"reference": "PractitionerRole/prr-pharm-lemoine"}}],
            **extra,
        }

    masked = vaccination(
        performer=[{"actor": {"reference": "PractitionerRole/prr-ide-bernard"}}],  # by the nurse
        meta={"security": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument",
                            "code": "MASQUE_PS"}]}
    )  # fmt: skip
    repo = await env.internal_repository()
    first = await repo.conditional_create("Immunization", masked, condition(PHARMACY_IDS, "v-1"))
    assert first.created
    rid = first.version.id
    pharma = env.headers("pharma")
    assert (await env.client.get(f"/Immunization/{rid}", headers=pharma)).status_code == 404
    headers = {**pharma, **JSON, "If-None-Exist": condition(PHARMACY_IDS, "v-1")}
    answer = await env.client.post("/Immunization", headers=headers, json=vaccination())
    assert answer.status_code == 201, answer.text
    assert answer.json()["id"] != rid
    assert sorted(await stored(env, "Immunization", PHARMACY_IDS, "v-1")) == sorted(
        [rid, answer.json()["id"]]
    )
    assert [c["rid"] for c in await claims(env, "Immunization", PHARMACY_IDS, "v-1")] == [rid]


async def test_destruction_releases_the_claims(env: PolicyEnv) -> None:
    """Last: it destroys pat-004's record."""
    pharma = {**env.headers("pharma"), **JSON}
    made = await env.client.post(
        "/MedicationDispense",
        headers={**pharma, "If-None-Exist": condition(PHARMACY_IDS, "x-1")},
        json=dispense("x-1"),
    )
    assert made.status_code == 201, made.text
    destroyed = await operation(
        env, env.patient("pat-004"), f"/MedicationDispense/{made.json()['id']}/$dmp-destroy"
    )
    assert destroyed.status_code == 200, destroyed.text
    assert await claims(env, "MedicationDispense", PHARMACY_IDS, "x-1") == []
    assert await env.database.db[IDENTIFIER_CLAIMS].count_documents({"patient": "pat-004"}) > 0
    whole = await operation(env, env.patient("pat-004"), "/Patient/pat-004/$dmp-destroy")
    assert whole.status_code == 200, whole.text
    assert await env.database.db[IDENTIFIER_CLAIMS].count_documents({"patient": "pat-004"}) == 0
    assert IDENTIFIER_CLAIMS not in await raw_hits(env, "pat-004")
