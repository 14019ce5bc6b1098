"""Structured patient data (issue 18) under the DMP access rules, on the samples.

Expected outcomes are written from the README's rules and the access matrix's
``structuredData`` placement (laboratory → BIOLOGIE/11502-2, vital signs and the synthesis →
SYNTHESE/60591-5, dispensations → TRAITEMENTS_SOINS/60593-1, statements → 56445-0,
vaccinations → PREVENTION/87273-9), not computed by the policy. The sample counts are those of
``samples/40-42-structured-*.json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dmp_fhir.policy.matrix import UNCLASSIFIED, load_matrix
from dmp_fhir.profiles.conformance import default_conformance
from dmp_fhir.registry import CLINICAL_TYPES

from .lifecycle_helpers import operation
from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")

TYPES = (
    "Observation",
    "DiagnosticReport",
    "MedicationDispense",
    "MedicationStatement",
    "Immunization",
    "AllergyIntolerance",
    "Condition",
)
#: pat-004: an NFS/ionogramme report (12 results), 2 vital signs, a year of dispensations of two
#: medicines, 2 statements, 4 vaccinations, 2 allergies, 3 problems.
PAT004 = {
    "Observation": 14,
    "DiagnosticReport": 1,
    "MedicationDispense": 24,
    "MedicationStatement": 2,
    "Immunization": 4,
    "AllergyIntolerance": 2,
    "Condition": 3,
}
PAT002 = {
    "Observation": 4,  # one of them masked by the patient (the HIV serology)
    "DiagnosticReport": 1,
    "MedicationStatement": 1,  # declared by the patient (personal space)
    "Immunization": 1,
    "Condition": 1,
}
NONE = dict.fromkeys(TYPES, 0)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


async def ids(env: PolicyEnv, headers: dict[str, str], rtype: str, **params: str) -> set[str]:
    """Ids a caller finds (and the total agrees: counts only see what the caller may see)."""
    response = await env.client.get(
        f"/{rtype}", headers=headers, params={"_total": "accurate", "_count": "200", **params}
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    found = {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}
    assert bundle["total"] == len(found)
    return found


async def counts(env: PolicyEnv, headers: dict[str, str], pid: str) -> dict[str, int]:
    return {t: len(await ids(env, headers, t, patient=pid)) for t in TYPES}


def expect(base: dict[str, int], **changes: int) -> dict[str, int]:
    return {t: changes.get(t, base.get(t, 0)) for t in TYPES}


# -- who sees what ------------------------------------------------------------------------


async def test_the_gp_and_the_patient_see_everything(env: PolicyEnv) -> None:
    assert await counts(env, env.headers("gp_martin"), "pat-004") == expect(PAT004)
    assert await counts(env, env.patient("pat-004"), "pat-004") == expect(PAT004)
    # the médecin traitant sees masked results too; so does the patient who masked it
    assert await counts(env, env.headers("gp_nguyen"), "pat-002") == expect(PAT002)
    assert await counts(env, env.patient("pat-002"), "pat-002") == expect(PAT002)


async def test_the_pharmacist_sees_treatments_vaccinations_and_the_synthesis_not_the_lab(
    env: PolicyEnv,
) -> None:
    seen = await counts(env, env.headers("pharma"), "pat-004")
    assert seen == expect(PAT004, Observation=2, DiagnosticReport=0)
    vitals = await ids(env, env.headers("pharma"), "Observation", patient="pat-004")
    assert vitals == {"obs-004-poids", "obs-004-pa"}
    read = await env.client.get("/Observation/obs-004-hb", headers=env.headers("pharma"))
    assert read.status_code == 404  # outside the matrix: as if it did not exist


async def test_the_physiotherapist_authorised_sees_no_structured_data(env: PolicyEnv) -> None:
    assert await counts(env, env.headers("kine"), "pat-002") == NONE
    assert (
        await env.client.get("/Condition/cond-002-lombalgie", headers=env.headers("kine"))
    ).status_code == 404


async def test_unauthorised_professionals_are_refused(env: PolicyEnv) -> None:
    for who in ("kine", "cardio", "radio"):
        for rtype in TYPES:
            response = await env.client.get(
                f"/{rtype}", headers=env.headers(who), params={"patient": "pat-004"}
            )
            assert response.status_code == 403, (who, rtype)
    read = await env.client.get("/MedicationDispense/disp-004-202401-metformine", headers=env.headers("kine"))
    assert read.status_code == 403


async def test_an_authorised_physician_does_not_see_masked_results(env: PolicyEnv) -> None:
    cardio = env.headers("cardio")  # the CHU is authorised by pat-002
    assert await counts(env, cardio, "pat-002") == expect(PAT002, Observation=3)
    assert (await env.client.get("/Observation/obs-002-vih", headers=cardio)).status_code == 404
    assert (await env.client.get("/Observation/obs-002-vih/_history/1", headers=cardio)).status_code == 404
    history = await env.client.get("/Observation/obs-002-vih/_history", headers=cardio)
    assert history.status_code == 404
    typed = await env.client.get("/Observation/_history", headers=cardio, params={"_count": "500"})
    assert "obs-002-vih" not in typed.text
    # search by its own code or by its value finds nothing either
    assert await ids(env, cardio, "Observation", patient="pat-002", code="http://loinc.org|56888-1") == set()
    assert await ids(env, env.headers("gp_nguyen"), "Observation", patient="pat-002", code="56888-1") == {
        "obs-002-vih"
    }


async def test_include_and_revinclude_across_types_respect_masking(env: PolicyEnv) -> None:
    params = {"patient": "pat-002", "_include": "DiagnosticReport:result"}
    for who, expected in (("gp_nguyen", 4), ("cardio", 3)):
        response = await env.client.get("/DiagnosticReport", headers=env.headers(who), params=params)
        assert response.status_code == 200
        entries = response.json()["entry"]
        included = {e["resource"]["id"] for e in entries if e["search"]["mode"] == "include"}
        assert len(included) == expected, who
        assert ("obs-002-vih" in included) == (who == "gp_nguyen")
    rev = await env.client.get(
        "/Observation",
        headers=env.headers("cardio"),
        params={"patient": "pat-002", "_revinclude": "DiagnosticReport:result"},
    )
    entries = rev.json()["entry"]
    assert {e["resource"]["id"] for e in entries if e["search"]["mode"] == "include"} == {"dr-002-bilan"}
    assert "obs-002-vih" not in {e["resource"]["id"] for e in entries}
    # the pharmacist sees neither the report nor, through it, its results
    via = await env.client.get(
        "/DiagnosticReport", headers=env.headers("pharma"), params={"patient": "pat-004", "_include": "*"}
    )
    assert via.status_code == 200 and "entry" not in via.json()


async def test_break_glass_sees_as_an_authorised_physician_unless_opposed(env: PolicyEnv) -> None:
    glass = env.headers("urgences", purpose_of_use="ETREAT")
    assert await counts(env, glass, "pat-004") == expect(PAT004)
    assert await counts(env, glass, "pat-002") == expect(PAT002, Observation=3)
    opposed = await env.client.get("/AllergyIntolerance", headers=glass, params={"patient": "pat-008"})
    assert opposed.status_code == 403
    no_glass = await env.client.get(
        "/AllergyIntolerance", headers=env.headers("urgences"), params={"patient": "pat-004"}
    )
    assert no_glass.status_code == 403


async def test_blocked_excluded_and_system_callers_get_nothing(env: PolicyEnv) -> None:
    blocked = await env.client.get(
        "/Observation", headers=env.headers("gp_nguyen"), params={"patient": "pat-003"}
    )
    assert blocked.status_code == 403
    assert (
        await env.client.get("/Observation/obs-003-ca153", headers=env.headers("gp_nguyen"))
    ).status_code == 403
    insurer = env.headers("gp_martin", actor_category="MEDECIN_CONSEIL_AMO")
    for rtype in TYPES:
        response = await env.client.get(f"/{rtype}", headers=insurer, params={"patient": "pat-004"})
        assert response.status_code == 403, rtype
    system = await env.client.get("/Condition/cond-004-diabete", headers=env.system())
    assert system.status_code == 403


async def test_results_held_from_the_patient_until_the_announcement(env: PolicyEnv) -> None:
    assert (
        await env.client.get("/Observation/obs-003-ca153", headers=env.patient("pat-003"))
    ).status_code == 404
    assert await ids(env, env.patient("pat-003"), "Observation", patient="pat-003") == set()
    assert await ids(env, env.headers("onco"), "Observation", patient="pat-003") == {"obs-003-ca153"}
    assert await ids(env, env.headers("gp_benali"), "Observation", patient="pat-003") == {"obs-003-ca153"}


async def test_the_occupational_section_is_the_occupational_physicians_only(env: PolicyEnv) -> None:
    assert await ids(env, env.headers("mdt"), "Observation", patient="pat-006") == {
        "obs-006-exposition-bruit"
    }
    assert await ids(env, env.headers("gp_benali"), "Observation", patient="pat-006") == set()
    assert await ids(env, env.patient("pat-006"), "Observation", patient="pat-006") == {
        "obs-006-exposition-bruit"
    }
    # the occupational physician reads nothing else of another record's structured data
    assert (
        await env.client.get("/Condition", headers=env.headers("mdt"), params={"patient": "pat-004"})
    ).status_code == 403


async def test_search_parameters_on_the_structured_samples(env: PolicyEnv) -> None:
    gp = env.headers("gp_martin")
    assert await ids(env, gp, "Observation", patient="pat-004", code="http://loinc.org|2823-3") == {
        "obs-004-k"
    }
    above = {"value-quantity": "gt5.1|http://unitsofmeasure.org|mmol/L"}
    assert await ids(env, gp, "Observation", patient="pat-004", **above) == {
        "obs-004-na",
        "obs-004-k",
        "obs-004-cl",
        "obs-004-co2",
    }
    high_k = {"code": "2823-3", "value-quantity": "gt5.1"}
    assert await ids(env, gp, "Observation", patient="pat-004", **high_k) == {"obs-004-k"}
    assert (
        await ids(env, gp, "Observation", patient="pat-004", code="2823-3", **{"value-quantity": "le5.1"})
        == set()
    )
    assert await ids(env, gp, "Observation", patient="pat-004", **{"value-quantity": "139||mmol/L"}) == {
        "obs-004-na"
    }
    assert await ids(env, gp, "Observation", patient="pat-004", **{"value-quantity": "139||mg/dL"}) == set()
    assert len(await ids(env, gp, "Observation", patient="pat-004", category="laboratory")) == 12
    assert len(await ids(env, gp, "Observation", patient="pat-004", category="vital-signs")) == 2
    assert len(await ids(env, gp, "Observation", patient="pat-004", date="2024-10-14")) == 12
    assert (
        len(await ids(env, gp, "MedicationDispense", patient="pat-004", whenhandedover="ge2024-01-01")) == 20
    )
    assert (
        len(
            await ids(
                env, gp, "MedicationDispense", patient="pat-004", code="http://www.whocc.no/atc|A10BA02"
            )
        )
        == 12
    )
    assert len(await ids(env, gp, "MedicationDispense", patient="pat-004", status="completed")) == 24
    assert len(await ids(env, gp, "Immunization", patient="pat-004", **{"vaccine-code": "J07BB02"})) == 2
    assert await ids(env, gp, "Immunization", patient="pat-004", **{"lot-number": "GRP2417C"}) == {
        "imm-004-grippe-2024"
    }
    assert len(await ids(env, gp, "Condition", patient="pat-004", **{"clinical-status": "active"})) == 2
    assert await ids(env, gp, "AllergyIntolerance", patient="pat-004", criticality="high") == {
        "allergy-004-penicilline"
    }
    assert await ids(env, gp, "DiagnosticReport", patient="pat-004", result="Observation/obs-004-k") == {
        "dr-004-nfs-iono"
    }
    ins = "urn:oid:1.2.250.1.213.1.4.8|149119999900495"
    assert len(await ids(env, gp, "Condition", **{"patient.identifier": ins})) == 3
    bad = await env.client.get("/Observation", headers=gp, params={"value-quantity": "abc"})
    assert bad.status_code == 400


async def test_reads_of_structured_data_are_audited(env: PolicyEnv) -> None:
    assert (
        await env.client.get("/Immunization/imm-004-covid-2023", headers=env.headers("pharma"))
    ).status_code == 200
    trail = await env.client.get(
        "/AuditEvent", headers=env.patient("pat-004"), params={"patient": "pat-004", "_count": "200"}
    )
    assert trail.status_code == 200
    whats = [
        entity.get("what", {}).get("reference", "")
        for e in trail.json().get("entry", [])
        for entity in e["resource"].get("entity", [])
    ]
    assert any(w.startswith("Immunization/imm-004-covid-2023") for w in whats)


async def test_events_about_a_held_result_are_hidden_from_the_patient(env: PolicyEnv) -> None:
    assert (
        await env.client.get("/Observation/obs-003-ca153", headers=env.headers("onco"))
    ).status_code == 200
    trail = await env.client.get(
        "/AuditEvent", headers=env.patient("pat-003"), params={"patient": "pat-003", "_count": "500"}
    )
    assert trail.status_code == 200
    assert "obs-003-ca153" not in trail.text


async def test_a_closed_record_refuses_professionals_but_not_the_patient(env: PolicyEnv) -> None:
    """Last: it closes pat-002's record."""
    closed = await operation(env, env.patient("pat-002"), "/Patient/pat-002/$dmp-close")
    assert closed.status_code == 200, closed.text
    for who in ("gp_nguyen", "cardio"):
        response = await env.client.get(
            "/Observation", headers=env.headers(who), params={"patient": "pat-002"}
        )
        assert response.status_code == 403
    assert await counts(env, env.patient("pat-002"), "pat-002") == expect(PAT002)


# -- the placement is data ------------------------------------------------------------------


async def test_the_matrix_places_every_structured_type_and_only_those() -> None:
    matrix = load_matrix()
    assert set(matrix.structured) == CLINICAL_TYPES
    for rtype, spec in matrix.structured.items():
        placements = [spec.default] if spec.default else list(spec.by_category.values())
        assert placements, rtype
        for placement in placements:
            # the document type it follows belongs to the section it is placed in
            assert matrix.type_section[placement.document_type] == placement.section, rtype
    lab = {"category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory"}]}]}  # fmt: skip
    assert matrix.structured_keys("Observation", lab) == ["BIOLOGIE", "11502-2"]
    assert matrix.structured_keys("Observation", {}) == [UNCLASSIFIED]
    section = "https://dmp-fhir.example.org/fhir/CodeSystem/dmp-section"
    occupational = {"meta": {"tag": [{"system": section, "code": "SANTE_TRAVAIL"}]}}
    assert matrix.structured_keys("Condition", occupational) == ["SANTE_TRAVAIL"]
    personal = {"meta": {"tag": [{"system": section, "code": "ESPACE_PERSONNEL"}]}}
    assert matrix.structured_keys("MedicationStatement", personal) == ["ESPACE_PERSONNEL", "56445-0"]
    assert matrix.structured_keys("Immunization", {}) == ["PREVENTION", "87273-9"]
    # the value sets of the codes the rule reads list exactly the mapped categories
    terminology = default_conformance().terminology
    for rtype, vs in (
        ("Observation", "dmp-observation-category"),
        ("DiagnosticReport", "dmp-diagnosticreport-category"),
    ):
        spec = matrix.structured[rtype]
        expansion = terminology.expand(f"https://dmp-fhir.example.org/fhir/ValueSet/{vs}")
        assert {(c.system, c.code) for c in expansion} == {
            (spec.category_system, code) for code in spec.by_category
        }
