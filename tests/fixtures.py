"""Hand-written, valid sample resources (fictitious French data) for the tests."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
FINESS = "urn:oid:1.2.250.1.71.4.2.2"
LOINC = "http://loinc.org"


def patient(ins: str = "279035121518989", family: str = "Martin", given: str = "Hélène") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": INS_NIR, "value": ins}],
        "name": [{"family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1979-03-05",
        "address": [{"city": "Lyon", "postalCode": "69003"}],
    }


def practitioner(rpps: str = "810002345678", family: str = "Durand") -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": RPPS, "value": rpps}],
        "name": [{"family": family, "given": ["Paul"], "prefix": ["Dr"]}],
    }


def organization(finess: str = "690781810") -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": FINESS, "value": finess}],
        "name": "Hôpital Édouard Herriot",
    }


def practitioner_role(practitioner_id: str, organization_id: str) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": f"Practitioner/{practitioner_id}"},
        "organization": {"reference": f"Organization/{organization_id}"},
        "code": [
            {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante",
                        "code": "10",
                    }
                ]
            }
        ],
    }


def binary(content: bytes = b"%PDF-1.4 compte rendu") -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "data": base64.b64encode(content).decode(),
    }


def document_reference(
    patient_id: str, binary_id: str, content: bytes = b"%PDF-1.4 compte rendu", type_code: str = "11488-4"
) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        # Unique per document: a plain create checks it like ITI-65 (issue 16).
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:2.25.{uuid.uuid4().int}"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": type_code, "display": "Note de consultation"}]},
        "category": [
            {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument",
                        "code": "10",
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": "2024-03-05T10:00:00+01:00",
        "securityLabel": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}
        ],
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "url": f"Binary/{binary_id}",
                    "size": len(content),
                    "hash": base64.b64encode(hashlib.sha1(content).digest()).decode(),
                    "title": "Compte rendu de consultation",
                }
            }
        ],
        "context": {"period": {"start": "2024-03-05T09:30:00+01:00"}},
    }


def list_submission_set(patient_id: str, doc_id: str) -> dict[str, Any]:
    return {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "code": {
            "coding": [
                {
                    "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                    "code": "submissionset",
                }
            ]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": "2024-03-05T10:00:00+01:00",
        "entry": [{"item": {"reference": f"DocumentReference/{doc_id}"}}],
    }


def consent(patient_id: str, practitioner_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
            ]
        },
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": "2024-01-10T08:00:00+01:00",
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
                    "reference": {"reference": f"Practitioner/{practitioner_id}"},
                }
            ],
        },
    }
