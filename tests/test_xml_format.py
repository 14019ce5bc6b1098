"""FHIR XML <-> JSON conversion (dmp_fhir.formats.xml): round trips, types, safety."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from lxml import etree

from dmp_fhir.formats.xml import XmlFormatError, parse_fhir_xml, render_fhir_xml

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
FINESS = "urn:oid:1.2.250.1.71.4.2.2"
LOINC = "http://loinc.org"
XHTML_DIV = '<div xmlns="http://www.w3.org/1999/xhtml">'
FHIR = "http://hl7.org/fhir"

# --------------------------------------------------------------------------- #
# Samples (realistic French content)
# --------------------------------------------------------------------------- #

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-dupont-jeanne",
    "meta": {
        "versionId": "3",
        "lastUpdated": "2024-05-02T10:15:30.120Z",
        "profile": ["https://interop.esante.gouv.fr/ig/fhir/ins/StructureDefinition/FrPatientINS"],
        "security": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                "code": "N",
            }
        ],
    },
    "text": {
        "status": "generated",
        "div": XHTML_DIV + "<p>Jeanne <b>DUPONT</b>, née le 5 mars 1979 à Lyon &amp; "
        'suivie par le <a href="Practitioner/rpps-10003456789">Dr Martin</a></p>'
        "<ul><li>INS : 279036912345678</li><li>Tél. : 06 12 34 56 78</li></ul></div>",
    },
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {"city": "Lyon", "postalCode": "69003", "country": "FR"},
        }
    ],
    "identifier": [
        {
            "use": "official",
            "type": {
                "coding": [
                    {
                        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203",
                        "code": "INS-NIR",
                        "display": "NIR définitif",
                    }
                ]
            },
            "system": INS_NIR,
            "value": "279036912345678",
        },
        {"use": "usual", "system": "urn:oid:1.2.250.1.71.4.2.2.690781810", "value": "IPP-0045871"},
    ],
    "active": True,
    "name": [
        {
            "use": "official",
            "family": "DUPONT",
            "given": ["Jeanne", "Marie", "Hélène"],
            "prefix": ["Mme"],
        },
        {"use": "usual", "family": "MARTIN-DUPONT", "given": ["Jeanne"]},
    ],
    "telecom": [
        {"system": "phone", "value": "+33 6 12 34 56 78", "use": "mobile", "rank": 1},
        {"system": "email", "value": "jeanne.dupont@exemple.fr", "use": "home"},
    ],
    "gender": "female",
    "birthDate": "1979-03-05",
    "deceasedBoolean": False,
    "address": [
        {
            "use": "home",
            "type": "both",
            "line": ["12 rue de la République", "Bâtiment B, 3e étage"],
            "city": "Lyon",
            "postalCode": "69002",
            "country": "FR",
        }
    ],
    "maritalStatus": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                "code": "M",
                "display": "Married",
            }
        ]
    },
    "multipleBirthInteger": 1,
    "contact": [
        {
            "relationship": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}
            ],
            "name": {"family": "DUPONT", "given": ["Paul"]},
            "telecom": [{"system": "phone", "value": "+33 4 78 00 00 00"}],
        }
    ],
    "communication": [
        {
            "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr-FR"}]},
            "preferred": True,
        }
    ],
    "generalPractitioner": [{"reference": "Practitioner/rpps-10003456789", "display": "Dr Pierre MARTIN"}],
    "managingOrganization": {"reference": "Organization/finess-690781810"},
}

PRACTITIONER: dict[str, Any] = {
    "resourceType": "Practitioner",
    "id": "rpps-10003456789",
    "identifier": [
        {
            "type": {
                "coding": [
                    {
                        "system": "http://interopsante.org/fhir/CodeSystem/fr-v2-0203",
                        "code": "RPPS",
                    }
                ]
            },
            "system": RPPS,
            "value": "10003456789",
        }
    ],
    "active": True,
    "name": [{"use": "official", "family": "MARTIN", "given": ["Pierre"], "prefix": ["Dr"]}],
    "telecom": [{"system": "email", "value": "pierre.martin@medecin.mssante.fr", "use": "work"}],
    "gender": "male",
    "qualification": [
        {
            "code": {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/"
                        "TRE-G15-ProfessionSante",
                        "code": "10",
                        "display": "Médecin",
                    }
                ]
            }
        }
    ],
    "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "fr"}]}],
}

PRACTITIONER_ROLE: dict[str, Any] = {
    "resourceType": "PractitionerRole",
    "id": "role-martin-chu",
    "active": True,
    "period": {"start": "2015-09-01"},
    "practitioner": {"reference": "Practitioner/rpps-10003456789"},
    "organization": {"reference": "Organization/finess-690781810"},
    "code": [
        {
            "coding": [
                {
                    "system": "https://mos.esante.gouv.fr/NOS/TRE_R21-Fonction/FHIR/TRE-R21-Fonction",
                    "code": "FON-05",
                    "display": "Médecin traitant",
                }
            ]
        }
    ],
    "specialty": [
        {
            "coding": [
                {
                    "system": "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/"
                    "TRE-R38-SpecialiteOrdinale",
                    "code": "SM54",
                    "display": "Médecine générale",
                }
            ]
        }
    ],
    "telecom": [{"system": "phone", "value": "+33 4 72 11 22 33", "use": "work"}],
    "availableTime": [
        {
            "daysOfWeek": ["mon", "tue", "thu", "fri"],
            "availableStartTime": "08:30:00",
            "availableEndTime": "18:00:00",
        },
        {"daysOfWeek": ["sat"], "allDay": False},
    ],
    "notAvailable": [{"description": "Congés d'été", "during": {"start": "2024-08-01", "end": "2024-08-21"}}],
}

ORGANIZATION: dict[str, Any] = {
    "resourceType": "Organization",
    "id": "finess-690781810",
    "identifier": [{"system": FINESS, "value": "690781810"}],
    "active": True,
    "type": [
        {
            "coding": [
                {
                    "system": "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/"
                    "FHIR/TRE-R66-CategorieEtablissement",
                    "code": "101",
                    "display": "Centre Hospitalier Régional (C.H.R.)",
                }
            ]
        }
    ],
    "name": "Hospices Civils de Lyon",
    "alias": ["HCL", "CHU de Lyon"],
    "telecom": [{"system": "phone", "value": "+33 8 25 08 25 69"}],
    "address": [
        {
            "line": ["3 quai des Célestins"],
            "city": "Lyon",
            "postalCode": "69002",
            "country": "FR",
        }
    ],
}

DOCUMENT_REFERENCE: dict[str, Any] = {
    "resourceType": "DocumentReference",
    "id": "doc-cr-consultation-1",
    "meta": {"versionId": "1", "lastUpdated": "2024-04-12T16:20:00Z"},
    "extension": [
        {
            "url": "https://interop.esante.gouv.fr/ig/fhir/dmp/StructureDefinition/dmp-document-masque-ps",
            "valueBoolean": True,
        }
    ],
    "masterIdentifier": {
        "system": "urn:ietf:rfc:3986",
        "value": "urn:oid:1.2.250.1.213.1.1.9.123456.1",
    },
    "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:6f1b8c2e-2b5f-4f2c-9d3a-5c8e1a2b3c4d"}],
    "status": "current",
    "docStatus": "final",
    "type": {
        "coding": [
            {
                "system": LOINC,
                "code": "11488-4",
                "display": "Compte rendu de consultation",
            }
        ]
    },
    "category": [
        {
            "coding": [
                {
                    "system": "urn:oid:1.2.250.1.213.1.1.4.1",
                    "code": "10",
                    "display": "Compte rendu",
                }
            ]
        }
    ],
    "subject": {"reference": "Patient/pat-dupont-jeanne"},
    "date": "2024-04-12T16:18:42+02:00",
    "author": [{"reference": "Practitioner/rpps-10003456789"}],
    "authenticator": {"reference": "Practitioner/rpps-10003456789"},
    "custodian": {"reference": "Organization/finess-690781810"},
    "relatesTo": [
        {
            "code": "replaces",
            "target": {"reference": "DocumentReference/doc-cr-consultation-0"},
        }
    ],
    "description": "Consultation de suivi cardiologique",
    "securityLabel": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                    "code": "N",
                    "display": "normal",
                }
            ]
        },
        {
            "coding": [
                {
                    "system": "urn:oid:1.2.250.1.213.1.1.4.13",
                    "code": "INVISIBLE_PATIENT",
                    "display": "Document non visible par le patient",
                }
            ]
        },
    ],
    "content": [
        {
            "attachment": {
                "contentType": "application/pdf",
                "language": "fr-FR",
                "data": "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==",
                "size": 52,
                "hash": "2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
                "title": "CR consultation cardiologie 12/04/2024",
                "creation": "2024-04-12T16:18:00+02:00",
            },
            "format": {
                "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                "code": "urn:ihe:iti:xds-sd:pdf:2008",
            },
        }
    ],
    "context": {
        "encounter": [{"reference": "Encounter/sej-2024-0412"}],
        "event": [{"coding": [{"system": LOINC, "code": "18748-4"}]}],
        "period": {"start": "2024-04-12T14:00:00+02:00", "end": "2024-04-12T14:45:00+02:00"},
        "facilityType": {
            "coding": [{"system": "urn:oid:1.2.250.1.71.4.2.4", "code": "SA01", "display": "Hôpital"}]
        },
        "practiceSetting": {
            "coding": [{"system": "urn:oid:1.2.250.1.213.1.1.4.9", "code": "CARD", "display": "Cardiologie"}]
        },
        "sourcePatientInfo": {"reference": "Patient/pat-dupont-jeanne"},
    },
}

BINARY: dict[str, Any] = {
    "resourceType": "Binary",
    "id": "bin-cr-1",
    "contentType": "application/pdf",
    "securityContext": {"reference": "DocumentReference/doc-cr-consultation-1"},
    "data": "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==",
}

LIST: dict[str, Any] = {
    "resourceType": "List",
    "id": "liste-documents-recents",
    "status": "current",
    "mode": "working",
    "title": "Documents récents du patient",
    "code": {"coding": [{"system": LOINC, "code": "55107-7", "display": "Addendum Document"}]},
    "subject": {"reference": "Patient/pat-dupont-jeanne"},
    "date": "2024-05-01T09:00:00+02:00",
    "orderedBy": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/list-order", "code": "event-date"}]
    },
    "entry": [
        {
            "item": {"reference": "DocumentReference/doc-cr-consultation-1"},
            "date": "2024-04-12T16:20:00+02:00",
        },
        {
            "item": {"reference": "DocumentReference/doc-cr-consultation-0"},
            "deleted": True,
        },
    ],
}

CONSENT: dict[str, Any] = {
    "resourceType": "Consent",
    "id": "consentement-dmp",
    "status": "active",
    "scope": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                "code": "patient-privacy",
            }
        ]
    },
    "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Consentement"}]}],
    "patient": {"reference": "Patient/pat-dupont-jeanne"},
    "dateTime": "2023-11-20T11:00:00+01:00",
    "organization": [{"reference": "Organization/finess-690781810"}],
    "policyRule": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]
    },
    "provision": {
        "type": "permit",
        "period": {"start": "2023-11-20", "end": "2028-11-19"},
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
                "reference": {"reference": "Practitioner/rpps-10003456789"},
            }
        ],
        "action": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                        "code": "access",
                    }
                ]
            }
        ],
        "purpose": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                "code": "TREAT",
                "display": "Soins",
            }
        ],
        "provision": [
            {
                "type": "deny",
                "actor": [
                    {
                        "role": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                                    "code": "PROV",
                                }
                            ]
                        },
                        "reference": {"reference": "Organization/mutuelle-exemple"},
                    }
                ],
                "purpose": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": "HPAYMT",
                    }
                ],
                "dataPeriod": {"start": "2020-01-01"},
            }
        ],
    },
}

AUDIT_EVENT: dict[str, Any] = {
    "resourceType": "AuditEvent",
    "id": "trace-consultation-1",
    "type": {
        "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "code": "rest",
        "display": "RESTful Operation",
    },
    "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read", "display": "read"}],
    "action": "R",
    "recorded": "2024-05-02T10:15:30.120+02:00",
    "outcome": "0",
    "purposeOfEvent": [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]}
    ],
    "agent": [
        {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                        "code": "humanuser",
                    }
                ]
            },
            "who": {"identifier": {"system": RPPS, "value": "10003456789"}},
            "requestor": True,
            "policy": ["https://pro.esante.gouv.fr/politique-acces"],
            "network": {"address": "10.12.0.5", "type": "2"},
        }
    ],
    "source": {
        "site": "DMP - Mon espace santé",
        "observer": {"display": "dmp-fhir"},
        "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}],
    },
    "entity": [
        {
            "what": {"reference": "DocumentReference/doc-cr-consultation-1"},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2",
            },
            "detail": [
                {"type": "requete", "valueString": "GET /DocumentReference/doc-cr-consultation-1"},
                {"type": "empreinte", "valueBase64Binary": "2jmj7l5rSw0yVb/vlWAYkK/YBwk="},
            ],
        }
    ],
}

TRANSACTION: dict[str, Any] = {
    "resourceType": "Bundle",
    "id": "tx-alimentation-dmp",
    "type": "transaction",
    "timestamp": "2024-04-12T16:20:00+02:00",
    "entry": [
        {
            "fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0",
            "resource": {
                "resourceType": "DocumentReference",
                "status": "current",
                "type": {"coding": [{"system": LOINC, "code": "11488-4"}]},
                "subject": {"reference": "Patient/pat-dupont-jeanne"},
                "contained": [
                    {
                        "resourceType": "Practitioner",
                        "id": "auteur",
                        "identifier": [{"system": RPPS, "value": "10003456789"}],
                        "name": [{"family": "MARTIN", "given": ["Pierre"]}],
                    }
                ],
                "author": [{"reference": "#auteur"}],
                "content": [
                    {
                        "attachment": {
                            "contentType": "application/pdf",
                            "url": "urn:uuid:7e2fa3a4-58d4-4a38-9b39-2f3d4a9f9a11",
                        }
                    }
                ],
            },
            "request": {"method": "POST", "url": "DocumentReference"},
        },
        {
            "fullUrl": "urn:uuid:7e2fa3a4-58d4-4a38-9b39-2f3d4a9f9a11",
            "resource": {
                "resourceType": "Binary",
                "contentType": "application/pdf",
                "data": "JVBERi0xLjQK",
            },
            "request": {"method": "POST", "url": "Binary"},
        },
        {
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": INS_NIR, "value": "279036912345678"}],
                "name": [{"family": "DUPONT", "given": ["Jeanne"]}],
            },
            "request": {
                "method": "PUT",
                "url": "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|279036912345678",
                "ifMatch": 'W/"3"',
            },
        },
        {"request": {"method": "DELETE", "url": "DocumentReference/doc-cr-consultation-0"}},
    ],
}

SEARCHSET: dict[str, Any] = {
    "resourceType": "Bundle",
    "id": "recherche-1",
    "meta": {"lastUpdated": "2024-05-02T10:15:30.120Z"},
    "type": "searchset",
    "total": 2,
    "link": [
        {
            "relation": "self",
            "url": "https://dmp.exemple.fr/fhir/DocumentReference?patient=pat-dupont-jeanne",
        },
        {"relation": "next", "url": "https://dmp.exemple.fr/fhir/DocumentReference?_cursor=abc"},
    ],
    "entry": [
        {
            "fullUrl": "https://dmp.exemple.fr/fhir/DocumentReference/doc-cr-consultation-1",
            "resource": DOCUMENT_REFERENCE,
            "search": {"mode": "match", "score": 0.75},
        },
        {
            "fullUrl": "https://dmp.exemple.fr/fhir/Patient/pat-dupont-jeanne",
            "resource": PATIENT,
            "search": {"mode": "include"},
        },
        {
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "information", "code": "informational"}],
            },
            "search": {"mode": "outcome"},
        },
    ],
}

OPERATION_OUTCOME: dict[str, Any] = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "required",
            "details": {"text": "L'élément DocumentReference.status est obligatoire."},
            "diagnostics": "Champ manquant : status",
            "location": ["/f:DocumentReference"],
            "expression": ["DocumentReference.status"],
        },
        {"severity": "warning", "code": "code-invalid", "expression": ["DocumentReference.type"]},
    ],
}

CAPABILITY_STATEMENT: dict[str, Any] = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "date": "2024-05-01",
    "publisher": "Agence du Numérique en Santé (exemple)",
    "kind": "instance",
    "software": {"name": "dmp-fhir", "version": "0.1.0"},
    "implementation": {"description": "Serveur FHIR DMP", "url": "https://dmp.exemple.fr/fhir"},
    "fhirVersion": "4.0.1",
    "format": ["application/fhir+json", "application/fhir+xml"],
    "rest": [
        {
            "mode": "server",
            "security": {
                "cors": True,
                "service": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                "code": "SMART-on-FHIR",
                            }
                        ]
                    }
                ],
            },
            "resource": [
                {
                    "type": "DocumentReference",
                    "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}],
                    "versioning": "versioned",
                    "readHistory": True,
                    "conditionalCreate": True,
                    "searchInclude": ["DocumentReference:subject", "DocumentReference:author"],
                    "searchParam": [
                        {"name": "patient", "type": "reference"},
                        {"name": "date", "type": "date"},
                    ],
                }
            ],
            "interaction": [{"code": "transaction"}, {"code": "search-system"}],
        }
    ],
}

SAMPLES: dict[str, dict[str, Any]] = {
    "Patient": PATIENT,
    "Practitioner": PRACTITIONER,
    "PractitionerRole": PRACTITIONER_ROLE,
    "Organization": ORGANIZATION,
    "DocumentReference": DOCUMENT_REFERENCE,
    "Binary": BINARY,
    "List": LIST,
    "Consent": CONSENT,
    "AuditEvent": AUDIT_EVENT,
    "Bundle-transaction": TRANSACTION,
    "Bundle-searchset": SEARCHSET,
    "OperationOutcome": OPERATION_OUTCOME,
    "CapabilityStatement": CAPABILITY_STATEMENT,
}


def _model(resource: dict[str, Any]) -> Any:
    return get_fhir_model_class(resource["resourceType"])


def _root(xml: bytes) -> Any:
    return etree.fromstring(xml)


def _canonical_divs(value: Any) -> Any:
    """Narrative divs in C14N form (fhir.resources' XML reader writes char references)."""
    if isinstance(value, dict):
        return {
            k: (
                etree.tostring(etree.fromstring(v), method="c14n")
                if k == "div" and isinstance(v, str)
                else _canonical_divs(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_canonical_divs(v) for v in value]
    return value


# --------------------------------------------------------------------------- #
# Round trips
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", list(SAMPLES))
def test_samples_are_valid_r4b(name: str) -> None:
    sample = SAMPLES[name]
    _model(sample).model_validate(sample)


@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize("name", list(SAMPLES))
def test_json_xml_json_round_trip(name: str, pretty: bool) -> None:
    sample = SAMPLES[name]
    original = copy.deepcopy(sample)
    xml = render_fhir_xml(sample, pretty=pretty)
    assert sample == original  # the input is not modified
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert parse_fhir_xml(xml) == sample


@pytest.mark.parametrize("name", list(SAMPLES))
def test_rendered_xml_is_read_by_fhir_resources(name: str) -> None:
    """Our XML is real FHIR XML: the fhir.resources XML reader yields the same model."""
    sample = SAMPLES[name]
    model = _model(sample)
    from_xml = model.model_validate_xml(render_fhir_xml(sample)).model_dump(mode="json")
    expected = model.model_validate(sample).model_dump(mode="json")
    assert _canonical_divs(from_xml) == _canonical_divs(expected)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_xml_written_by_fhir_resources_parses_to_same_json(name: str) -> None:
    sample = SAMPLES[name]
    model = _model(sample)
    xml = model.model_validate(sample).model_dump_xml()
    assert model.model_validate(parse_fhir_xml(xml)) == model.model_validate(sample)


def test_elements_are_written_in_fhir_order() -> None:
    shuffled = dict(reversed(list(PATIENT.items())))
    root = _root(render_fhir_xml(shuffled))
    names = [etree.QName(child).localname for child in root]
    assert names[:5] == ["id", "meta", "text", "extension", "identifier"]
    assert names.index("birthDate") < names.index("deceasedBoolean") < names.index("address")
    assert names[-2:] == ["generalPractitioner", "managingOrganization"]
    name = root.find(f"{{{FHIR}}}name")
    assert [etree.QName(c).localname for c in name] == ["use", "family", "given", "given", "given", "prefix"]


def test_xml_shape_attributes_and_wrapping() -> None:
    root = _root(render_fhir_xml(TRANSACTION))
    ns = {"f": FHIR}
    assert root.tag == f"{{{FHIR}}}Bundle"
    # Nested resources are wrapped in their type element.
    doc = root.find("f:entry/f:resource/f:DocumentReference", ns)
    assert doc is not None
    assert doc.find("f:contained/f:Practitioner/f:id", ns).get("value") == "auteur"
    assert root.find("f:entry/f:request/f:method", ns).get("value") == "POST"
    # Extension url and element id are attributes.
    dref = _root(render_fhir_xml(DOCUMENT_REFERENCE))
    ext = dref.find("f:extension", ns)
    assert ext.get("url").endswith("dmp-document-masque-ps")
    assert ext.find("f:valueBoolean", ns).get("value") == "true"
    element_with_id = _root(
        render_fhir_xml({"resourceType": "Patient", "name": [{"id": "n1", "family": "DUPONT"}]})
    )
    assert element_with_id.find("f:name", ns).get("id") == "n1"


def test_pretty_output_is_indented_and_keeps_div_intact() -> None:
    xml = render_fhir_xml(TRANSACTION, pretty=True).decode()
    lines = xml.splitlines()
    assert lines[:3] == [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<Bundle xmlns="http://hl7.org/fhir">',
        '  <id value="tx-alimentation-dmp"/>',
    ]
    assert "      <DocumentReference>" in lines
    assert "          <Practitioner>" in lines
    pretty_patient = render_fhir_xml(PATIENT, pretty=True).decode()
    assert "    " + PATIENT["text"]["div"] + "\n" in pretty_patient


def test_parameters_resource_is_wrapped() -> None:
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "return", "resource": {"resourceType": "Patient", "id": "p1"}},
            {"name": "count", "valueInteger": 3},
        ],
    }
    xml = render_fhir_xml(params)
    assert b'<resource><Patient><id value="p1"/></Patient></resource>' in xml
    assert parse_fhir_xml(xml) == params


# --------------------------------------------------------------------------- #
# Primitives
# --------------------------------------------------------------------------- #


def test_primitive_extension_and_id_round_trip() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p-ext",
        "birthDate": "1979-03-05",
        "_birthDate": {
            "id": "naissance",
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1979-03-05T14:30:00+01:00",
                }
            ],
        },
        "_gender": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                    "valueCode": "asked-declined",
                }
            ]
        },
    }
    xml = render_fhir_xml(patient)
    root = _root(xml)
    birth = root.find(f"{{{FHIR}}}birthDate")
    assert birth.get("value") == "1979-03-05" and birth.get("id") == "naissance"
    gender = root.find(f"{{{FHIR}}}gender")
    assert gender.get("value") is None and len(gender) == 1
    assert parse_fhir_xml(xml) == patient
    get_fhir_model_class("Patient").model_validate(parse_fhir_xml(xml))


def test_primitive_arrays_with_nulls_round_trip() -> None:
    patient = {
        "resourceType": "Patient",
        "name": [
            {
                "family": "DUPONT",
                "given": ["Jeanne", None, "Hélène"],
                "_given": [
                    None,
                    {
                        "extension": [
                            {
                                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                "valueCode": "masked",
                            }
                        ]
                    },
                    {"id": "g3"},
                ],
            },
            {"_given": [{"id": "only-ext"}]},
        ],
    }
    xml = render_fhir_xml(patient)
    givens = _root(xml).findall(f"{{{FHIR}}}name/{{{FHIR}}}given")
    assert [g.get("value") for g in givens] == ["Jeanne", None, "Hélène", None]
    assert parse_fhir_xml(xml) == patient


def test_json_types_of_primitives() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Fréquence cardiaque"}]},
        "valueQuantity": {"value": 72.5, "unit": "/min", "system": "http://unitsofmeasure.org"},
        "component": [
            {"code": {"text": "entier"}, "valueInteger": -3},
            {"code": {"text": "décimal entier"}, "valueQuantity": {"value": 100}},
            {"code": {"text": "décimal 1.0"}, "valueQuantity": {"value": 1.0}},
            {"code": {"text": "petit"}, "valueQuantity": {"value": 1e-7}},
            {"code": {"text": "booléen"}, "valueBoolean": False},
        ],
        "extension": [
            {"url": "http://exemple.fr/ext/positif", "valuePositiveInt": 12},
            {"url": "http://exemple.fr/ext/nonsigne", "valueUnsignedInt": 0},
            {"url": "http://exemple.fr/ext/decimal", "valueDecimal": 0.1},
            {"url": "http://exemple.fr/ext/texte", "valueString": "true"},
            {"url": "http://exemple.fr/ext/code", "valueCode": "12"},
        ],
    }
    xml = render_fhir_xml(observation)
    back = parse_fhir_xml(xml)
    assert back == observation
    assert back["valueQuantity"]["value"] == 72.5 and type(back["valueQuantity"]["value"]) is float
    components = back["component"]
    assert type(components[0]["valueInteger"]) is int and components[0]["valueInteger"] == -3
    assert type(components[1]["valueQuantity"]["value"]) is int
    assert type(components[2]["valueQuantity"]["value"]) is float
    assert components[3]["valueQuantity"]["value"] == 1e-7
    assert components[4]["valueBoolean"] is False
    exts = back["extension"]
    assert exts[0]["valuePositiveInt"] == 12 and type(exts[0]["valuePositiveInt"]) is int
    assert exts[1]["valueUnsignedInt"] == 0 and type(exts[1]["valueUnsignedInt"]) is int
    assert exts[3]["valueString"] == "true" and exts[4]["valueCode"] == "12"
    assert back["extension"][2]["valueDecimal"] == 0.1
    get_fhir_model_class("Observation").model_validate(back)
    # Integers and booleans of CapabilityStatement / Bundle too.
    assert parse_fhir_xml(render_fhir_xml(SEARCHSET))["total"] == 2
    assert parse_fhir_xml(render_fhir_xml(CAPABILITY_STATEMENT))["rest"][0]["security"]["cors"] is True


def test_invalid_values_are_kept_for_the_validator() -> None:
    xml = (
        b'<Patient xmlns="http://hl7.org/fhir"><active value="oui"/>'
        b'<multipleBirthInteger value="deux"/><unknownThing value="x"/>'
        b'<name><family value="DUPONT"/><surname value="Jeanne"/></name></Patient>'
    )
    parsed = parse_fhir_xml(xml)
    assert parsed == {
        "resourceType": "Patient",
        "active": "oui",
        "multipleBirthInteger": "deux",
        "unknownThing": "x",
        "name": [{"family": "DUPONT", "surname": "Jeanne"}],
    }


def test_missing_required_elements_are_not_an_xml_error() -> None:
    parsed = parse_fhir_xml(b'<DocumentReference xmlns="http://hl7.org/fhir"/>')
    assert parsed == {"resourceType": "DocumentReference"}


def test_whitespace_comments_and_xsi_are_ignored() -> None:
    xml = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- export du DMP -->
<Patient xmlns="http://hl7.org/fhir"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://hl7.org/fhir ../../schema/patient.xsd">
  <!-- identifiant national de sant\xc3\xa9 -->
  <identifier>
    <system value="urn:oid:1.2.250.1.213.1.4.8"/>
    <value value="279036912345678"/>
  </identifier>
  <active value="true"/>
</Patient>
"""
    assert parse_fhir_xml(xml) == {
        "resourceType": "Patient",
        "identifier": [{"system": INS_NIR, "value": "279036912345678"}],
        "active": True,
    }


def test_prefixed_fhir_namespace_is_accepted() -> None:
    xml = b'<f:Patient xmlns:f="http://hl7.org/fhir"><f:gender value="male"/></f:Patient>'
    assert parse_fhir_xml(xml) == {"resourceType": "Patient", "gender": "male"}


def test_attribute_values_with_newlines_and_markup_round_trip() -> None:
    org = {
        "resourceType": "Organization",
        "name": 'Clinique "Les Tilleuls" <Sud> & Co',
        "alias": ["ligne 1\nligne 2\tfin", "  espaces  "],
    }
    assert parse_fhir_xml(render_fhir_xml(org)) == org


# --------------------------------------------------------------------------- #
# Narrative
# --------------------------------------------------------------------------- #


def test_narrative_div_round_trip_and_is_xhtml() -> None:
    div = (
        XHTML_DIV + '<h1 class="titre">Compte rendu</h1><p lang="fr" xml:lang="fr">Tension'
        " 12/8 &lt; seuil &amp; pouls 72<br/>RAS</p>"
        '<table><tr><td>a</td><td>b</td></tr></table><img src="#logo" alt="logo"/></div>'
    )
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    for pretty in (False, True):
        xml = render_fhir_xml(patient, pretty=pretty)
        narrative = _root(xml).find(f"{{{FHIR}}}text/{{http://www.w3.org/1999/xhtml}}div")
        assert narrative is not None
        assert parse_fhir_xml(xml)["text"]["div"] == div
    get_fhir_model_class("Patient").model_validate_xml(render_fhir_xml(patient))


def test_narrative_script_is_kept_as_text_never_run() -> None:
    xml = (
        b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>'
        b'<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>'
        b"</text></Patient>"
    )
    assert parse_fhir_xml(xml)["text"]["div"] == XHTML_DIV + "<script>alert(1)</script></div>"


def test_prefixed_xhtml_div_is_normalised_to_default_namespace() -> None:
    xml = (
        b'<Patient xmlns="http://hl7.org/fhir" xmlns:h="http://www.w3.org/1999/xhtml">'
        b'<text><status value="generated"/><h:div><h:p>Bonjour</h:p></h:div></text></Patient>'
    )
    assert parse_fhir_xml(xml)["text"]["div"] == XHTML_DIV + "<p>Bonjour</p></div>"


def test_non_xhtml_inside_div_is_rejected() -> None:
    xml = (
        b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>'
        b'<div xmlns="http://www.w3.org/1999/xhtml"><svg xmlns="http://www.w3.org/2000/svg"/>'
        b"</div></text></Patient>"
    )
    with pytest.raises(XmlFormatError, match="not XHTML"):
        parse_fhir_xml(xml)


def test_div_in_fhir_namespace_is_rejected() -> None:
    xml = (
        b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>'
        b"<div>texte</div></text></Patient>"
    )
    with pytest.raises(XmlFormatError, match="XHTML namespace"):
        parse_fhir_xml(xml)


def test_render_rejects_unsafe_or_broken_div() -> None:
    for div in (
        '<!DOCTYPE div [<!ENTITY x SYSTEM "file:///etc/passwd">]><div>&x;</div>',
        XHTML_DIV + "<p>non fermé</div>",
        '<p xmlns="http://www.w3.org/1999/xhtml">pas un div</p>',
    ):
        with pytest.raises(ValueError):
            render_fhir_xml({"resourceType": "Patient", "text": {"status": "generated", "div": div}})


# --------------------------------------------------------------------------- #
# Partial resources (_elements / _summary)
# --------------------------------------------------------------------------- #


def test_partial_resources_render() -> None:
    subsetted = {
        "resourceType": "DocumentReference",
        "id": "doc-cr-consultation-1",
        "meta": {
            "tag": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "SUBSETTED",
                }
            ]
        },
        "type": {"coding": [{"system": LOINC, "code": "11488-4"}]},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [{"resource": subsetted, "search": {"mode": "match"}}],
    }
    for resource in ({"resourceType": "Patient"}, {"resourceType": "Patient", "id": "x"}, bundle):
        xml = render_fhir_xml(resource)
        assert parse_fhir_xml(xml) == resource
    assert render_fhir_xml({"resourceType": "Patient"}) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Patient xmlns="http://hl7.org/fhir"/>'
    )


def test_searchset_of_twenty_document_references() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 20,
        "entry": [
            {
                "fullUrl": f"https://dmp.exemple.fr/fhir/DocumentReference/doc-{i}",
                "resource": {**DOCUMENT_REFERENCE, "id": f"doc-{i}"},
                "search": {"mode": "match"},
            }
            for i in range(20)
        ],
    }
    xml = render_fhir_xml(bundle)
    assert parse_fhir_xml(xml) == bundle
    assert len(_root(xml).findall(f"{{{FHIR}}}entry")) == 20


def test_render_rejects_unknown_keys_and_bad_shapes() -> None:
    bad: list[dict[str, Any]] = [
        {"resourceType": "Patient", "nom": "DUPONT"},
        {"resourceType": "Patient", "name": [{"family": "DUPONT", "surname": "x"}]},
        {"resourceType": "Patient", "_name": [{"id": "x"}]},
        {"resourceType": "Patient", "name": {"family": "DUPONT"}},
        {"resourceType": "Patient", "gender": ["male"]},
        {"resourceType": "Patient", "active": {"value": True}},
        {"resourceType": "Patient", "contained": [{"id": "no-type"}]},
        {"resourceType": "Patient", "multipleBirthInteger": float("nan")},
        {"resourceType": "NotAResource"},
        {"resourceType": "HumanName"},
        {"resourceType": "Patient", "gender": "a\x01"},
        {"resourceType": "Patient", "name": [{"family": "\ufffe"}]},
        {"id": "no-type"},
    ]
    for resource in bad:
        with pytest.raises(ValueError):
            render_fhir_xml(resource)


# --------------------------------------------------------------------------- #
# Safety
# --------------------------------------------------------------------------- #

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&xxe;"/></name></Patient>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&lol9;"/></name></Patient>"""


def _utf16(xml: bytes) -> bytes:
    """The same document in UTF-16: defeats any byte-level pre-scan."""
    text = xml.decode("utf-8").replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
    return text.encode("utf-16")


def test_external_entity_is_refused_and_file_never_read(tmp_path: Any) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-MARKER-7f3a")
    for target in ("file:///etc/passwd", secret.as_uri()):
        xml = XXE.replace(b"file:///etc/passwd", target.encode())
        for body in (xml, _utf16(xml)):
            with pytest.raises(XmlFormatError) as info:
                parse_fhir_xml(body)
            assert "root:" not in str(info.value) and "SECRET-MARKER" not in str(info.value)


def test_hardened_parser_does_not_resolve_entities(tmp_path: Any) -> None:
    """Even before the DOCTYPE check, the parser itself never expands the entity."""
    from dmp_fhir.formats.xml import _parser

    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-MARKER-7f3a")
    xml = b'<!DOCTYPE r [<!ENTITY xxe SYSTEM "' + secret.as_uri().encode() + b'">]><r>&xxe;</r>'
    root = etree.fromstring(xml, _parser())
    assert b"SECRET-MARKER" not in etree.tostring(root)
    parameter_entity = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % ext SYSTEM "'
        + secret.as_uri().encode()
        + b'"> %ext;]><r/>'
    )
    root = etree.fromstring(parameter_entity, _parser())
    assert b"SECRET-MARKER" not in etree.tostring(root.getroottree())


def test_hardened_parser_never_loads_external_dtd(tmp_path: Any) -> None:
    """Regression: lxml's collect_ids=False makes libxml2 load the external DTD subset."""
    from dmp_fhir.formats.xml import _parser

    dtd = tmp_path / "x.dtd"
    dtd.write_text('<!ENTITY fuite "SECRET-MARKER-7f3a">')
    body = b'<!DOCTYPE r SYSTEM "' + dtd.as_uri().encode() + b'"><r a="1">&fuite;</r>'
    root = etree.fromstring(body, _parser())
    assert root.getroottree().docinfo.externalDTD is None
    assert b"SECRET-MARKER" not in etree.tostring(root)


def test_billion_laughs_is_refused_quickly() -> None:
    for body in (BILLION_LAUGHS, _utf16(BILLION_LAUGHS)):
        start = time.perf_counter()
        with pytest.raises(XmlFormatError):
            parse_fhir_xml(body)
        assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "body",
    [
        b'<!DOCTYPE Patient><Patient xmlns="http://hl7.org/fhir"/>',
        b'<!DOCTYPE Patient SYSTEM "http://attaquant.exemple/x.dtd"><Patient xmlns="http://hl7.org/fhir"/>',
        b'<!DOCTYPE Patient PUBLIC "-//X//DTD X//EN" "x.dtd"><Patient xmlns="http://hl7.org/fhir"/>',
        b'<!DOCTYPE Patient [<!ELEMENT Patient ANY>]><Patient xmlns="http://hl7.org/fhir"/>',
    ],
)
def test_any_doctype_is_refused(body: bytes) -> None:
    with pytest.raises(XmlFormatError, match="DOCTYPE"):
        parse_fhir_xml(body)
    # UTF-16 defeats the byte pre-scan; the parsed-document check still refuses it.
    with pytest.raises(XmlFormatError):
        parse_fhir_xml(('<?xml version="1.0" encoding="UTF-16"?>' + body.decode()).encode("utf-16"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'<Patient xmlns="http://example.org/fhir"/>', "FHIR namespace"),
        (b'<Patient><id value="x"/></Patient>', "FHIR namespace"),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><x:id xmlns:x="urn:autre" value="1"/></Patient>',
            "FHIR namespace",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><xi:include '
            b'xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd"/></Patient>',
            "FHIR namespace",
        ),
        (
            b'<Bundle xmlns="http://hl7.org/fhir"><entry><resource>'
            b'<Patient xmlns="urn:autre"/></resource></entry></Bundle>',
            "FHIR namespace",
        ),
        (b'<Patient xmlns="http://hl7.org/fhir"><id value="x"></Patient>', "malformed"),
        (b"", "malformed"),
        (b"pas du XML", "malformed"),
        (b'<Patient xmlns="http://hl7.org/fhir"><id value="&nbsp;"/></Patient>', "malformed"),
        (b'<Patient xmlns="http://hl7.org/fhir"/><Patient xmlns="http://hl7.org/fhir"/>', "malformed"),
        (b'<Dossier xmlns="http://hl7.org/fhir"/>', "unknown resource type"),
        (b'<HumanName xmlns="http://hl7.org/fhir"/>', "unknown resource type"),
        (b'<DomainResource xmlns="http://hl7.org/fhir"/>', "unknown resource type"),
        (
            b'<Bundle xmlns="http://hl7.org/fhir"><entry><resource><Inconnu xmlns="http://hl7.org/fhir"/>'
            b"</resource></entry></Bundle>",
            "unknown resource type",
        ),
        (
            b'<Bundle xmlns="http://hl7.org/fhir"><entry><resource><Patient/><Patient/>'
            b"</resource></entry></Bundle>",
            "exactly one resource",
        ),
        (
            b'<?xml-stylesheet type="text/xsl" href="http://attaquant.exemple/x.xsl"?>'
            b'<Patient xmlns="http://hl7.org/fhir"/>',
            "processing instructions",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><?php system("id"); ?></Patient>',
            "processing instructions",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>'
            b'<div xmlns="http://www.w3.org/1999/xhtml"><?evil x?></div></text></Patient>',
            "processing instructions",
        ),
        (b'<Patient xmlns="http://hl7.org/fhir">texte libre</Patient>', "text content"),
        (b'<Patient xmlns="http://hl7.org/fhir" lang="fr"/>', "attribute"),
        (b'<Patient xmlns="http://hl7.org/fhir"><name value="DUPONT"/></Patient>', "attribute"),
        (b'<Patient xmlns="http://hl7.org/fhir"><gender value="x" foo="y"/></Patient>', "attribute"),
    ],
)
def test_structural_errors_raise_xml_format_error(body: bytes, message: str) -> None:
    with pytest.raises(XmlFormatError, match=message):
        parse_fhir_xml(body)


def test_oversized_body_is_refused() -> None:
    body = render_fhir_xml(PATIENT)
    assert parse_fhir_xml(body, max_bytes=len(body)) == PATIENT
    with pytest.raises(XmlFormatError, match="exceeds"):
        parse_fhir_xml(body, max_bytes=len(body) - 1)


def test_excessive_depth_is_refused() -> None:
    inner = b'<extension url="http://x">' * 300 + b"</extension>" * 300
    with pytest.raises(XmlFormatError):
        parse_fhir_xml(b'<Patient xmlns="http://hl7.org/fhir">' + inner + b"</Patient>")


def test_xml_format_error_is_a_value_error() -> None:
    assert issubclass(XmlFormatError, ValueError)
