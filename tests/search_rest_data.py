"""Fixture resources of ``test_search_rest.py``: a small, hand-made French population.

Every expected result of the catalogue is written by hand from the values below and from the FHIR
R4 search rules (http://hl7.org/fhir/R4/search.html); nothing is computed by the server's code.
Keep the two files in step: a change here means re-deriving the expectations there by hand.

Summary of the live Patients (11) — the facts the expectations rely on:

========== ========= ============ ======= ========== ====== ====== ========= =========================
id         family    given        gender  birthDate  active postal GP        identifiers
========== ========= ============ ======= ========== ====== ====== ========= =========================
p-helene   Martin    Hélène Marie female  1979-03-05 true   69003  pr-durand INS 279035121518989
p-lea      Dupont    Léa          female  1994-01-15 true   75011  pr-petit* INS 294016912345678
p-lea2     Lefèvre   Lea          female  1994-01-16 false  75012  org-hcl   INS 294016998765432
p-oeuvray  Œuvray    Ÿves         male    1965-07-01 true   69003  —         INS 165076912300011
p-jean     Bernard   Jean         male    1980       —      13001  —         INS 180011300100012
p-jacques  Bernard   Jacques      male    1980-06    —      —      —         INS 180061300100013
p-marc     Dubois    Marc         male    1980-06-15 true   13001  pr-durand INS 180066913000014
p-alex     Garnier   Alex         —       1980-12-31 false  —      —         —
p-lambert  Lambert   Chloé        other   2001-02-28 true   69003  —         LOCAL 279035121518989,
                                                                             IPP 1.2.3
p-nosys    St. John  Paul         unknown —          —      —      —         (no system) NOSYS-1
p-lhopital L'Hôpital Guillaume    male    —          true   75011  —         —
========== ========= ============ ======= ========== ====== ====== ========= =========================

(pr-petit*) stored as an absolute URL on this server: ``http://testserver/fhir/Practitioner/pr-petit``.
``p-lea`` is first created with family ``Ancien`` then updated to ``Dupont``. ``p-deleted``
(Martin Sophie, INS 279035121599999), ``d-deleted`` (Léa's, LOINC 11488-4) and ``pr-gone`` (RPPS
810000000099, still the practitioner of ``role-gone``) are deleted.
"""

from __future__ import annotations

from typing import Any

INS = "urn:oid:1.2.250.1.213.1.4.8"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
FINESS = "urn:oid:1.2.250.1.71.4.2.2"
LOCAL = "urn:oid:1.2.250.1.999.1.2"
IPP = "urn:oid:1.2.250.1.999.1.3"
LOINC = "http://loinc.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
PDSM_PROFILE = "http://esante.gouv.fr/ci-sis/fhir/StructureDefinition/PDSm_ComprehensiveDocumentReference"
TAG_SYSTEM = "urn:oid:1.2.250.1.999.9"
CLASS = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
FORMAT = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
FACILITY = "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
SETTING = "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
CCAM = "https://mos.esante.gouv.fr/NOS/TRE_R38-ActeCCAM/FHIR/TRE-R38-ActeCCAM"
MHD_LIST = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
ABS = "http://testserver/fhir"


def _patient(pid: str, *, family: str, given: list[str], **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family, "given": given}], **fields}


def _ins(value: str) -> list[dict[str, Any]]:
    return [{"use": "official", "system": INS, "value": value}]


HELENE = _patient(
    "p-helene",
    family="Martin",
    given=["Hélène", "Marie"],
    language="fr-FR",
    text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Hélène Martin</div>'},
    extension=[{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {"city": "Lyon"}}],
    identifier=_ins("279035121518989"),
    active=True,
    telecom=[{"system": "phone", "value": "+33600000001"}],
    gender="female",
    birthDate="1979-03-05",
    address=[{"city": "Lyon", "postalCode": "69003"}],
    maritalStatus={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                               "code": "M"}]},
    contact=[{"name": {"family": "Martin", "given": ["Pierre"]}}],
    communication=[{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr-FR"}]}}],
    generalPractitioner=[{"reference": "Practitioner/pr-durand"}],
)  # fmt: skip

LEA_OLD = _patient("p-lea", family="Ancien", given=["Léa"], identifier=_ins("294016912345678"),
                   gender="female", birthDate="1994-01-15")  # fmt: skip
LEA = _patient(
    "p-lea", family="Dupont", given=["Léa"], identifier=_ins("294016912345678"), active=True,
    gender="female", birthDate="1994-01-15", address=[{"city": "Paris", "postalCode": "75011"}],
    generalPractitioner=[{"reference": f"{ABS}/Practitioner/pr-petit"}],
)  # fmt: skip
LEA2 = _patient(
    "p-lea2", family="Lefèvre", given=["Lea"], identifier=_ins("294016998765432"), active=False,
    gender="female", birthDate="1994-01-16", address=[{"city": "Paris", "postalCode": "75012"}],
    generalPractitioner=[{"reference": "Organization/org-hcl"}],
)  # fmt: skip
OEUVRAY = _patient(
    "p-oeuvray", family="Œuvray", given=["Ÿves"], identifier=_ins("165076912300011"), active=True,
    gender="male", birthDate="1965-07-01", address=[{"city": "Lyon", "postalCode": "69003"}],
)  # fmt: skip
JEAN = _patient(
    "p-jean", family="Bernard", given=["Jean"], identifier=_ins("180011300100012"), gender="male",
    birthDate="1980", address=[{"city": "Marseille", "postalCode": "13001"}],
)  # fmt: skip
JACQUES = _patient("p-jacques", family="Bernard", given=["Jacques"],
                   identifier=_ins("180061300100013"), gender="male", birthDate="1980-06")  # fmt: skip
MARC = _patient(
    "p-marc", family="Dubois", given=["Marc"], identifier=_ins("180066913000014"), active=True,
    gender="male", birthDate="1980-06-15", address=[{"city": "Marseille", "postalCode": "13001"}],
    generalPractitioner=[{"reference": "Practitioner/pr-durand"}],
)  # fmt: skip
ALEX = _patient("p-alex", family="Garnier", given=["Alex"], active=False, birthDate="1980-12-31")
LAMBERT = _patient(
    "p-lambert", family="Lambert", given=["Chloé"], gender="other", birthDate="2001-02-28",
    active=True, address=[{"city": "Lyon", "postalCode": "69003"}],
    identifier=[
        {"system": LOCAL, "value": "279035121518989"},
        {"type": {"coding": [{"system": V2_0203, "code": "PI"}], "text": "Identifiant patient interne"},
         "system": IPP, "value": "1.2.3"},
    ],
)  # fmt: skip
NOSYS = _patient("p-nosys", family="St. John", given=["Paul"], gender="unknown",
                 identifier=[{"value": "NOSYS-1"}])  # fmt: skip
LHOPITAL = _patient("p-lhopital", family="L'Hôpital", given=["Guillaume"], gender="male",
                    active=True, address=[{"city": "Paris", "postalCode": "75011"}])  # fmt: skip
DELETED_PATIENT = _patient("p-deleted", family="Martin", given=["Sophie"], gender="female",
                           identifier=_ins("279035121599999"), birthDate="1979-03-05",
                           active=True)  # fmt: skip

LIVE_PATIENTS = ("p-helene", "p-lea", "p-lea2", "p-oeuvray", "p-jean", "p-jacques", "p-marc",
                 "p-alex", "p-lambert", "p-nosys", "p-lhopital")  # fmt: skip

PR_DURAND = {
    "resourceType": "Practitioner", "id": "pr-durand",
    "identifier": [{"system": RPPS, "value": "810000000001"}],
    "name": [{"family": "Durand", "given": ["Paul"], "prefix": ["Dr"]}],
}  # fmt: skip
PR_PETIT = {
    "resourceType": "Practitioner", "id": "pr-petit",
    "identifier": [{"system": RPPS, "value": "810000000002"}],
    "name": [{"family": "Petit", "given": ["Anne"], "prefix": ["Dr"]}],
}  # fmt: skip
ORG_HCL = {
    "resourceType": "Organization", "id": "org-hcl",
    "identifier": [{"system": FINESS, "value": "690781810"}],
    "name": "Hôpital Édouard Herriot",
}  # fmt: skip
ORG_LABO = {
    "resourceType": "Organization", "id": "org-labo",
    "identifier": [{"system": LOCAL, "value": "A|B,C"}],
    "name": "Laboratoire Dupont, Fils & Cie",
}  # fmt: skip
PR_GONE = {
    "resourceType": "Practitioner", "id": "pr-gone",
    "identifier": [{"system": RPPS, "value": "810000000099"}],
    "name": [{"family": "Parti", "given": ["Luc"], "prefix": ["Dr"]}],
}  # fmt: skip
ROLE_GONE = {"resourceType": "PractitionerRole", "id": "role-gone",
             "practitioner": {"reference": "Practitioner/pr-gone"}}  # fmt: skip
ORG_CHU = {
    "resourceType": "Organization", "id": "org-chu",
    "name": "Centre Hospitalier Universitaire de Saint-Étienne, Hôpital Nord, Service de Cardiologie",
}  # fmt: skip
ORG_PHOENIX_V1 = {"resourceType": "Organization", "id": "org-phoenix", "name": "Cendres"}
ORG_PHOENIX = {"resourceType": "Organization", "id": "org-phoenix", "name": "Phénix"}
ROLE_DURAND = {
    "resourceType": "PractitionerRole", "id": "role-durand",
    "practitioner": {"reference": "Practitioner/pr-durand"},
    "organization": {"reference": "Organization/org-hcl"},
}  # fmt: skip


def _doc(did: str, **fields: Any) -> dict[str, Any]:
    content_type = fields.pop("content_type", "application/pdf")
    creation = fields.pop("creation", None)
    fmt = fields.pop("format", None)
    attachment: dict[str, Any] = {"contentType": content_type, "url": f"Binary/bin-{did}"}
    if creation:
        attachment["creation"] = creation
    content: dict[str, Any] = {"attachment": attachment}
    if fmt:
        content["format"] = {"system": FORMAT, "code": fmt}
    return {"resourceType": "DocumentReference", "id": did, "content": [content], **fields}


def _loinc(code: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code}]}


def _class(code: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": CLASS, "code": code}]}]


def _conf(code: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": CONF, "code": code}]}]


# DocumentReferences (ITI-67 shapes). Instants in UTC for reading the date tables:
#   d1  2024-03-05T09:00:00Z  period 08:30Z..08:45Z on 2024-03-05  creation 2024-03-05T08:50Z
#   d2  2023-11-20T08:00:00Z  period 2023-11-19..2023-11-19        creation 2023-11-20
#   d3  2024-06-01T12:30:00Z  period 2024-05-30..(open)            creation 2024-06-01
#   d4  2022-01-10T12:00:00Z  period (open)..2022-01-09            (no creation)
#   d5  2021-06-01T00:00:00Z  (no period)                          (no creation)
D1 = _doc(
    "d1", meta={"profile": [PDSM_PROFILE]}, status="current",
    type={"coding": [{"system": LOINC, "code": "11488-4", "display": "Note de consultation"}]},
    category=_class("10"),
    subject={"reference": "Patient/p-helene"}, date="2024-03-05T10:00:00+01:00",
    author=[{"reference": "Practitioner/pr-durand"}],
    relatesTo=[{"code": "replaces", "target": {"reference": "DocumentReference/d2"}}],
    securityLabel=_conf("N"), content_type="application/pdf", creation="2024-03-05T09:50:00+01:00",
    format="urn:ihe:iti:xds:2017:mimeTypeSufficient",
    context={
        "event": [{"coding": [{"system": CCAM, "code": "ZCQK002"}]}],
        "period": {"start": "2024-03-05T09:30:00+01:00", "end": "2024-03-05T09:45:00+01:00"},
        "facilityType": {"coding": [{"system": FACILITY, "code": "SA07"}]},
        "practiceSetting": {"coding": [{"system": SETTING, "code": "ETABLISSEMENT"}]},
    },
)  # fmt: skip
D2 = _doc(
    "d2", status="superseded", type=_loinc("11488-4"), category=_class("11"),
    subject={"reference": "Patient/p-helene"}, date="2023-11-20T08:00:00Z",
    author=[{"reference": "PractitionerRole/role-durand"}], securityLabel=_conf("R"),
    content_type="text/plain", creation="2023-11-20",
    context={"period": {"start": "2023-11-19", "end": "2023-11-19"},
             "facilityType": {"coding": [{"system": FACILITY, "code": "SA01"}]}},
)  # fmt: skip
D3 = _doc(
    "d3", meta={"tag": [{"system": TAG_SYSTEM, "code": "urgent"}]}, status="current",
    type=_loinc("34133-9"), category=_class("10"),
    subject={"reference": "Patient/p-lea"}, date="2024-06-01T14:30:00+02:00",
    author=[{"reference": "Practitioner/pr-petit"}], securityLabel=_conf("N"),
    content_type="application/pdf", creation="2024-06-01",
    format="urn:ihe:iti:xds:2017:mimeTypeSufficient",
    context={"period": {"start": "2024-05-30"},
             "practiceSetting": {"coding": [{"system": SETTING, "code": "ETABLISSEMENT"}]}},
)  # fmt: skip
D4 = _doc(
    "d4", status="current", type=_loinc("11488-4"), subject={"reference": "Patient/p-jean"},
    date="2022-01-10T12:00:00Z", author=[{"reference": "Organization/org-hcl"}],
    securityLabel=_conf("V"), content_type="application/pdf",
    context={"period": {"end": "2022-01-09"}},
)  # fmt: skip
D5 = _doc(
    "d5", status="entered-in-error", type=_loinc("11506-3"), subject={"reference": "Group/g-1"},
    date="2021-06-01T00:00:00Z", content_type="text/plain",
)  # fmt: skip
DELETED_DOC = _doc(
    "d-deleted", status="current", type=_loinc("11488-4"), category=_class("10"),
    subject={"reference": "Patient/p-lea"}, date="2024-02-01T10:00:00Z",
    author=[{"reference": "Practitioner/pr-petit"}], securityLabel=_conf("N"),
)  # fmt: skip
LIVE_DOCS = ("d1", "d2", "d3", "d4", "d5")


def _consent(cid: str, patient: str, status: str, actor: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent", "id": cid, "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": "2024-01-10T08:00:00+01:00",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "provision": {"type": "permit", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                 "code": "PRCP"}]},
            "reference": {"reference": actor}}]},
    }  # fmt: skip


C1 = _consent("c1", "p-helene", "active", "Practitioner/pr-durand")
C2 = _consent("c2", "p-lea", "rejected", "Organization/org-hcl")
C3 = _consent("c3", "p-helene", "inactive", "Practitioner/pr-petit")


def _list(lid: str, patient: str, code: str, status: str, item: str) -> dict[str, Any]:
    return {
        "resourceType": "List", "id": lid, "status": status, "mode": "working",
        "code": {"coding": [{"system": MHD_LIST, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"}, "date": "2024-03-05T10:00:00+01:00",
        "entry": [{"item": {"reference": item}}],
    }  # fmt: skip


L1 = _list("l1", "p-helene", "submissionset", "current", "DocumentReference/d1")
L2 = _list("l2", "p-helene", "folder", "current", "DocumentReference/d2")
L3 = _list("l3", "p-lea", "submissionset", "retired", "DocumentReference/d3")

#: In load order (referenced resources first); ``LEA_OLD`` is then replaced by ``LEA``.
RESOURCES: tuple[dict[str, Any], ...] = (
    PR_DURAND, PR_PETIT, PR_GONE, ORG_HCL, ORG_LABO, ORG_CHU, ORG_PHOENIX_V1, ROLE_DURAND, ROLE_GONE,
    HELENE, LEA_OLD, LEA2, OEUVRAY, JEAN, JACQUES, MARC, ALEX, LAMBERT, NOSYS, LHOPITAL,
    DELETED_PATIENT,
    D1, D2, D3, D4, D5, DELETED_DOC,
    C1, C2, C3, L1, L2, L3,
    LEA,
)  # fmt: skip
#: Deleted after loading.
DELETED = ("Patient/p-deleted", "DocumentReference/d-deleted", "Practitioner/pr-gone",
           "Organization/org-phoenix")  # fmt: skip
#: Created again (PUT) after their deletion.
RECREATED: tuple[dict[str, Any], ...] = (ORG_PHOENIX,)
