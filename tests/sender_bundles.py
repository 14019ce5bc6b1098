"""ITI-65 Provide Document Bundles as French senders build them (PDSm Comprehensive: the author
is a *contained* PractitionerRole with its Practitioner and Organization)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

LOINC = "http://loinc.org"
TRE_A03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
TRE_A11 = "https://mos.esante.gouv.fr/NOS/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"
TRE_G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
FINESS = "urn:oid:1.2.250.1.71.4.2.2"


def contained_author(idnatps: str, finess: str, profession: str = "10") -> list[dict[str, Any]]:
    """The contained Practitioner, Organization and PractitionerRole (id ``author``)."""
    return [
        {
            "resourceType": "Practitioner",
            "id": "author-person",
            "identifier": [{"system": IDNPS, "value": idnatps}],
        },
        {
            "resourceType": "Organization",
            "id": "author-org",
            "identifier": [{"system": FINESS, "value": finess}],
        },
        {
            "resourceType": "PractitionerRole",
            "id": "author",
            "practitioner": {"reference": "#author-person"},
            "organization": {"reference": "#author-org"},
            "code": [{"coding": [{"system": TRE_G15, "code": profession}]}],
        },
    ]


def sender_bundle(
    patient: str,
    idnatps: str,
    finess: str,
    *,
    type_code: str = "34133-9",
    content: bytes | None = None,
) -> dict[str, Any]:
    """One document, its Binary and the submission set, authored by a contained role."""
    data = content if content is not None else f"document {uuid.uuid4()}".encode()
    doc_url, bin_url, set_url = (f"urn:uuid:{uuid.uuid4()}" for _ in range(3))
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "contained": contained_author(idnatps, finess),
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:2.25.{uuid.uuid4().int}"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": type_code}]},
        "category": [{"coding": [{"system": TRE_A03, "code": "10"}]}],
        "subject": {"reference": patient},
        "date": "2026-11-20T10:00:00+01:00",
        "author": [{"reference": "#author"}],
        "securityLabel": [{"coding": [{"system": CONFIDENTIALITY, "code": "N"}]}],
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "url": bin_url,
                    "size": len(data),
                    "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
                    "title": "Document",
                },
                "format": {"system": TRE_A11, "code": "urn:ihe:iti:xds-sd:pdf:2008"},
            }
        ],
        "context": {"period": {"start": "2026-11-20T09:30:00+01:00"}},
    }
    submission = {
        "resourceType": "List",
        "contained": contained_author(idnatps, finess),
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": MHD_LIST_TYPES, "code": "submissionset"}]},
        "subject": {"reference": patient},
        "date": "2026-11-20T10:00:00+01:00",
        "source": {"reference": "#author"},
        "entry": [{"item": {"reference": doc_url}}],
    }
    binary = {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "securityContext": {"reference": doc_url},
        "data": base64.b64encode(data).decode(),
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": set_url, "resource": submission, "request": {"method": "POST", "url": "List"}},
            {
                "fullUrl": doc_url,
                "resource": document,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {"fullUrl": bin_url, "resource": binary, "request": {"method": "POST", "url": "Binary"}},
        ],
    }
