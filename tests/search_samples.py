"""Hand-written resources shared by the search tests (a PDSm-shaped DocumentReference above all)."""

from __future__ import annotations

from typing import Any

BASE = "https://dmp.example.fr/fhir"
LOINC = "http://loinc.org"
CLASS = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
IS_ARCHIVED = "http://esante.gouv.fr/cisis/fhir/StructureDefinition/PDSm_isArchived"
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def document_reference(**overrides: Any) -> dict[str, Any]:
    """A comprehensive PDSm DocumentReference (ITI-65 shape) with every searched element."""
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": "doc-1",
        "meta": {
            "versionId": "1",
            "lastUpdated": "2024-03-05T10:20:00Z",
            "profile": [
                "http://esante.gouv.fr/ci-sis/fhir/StructureDefinition/PDSm_ComprehensiveDocumentReference"
            ],
            "security": [{"system": CONF, "code": "N"}],
        },
        "contained": [{"resourceType": "PractitionerRole", "id": "author1"}],
        "extension": [{"url": IS_ARCHIVED, "valueBoolean": False}],
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3.4"},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:5a1e"}],
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "11488-4", "display": "Note de consultation"}]},
        "category": [{"coding": [{"system": CLASS, "code": "10", "display": "Compte rendu"}]}],
        "subject": {"reference": "Patient/pat-1"},
        "date": "2024-03-05T10:15:00+01:00",
        "author": [{"reference": "#author1"}, {"reference": f"{BASE}/Practitioner/pr-1"}],
        "custodian": {"reference": "Organization/org-1"},
        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/doc-0/_history/2"}}],
        "description": "Écho",
        "securityLabel": [{"coding": [{"system": CONF, "code": "N", "display": "normal"}]}],
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "language": "fr-FR",
                    "url": "Binary/bin-1",
                    "creation": "2024-03-05",
                },
                "format": {
                    "system": "http://ihe.net/fhir/ValueSet/IHE.FormatCode.codesystem",
                    "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
                },
            }
        ],
        "context": {
            "encounter": [{"reference": "Encounter/enc-1"}],
            "event": [{"coding": [{"system": "urn:ccam", "code": "ZCQK002"}]}],
            "period": {"start": "2024-03-04T08:00:00+01:00", "end": "2024-03-04T18:00:00+01:00"},
            "facilityType": {"coding": [{"system": "urn:fac", "code": "SA01"}]},
            "practiceSetting": {"coding": [{"system": "urn:set", "code": "ETABLISSEMENT"}]},
            "related": [{"identifier": {"system": "urn:acc", "value": "ACC-9"}}],
        },
    }
    doc.update(overrides)
    return doc


def patient(**overrides: Any) -> dict[str, Any]:
    pat: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "pat-1",
        "identifier": [
            {
                "system": INS_NIR,
                "value": "248092B012345",
                "type": {"coding": [{"system": V2_0203, "code": "NH", "display": "NIR"}], "text": "INS"},
            }
        ],
        "active": True,
        "name": [{"family": "Dupont", "given": ["Hélène", "Marie"], "prefix": ["Mme"]}],
        "telecom": [{"system": "phone", "value": "0612345678"}, {"system": "email", "value": "h@d.fr"}],
        "gender": "female",
        "birthDate": "1948-09",
        "address": [{"line": ["3 rue de l'Église"], "city": "Saint-Étienne", "postalCode": "42000"}],
        "generalPractitioner": [{"reference": "Practitioner/pr-1/_history/7"}],
        "managingOrganization": {"reference": "Organization/org-1"},
        "link": [{"other": {"reference": "Patient/pat-0"}, "type": "replaces"}],
    }
    pat.update(overrides)
    return pat
