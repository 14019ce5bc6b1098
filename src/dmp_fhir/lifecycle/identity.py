"""The INS identity a DMP is opened from, and the Patient built from it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from ..errors import BadRequest

#: INS OIDs (matricule INS from the NIR / NIA, and their test spaces): see the domain doc.
INS_SYSTEMS = {
    "urn:oid:1.2.250.1.213.1.4.8": "INS-NIR",
    "urn:oid:1.2.250.1.213.1.4.9": "INS-NIA",
    "urn:oid:1.2.250.1.213.1.4.10": "INS-NIR",  # test space: same identifier type
    "urn:oid:1.2.250.1.213.1.4.11": "INS-NIA",
}
IDENTIFIER_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
RELIABILITY = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
RELIABILITY_STATUS = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
#: FR Core: the birth certificate's given names, space-separated, on the official name (INS).
BIRTH_LIST_GIVEN_NAME = (
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name"
)
#: The DMP's own identifier of a legal representative (FR Core RelatedPerson has one).
RELATED_PERSON_SYSTEM = "https://dmp-fhir.example.org/fhir/sid/related-person"
#: The INSEE code of the birthplace (commune, or 99xxx for a country) inside the birthPlace address.
INSEE_CODE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
INSEE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"

_MATRICULE = re.compile(r"^[12378][0-9]{4}(?:[0-9]{2}|2A|2B)[0-9]{6}[0-9]{2}$")
_INSEE = re.compile(r"^(?:[0-9]{5}|2[AB][0-9]{3})$")
GENDERS = ("male", "female", "other", "unknown")


def check_matricule(value: str) -> None:
    """13 characters + a 2-digit key = 97 - (number mod 97), Corsica 2A/2B counted as 19/18."""
    if not _MATRICULE.match(value):
        raise BadRequest("The matricule INS must be 13 characters and a 2-digit key.", code="value")
    number = value[:13].replace("2A", "19").replace("2B", "18")
    if 97 - int(number) % 97 != int(value[13:]):
        raise BadRequest("The matricule INS has a wrong control key.", code="value")


def ins_key(identifier: Any) -> str:
    """``system|value`` of an INS identifier (400 when it is not one)."""
    if not isinstance(identifier, dict):
        raise BadRequest("The INS must be an Identifier.", code="structure")
    system, value = identifier.get("system"), identifier.get("value")
    if system not in INS_SYSTEMS:
        raise BadRequest(
            "The INS identifier's system must be one of the INS OIDs: " + ", ".join(sorted(INS_SYSTEMS)),
            code="value",
        )
    if not isinstance(value, str):
        raise BadRequest("The INS identifier has no value.", code="required")
    check_matricule(value)
    return f"{system}|{value}"


def patient_ins_key(patient: dict[str, Any]) -> str | None:
    keys = patient_ins_keys(patient)
    return keys[0] if keys else None


def patient_ins_keys(patient: Mapping[str, Any] | None) -> list[str]:
    """Every INS of a Patient resource, as ``system|value`` keys (in the order given)."""
    return [
        f"{identifier['system']}|{identifier.get('value')}"
        for identifier in (patient or {}).get("identifier") or []
        if isinstance(identifier, dict) and identifier.get("system") in INS_SYSTEMS
    ]


def build_patient(
    *,
    ins: dict[str, Any],
    birth_names: list[str],
    given_names: list[str],
    birth_date: str,
    gender: str,
    birthplace: str,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    """The Patient of a new DMP: the INS identity (qualified: status VALI) plus whatever else
    the caller sent in ``patient`` (telecom, address, contacts, médecin traitant …)."""
    ins_key(ins)
    if not birth_names or not all(isinstance(n, str) and n.strip() for n in birth_names):
        raise BadRequest("The birth name (birthName) is required.", code="required")
    if not given_names or not all(isinstance(n, str) and n.strip() for n in given_names):
        raise BadRequest("At least one given name (given) is required.", code="required")
    try:
        date.fromisoformat(birth_date)
    except (TypeError, ValueError):
        raise BadRequest("birthDate must be a full date (YYYY-MM-DD).", code="value") from None
    if gender not in GENDERS:
        raise BadRequest(f"gender must be one of {', '.join(GENDERS)}.", code="value")
    if not isinstance(birthplace, str) or not _INSEE.match(birthplace):
        raise BadRequest("birthPlace must be the 5-character INSEE code of the birthplace.", code="value")
    patient: dict[str, Any] = {k: v for k, v in (extra or {}).items() if k not in ("id", "meta")}
    if patient and patient.get("resourceType") not in (None, "Patient"):
        raise BadRequest("The 'patient' parameter must be a Patient.", code="structure")
    others = [
        i
        for i in patient.get("identifier") or []
        if isinstance(i, dict) and i.get("system") not in INS_SYSTEMS
    ]
    official = {
        "extension": [{"url": BIRTH_LIST_GIVEN_NAME, "valueString": " ".join(given_names)}],
        "use": "official",
        "family": " ".join(birth_names),
        "given": given_names,
    }
    names = [n for n in patient.get("name") or [] if isinstance(n, dict) and n.get("use") != "official"]
    extensions = [
        e
        for e in patient.get("extension") or []
        if isinstance(e, dict) and e.get("url") not in (RELIABILITY, BIRTH_PLACE)
    ]
    patient.update(
        {
            "resourceType": "Patient",
            "extension": [
                *extensions,
                {
                    "url": RELIABILITY,
                    "extension": [
                        {
                            "url": "identityStatus",
                            "valueCoding": {
                                "system": RELIABILITY_STATUS,
                                "code": "VALI",
                                "display": "Identité validée",
                            },
                        }
                    ],
                },
                {
                    "url": BIRTH_PLACE,
                    "valueAddress": {
                        "extension": [
                            {"url": INSEE_CODE, "valueCoding": {"system": INSEE_SYSTEM, "code": birthplace}}
                        ]
                    },
                },
            ],
            "identifier": [
                {
                    "use": "official",
                    "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": INS_SYSTEMS[ins["system"]]}]},
                    "system": ins["system"],
                    "value": ins["value"],
                },
                *others,
            ],
            "active": True,
            "name": [official, *names],
            "gender": gender,
            "birthDate": birth_date,
        }
    )
    return patient


def with_identifier(related_person: dict[str, Any], rid: str) -> dict[str, Any]:
    """A legal representative as FR Core wants it: with an identifier (the DMP's, when the
    sender gave none)."""
    if related_person.get("identifier"):
        return related_person
    return {**related_person, "identifier": [{"system": RELATED_PERSON_SYSTEM, "value": rid}]}
