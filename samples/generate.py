#!/usr/bin/env python3
"""Generate the dmp-fhir sample data set (FHIR R4 transaction Bundles).

Entirely fictitious French data: people, establishments, identifiers (INS, RPPS, FINESS) and
documents are invented; identifiers only *look* real (valid control keys on test-looking values:
INS born in department "99", RPPS starting 1999999, FINESS starting 99).

Deterministic and stdlib only: run ``python samples/generate.py`` (or ``--out DIR``) and it
rewrites ``samples/*.json`` byte for byte. Every entry is a
``PUT Type/id`` so loading the files twice is idempotent; references are literal ``Type/id``.

Document types, classes and sections come from ``profiles/access-matrix.json`` so that the
samples and the access matrix cannot drift apart.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import structured  # samples/structured.py: this script's folder is first on sys.path

HERE = Path(__file__).resolve().parent
MATRIX = json.loads((HERE.parent / "profiles" / "access-matrix.json").read_text(encoding="utf-8"))

BASE = "https://dmp-fhir.example.org/fhir"
UUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, BASE)

# --------------------------------------------------------------------------- systems
OID_INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
OID_IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
OID_IDNST = "urn:oid:1.2.250.1.71.4.2.2"
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
FINESS_SYSTEM = "https://finess.esante.gouv.fr"
FR_CORE = "https://hl7.fr/ig/fhir/core"
FR_V2_0203 = f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0203"
FR_V2_0445 = f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0445"
FR_IDENTITY_RELIABILITY = f"{FR_CORE}/StructureDefinition/fr-core-identity-reliability"
FR_BIRTH_LIST_GIVEN_NAME = f"{FR_CORE}/StructureDefinition/fr-core-patient-birth-list-given-name"
FR_INSEE_CODE = f"{FR_CORE}/StructureDefinition/fr-core-address-insee-code"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
INSEE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
RELATED_PERSON_SYSTEM = "https://dmp-fhir.example.org/fhir/sid/related-person"
NOS = "https://mos.esante.gouv.fr/NOS"
TRE_G15 = f"{NOS}/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
TRE_R38 = f"{NOS}/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
TRE_R02 = f"{NOS}/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
TRE_A00 = f"{NOS}/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
TRE_A01 = f"{NOS}/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice"
TRE_A03 = f"{NOS}/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
TRE_A06 = f"{NOS}/TRE_A06-FormatCodeComplementaire/FHIR/TRE-A06-FormatCodeComplementaire"
TRE_A07 = f"{NOS}/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument"
TRE_A11 = f"{NOS}/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"
V3_CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
LOINC = "http://loinc.org"
MHD = "https://profiles.ihe.net/ITI/MHD"
PDSM_IS_ARCHIVED = "http://esante.gouv.fr/cisis/fhir/StructureDefinition/PDSm_isArchived"
SECTION_SYSTEM = MATRIX["codeSystems"]["section"]

CLASS_DISPLAY = {
    "10": "Compte rendu",
    "11": "Synthèse",
    "31": "Imagerie médicale",
    "42": "Prescription",
    "43": "Dispensation",
    "44": "Plan de soins, protocole de soins",
    "45": "Traitement administré",
    "52": "Certificat, déclaration",
    "60": "Données de remboursement",
    "90": "Autres documents déposés par le patient",
    "95": "Document de gestion",
}
CONF_DISPLAY = {"N": "normal", "R": "restricted", "V": "very restricted"}
VISIBILITY_DISPLAY = {
    "INVISIBLE_PATIENT": "Non visible par le patient",
    "INVISIBLE_REPRESENTANTS_LEGAUX": "Non visible par représentants légaux du patient",
    "MASQUE_PS": "Masqué aux professionnels de santé",
}
PROFESSION_DISPLAY = {
    "10": "Médecin",
    "21": "Pharmacien",
    "50": "Sage-Femme",
    "60": "Infirmier",
    "70": "Masseur-Kinésithérapeute",
}
SPECIALTY_DISPLAY = {
    "SM03": "Biologie médicale (SM)",
    "SM04": "Cardiologie et Maladies vasculaires (SM)",
    "SM25": "Médecine du travail (SM)",
    "SM36": "Oncologie, option médicale (SM)",
    "SM42": "Psychiatrie (SM)",
    "SM44": "Radio-diagnostic (SM)",
    "SM54": "Médecine générale (SM)",
    "SM59": "Médecine d'urgence (SM)",
}
SECTOR_DISPLAY = {
    "SA01": "Etablissement public de santé",
    "SA07": "Cabinet individuel",
    "SA08": "Cabinet de groupe",
    "SA13": "Prévention et soins en entreprise",
    "SA25": "Laboratoire de biologie médicale",
    "SA33": "Pharmacie d'officine",
    "SA52": "Maison de santé ou Pôle de santé",
    "SA24": "Organisme de sécurité sociale",
}
FORMATS = {
    "pdf": (TRE_A11, "urn:ihe:iti:xds-sd:pdf:2008", "Document à corps non structuré en Pdf/A-1"),
    "text": (TRE_A11, "urn:ihe:iti:xds-sd:text:2008", "Document à corps non structuré en texte brut"),
    "cda-lab": (TRE_A11, "urn:ihe:lab:xd-lab:2008", "Compte rendu structuré d'examens de biologie médicale"),
    "cda-vsm": (TRE_A06, "urn:asip:ci-sis:vsm:2012", "Synthèse médicale"),
    "cda-vac": (TRE_A06, "urn:asip:ci-sis:vac-note:2021", "Note de vaccination"),
}
CONTENT_TYPE = {"pdf": "application/pdf", "text": "text/plain", "cda": "application/xml"}


# --------------------------------------------------------------------------- identifiers
def ins_key(matricule: str) -> str:
    """Control key of a 13-character matricule INS/NIR (Corsica 2A/2B -> 19/18)."""
    digits = matricule.upper().replace("2A", "19").replace("2B", "18")
    return f"{97 - int(digits) % 97:02d}"


def luhn_digit(payload: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def rpps(n: int) -> str:
    body = f"1999999{n:03d}"
    return body + luhn_digit(body)


def finess(n: int) -> str:
    body = f"99{n:06d}"
    return body + luhn_digit(body)


def det_uuid(key: str) -> uuid.UUID:
    return uuid.uuid5(UUID_NS, key)


def oid_2_25(key: str) -> str:
    """A UUID-derived OID (ITU-T X.667 arc 2.25): globally unique without registration."""
    return f"urn:oid:2.25.{det_uuid(key).int}"


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def cc(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"coding": [coding(system, code, display)]}


def ref(type_: str, id_: str, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": f"{type_}/{id_}"}
    if display:
        out["display"] = display
    return out


def address(line: str, postal: str, city: str) -> dict[str, Any]:
    return {"use": "work", "line": [line], "postalCode": postal, "city": city, "country": "FRA"}


CITY, POSTAL = "Bellerive-sur-Aure", "99100"  # fictitious town, non-existent postal code


def phone(n: int) -> dict[str, Any]:
    # 01 99 00 xx xx is the range reserved by ARCEP for fiction.
    return {"system": "phone", "value": f"01 99 00 {n // 100:02d} {n % 100:02d}", "use": "work"}


# --------------------------------------------------------------------------- organisations
ORGS: list[dict[str, Any]] = [
    {
        "id": "org-chu-bellerive",
        "name": "CHU de Bellerive-sur-Aure",
        "finess": finess(1001),
        "sector": "SA01",
        "line": "1 avenue de l'Hôpital",
        "tel": 1,
    },
    {
        "id": "org-chu-urgences",
        "name": "CHU de Bellerive-sur-Aure - Service des urgences",
        "sector": "SA01",
        "partOf": "org-chu-bellerive",
        "line": "1 avenue de l'Hôpital",
        "extraType": (V3_ROLE_CODE, "ER", "Emergency room"),
        "tel": 2,
    },
    {
        "id": "org-samu-99",
        "name": "SAMU 99 - Centre de réception et de régulation des appels",
        "sector": "SA01",
        "partOf": "org-chu-bellerive",
        "line": "1 avenue de l'Hôpital",
        "extraType": (TRE_A01, "SAMU_SMUR", "SAMU/SMUR"),
        "tel": 3,
    },
    {
        "id": "org-labo-biolam",
        "name": "Laboratoire de biologie médicale BIOLAM",
        "finess": finess(2002),
        "sector": "SA25",
        "line": "14 rue Pasteur",
        "tel": 4,
    },
    {
        "id": "org-imagerie-tilleuls",
        "name": "Cabinet d'imagerie médicale des Tilleuls",
        "finess": finess(3003),
        "sector": "SA08",
        "line": "3 allée des Tilleuls",
        "tel": 5,
    },
    {
        "id": "org-pharmacie-halles",
        "name": "Pharmacie des Halles",
        "finess": finess(4004),
        "sector": "SA33",
        "line": "2 place des Halles",
        "tel": 6,
    },
    {
        "id": "org-msp-aure",
        "name": "Maison de santé pluriprofessionnelle de l'Aure",
        "finess": finess(5005),
        "sector": "SA52",
        "line": "8 rue des Écoles",
        "tel": 7,
    },
    {
        "id": "org-cabinet-kine-pont",
        "name": "Cabinet de kinésithérapie du Pont",
        "sector": "SA07",
        "line": "21 quai du Pont",
        "tel": 8,
    },
    {
        "id": "org-cabinet-sf-aure",
        "name": "Cabinet de sage-femme de l'Aure",
        "sector": "SA07",
        "line": "5 rue des Lilas",
        "tel": 9,
    },
    {
        "id": "org-spst-aure",
        "name": "Service de prévention et de santé au travail de l'Aure",
        "sector": "SA13",
        "line": "40 boulevard de l'Industrie",
        "tel": 10,
    },
    {
        "id": "org-dmp-hebergeur",
        "name": "Hébergeur du DMP (fictif)",
        "line": "99 rue de l'Hébergement",
        "tel": 11,
        "note": "Dépositaire des documents déposés par les patients eux-mêmes.",
    },
]
ORG = {o["id"]: o for o in ORGS}


def organization(o: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Organization", "id": o["id"], "active": True}
    ids = []
    if "finess" in o:
        ids.append(
            {
                "use": "official",
                "type": cc(
                    FR_V2_0203,
                    "IDNST",
                    "Identification nationale de structure définie par l'ANS dans le CI-SIS",
                ),
                "system": OID_IDNST,
                "value": "1" + o["finess"],
            }
        )
        ids.append(
            {
                "use": "official",
                "type": cc(FR_V2_0203, "FINEG", "FINESS d'entité géographique"),
                "system": FINESS_SYSTEM,
                "value": o["finess"],
            }
        )
    if ids:
        res["identifier"] = ids
    types = []
    if "sector" in o:
        types.append(cc(TRE_R02, o["sector"], SECTOR_DISPLAY[o["sector"]]))
    if "extraType" in o:
        types.append(cc(*o["extraType"]))
    if types:
        res["type"] = types
    res["name"] = o["name"]
    res["telecom"] = [phone(o["tel"])]
    res["address"] = [address(o["line"], POSTAL, CITY)]
    if "partOf" in o:
        res["partOf"] = ref("Organization", o["partOf"])
    return res


# --------------------------------------------------------------------------- practitioners
# key, given, family, gender, profession, specialty, organisation, rpps serial
PRACTITIONERS: list[tuple[str, str, str, str, str, str | None, str, int]] = [
    ("gp-martin", "Claire", "MARTIN", "female", "10", "SM54", "org-msp-aure", 1),
    ("gp-nguyen", "Thomas", "NGUYEN", "male", "10", "SM54", "org-msp-aure", 2),
    ("gp-benali", "Samia", "BENALI", "female", "10", "SM54", "org-msp-aure", 3),
    ("cardio-roux", "Philippe", "ROUX", "male", "10", "SM04", "org-chu-bellerive", 4),
    ("psy-garnier", "Élise", "GARNIER", "female", "10", "SM42", "org-chu-bellerive", 5),
    ("onco-lambert", "Vincent", "LAMBERT", "male", "10", "SM36", "org-chu-bellerive", 6),
    ("radio-perrin", "Nadia", "PERRIN", "female", "10", "SM44", "org-imagerie-tilleuls", 7),
    ("bio-chevalier", "Marc", "CHEVALIER", "male", "10", "SM03", "org-labo-biolam", 8),
    ("urg-moreau", "Julie", "MOREAU", "female", "10", "SM59", "org-chu-urgences", 9),
    ("samu-faure", "Antoine", "FAURE", "male", "10", "SM59", "org-samu-99", 10),
    ("mdt-dubois", "Catherine", "DUBOIS", "female", "10", "SM25", "org-spst-aure", 11),
    ("kine-girard", "Hugo", "GIRARD", "male", "70", None, "org-cabinet-kine-pont", 12),
    ("pharm-lemoine", "Sophie", "LEMOINE", "female", "21", None, "org-pharmacie-halles", 13),
    ("sf-rousseau", "Manon", "ROUSSEAU", "female", "50", None, "org-cabinet-sf-aure", 14),
    ("ide-bernard", "Lucie", "BERNARD", "female", "60", None, "org-msp-aure", 15),
]
PRA = {p[0]: p for p in PRACTITIONERS}
DOCTOR_TITLE = {"10", "21"}  # physicians and pharmacists are addressed as "Dr"


def practitioner(p: tuple[str, str, str, str, str, str | None, str, int]) -> dict[str, Any]:
    key, given, family, gender, prof, _spec, _org, n = p
    number = rpps(n)
    name: dict[str, Any] = {"use": "usual", "family": family, "given": [given]}
    if prof in DOCTOR_TITLE:
        name["prefix"] = ["Dr"]
    return {
        "resourceType": "Practitioner",
        "id": f"pra-{key}",
        "identifier": [
            {
                "use": "official",
                "type": cc(FR_V2_0203, "IDNPS", "Identifiant National de Professionnel de Santé"),
                "system": OID_IDNPS,
                "value": "8" + number,
            },
            {
                "use": "official",
                "type": cc(FR_V2_0203, "RPPS", "N° RPPS"),
                "system": RPPS_SYSTEM,
                "value": number,
            },
        ],
        "active": True,
        "name": [name],
        "gender": gender,
    }


def practitioner_role(p: tuple[str, str, str, str, str, str | None, str, int]) -> dict[str, Any]:
    key, given, family, _gender, prof, spec, org, n = p
    res: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": f"prr-{key}",
        "active": True,
        "practitioner": ref("Practitioner", f"pra-{key}", f"{given} {family}"),
        "organization": ref("Organization", org, ORG[org]["name"]),
        "code": [cc(TRE_G15, prof, PROFESSION_DISPLAY[prof])],
    }
    if spec:
        res["specialty"] = [cc(TRE_R38, spec, SPECIALTY_DISPLAY[spec])]
    res["telecom"] = [phone(100 + n)]
    return res


# --------------------------------------------------------------------------- patients
# id, given, family, gender, birthDate, GP key, extra
PATIENTS: list[dict[str, Any]] = [
    {
        "id": "pat-001",
        "given": "Jeanne",
        "family": "DUPUIS",
        "gender": "female",
        "birth": "1958-04-12",
        "gp": "gp-martin",
    },
    {
        "id": "pat-002",
        "given": "Julien",
        "family": "ROBIN",
        "gender": "male",
        "birth": "1979-09-23",
        "gp": "gp-nguyen",
    },
    {
        "id": "pat-003",
        "given": "Hélène",
        "family": "FABRE",
        "gender": "female",
        "birth": "1966-01-30",
        "gp": "gp-benali",
    },
    {
        "id": "pat-004",
        "given": "Michel",
        "family": "LEROY",
        "gender": "male",
        "birth": "1949-11-05",
        "gp": "gp-martin",
    },
    {
        "id": "pat-005",
        "given": "Inès",
        "family": "CARON",
        "gender": "female",
        "birth": "1995-06-18",
        "gp": "gp-nguyen",
    },
    {
        "id": "pat-006",
        "given": "Karim",
        "family": "HADDAD",
        "gender": "male",
        "birth": "1984-02-27",
        "gp": "gp-benali",
    },
    {
        "id": "pat-007",
        "given": "Sophie",
        "family": "MERCIER",
        "gender": "female",
        "birth": "1972-08-09",
        "gp": "gp-martin",
    },
    {
        "id": "pat-008",
        "given": "Bernard",
        "family": "COLIN",
        "gender": "male",
        "birth": "1955-12-01",
        "gp": "gp-nguyen",
    },
    {
        "id": "pat-009",
        "given": "Amélie",
        "family": "GIRAUD",
        "gender": "female",
        "birth": "1991-03-14",
        "gp": "gp-benali",
    },
    {
        "id": "pat-010",
        "given": "Robert",
        "family": "LAMBERTIN",
        "gender": "male",
        "birth": "1938-07-21",
        "gp": "gp-martin",
        "deceased": "2024-02-10T06:40:00+01:00",
    },
    {
        "id": "pat-011",
        "given": "Chantal",
        "family": "BLANC",
        "gender": "female",
        "birth": "1962-10-02",
        "gp": "gp-nguyen",
    },
    {
        "id": "pat-012",
        "given": "Yannick",
        "family": "LE GALL",
        "gender": "male",
        "birth": "1970-05-29",
        "gp": "gp-benali",
    },
    {
        "id": "pat-013",
        "given": "Fatou",
        "family": "DIALLO",
        "gender": "female",
        "birth": "1988-12-17",
        "gp": "gp-martin",
    },
    {
        "id": "pat-014",
        "given": "Pierre",
        "family": "VIDAL",
        "gender": "male",
        "birth": "1945-03-08",
        "gp": "gp-nguyen",
    },
    {
        "id": "pat-015",
        "given": "Océane",
        "family": "PETIT",
        "gender": "female",
        "birth": "2001-07-25",
        "gp": "gp-benali",
    },
    {
        "id": "pat-016",
        "given": "Luc",
        "family": "MARCHAND",
        "gender": "male",
        "birth": "1967-09-11",
        "gp": "gp-martin",
    },
    {
        "id": "pat-017",
        "given": "Nathalie",
        "family": "ROCHE",
        "gender": "female",
        "birth": "1976-04-04",
        "gp": "gp-nguyen",
    },
    {
        "id": "pat-018",
        "given": "Mehdi",
        "family": "BOUZID",
        "gender": "male",
        "birth": "1993-01-19",
        "gp": "gp-benali",
    },
    {
        "id": "pat-019",
        "given": "Gisèle",
        "family": "AUBERT",
        "gender": "female",
        "birth": "1952-06-30",
        "gp": "gp-martin",
    },
    {
        "id": "pat-020",
        "given": "Léa",
        "family": "FONTAINE",
        "gender": "female",
        "birth": "2010-05-03",
        "gp": "gp-benali",
        "minor": True,
    },
]
PAT = {p["id"]: p for p in PATIENTS}


def matricule(p: dict[str, Any]) -> str:
    sex = "2" if p["gender"] == "female" else "1"
    yy, mm = p["birth"][2:4], p["birth"][5:7]
    serial = int(p["id"].split("-")[1])
    # Department 99 / commune 999 (born abroad, unknown country): test-looking, never a real INS.
    return f"{sex}{yy}{mm}99999{serial:03d}"


def ins(p: dict[str, Any]) -> str:
    m = matricule(p)
    return m + ins_key(m)


def patient(p: dict[str, Any]) -> dict[str, Any]:
    n = int(p["id"].split("-")[1])
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": p["id"],
        "extension": [
            {
                "url": FR_IDENTITY_RELIABILITY,
                "extension": [
                    {"url": "identityStatus", "valueCoding": coding(FR_V2_0445, "VALI", "Identité validée")}
                ],
            },
            {
                # Department 99, commune 999, as in the matricule: born abroad, country unknown.
                "url": BIRTH_PLACE,
                "valueAddress": {
                    "extension": [{"url": FR_INSEE_CODE, "valueCoding": coding(INSEE_SYSTEM, "99999", None)}]
                },
            },
        ],
        "identifier": [
            {
                "use": "official",
                "type": cc(FR_V2_0203, "INS-NIR", "NIR définitif"),
                "system": OID_INS_NIR,
                "value": ins(p),
            }
        ],
        "active": True,
        "name": [
            {
                "extension": [{"url": FR_BIRTH_LIST_GIVEN_NAME, "valueString": p["given"]}],
                "use": "official",
                "family": p["family"],
                "given": [p["given"]],
            }
        ],
        "telecom": [
            {"system": "phone", "value": f"01 99 00 {n // 100 + 50:02d} {n % 100:02d}", "use": "home"}
        ],
        "gender": p["gender"],
        "birthDate": p["birth"],
    }
    if "deceased" in p:
        res["deceasedDateTime"] = p["deceased"]
    res["address"] = [
        {
            "use": "home",
            "line": [f"{n} rue des Fictions"],
            "postalCode": POSTAL,
            "city": CITY,
            "country": "FRA",
        }
    ]
    res["communication"] = [
        {"language": cc("urn:ietf:bcp:47", "fr-FR", "French (France)"), "preferred": True}
    ]
    res["generalPractitioner"] = [ref("PractitionerRole", f"prr-{p['gp']}")]
    return res


# --------------------------------------------------------------------------- document content
def pdf_escape(text: str) -> bytes:
    raw = text.encode("cp1252")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def make_pdf(lines: list[str]) -> bytes:
    """A tiny, valid one-page PDF 1.4 (Helvetica, WinAnsi) with a correct xref table."""
    stream = b"BT\n/F1 11 Tf\n14 TL\n56 780 Td\n"
    for line in lines:
        stream += b"(" + pdf_escape(line) + b") Tj T*\n"
    stream += b"ET\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"endstream",
    ]
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref_at = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode()
    out += b"0000000000 65535 f \n"
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref_at}\n%%EOF\n").encode()
    return out


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def name_xml(given: str, family: str, prefix: str | None = None) -> str:
    pre = f"<prefix>{prefix}</prefix>" if prefix else ""
    return f"<name>{pre}<given>{xml_escape(given)}</given><family>{xml_escape(family)}</family></name>"


def hl7_ts(dt: str) -> str:
    """2024-03-12T10:15:00+01:00 -> 20240312101500+0100."""
    date, time_tz = dt.split("T")
    time, tz = time_tz[:8], time_tz[8:]
    return date.replace("-", "") + time.replace(":", "") + tz.replace(":", "")


def make_cda(doc: dict[str, Any], p: dict[str, Any], author_key: str) -> bytes:
    """A small CDA R2 ClinicalDocument (narrative sections only, no coded entries)."""
    dtype = MATRIX["documentTypes"][doc["type"]]
    a = PRA[author_key]
    org = ORG[a[6]]
    ts = hl7_ts(doc["date"])
    gender = "F" if p["gender"] == "female" else "M"
    sections = []
    for title, rows in doc["sections"]:
        if isinstance(rows, list):
            head = "".join(f"<th>{xml_escape(h)}</th>" for h in rows[0])
            body = "".join(
                "<tr>" + "".join(f"<td>{xml_escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
            )
            text = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        else:
            text = f"<paragraph>{xml_escape(rows)}</paragraph>"
        sections.append(
            "      <component>\n        <section>\n"
            f"          <title>{xml_escape(title)}</title>\n"
            f"          <text>{text}</text>\n"
            "        </section>\n      </component>\n"
        )
    custodian_org = ORG[doc.get("custodian", a[6])]
    conf = doc["labels"][0]
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ClinicalDocument xmlns="urn:hl7-org:v3">\n'
        '  <realmCode code="FR"/>\n'
        '  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>\n'
        f'  <id root="{oid_2_25("cda/" + doc["id"])[8:]}"/>\n'
        f'  <code code="{doc["type"]}" codeSystem="2.16.840.1.113883.6.1" codeSystemName="LOINC" '
        f'displayName="{xml_escape(dtype["display"])}"/>\n'
        f"  <title>{xml_escape(doc['title'])}</title>\n"
        f'  <effectiveTime value="{ts}"/>\n'
        f'  <confidentialityCode code="{conf}" codeSystem="2.16.840.1.113883.5.25"/>\n'
        '  <languageCode code="fr-FR"/>\n'
        "  <recordTarget>\n    <patientRole>\n"
        f'      <id root="1.2.250.1.213.1.4.8" extension="{ins(p)}"/>\n'
        "      <patient>\n"
        f"        {name_xml(p['given'], p['family'])}\n"
        f'        <administrativeGenderCode code="{gender}" codeSystem="2.16.840.1.113883.5.1"/>\n'
        f'        <birthTime value="{p["birth"].replace("-", "")}"/>\n'
        "      </patient>\n    </patientRole>\n  </recordTarget>\n"
        "  <author>\n"
        f'    <time value="{ts}"/>\n'
        "    <assignedAuthor>\n"
        f'      <id root="1.2.250.1.71.4.2.1" extension="8{rpps(a[7])}"/>\n'
        + (
            f'      <code code="{a[5]}" codeSystem="1.2.250.1.213.2.28" '
            f'displayName="{xml_escape(SPECIALTY_DISPLAY[a[5]])}"/>\n'
            if a[5]
            else ""
        )
        + "      <assignedPerson>\n"
        f"        {name_xml(a[1], a[2], 'Dr' if a[4] in DOCTOR_TITLE else None)}\n"
        "      </assignedPerson>\n"
        "      <representedOrganization>\n"
        + (
            f'        <id root="1.2.250.1.71.4.2.2" extension="1{org["finess"]}"/>\n'
            if "finess" in org
            else ""
        )
        + f"        <name>{xml_escape(org['name'])}</name>\n"
        "      </representedOrganization>\n"
        "    </assignedAuthor>\n  </author>\n"
        "  <custodian>\n    <assignedCustodian>\n      <representedCustodianOrganization>\n"
        + (
            f'        <id root="1.2.250.1.71.4.2.2" extension="1{custodian_org["finess"]}"/>\n'
            if "finess" in custodian_org
            else ""
        )
        + f"        <name>{xml_escape(custodian_org['name'])}</name>\n"
        "      </representedCustodianOrganization>\n    </assignedCustodian>\n  </custodian>\n"
        "  <documentationOf>\n    <serviceEvent>\n"
        f'      <effectiveTime><low value="{hl7_ts(doc["start"])}"/></effectiveTime>\n'
        "    </serviceEvent>\n  </documentationOf>\n"
        "  <component>\n    <structuredBody>\n"
        + "".join(sections)
        + "    </structuredBody>\n  </component>\n"
        "</ClinicalDocument>\n"
    )
    return xml.encode("utf-8")


def make_text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- documents
# Each document: id, patient, type, author (practitioner key or "patient"), date (instant),
# start (context.period.start), title, kind (pdf|text|cda-lab|cda-vsm|cda-vac), labels
# (first = N/R/V then TRE_A07 codes), content, submission set id, description.
DOCS: list[dict[str, Any]] = [
    # ---- pat-001: cardiac follow-up ------------------------------------------------------
    {
        "id": "doc-001-ldl",
        "patient": "pat-001",
        "type": "11490-0",
        "author": "cardio-roux",
        "date": "2024-03-15T16:20:00+01:00",
        "start": "2024-03-11T09:30:00+01:00",
        "end": "2024-03-15T12:00:00+01:00",
        "title": "Lettre de liaison - sortie de cardiologie",
        "kind": "pdf",
        "labels": ["N"],
        "ss": "ss-001-chu",
        "lines": [
            "CHU de Bellerive-sur-Aure - Service de cardiologie",
            "Lettre de liaison à la sortie - Mme Jeanne DUPUIS (née le 12/04/1958)",
            "Séjour du 11/03/2024 au 15/03/2024.",
            "Motif : décompensation cardiaque gauche sur fibrillation atriale.",
            "Traitement de sortie : bisoprolol 2,5 mg, apixaban 5 mg x2, furosémide 40 mg.",
            "Suivi : consultation de cardiologie à 1 mois, bilan rénal à J8.",
            "Dr Philippe ROUX, cardiologue (document fictif).",
        ],
    },
    {
        "id": "doc-001-cs-cardio",
        "patient": "pat-001",
        "type": "11488-4",
        "author": "cardio-roux",
        "date": "2024-04-16T11:05:00+02:00",
        "start": "2024-04-16T10:30:00+02:00",
        "title": "Consultation de cardiologie - suivi à 1 mois",
        "kind": "pdf",
        "labels": ["N"],
        "ss": "ss-001-chu-cs",
        "lines": [
            "Consultation de cardiologie du 16/04/2024",
            "Patiente asymptomatique, NYHA I. TA 128/76, FC 68/min, ECG : rythme sinusal.",
            "Échographie : FEVG 50 %. Poursuite du traitement.",
            "Prochain contrôle dans 6 mois. Dr Philippe ROUX (document fictif).",
        ],
    },
    {
        "id": "doc-001-bio",
        "patient": "pat-001",
        "type": "11502-2",
        "author": "bio-chevalier",
        "date": "2024-03-23T14:00:00+01:00",
        "start": "2024-03-23T08:10:00+01:00",
        "title": "Compte rendu de biologie - bilan rénal et ionogramme",
        "kind": "cda-lab",
        "labels": ["N"],
        "ss": "ss-001-labo",
        "sections": [
            (
                "Biochimie",
                [
                    ["Analyse", "Résultat", "Unité", "Valeurs de référence"],
                    ["Créatinine", "88", "µmol/L", "45 - 90"],
                    ["DFG (CKD-EPI)", "61", "mL/min/1,73 m²", "> 60"],
                    ["Sodium", "139", "mmol/L", "136 - 145"],
                    ["Potassium", "4,3", "mmol/L", "3,5 - 5,1"],
                ],
            ),
            ("Commentaire", "Fonction rénale stable sous diurétique. Document fictif."),
        ],
    },
    {
        "id": "doc-001-ordo",
        "patient": "pat-001",
        "type": "57833-6",
        "author": "gp-martin",
        "date": "2024-04-20T09:40:00+02:00",
        "start": "2024-04-20T09:15:00+02:00",
        "title": "Ordonnance - renouvellement du traitement cardiologique",
        "kind": "pdf",
        "labels": ["N"],
        "ss": "ss-001-gp",
        "lines": [
            "Dr Claire MARTIN - Médecin généraliste - MSP de l'Aure",
            "Ordonnance du 20/04/2024 pour Mme Jeanne DUPUIS",
            "Bisoprolol 2,5 mg : 1 cp le matin - 3 mois",
            "Apixaban 5 mg : 1 cp matin et soir - 3 mois",
            "Furosémide 40 mg : 1 cp le matin - 3 mois",
            "(document fictif)",
        ],
    },
    {
        "id": "doc-001-vsm",
        "patient": "pat-001",
        "type": "60591-5",
        "author": "gp-martin",
        "date": "2024-04-20T09:45:00+02:00",
        "start": "2024-04-20T09:15:00+02:00",
        "title": "Volet de synthèse médicale",
        "kind": "cda-vsm",
        "labels": ["N"],
        "ss": "ss-001-gp",
        "sections": [
            (
                "Pathologies en cours",
                "Insuffisance cardiaque à FEVG modérément réduite ; fibrillation atriale paroxystique.",
            ),
            ("Antécédents", "Hypertension artérielle depuis 2010. Cholécystectomie en 1998."),
            ("Allergies", "Pénicillines (urticaire)."),
            (
                "Traitements",
                [
                    ["Médicament", "Posologie"],
                    ["Bisoprolol 2,5 mg", "1/j"],
                    ["Apixaban 5 mg", "2/j"],
                    ["Furosémide 40 mg", "1/j"],
                ],
            ),
            ("Commentaire", "Document fictif."),
        ],
    },
    {
        "id": "doc-001-disp",
        "patient": "pat-001",
        "type": "60593-1",
        "author": "pharm-lemoine",
        "date": "2024-04-20T17:30:00+02:00",
        "start": "2024-04-20T17:25:00+02:00",
        "title": "Dispensation du 20/04/2024",
        "kind": "text",
        "labels": ["N"],
        "ss": "ss-001-pharma",
        "lines": [
            "Pharmacie des Halles - Dispensation du 20/04/2024",
            "Patiente : Jeanne DUPUIS",
            "Prescripteur : Dr Claire MARTIN (ordonnance du 20/04/2024)",
            "- Bisoprolol 2,5 mg, boîte de 30 x 3",
            "- Apixaban 5 mg, boîte de 60 x 3",
            "- Furosémide 40 mg, boîte de 30 x 3",
            "Conseils : prise régulière, surveillance des saignements.",
            "Document fictif.",
        ],
    },
    {
        "id": "doc-001-note-patient",
        "patient": "pat-001",
        "type": "EXPPAT_2",
        "author": "patient",
        "date": "2024-05-02T20:12:00+02:00",
        "start": "2024-05-02T20:00:00+02:00",
        "title": "Mon carnet de tension",
        "kind": "text",
        "labels": ["N"],
        "ss": "ss-001-patient",
        "custodian": "org-dmp-hebergeur",
        "lines": [
            "Carnet de tension - Jeanne Dupuis",
            "28/04 matin 131/79  soir 126/74",
            "29/04 matin 129/77  soir 124/72",
            "30/04 matin 134/80  soir 127/75",
            "Un peu essoufflée en montant les escaliers le 29/04.",
            "Document fictif.",
        ],
    },
    # ---- pat-002: psychiatric follow-up (masked) + knee -------------------------------------
    {
        "id": "doc-002-psy",
        "patient": "pat-002",
        "type": "68599-0",
        "author": "psy-garnier",
        "date": "2024-02-08T15:30:00+01:00",
        "start": "2024-01-10T14:00:00+01:00",
        "title": "Synthèse de suivi psychiatrique",
        "kind": "pdf",
        "labels": ["V", "MASQUE_PS"],
        "ss": "ss-002-psy",
        "description": "Masqué aux professionnels à la demande du patient.",
        "lines": [
            "CHU de Bellerive-sur-Aure - Psychiatrie adulte",
            "Synthèse de suivi - M. Julien ROBIN",
            "Épisode dépressif caractérisé d'intensité moyenne, suivi depuis janvier 2024.",
            "Évolution favorable sous sertraline 50 mg et psychothérapie hebdomadaire.",
            "Pas d'idée suicidaire. Réévaluation dans 3 mois.",
            "Dr Élise GARNIER, psychiatre (document fictif).",
        ],
    },
    {
        "id": "doc-002-presc-kine",
        "patient": "pat-002",
        "type": "PRESC-KINE",
        "author": "gp-nguyen",
        "date": "2024-05-06T10:10:00+02:00",
        "start": "2024-05-06T09:50:00+02:00",
        "title": "Prescription de kinésithérapie - genou droit",
        "kind": "pdf",
        "labels": ["N"],
        "ss": "ss-002-gp",
        "lines": [
            "Dr Thomas NGUYEN - Médecin généraliste",
            "Prescription du 06/05/2024 - M. Julien ROBIN",
            "15 séances de rééducation du genou droit (entorse du LLI, stade 2).",
            "Renforcement quadricipital, proprioception. (document fictif)",
        ],
    },
    {
        "id": "doc-002-irm",
        "patient": "pat-002",
        "type": "18748-4",
        "author": "radio-perrin",
        "date": "2024-05-03T18:00:00+02:00",
        "start": "2024-05-03T16:45:00+02:00",
        "title": "IRM du genou droit",
        "kind": "pdf",
        "labels": ["N"],
        "ss": "ss-002-imagerie",
        "lines": [
            "Cabinet d'imagerie médicale des Tilleuls",
            "IRM du genou droit du 03/05/2024 - M. Julien ROBIN",
            "Indication : entorse du genou droit au football le 28/04/2024.",
            "Résultat : lésion du ligament collatéral médial de stade 2, ménisques intacts,",
            "LCA continu. Épanchement articulaire modéré.",
            "Dr Nadia PERRIN, radiologue (document fictif).",
        ],
    },
    {
        "id": "doc-002-kine-bilan",
        "patient": "pat-002",
        "type": "11506-3",
        "author": "kine-girard",
        "date": "2024-06-14T19:00:00+02:00",
        "start": "2024-05-13T08:30:00+02:00",
        "end": "2024-06-14T09:15:00+02:00",
        "title": "Bilan de fin de rééducation - genou droit",
        "kind": "text",
        "labels": ["N"],
        "ss": "ss-002-kine",
        "lines": [
            "Cabinet de kinésithérapie du Pont - Hugo GIRARD, MK",
            "Bilan de fin de rééducation - Julien ROBIN",
            "15 séances du 13/05 au 14/06/2024.",
            "Amplitudes : flexion 140°, extension complète. Pas de laxité résiduelle.",
            "Reprise de la course autorisée, reprise du football dans 4 semaines.",
            "Document fictif.",
        ],
    },
    # ---- pat-003: breast cancer (RCP invisible to the patient until announcement) ----------
    {
        "id": "doc-003-mammo",
        "patient": "pat-003",
        "type": "18748-4",
        "author": "radio-perrin",
        "date": "2024-09-05T12:00:00+02:00",
        "start": "2024-09-05T10:20:00+02:00",
        "title": "Mammographie et échographie bilatérales",
        "kind": "pdf",
        "labels": ["N"],
        "ss": "ss-003-imagerie",
        "lines": [
            "Cabinet d'imagerie médicale des Tilleuls",
            "Mammographie bilatérale - Mme Hélène FABRE",
            "Opacité spiculée de 14 mm du quadrant supéro-externe du sein gauche.",
            "Classification ACR 5. Biopsie échoguidée réalisée le jour même.",
            "Dr Nadia PERRIN, radiologue (document fictif).",
        ],
    },
    {
        "id": "doc-003-rcp",
        "patient": "pat-003",
        "type": "34794-8",
        "author": "onco-lambert",
        "date": "2024-09-19T17:45:00+02:00",
        "start": "2024-09-19T14:00:00+02:00",
        "title": "Compte rendu de RCP de sénologie",
        "kind": "pdf",
        "labels": ["R", "INVISIBLE_PATIENT"],
        "ss": "ss-003-onco",
        "description": "Non visible par la patiente avant la consultation d'annonce.",
        "lines": [
            "CHU de Bellerive-sur-Aure - RCP de sénologie du 19/09/2024",
            "Patiente : Mme Hélène FABRE, 58 ans.",
            "Diagnostic : carcinome infiltrant de type non spécifique du sein gauche, grade 2,",
            "RH+ HER2-, cT1cN0M0.",
            "Proposition : tumorectomie + ganglion sentinelle, puis radiothérapie et hormonothérapie.",
            "Consultation d'annonce prévue le 24/09/2024 avec le Dr Vincent LAMBERT.",
            "(document fictif)",
        ],
    },
    # ---- pat-004: vaccination ------------------------------------------------------------
    {
        "id": "doc-004-vac",
        "patient": "pat-004",
        "type": "87273-9",
        "author": "pharm-lemoine",
        "date": "2024-10-21T10:30:00+02:00",
        "start": "2024-10-21T10:20:00+02:00",
        "title": "Note de vaccination - grippe saisonnière",
        "kind": "cda-vac",
        "labels": ["N"],
        "ss": "ss-004-pharma",
        "sections": [
            (
                "Vaccination",
                [
                    ["Vaccin", "Lot", "Date", "Voie"],
                    [
                        "Vaccin grippal quadrivalent (fictif)",
                        "FX2024-117",
                        "21/10/2024",
                        "Intramusculaire, deltoïde gauche",
                    ],
                ],
            ),
            ("Commentaire", "Pas de réaction immédiate. Document fictif."),
        ],
    },
    # ---- pat-005: certificate ------------------------------------------------------------
    {
        "id": "doc-005-certif",
        "patient": "pat-005",
        "type": "89601-9",
        "author": "gp-nguyen",
        "date": "2024-08-30T11:00:00+02:00",
        "start": "2024-08-30T10:40:00+02:00",
        "title": "Certificat d'absence de contre-indication à la course à pied en compétition",
        "kind": "pdf",
        "labels": ["N"],
        "ss": "ss-005-gp",
        "lines": [
            "Dr Thomas NGUYEN - Médecin généraliste",
            "Je soussigné certifie avoir examiné ce jour Mme Inès CARON, née le 18/06/1995,",
            "et n'avoir constaté aucune contre-indication à la pratique de la course à pied",
            "en compétition. Certificat remis en main propre. (document fictif)",
        ],
    },
    # ---- pat-006: occupational health ----------------------------------------------------
    {
        "id": "doc-006-sante-travail",
        "patient": "pat-006",
        "type": "11488-4",
        "author": "mdt-dubois",
        "date": "2024-06-04T15:00:00+02:00",
        "start": "2024-06-04T14:30:00+02:00",
        "title": "Visite d'information et de prévention",
        "kind": "text",
        "labels": ["R"],
        "ss": "ss-006-spst",
        "section": "SANTE_TRAVAIL",
        "lines": [
            "Service de prévention et de santé au travail de l'Aure",
            "Visite d'information et de prévention - Karim HADDAD, cariste",
            "Expositions : bruit (82 dB(A)), manutention, travail de nuit occasionnel.",
            "Audiogramme : perte de 15 dB sur 4 kHz à droite. Port des bouchons moulés conseillé.",
            "Prochaine visite dans 2 ans. Dr Catherine DUBOIS, médecin du travail.",
            "Document fictif.",
        ],
    },
    # ---- pat-007: emergency visit --------------------------------------------------------
    {
        "id": "doc-007-urgences",
        "patient": "pat-007",
        "type": "15507-7",
        "author": "urg-moreau",
        "date": "2024-11-02T04:50:00+01:00",
        "start": "2024-11-02T01:35:00+01:00",
        "end": "2024-11-02T04:30:00+01:00",
        "title": "Compte rendu de passage aux urgences",
        "kind": "pdf",
        "labels": ["N"],
        "ss": "ss-007-urgences",
        "lines": [
            "CHU de Bellerive-sur-Aure - Service des urgences",
            "Passage du 02/11/2024 - Mme Sophie MERCIER",
            "Motif : douleur abdominale aiguë de la fosse iliaque droite.",
            "Biologie : CRP 12 mg/L, leucocytes 9,8 G/L. Échographie : appendice normal.",
            "Diagnostic retenu : colique néphrétique droite. Retour à domicile.",
            "Dr Julie MOREAU, urgentiste (document fictif).",
        ],
    },
    # ---- pat-008: consultation (patient opposed to emergency access) ---------------------
    {
        "id": "doc-008-cs",
        "patient": "pat-008",
        "type": "11488-4",
        "author": "gp-nguyen",
        "date": "2024-07-12T10:00:00+02:00",
        "start": "2024-07-12T09:30:00+02:00",
        "title": "Consultation de suivi - diabète de type 2",
        "kind": "text",
        "labels": ["N"],
        "ss": "ss-008-gp",
        "lines": [
            "Dr Thomas NGUYEN - Consultation du 12/07/2024 - Bernard COLIN",
            "Diabète de type 2 sous metformine 1000 mg x2. HbA1c 7,1 %.",
            "Pieds : pas de lésion. Fond d'œil à programmer.",
            "Document fictif.",
        ],
    },
    # ---- pat-009: pregnancy --------------------------------------------------------------
    {
        "id": "doc-009-antepartum",
        "patient": "pat-009",
        "type": "57055-6",
        "author": "sf-rousseau",
        "date": "2024-12-10T12:15:00+01:00",
        "start": "2024-12-10T11:30:00+01:00",
        "title": "Synthèse antepartum - 32 SA",
        "kind": "pdf",
        "labels": ["N"],
        "ss": "ss-009-sf",
        "lines": [
            "Cabinet de sage-femme de l'Aure - Manon ROUSSEAU, sage-femme",
            "Synthèse antepartum - Mme Amélie GIRAUD, G1P0, 32 SA",
            "Grossesse de déroulement normal. Groupe O Rh+. Sérologie toxoplasmose négative.",
            "Échographie T3 : croissance au 45e percentile, placenta fundique.",
            "Accouchement prévu au CHU de Bellerive-sur-Aure. (document fictif)",
        ],
    },
    {
        "id": "doc-009-bio",
        "patient": "pat-009",
        "type": "11502-2",
        "author": "bio-chevalier",
        "date": "2024-12-02T13:00:00+01:00",
        "start": "2024-12-02T07:45:00+01:00",
        "title": "Compte rendu de biologie - bilan du 3e trimestre",
        "kind": "cda-lab",
        "labels": ["N"],
        "ss": "ss-009-labo",
        "sections": [
            (
                "Hématologie",
                [
                    ["Analyse", "Résultat", "Unité", "Valeurs de référence"],
                    ["Hémoglobine", "11,4", "g/dL", "11,0 - 14,0"],
                    ["Plaquettes", "231", "G/L", "150 - 400"],
                ],
            ),
            (
                "Sérologies",
                [
                    ["Analyse", "Résultat"],
                    ["Toxoplasmose IgG", "Négatif"],
                    ["Agglutinines irrégulières", "Négatif"],
                ],
            ),
            ("Commentaire", "Document fictif."),
        ],
    },
    # ---- pat-010: deceased patient -------------------------------------------------------
    {
        "id": "doc-010-crh",
        "patient": "pat-010",
        "type": "34112-3",
        "author": "cardio-roux",
        "date": "2024-01-29T15:00:00+01:00",
        "start": "2024-01-18T20:10:00+01:00",
        "end": "2024-01-29T11:00:00+01:00",
        "title": "Compte rendu d'hospitalisation - cardiologie",
        "kind": "pdf",
        "labels": ["N"],
        "ss": "ss-010-chu",
        "lines": [
            "CHU de Bellerive-sur-Aure - Service de cardiologie",
            "Hospitalisation du 18/01 au 29/01/2024 - M. Robert LAMBERTIN, 85 ans",
            "Rétrécissement aortique serré symptomatique, non opérable (comorbidités).",
            "Prise en charge palliative discutée avec le patient et sa famille.",
            "Retour à domicile avec HAD. Dr Philippe ROUX (document fictif).",
        ],
    },
    # ---- pat-020: minor, consultation hidden from the parents -----------------------------
    {
        "id": "doc-020-contraception",
        "patient": "pat-020",
        "type": "11488-4",
        "author": "sf-rousseau",
        "date": "2025-03-18T17:20:00+01:00",
        "start": "2025-03-18T16:45:00+01:00",
        "title": "Consultation de contraception",
        "kind": "text",
        "labels": ["R", "INVISIBLE_REPRESENTANTS_LEGAUX"],
        "ss": "ss-020-sf",
        "description": "Consultation confidentielle d'une mineure "
        "(secret vis-à-vis des représentants légaux).",
        "lines": [
            "Cabinet de sage-femme de l'Aure - Manon ROUSSEAU, sage-femme",
            "Consultation de contraception - Léa FONTAINE, 14 ans",
            "Demande de secret vis-à-vis des représentants légaux (art. L.5134-1 CSP).",
            "Information sur les méthodes ; prescription d'une contraception orale.",
            "Document fictif.",
        ],
    },
]

# submission set id -> (author key or "patient", date, title)
SUBMISSIONS: dict[str, tuple[str, str, str]] = {}
for _d in DOCS:
    SUBMISSIONS.setdefault(_d["ss"], (_d["author"], _d["date"], _d["title"]))


def binary_bytes(doc: dict[str, Any]) -> tuple[bytes, str]:
    p = PAT[doc["patient"]]
    if doc["kind"] == "pdf":
        return make_pdf(doc["lines"]), CONTENT_TYPE["pdf"]
    if doc["kind"] == "text":
        return make_text(doc["lines"]), CONTENT_TYPE["text"]
    return make_cda(doc, p, doc["author"]), CONTENT_TYPE["cda"]


def author_ref(author: str, patient_id: str) -> dict[str, Any]:
    if author == "patient":
        p = PAT[patient_id]
        return ref("Patient", patient_id, f"{p['given']} {p['family']}")
    a = PRA[author]
    return ref("PractitionerRole", f"prr-{author}", f"{a[1]} {a[2]}")


def context_codes(author: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if author == "patient":
        c = cc(TRE_A00, "EXP_PATIENT", "Expression personnelle du patient")
        return c, c
    org = ORG[PRA[author][6]]
    sector = org["sector"]
    facility = cc(TRE_R02, sector, SECTOR_DISPLAY[sector])
    if sector == "SA01":
        setting = cc(TRE_A01, "ETABLISSEMENT", "Etablissement de santé")
    else:
        setting = cc(TRE_A01, "AMBULATOIRE", "Ambulatoire")
    return facility, setting


def document_reference(doc: dict[str, Any], data: bytes, content_type: str) -> dict[str, Any]:
    dtype = MATRIX["documentTypes"][doc["type"]]
    klass = dtype["class"]
    class_display = CLASS_DISPLAY[klass]
    category = cc(TRE_A03, klass, class_display)
    if doc.get("section"):
        section = MATRIX["sections"][doc["section"]]
        category["coding"].append(coding(SECTION_SYSTEM, doc["section"], section["display"]))
    labels = [cc(V3_CONF, doc["labels"][0], CONF_DISPLAY[doc["labels"][0]])]
    labels += [cc(TRE_A07, code, VISIBILITY_DISPLAY[code]) for code in doc["labels"][1:]]
    author = doc["author"]
    custodian = doc.get("custodian") or PRA[author][6]
    facility, setting = context_codes(author)
    fmt_key = doc["kind"]
    fmt_system, fmt_code, fmt_display = FORMATS[fmt_key]
    period: dict[str, Any] = {"start": doc["start"]}
    if doc.get("end"):
        period["end"] = doc["end"]
    res: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": doc["id"],
        "meta": {
            "profile": [f"{MHD}/StructureDefinition/IHE.MHD.UnContained.Comprehensive.DocumentReference"]
        },
        "extension": [{"url": PDSM_IS_ARCHIVED, "valueBoolean": False}],
        "masterIdentifier": {
            "use": "usual",
            "system": "urn:ietf:rfc:3986",
            "value": oid_2_25("doc/" + doc["id"]),
        },
        "identifier": [
            {
                "use": "official",
                "system": "urn:ietf:rfc:3986",
                "value": f"urn:uuid:{det_uuid('entry/' + doc['id'])}",
            }
        ],
        "status": "current",
        "type": cc(dtype["system"], doc["type"], dtype["display"]),
        "category": [category],
        "subject": ref("Patient", doc["patient"]),
        "date": doc["date"],
        "author": [author_ref(author, doc["patient"])],
    }
    if author != "patient":
        res["authenticator"] = ref("PractitionerRole", f"prr-{author}")
    res["custodian"] = ref("Organization", custodian, ORG[custodian]["name"])
    if doc.get("description"):
        res["description"] = doc["description"]
    res["securityLabel"] = labels
    res["content"] = [
        {
            "attachment": {
                "contentType": content_type,
                "language": "fr-FR",
                "url": f"Binary/bin-{doc['id'][4:]}",
                "size": len(data),
                "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),
                "title": doc["title"],
                "creation": doc["date"],
            },
            "format": coding(fmt_system, fmt_code, fmt_display),
        }
    ]
    res["context"] = {
        "period": period,
        "facilityType": facility,
        "practiceSetting": setting,
        "sourcePatientInfo": ref("Patient", doc["patient"]),
    }
    return res


def binary(doc: dict[str, Any], data: bytes, content_type: str) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "id": f"bin-{doc['id'][4:]}",
        "contentType": content_type,
        "securityContext": ref("DocumentReference", doc["id"]),
        "data": base64.b64encode(data).decode("ascii"),
    }


def submission_set(ss_id: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
    author, date, _ = SUBMISSIONS[ss_id]
    patient_id = docs[0]["patient"]
    if author == "patient":
        designation = cc(TRE_A00, "EXP_PATIENT", "Expression personnelle du patient")
        source_system = "dmp-fhir/patient-portal"
    else:
        org = ORG[PRA[author][6]]
        designation = cc(TRE_R02, org["sector"], SECTOR_DISPLAY[org["sector"]])
        source_system = f"dmp-fhir/{org['id']}"
    titles = "; ".join(d["title"] for d in docs)
    return {
        "resourceType": "List",
        "id": ss_id,
        "meta": {"profile": [f"{MHD}/StructureDefinition/IHE.MHD.UnContained.Comprehensive.SubmissionSet"]},
        "extension": [
            {
                "url": f"{MHD}/StructureDefinition/ihe-sourceId",
                "valueIdentifier": {"system": "urn:ietf:rfc:3986", "value": oid_2_25(source_system)},
            },
            {"url": f"{MHD}/StructureDefinition/ihe-designationType", "valueCodeableConcept": designation},
            {"url": PDSM_IS_ARCHIVED, "valueBoolean": False},
        ],
        "identifier": [
            {"use": "usual", "system": "urn:ietf:rfc:3986", "value": oid_2_25("ss/" + ss_id)},
            {
                "use": "official",
                "system": "urn:ietf:rfc:3986",
                "value": f"urn:uuid:{det_uuid('ss-entry/' + ss_id)}",
            },
        ],
        "status": "current",
        "mode": "working",
        "title": f"Lot de soumission : {titles}",
        "code": cc(f"{MHD}/CodeSystem/MHDlistTypes", "submissionset", "SubmissionSet as a FHIR List"),
        "subject": ref("Patient", patient_id),
        "date": date,
        "source": author_ref(author, patient_id),
        "entry": [{"item": ref("DocumentReference", d["id"])} for d in docs],
    }


# --------------------------------------------------------------------------- consents
def consent(
    id_: str, patient_id: str, date: str, kind: str, provision: dict[str, Any], text: str
) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": id_,
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{xml_escape(text)}</p></div>',
        },
        "status": "active",
        "scope": cc(CONSENT_SCOPE, "patient-privacy", "Privacy Consent"),
        "category": [cc(LOINC, "59284-0", "Patient Consent")],
        "patient": ref("Patient", patient_id),
        "dateTime": date,
        "performer": [ref("Patient", patient_id)],
        "organization": [ref("Organization", "org-dmp-hebergeur")],
        "policyRule": cc(V3_ACT_CODE, kind, {"OPTIN": "opt-in", "OPTOUT": "opt-out"}[kind]),
        "provision": provision,
    }


def creation_consent(id_: str, patient_id: str, date: str, text: str) -> dict[str, Any]:
    """The informed consent to open the DMP (profile dmp-consent-creation): it authorises nobody."""
    created = consent(id_, patient_id, date, "OPTIN", {"type": "permit", "action": ACCESS}, text)
    created["category"] = [
        {
            "coding": [
                coding(LOINC, "59284-0", "Patient Consent"),
                coding(
                    f"{BASE}/CodeSystem/dmp-consent-category",
                    "CREATION_DMP",
                    "Consentement à la création du DMP",
                ),
            ]
        }
    ]
    return created


ACCESS = [cc(CONSENT_ACTION, "access", "Access")]
RECIPIENT = cc(V3_PARTICIPATION, "PRCP", "primary information recipient")
CONSENTS = [
    creation_consent(
        "consent-001-creation",
        "pat-001",
        "2022-03-02T09:40:00+01:00",
        "Jeanne DUPUIS consent à l'ouverture de son DMP (consentement éclairé recueilli en ligne).",
    ),
    creation_consent(
        "consent-005-creation",
        "pat-005",
        "2023-09-14T17:05:00+02:00",
        "Inès CARON consent à l'ouverture de son DMP, créé chez son médecin traitant.",
    ),
    consent(
        "consent-001-permit-cardio",
        "pat-001",
        "2024-03-11T10:00:00+01:00",
        "OPTIN",
        {
            "type": "permit",
            "period": {"start": "2024-03-11", "end": "2025-03-11"},
            "actor": [{"role": RECIPIENT, "reference": ref("Practitioner", "pra-cardio-roux")}],
            "action": ACCESS,
            "purpose": [coding(V3_ACT_REASON, "TREAT", "treatment")],
        },
        "Jeanne DUPUIS autorise le Dr Philippe ROUX (cardiologue) à accéder à son DMP.",
    ),
    consent(
        "consent-002-permit-chu",
        "pat-002",
        "2024-01-10T13:30:00+01:00",
        "OPTIN",
        {
            "type": "permit",
            "period": {"start": "2024-01-10"},
            "actor": [{"role": RECIPIENT, "reference": ref("Organization", "org-chu-bellerive")}],
            "action": ACCESS,
            "purpose": [coding(V3_ACT_REASON, "TREAT", "treatment")],
        },
        "Julien ROBIN autorise les professionnels du CHU de Bellerive-sur-Aure à accéder à son DMP.",
    ),
    consent(
        "consent-002-permit-kine",
        "pat-002",
        "2024-05-13T08:25:00+02:00",
        "OPTIN",
        {
            "type": "permit",
            "period": {"start": "2024-05-13"},
            "actor": [{"role": RECIPIENT, "reference": ref("Practitioner", "pra-kine-girard")}],
            "action": ACCESS,
            "purpose": [coding(V3_ACT_REASON, "TREAT", "treatment")],
        },
        "Julien ROBIN autorise son masseur-kinésithérapeute Hugo GIRARD à accéder à son DMP.",
    ),
    consent(
        "consent-003-permit-onco",
        "pat-003",
        "2024-09-05T09:00:00+02:00",
        "OPTIN",
        {
            "type": "permit",
            "period": {"start": "2024-09-05"},
            "actor": [{"role": RECIPIENT, "reference": ref("Practitioner", "pra-onco-lambert")}],
            "action": ACCESS,
            "purpose": [coding(V3_ACT_REASON, "TREAT", "treatment")],
        },
        "Hélène FABRE autorise le Dr Vincent LAMBERT (oncologue) à accéder à son DMP.",
    ),
    consent(
        "consent-003-block-nguyen",
        "pat-003",
        "2024-09-26T21:00:00+02:00",
        "OPTOUT",
        {
            "type": "deny",
            "actor": [{"role": RECIPIENT, "reference": ref("Practitioner", "pra-gp-nguyen")}],
            "action": ACCESS,
        },
        "Hélène FABRE interdit l'accès à son DMP au Dr Thomas NGUYEN (blocage).",
    ),
    consent(
        "consent-004-permit-pharmacie",
        "pat-004",
        "2024-10-21T10:15:00+02:00",
        "OPTIN",
        {
            "type": "permit",
            "period": {"start": "2024-10-21"},
            "actor": [{"role": RECIPIENT, "reference": ref("Organization", "org-pharmacie-halles")}],
            "action": ACCESS,
            "purpose": [coding(V3_ACT_REASON, "TREAT", "treatment")],
        },
        "Michel LEROY autorise la Pharmacie des Halles à accéder à son DMP.",
    ),
    consent(
        "consent-006-permit-mdt",
        "pat-006",
        "2024-06-04T14:25:00+02:00",
        "OPTIN",
        {
            "type": "permit",
            "period": {"start": "2024-06-04"},
            "actor": [{"role": RECIPIENT, "reference": ref("Practitioner", "pra-mdt-dubois")}],
            "action": ACCESS,
            "purpose": [coding(V3_ACT_REASON, "TREAT", "treatment")],
        },
        "Karim HADDAD autorise le Dr Catherine DUBOIS (médecin du travail) "
        "à accéder au volet santé au travail.",
    ),
    consent(
        "consent-008-no-emergency",
        "pat-008",
        "2023-11-20T19:00:00+01:00",
        "OPTOUT",
        {
            "type": "deny",
            "action": ACCESS,
            "purpose": [
                coding(V3_ACT_REASON, "ETREAT", "Emergency Treatment"),
                coding(V3_ACT_REASON, "BTG", "break the glass"),
            ],
        },
        "Bernard COLIN s'oppose à l'accès à son DMP en mode urgence (bris de glace).",
    ),
    consent(
        "consent-009-permit-sf",
        "pat-009",
        "2024-06-03T11:00:00+02:00",
        "OPTIN",
        {
            "type": "permit",
            "period": {"start": "2024-06-03"},
            "actor": [{"role": RECIPIENT, "reference": ref("Practitioner", "pra-sf-rousseau")}],
            "action": ACCESS,
            "purpose": [coding(V3_ACT_REASON, "TREAT", "treatment")],
        },
        "Amélie GIRAUD autorise sa sage-femme Manon ROUSSEAU à accéder à son DMP.",
    ),
]

# --------------------------------------------------------------------------- related persons
RELATED = [
    {
        "id": "rp-020-mere",
        "given": "Nathalie",
        "family": "FONTAINE",
        "gender": "female",
        "birth": "1981-02-11",
        "rel": ("MTH", "mother"),
    },
    {
        "id": "rp-020-pere",
        "given": "Olivier",
        "family": "FONTAINE",
        "gender": "male",
        "birth": "1979-10-27",
        "rel": ("FTH", "father"),
    },
]


def related_person(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "id": r["id"],
        "active": True,
        "patient": ref("Patient", "pat-020"),
        "identifier": [{"system": RELATED_PERSON_SYSTEM, "value": r["id"]}],
        "relationship": [cc(V3_ROLE_CODE, *r["rel"]), cc(V3_ROLE_CODE, "GUARD", "guardian")],
        "name": [{"use": "official", "family": r["family"], "given": [r["given"]]}],
        "gender": r["gender"],
        "birthDate": r["birth"],
        "address": [
            {
                "use": "home",
                "line": ["20 rue des Fictions"],
                "postalCode": POSTAL,
                "city": CITY,
                "country": "FRA",
            }
        ],
    }


# --------------------------------------------------------------------------- bundles
def bundle(bundle_id: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def build() -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    files["00-organizations.json"] = bundle("sample-organizations", [organization(o) for o in ORGS])
    roles = []
    for p in PRACTITIONERS:
        roles += [practitioner(p), practitioner_role(p)]
    files["01-practitioners.json"] = bundle("sample-practitioners", roles)
    files["02-patients.json"] = bundle("sample-patients", [patient(p) for p in PATIENTS])
    by_ss: dict[str, list[dict[str, Any]]] = {}
    for d in DOCS:
        by_ss.setdefault(d["ss"], []).append(d)
    for ss_id, docs in by_ss.items():
        resources: list[dict[str, Any]] = [submission_set(ss_id, docs)]
        for d in docs:
            data, content_type = binary_bytes(d)
            resources.append(document_reference(d, data, content_type))
            resources.append(binary(d, data, content_type))
        files[f"10-{ss_id}.json"] = bundle(f"sample-{ss_id}", resources)
    files["20-consents.json"] = bundle("sample-consents", CONSENTS)
    files["30-related-persons.json"] = bundle("sample-related-persons", [related_person(r) for r in RELATED])
    for name, resources in structured.files().items():
        files[name] = bundle(f"sample-{name[3:-5]}", resources)
    return files


def write(out: Path) -> list[Path]:
    written = []
    for name, content in build().items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: samples/)")
    args = parser.parse_args()
    for path in write(args.out):
        print(path)


if __name__ == "__main__":
    main()
