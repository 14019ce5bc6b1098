"""Structured sample data (issue 18): laboratory results, dispensations, vaccinations, allergies
and problems, as transaction Bundles of ``PUT Type/id`` like the other samples.

Imported by ``generate.py`` (stdlib only, deterministic). Codes are real (LOINC, UCUM, ATC,
SNOMED CT, CIM-10); identifiers (CIP13, CIS, lots, the senders' identifier systems) are invented.
"""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CIP13 = "urn:oid:1.2.250.1.213.2.3.2"  # Code Identifiant de Présentation (ANSM)
CIS = "urn:oid:1.2.250.1.213.2.3.1"  # Code Identifiant de Spécialité
ATC = "http://www.whocc.no/atc"
SNOMED = "http://snomed.info/sct"
CIM10 = "http://hl7.org/fhir/sid/icd-10"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
MED_STATEMENT_CATEGORY = "http://terminology.hl7.org/CodeSystem/medication-statement-category"
SECTION = "https://dmp-fhir.example.org/fhir/CodeSystem/dmp-section"
VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument"
)
#: The senders' own identifier systems (invented OIDs under the samples' fictitious arc).
LAB_IDS = "urn:oid:1.2.250.1.999.2002.1"
PHARMACY_IDS = "urn:oid:1.2.250.1.999.4004.1"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
FIRST_FILL = ("FFC", "First Fill - Complete")
REFILL = ("RFC", "Refill - Complete")
VACCINATION_IDS = "urn:oid:1.2.250.1.999.5005.1"


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _cc(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [_coding(system, code, display)]}
    if text:
        out["text"] = text
    return out


def _ref(rtype: str, rid: str) -> dict[str, Any]:
    return {"reference": f"{rtype}/{rid}"}


def _q(value: float, unit: str, code: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def _masked(meta: dict[str, Any] | None, code: str, display: str) -> dict[str, Any]:
    out = dict(meta or {})
    out["security"] = [*out.get("security", []), _coding(VISIBILITY, code, display)]
    return out


# --------------------------------------------------------------------------- laboratory
#: (key, LOINC, display, value, UCUM unit, low, high) — an NFS (complete blood count) and an
#: ionogramme (electrolytes) with creatinine and HbA1c, as a French laboratory reports them.
NFS_IONO: list[tuple[str, str, str, float, str, float, float]] = [
    ("leuco", "6690-2", "Leucocytes", 7.2, "10*9/L", 4.0, 10.0),
    ("hematies", "789-8", "Hématies", 4.41, "10*12/L", 4.28, 5.79),
    ("hb", "718-7", "Hémoglobine", 13.1, "g/dL", 13.4, 16.7),
    ("ht", "4544-3", "Hématocrite", 39.8, "%", 39.2, 48.6),
    ("vgm", "787-2", "VGM", 90.2, "fL", 78.0, 98.0),
    ("plaquettes", "777-3", "Plaquettes", 231.0, "10*9/L", 150.0, 400.0),
    ("na", "2951-2", "Sodium", 139.0, "mmol/L", 136.0, 145.0),
    ("k", "2823-3", "Potassium", 5.3, "mmol/L", 3.5, 5.1),
    ("cl", "2075-0", "Chlorure", 101.0, "mmol/L", 98.0, 107.0),
    ("co2", "2028-9", "Bicarbonates (CO2 total)", 26.0, "mmol/L", 22.0, 29.0),
    ("creat", "14682-9", "Créatinine", 98.0, "umol/L", 64.0, 104.0),
    ("hba1c", "4548-4", "Hémoglobine glyquée (HbA1c)", 7.4, "%", 4.0, 6.0),
]


def lab_observation(
    pid: str, key: str, row: tuple[str, str, str, float, str, float, float], when: str, performer: str,
    *, meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    _, loinc, display, value, unit, low, high = row
    flag = "H" if value > high else ("L" if value < low else "N")
    label = {"H": "High", "L": "Low", "N": "Normal"}[flag]
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"obs-{pid[4:]}-{key}",
        "identifier": [{"system": LAB_IDS, "value": f"{pid}-{when[:10]}-{loinc}"}],
        "status": "final",
        "category": [_cc(OBS_CATEGORY, "laboratory", "Laboratory")],
        "code": _cc(LOINC, loinc, None, display),
        "subject": _ref("Patient", pid),
        "effectiveDateTime": when,
        "issued": when[:11] + "17:30:00+02:00",
        "performer": [_ref("PractitionerRole", performer), _ref("Organization", "org-labo-biolam")],
        "valueQuantity": _q(value, unit),
        "interpretation": [_cc(INTERPRETATION, flag, label)],
        "referenceRange": [{"low": _q(low, unit), "high": _q(high, unit)}],
    }
    if meta:
        res["meta"] = meta
    return res


def lab_report(pid: str, rid: str, when: str, results: list[dict[str, Any]], conclusion: str) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "identifier": [{"system": LAB_IDS, "value": f"CR-{pid}-{when[:10]}"}],
        "status": "final",
        "category": [_cc(V2_0074, "LAB", "Laboratory")],
        "code": _cc(LOINC, "11502-2", "Laboratory report", "Compte rendu d'examens biologiques"),
        "subject": _ref("Patient", pid),
        "effectiveDateTime": when,
        "issued": when[:11] + "17:30:00+02:00",
        "performer": [_ref("PractitionerRole", "prr-bio-chevalier"), _ref("Organization", "org-labo-biolam")],
        "result": [_ref("Observation", r["id"]) for r in results],
        "conclusion": conclusion,
    }


# --------------------------------------------------------------------------- pharmacy
#: A chronic treatment (type 2 diabetes, hypertension): the monthly dispensations of a year.
CHRONIC: list[tuple[str, str, str, str, str, str]] = [
    # key, CIP13 (invented), ATC, ATC display, text, dosage
    ("metformine", "3400999000017", "A10BA02", "metformin", "METFORMINE 1000 mg, comprimé pelliculé, boîte de 90",
     "1 comprimé matin, midi et soir au cours des repas"),
    ("ramipril", "3400999000024", "C09AA05", "ramipril", "RAMIPRIL 5 mg, comprimé sécable, boîte de 30",
     "1 comprimé le matin"),
]  # fmt: skip


def _offset(month: int) -> str:
    return "+02:00" if 4 <= month <= 10 else "+01:00"


def dispensations(pid: str, year_months: list[tuple[int, int]]) -> list[dict[str, Any]]:
    out = []
    for n, (year, month) in enumerate(year_months, start=1):
        for key, cip, atc, atc_display, text, dosage in CHRONIC:
            when = f"{year}-{month:02d}-05T10:{10 + n:02d}:00{_offset(month)}"
            boxes = 1 if key == "metformine" else 1
            out.append(
                {
                    "resourceType": "MedicationDispense",
                    "id": f"disp-{pid[4:]}-{year}{month:02d}-{key}",
                    "identifier": [{"system": PHARMACY_IDS, "value": f"{pid}-{year}{month:02d}-{cip}"}],
                    "status": "completed",
                    # complétude: the first dispensation of the treatment, then refills
                    "type": {"coding": [_coding(ACT_CODE, *(FIRST_FILL if n == 1 else REFILL))]},
                    "medicationCodeableConcept": {
                        "coding": [_coding(CIP13, cip, text), _coding(ATC, atc, atc_display)],
                        "text": text,
                    },
                    "subject": _ref("Patient", pid),
                    "performer": [{"actor": _ref("PractitionerRole", "prr-pharm-lemoine")}],
                    "location": {"display": "Pharmacie des Halles"},
                    "quantity": {"value": boxes, "unit": "boîte", "system": UCUM, "code": "{box}"},
                    "daysSupply": {"value": 30, "unit": "jours", "system": UCUM, "code": "d"},
                    "whenHandedOver": when,
                    "dosageInstruction": [{"text": dosage}],
                }
            )
    return out


def statement(
    pid: str, rid: str, key: str, source: dict[str, Any], start: str, *, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    _, cip, atc, atc_display, text, dosage = next(c for c in CHRONIC if c[0] == key)
    res: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": rid,
        "status": "active",
        "category": _cc(MED_STATEMENT_CATEGORY, "community", "Community"),
        "medicationCodeableConcept": {
            "coding": [_coding(CIP13, cip, text), _coding(ATC, atc, atc_display)],
            "text": text,
        },
        "subject": _ref("Patient", pid),
        "effectivePeriod": {"start": start},
        "informationSource": source,
        "dosage": [{"text": dosage}],
    }
    if meta:
        res["meta"] = meta
    return res


# --------------------------------------------------------------------------- vaccination
VACCINES: dict[str, tuple[str, str, str, str]] = {
    # key: CIS (invented), ATC, ATC display, text
    "grippe": ("69999001", "J07BB02", "influenza, inactivated, split virus or surface antigen",
               "Vaccin grippal inactivé tétravalent"),
    "covid": ("69999002", "J07BN01", "covid-19, RNA-based vaccine", "Vaccin COVID-19 à ARNm"),
    "dtp": ("69999003", "J07CA01", "diphtheria-poliomyelitis-tetanus", "Vaccin diphtérie-tétanos-poliomyélite"),
}  # fmt: skip


def immunization(pid: str, key: str, when: str, performer: str, lot: str) -> dict[str, Any]:
    cis, atc, atc_display, text = VACCINES[key]
    return {
        "resourceType": "Immunization",
        "id": f"imm-{pid[4:]}-{key}-{when[:4]}",
        "identifier": [{"system": VACCINATION_IDS, "value": f"{pid}-{key}-{when[:10]}"}],
        "status": "completed",
        "vaccineCode": {"coding": [_coding(CIS, cis, text), _coding(ATC, atc, atc_display)], "text": text},
        "patient": _ref("Patient", pid),
        "occurrenceDateTime": when,
        "primarySource": True,
        "lotNumber": lot,
        "site": _cc("http://terminology.hl7.org/CodeSystem/v3-ActSite", "LD", "left deltoid"),
        "route": _cc("http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration", "IM", "Injection, intramuscular"),
        "performer": [{"actor": _ref("PractitionerRole", performer)}],
    }


# --------------------------------------------------------------------------- synthesis
def allergy(
    pid: str, key: str, code: tuple[str, str], category: str, criticality: str, recorder: str, recorded: str,
    manifestation: tuple[str, str],
) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "id": f"allergy-{pid[4:]}-{key}",
        "clinicalStatus": _cc(ALLERGY_CLINICAL, "active", "Active"),
        "verificationStatus": _cc(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
        "type": "allergy",
        "category": [category],
        "criticality": criticality,
        "code": _cc(SNOMED, *code),
        "patient": _ref("Patient", pid),
        "recordedDate": recorded,
        "recorder": _ref("PractitionerRole", recorder),
        "reaction": [{"manifestation": [_cc(SNOMED, *manifestation)]}],
    }


def condition(
    pid: str, key: str, code: tuple[str, str], onset: str, recorder: str, *, status: str = "active"
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"cond-{pid[4:]}-{key}",
        "clinicalStatus": _cc(CONDITION_CLINICAL, status, status.capitalize()),
        "verificationStatus": _cc(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
        "category": [_cc(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")],
        "code": _cc(CIM10, *code),
        "subject": _ref("Patient", pid),
        "onsetDateTime": onset,
        "recordedDate": onset,
        "recorder": _ref("PractitionerRole", recorder),
    }


def vital_signs(pid: str, when: str, performer: str) -> list[dict[str, Any]]:
    category = [_cc(OBS_CATEGORY, "vital-signs", "Vital Signs")]
    common = {
        "status": "final",
        "category": category,
        "subject": _ref("Patient", pid),
        "effectiveDateTime": when,
        "performer": [_ref("PractitionerRole", performer)],
    }
    return [
        {"resourceType": "Observation", "id": f"obs-{pid[4:]}-poids", **common,
         "code": _cc(LOINC, "29463-7", "Body weight", "Poids"), "valueQuantity": _q(84.5, "kg")},
        {"resourceType": "Observation", "id": f"obs-{pid[4:]}-pa", **common,
         "code": _cc(LOINC, "85354-9", "Blood pressure panel", "Pression artérielle"),
         "component": [
             {"code": _cc(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": _q(138, "mm[Hg]")},
             {"code": _cc(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": _q(84, "mm[Hg]")},
         ]},
    ]  # fmt: skip


# --------------------------------------------------------------------------- per patient
def pat_004() -> list[dict[str, Any]]:
    """Michel LEROY (75), diabetic and hypertensive; the Pharmacie des Halles is authorised."""
    pid = "pat-004"
    when = "2024-10-14T08:15:00+02:00"
    results = [lab_observation(pid, row[0], row, when, "prr-bio-chevalier") for row in NFS_IONO]
    report = lab_report(pid, "dr-004-nfs-iono", when, results,
                        "Anémie modérée, hyperkaliémie discrète, HbA1c au-dessus de l'objectif.")  # fmt: skip
    months = [(2023, m) for m in range(11, 13)] + [(2024, m) for m in range(1, 11)]
    return [
        report,
        *results,
        *vital_signs(pid, "2024-10-21T09:30:00+02:00", "prr-gp-martin"),
        *dispensations(pid, months),
        statement(pid, "medstat-004-metformine", "metformine", _ref("PractitionerRole", "prr-gp-martin"),
                  "2019-03-01"),
        statement(pid, "medstat-004-ramipril", "ramipril", _ref("PractitionerRole", "prr-gp-martin"),
                  "2021-06-15"),
        immunization(pid, "grippe", "2023-10-20T11:00:00+02:00", "prr-pharm-lemoine", "GRP2399A"),
        immunization(pid, "covid", "2023-10-20T11:05:00+02:00", "prr-pharm-lemoine", "CVD2312B"),
        immunization(pid, "grippe", "2024-10-18T10:40:00+02:00", "prr-pharm-lemoine", "GRP2417C"),
        immunization(pid, "dtp", "2019-05-14T15:00:00+02:00", "prr-ide-bernard", "DTP1905D"),
        allergy(pid, "penicilline", ("91936005", "Allergy to penicillin"), "medication", "high",
                "prr-gp-martin", "2015-02-03", ("271807003", "Eruption of skin")),
        allergy(pid, "latex", ("300916003", "Latex allergy"), "environment", "low",
                "prr-gp-martin", "2018-09-12", ("247472004", "Weal")),
        condition(pid, "diabete", ("E11", "Diabète sucré de type 2"), "2019-02-20", "prr-gp-martin"),
        condition(pid, "hta", ("I10", "Hypertension essentielle (primitive)"), "2021-06-10", "prr-gp-martin"),
        condition(pid, "cholecystectomie", ("K80.2", "Calcul de la vésicule biliaire sans cholécystite"),
                  "2009-04-02", "prr-gp-martin", status="resolved"),
    ]  # fmt: skip


def pat_002() -> list[dict[str, Any]]:
    """Julien ROBIN: a short laboratory report with one result he masked, a problem, a
    vaccination and a treatment he declared himself (personal space)."""
    pid = "pat-002"
    when = "2024-09-02T07:50:00+02:00"
    rows = [r for r in NFS_IONO if r[0] in ("leuco", "hb", "plaquettes")]
    results = [lab_observation(pid, row[0], row, when, "prr-bio-chevalier") for row in rows]
    masked = lab_observation(
        pid, "vih", ("vih", "56888-1", "Sérologie VIH 1/2 (Ag p24 + Ac)", 0.12, "{index}", 0.0, 1.0),
        when, "prr-bio-chevalier", meta=_masked(None, "MASQUE_PS", "Masqué aux professionnels de santé"),
    )  # fmt: skip
    results.append(masked)
    report = lab_report(pid, "dr-002-bilan", when, results, "Bilan sans anomalie.")
    own = statement(
        pid, "medstat-002-autodeclare", "ramipril", _ref("Patient", pid), "2024-01-10",
        meta={"tag": [_coding(SECTION, "ESPACE_PERSONNEL", "Espace personnel")]},
    )  # fmt: skip
    own["medicationCodeableConcept"] = {"text": "Paracétamol 1 g si douleur (automédication)"}
    own["dosage"] = [{"text": "1 g, 3 fois par jour au plus"}]
    own.pop("category")
    return [
        report,
        *results,
        condition(pid, "lombalgie", ("M54.5", "Lombalgie basse"), "2024-05-02", "prr-gp-nguyen"),
        immunization(pid, "dtp", "2021-03-08T17:00:00+01:00", "prr-gp-nguyen", "DTP2103E"),
        own,
    ]


def pat_003() -> list[dict[str, Any]]:
    """Hélène FABRE: a tumour marker held from the patient until the announcement consultation."""
    pid = "pat-003"
    row = ("ca153", "6875-9", "CA 15-3", 58.0, "U/mL", 0.0, 30.0)
    obs = lab_observation(
        pid, "ca153", row, "2024-03-11T09:00:00+01:00", "prr-onco-lambert",
        meta=_masked(None, "INVISIBLE_PATIENT", "Non visible par le patient"),
    )  # fmt: skip
    obs["performer"] = [_ref("PractitionerRole", "prr-onco-lambert")]
    return [obs]


def pat_006() -> list[dict[str, Any]]:
    """Karim HADDAD: an occupational exposure recorded by the occupational physician."""
    pid = "pat-006"
    return [
        {
            "resourceType": "Observation",
            "id": "obs-006-exposition-bruit",
            "status": "final",
            "category": [
                {
                    "coding": [
                        _coding(OBS_CATEGORY, "social-history", "Social History"),
                        _coding(SECTION, "SANTE_TRAVAIL", "Santé au travail"),
                    ]
                }
            ],
            "code": _cc(LOINC, "11341-5", "History of Occupation", "Exposition professionnelle"),
            "subject": _ref("Patient", pid),
            "effectiveDateTime": "2024-04-16T14:00:00+02:00",
            "performer": [_ref("PractitionerRole", "prr-mdt-dubois")],
            "valueString": "Exposition au bruit supérieure à 85 dB(A), 8 h par jour (atelier de presses)",
        }
    ]


def files() -> dict[str, list[dict[str, Any]]]:
    """File name → the resources of its Bundle."""
    return {
        "40-structured-pat-004.json": pat_004(),
        "41-structured-pat-002.json": pat_002(),
        "42-structured-others.json": pat_003() + pat_006(),
    }
