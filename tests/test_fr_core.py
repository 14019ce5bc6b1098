"""FR Core on what the server writes and ships: the samples' Patients (INS Patient elements) and
RelatedPersons (identifier)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
BIRTH_LIST = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"


def resources(name: str) -> list[dict[str, Any]]:
    bundle = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    return [e["resource"] for e in bundle["entry"]]


def test_sample_patients_carry_the_ins_patient_elements() -> None:
    patients = resources("02-patients.json")
    assert patients
    for patient in patients:
        official = next(n for n in patient["name"] if n.get("use") == "official")
        birth_list = [e["valueString"] for e in official.get("extension", []) if e["url"] == BIRTH_LIST]
        assert birth_list == [" ".join(official["given"])], patient["id"]
        place = [e for e in patient.get("extension", []) if e["url"] == BIRTH_PLACE]
        assert place and place[0]["valueAddress"]["extension"][0]["valueCoding"]["code"], patient["id"]


def test_sample_related_persons_have_an_identifier() -> None:
    people = resources("30-related-persons.json")
    assert people and all(p.get("identifier") for p in people)
