"""A small, independent reference implementation of the DMP read rules, for the property tests.

Written from the rules (README / task brief) and ``profiles/access-matrix.json`` only; it imports
nothing from ``dmp_fhir`` on purpose, so that it cannot share a bug with the server's policy.
It decides on the very FHIR JSON the tests store (Patient, PractitionerRole, Consent,
DocumentReference, and the structured types — Observation, MedicationDispense… — which the
matrix's ``structuredData`` places like a document of a section and type) plus the set of
closed records, and the claims of the caller's token.

Outcomes: for a read of one DocumentReference, 200 (visible), 404 (denied at document level:
matrix, mask, invisibility = absent) or 403 (refused at patient level); for a search on one
patient, ``None`` (403) or the exact set of visible ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MATRIX_PATH = Path(__file__).resolve().parents[1] / "profiles" / "access-matrix.json"

SECTION_SYSTEM = "https://dmp-fhir.example.org/fhir/CodeSystem/dmp-section"
VISIBILITY_SYSTEM = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument"
)
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"

MASKED = "MASQUE_PS"
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
INVISIBLE_REPRESENTATIVES = "INVISIBLE_REPRESENTANTS_LEGAUX"


@dataclass
class World:
    """Everything the rules look at (keyed by id), as stored FHIR JSON."""

    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)  # PractitionerRole id -> JSON
    consents: list[dict[str, Any]] = field(default_factory=list)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)  # patient ids whose DMP is closed


class Matrix:
    """The parts of the access matrix the read rules use."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.sections: dict[str, dict[str, Any]] = raw["sections"]
        self.wildcard = {name for name, s in self.sections.items() if s["includedInWildcard"]}
        self.types: dict[str, dict[str, Any]] = raw["documentTypes"]
        self.rules: list[dict[str, Any]] = raw["rules"]
        self.treating_read: list[str] = raw["treatingPhysician"]["read"]
        self.excluded_categories = {a["code"] for a in raw["excludedActors"]}
        self.excluded_sectors = {
            s["code"] for a in raw["excludedActors"] for s in a.get("alsoMatchOrganizationSector", [])
        }
        self.emergency_settings = {s["code"] for s in raw["emergencySettings"]}
        occupational = raw["occupationalPhysician"]
        self.occupational = (occupational["profession"], occupational.get("specialty"))
        glass = raw["breakGlass"]
        self.glass_professions = set(glass["eligible"]["profession"])
        self.glass_purposes = {p["code"] for p in glass["purposeOfUse"]}
        self.structured: dict[str, dict[str, Any]] = raw["structuredData"]["types"]

    @classmethod
    def load(cls) -> Matrix:
        return cls(json.loads(MATRIX_PATH.read_text(encoding="utf-8")))

    def rule_for(self, profession: str | None, specialty: str | None) -> list[str]:
        """The read list of the most precise rule: profession+specialty, else profession alone."""
        for rule in self.rules:
            if specialty is not None and rule["profession"] == profession and rule["specialty"] == specialty:
                return list(rule["read"])
        for rule in self.rules:
            if rule["profession"] == profession and rule["specialty"] is None:
                return list(rule["read"])
        return []


# -- document facts ---------------------------------------------------------------------------


def _codings(concepts: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [c for concept in concepts or [] for c in concept.get("coding", [])]


def labels(doc: dict[str, Any]) -> set[str]:
    return {
        str(c.get("code")) for c in _codings(doc.get("securityLabel")) if c.get("system") == VISIBILITY_SYSTEM
    }


def type_code(doc: dict[str, Any], matrix: Matrix) -> str | None:
    """The document's type code if the matrix knows it (with the right system), else None."""
    for coding in doc.get("type", {}).get("coding", []):
        known = matrix.types.get(coding.get("code"))
        if known is not None and known["system"] == coding.get("system"):
            return str(coding["code"])
    return None


def section_of(doc: dict[str, Any], matrix: Matrix) -> tuple[str | None, bool]:
    """(section, overridden): the dmp-section category coding wins, else the type's section,
    else (None, False) for an unknown type."""
    for coding in _codings(doc.get("category")):
        if coding.get("system") == SECTION_SYSTEM:
            return str(coding.get("code")), True
    code = type_code(doc, matrix)
    if code is None:
        return None, False
    return str(matrix.types[code]["section"]), False


def in_scope(doc: dict[str, Any], read: list[str], matrix: Matrix) -> bool:
    """Whether a read list ("*", section codes, type codes) opens this document.

    "*" = every section with includedInWildcard, plus documents of unknown type. A document
    whose section comes from a sectionOverride (SANTE_TRAVAIL) is opened only by its section
    code: the matrix notes say neither "*" nor its (generic) type code open it.
    """
    section, overridden = section_of(doc, matrix)
    code = None if overridden else type_code(doc, matrix)
    for item in read:
        if item == "*":
            if section is None or section in matrix.wildcard:
                return True
        elif item == section or (code is not None and item == code):
            return True
    return False


def _at(value: Any, path: list[str]) -> list[Any]:
    """Values at a dotted path, lists flattened."""
    items = value if isinstance(value, list) else [value]
    if not path:
        return [v for v in items if v is not None]
    return [x for v in items if isinstance(v, dict) for x in _at(v.get(path[0]), path[1:])]


def document_view(res: dict[str, Any], matrix: Matrix) -> dict[str, Any]:
    """A structured resource seen as the document it stands for (``structuredData``): its
    patient as subject, its author elements as authors, its meta.security as labels, the
    placement's document type as type, a dmp-section coding (category or meta.tag) as the
    section override. A DocumentReference is itself."""
    rtype = res["resourceType"]
    if rtype == "DocumentReference":
        return res
    spec = matrix.structured[rtype]
    placement = spec if "section" in spec else None
    category = spec.get("category")
    concepts = res.get("category") if isinstance(res.get("category"), list) else [res.get("category")]
    concepts = [c for c in concepts if isinstance(c, dict)]
    if category is not None:
        for coding in _codings(concepts):
            if coding.get("system") == category["system"] and coding.get("code") in category["map"]:
                placement = category["map"][coding["code"]]
                break
    sections = [
        c["code"]
        for c in _codings(concepts) + res.get("meta", {}).get("tag", [])
        if c.get("system") == SECTION_SYSTEM
    ]
    view: dict[str, Any] = {
        "resourceType": rtype,
        "subject": res[spec["patient"]],
        "author": [a for path in spec["authors"] for a in _at(res, path.split("."))],
        "securityLabel": [{"coding": [c]} for c in res.get("meta", {}).get("security", [])],
    }
    if placement is not None:
        code = placement["documentType"]
        view["type"] = {"coding": [{"system": matrix.types[code]["system"], "code": code}]}
    if sections:
        view["category"] = [{"coding": [{"system": SECTION_SYSTEM, "code": sections[0]}]}]
    return view


def subject_of(doc: dict[str, Any]) -> str:
    return str(doc["subject"]["reference"]).split("/", 1)[1]


def _names_practitioner(reference: str, practitioner: str, world: World) -> bool:
    """``reference`` is ``Practitioner/x`` itself or a PractitionerRole whose practitioner is x."""
    if reference == practitioner:
        return True
    if reference.startswith("PractitionerRole/"):
        role = world.roles.get(reference.split("/", 1)[1])
        return role is not None and role.get("practitioner", {}).get("reference") == practitioner
    return False


def is_author(doc: dict[str, Any], practitioner: str, world: World) -> bool:
    return any(
        _names_practitioner(a.get("reference", ""), practitioner, world) for a in doc.get("author", [])
    )


def is_treating(pid: str, practitioner: str, world: World) -> bool:
    patient = world.patients[pid]
    return any(
        _names_practitioner(g.get("reference", ""), practitioner, world)
        for g in patient.get("generalPractitioner", [])
    )


# -- the caller's standing with one patient -----------------------------------------------------

REFUSED = "refused"  # closed record, excluded actor, blocked by the patient: 403, always
TREATING = "treating"  # médecin traitant
AUTHORISED = "authorised"  # Consent permit or break-glass
NOT_AUTHORISED = "not-authorised"  # 403, except for their own documents


def _active_provisions(pid: str, world: World) -> list[dict[str, Any]]:
    return [
        c["provision"]
        for c in world.consents
        if c.get("status") == "active"
        and c.get("patient", {}).get("reference") == f"Patient/{pid}"
        and "provision" in c
    ]


def _provision_names(provision: dict[str, Any], names: set[str]) -> bool:
    return any(a.get("reference", {}).get("reference") in names for a in provision.get("actor", []))


def professional_standing(claims: dict[str, Any], pid: str, world: World, matrix: Matrix) -> str:
    if pid in world.closed:
        return REFUSED
    if claims.get("actor_category") in matrix.excluded_categories:
        return REFUSED
    if claims.get("organization_sector") in matrix.excluded_sectors:
        return REFUSED
    me = claims["fhirUser"]
    names = {me} | ({claims["organization"]} if claims.get("organization") else set())
    # An establishment's consent (permit or deny) speaks for every professional the directory
    # gives a role there, whichever establishment the token names (issue 16: the care team).
    names |= {
        str(role["organization"]["reference"])
        for role in world.roles.values()
        if role.get("practitioner", {}).get("reference") == me and "reference" in role.get("organization", {})
    }
    provisions = _active_provisions(pid, world)
    if any(
        p.get("type") == "deny" and not p.get("purpose") and _provision_names(p, names) for p in provisions
    ):
        return REFUSED
    if is_treating(pid, me, world):
        # The occupational physician (10/SM25) never gets the treating physician's view:
        # named GP, they are deemed authorised, within their own matrix rule only.
        if (claims.get("profession"), claims.get("specialty")) == matrix.occupational:
            return AUTHORISED
        return TREATING
    if any(p.get("type") == "permit" and _provision_names(p, names) for p in provisions):
        return AUTHORISED
    opposed = any(
        p.get("type") == "deny" and {c.get("code") for c in p.get("purpose", [])} & matrix.glass_purposes
        for p in provisions
    )
    if (
        claims.get("purpose_of_use") in matrix.glass_purposes
        and claims.get("profession") in matrix.glass_professions
        and claims.get("care_setting") in matrix.emergency_settings
        and not opposed
    ):
        return AUTHORISED
    return NOT_AUTHORISED


# -- decisions ----------------------------------------------------------------------------------


def _patient_side(claims: dict[str, Any]) -> str | None:
    user = str(claims.get("fhirUser", ""))
    if user.startswith("Patient/"):
        return "patient"
    if user.startswith("RelatedPerson/"):
        return "representative"
    return None


def read_status(claims: dict[str, Any], doc_id: str, world: World, matrix: Matrix) -> int:
    """GET <Type>/<doc_id> of a document or a structured resource: 200, 404 or 403."""
    doc = document_view(world.documents[doc_id], matrix)
    pid = subject_of(doc)
    side = _patient_side(claims)
    if side is not None:
        if claims.get("patient") != pid:
            return 403
        hidden = {INVISIBLE_PATIENT} if side == "patient" else {INVISIBLE_PATIENT, INVISIBLE_REPRESENTATIVES}
        return 404 if labels(doc) & hidden else 200
    standing = professional_standing(claims, pid, world, matrix)
    if standing == REFUSED:
        return 403
    if is_author(doc, claims["fhirUser"], world):
        return 200
    if standing == NOT_AUTHORISED:
        return 403
    if standing == TREATING:
        return 200 if in_scope(doc, matrix.treating_read, matrix) else 404
    read = matrix.rule_for(claims.get("profession"), claims.get("specialty"))
    return 200 if in_scope(doc, read, matrix) and MASKED not in labels(doc) else 404


def search_result(
    claims: dict[str, Any], pid: str, world: World, matrix: Matrix, rtype: str = "DocumentReference"
) -> set[str] | None:
    """GET <rtype>?patient=<pid>: None for 403, else the ids the caller finds."""
    docs = [
        d
        for d, doc in world.documents.items()
        if doc["resourceType"] == rtype and subject_of(document_view(doc, matrix)) == pid
    ]
    side = _patient_side(claims)
    if side is not None:
        if claims.get("patient") != pid:
            return None
        return {d for d in docs if read_status(claims, d, world, matrix) == 200}
    standing = professional_standing(claims, pid, world, matrix)
    if standing == REFUSED:
        return None
    visible = {d for d in docs if read_status(claims, d, world, matrix) == 200}
    if standing == NOT_AUTHORISED and not visible:
        return None
    return visible


# -- establishment systems (issue 16) -------------------------------------------------------------

TRE_G15_SUFFIX = "TRE_G15-ProfessionSante"
TRE_R38_SUFFIX = "TRE_R38-SpecialiteOrdinale"


def _idnatps_spellings(value: str) -> set[str]:
    """An RPPS (11 digits) and its IdNatPs (``8`` + RPPS) name the same professional."""
    if len(value) == 12 and value.startswith("8"):
        return {value, value[1:]}
    if len(value) == 11:
        return {value, "8" + value}
    return {value}


def _role_code(role: dict[str, Any], element: str, suffix: str) -> str | None:
    for concept in role.get(element, []):
        for coding in concept.get("coding", []):
            if suffix in str(coding.get("system", "")):
                return str(coding["code"])
    return None


def acting_claims(
    system: dict[str, Any], practitioners: dict[str, dict[str, Any]], world: World
) -> dict[str, Any] | None:
    """A system token naming its establishment and ``on_behalf_of`` (an RPPS): the claims of the
    professional it reads for — profession and specialty from their PractitionerRole in that
    establishment — or None when the directory gives that professional no role there (403)."""
    organization, rpps = system.get("organization"), system.get("on_behalf_of")
    if not organization or not rpps:
        return None
    spellings = _idnatps_spellings(str(rpps))
    for pid, practitioner in sorted(practitioners.items()):
        if not any(i.get("value") in spellings for i in practitioner.get("identifier", [])):
            continue
        for role in world.roles.values():
            if (
                role.get("practitioner", {}).get("reference") == f"Practitioner/{pid}"
                and role.get("organization", {}).get("reference") == organization
                and role.get("active", True)
            ):
                claims: dict[str, Any] = {"fhirUser": f"Practitioner/{pid}", "organization": organization}
                claims["profession"] = _role_code(role, "code", TRE_G15_SUFFIX)
                specialty = _role_code(role, "specialty", TRE_R38_SUFFIX)
                if specialty:
                    claims["specialty"] = specialty
                return claims
    return None
