"""The access matrix (``profiles/access-matrix.json``): profession [+ specialty] by document
type/section → read / write, plus the lists the rules need (excluded actors, emergency
settings, break-glass eligibility). Data, not code: the README's table is generated from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

UNCLASSIFIED = "UNCLASSIFIED"
"""The section of a document whose type the matrix does not know: only those who read
everything (the patient, the *médecin traitant*) and its author see it."""

DEFAULT_MATRIX = Path(__file__).resolve().parents[3] / "profiles" / "access-matrix.json"


@dataclass(frozen=True, slots=True)
class Rule:
    read: frozenset[str]
    write: frozenset[str]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a structured resource sits: a section, and the document type whose rules it follows."""

    section: str
    document_type: str


@dataclass(frozen=True, slots=True)
class StructuredType:
    """How the policy reads one structured patient-data type (``structuredData`` in the JSON)."""

    patient: str  # the element naming the patient (``subject``, ``patient``)
    authors: tuple[str, ...]  # dotted element paths naming its authors (``performer.actor``)
    default: Placement | None  # where it sits whatever its category
    category_element: str | None = None
    category_system: str | None = None
    by_category: Mapping[str, Placement] = field(default_factory=dict)

    def placement(self, resource: Mapping[str, Any]) -> Placement | None:
        """The default, else the first category coding the matrix maps (None: unclassified)."""
        if self.default is not None:
            return self.default
        for coding in _codings(resource.get(self.category_element or "")):
            if coding.get("system") == self.category_system and coding.get("code") in self.by_category:
                return self.by_category[str(coding["code"])]
        return None


def _codings(value: Any) -> list[Mapping[str, Any]]:
    """The codings of a CodeableConcept or a list of them."""
    concepts = value if isinstance(value, list) else [value]
    return [
        c
        for concept in concepts
        if isinstance(concept, dict)
        for c in concept.get("coding") or []
        if isinstance(c, dict)
    ]


@dataclass(frozen=True)
class AccessMatrix:
    """The matrix, with "*" and section codes expanded into access keys.

    Every document carries access keys (its section and its type code); a rule grants the
    keys it lists, so "may A read D" is "do their key sets intersect".
    """

    sections: Mapping[str, frozenset[str]]  # section -> document type codes
    wildcard_sections: frozenset[str]
    type_section: Mapping[str, str]  # type code -> section
    section_override_system: str
    rules: Mapping[tuple[str, str | None], Rule]
    gp_read: frozenset[str]
    patient_read: frozenset[str]
    patient_write: frozenset[str]
    excluded_categories: frozenset[str]
    excluded_sectors: frozenset[str]
    emergency_settings: frozenset[str]
    break_glass_professions: frozenset[str]
    #: (profession, specialty) of the occupational physician: never beyond their section.
    occupational: tuple[str, str | None] = ("10", "SM25")
    structured: Mapping[str, StructuredType] = field(default_factory=dict)

    # -- documents ----------------------------------------------------------------------

    def document_keys(self, type_codes: Iterable[str], section_codes: Iterable[str] = ()) -> list[str]:
        """The access keys of a document: its section (explicit override, else from its
        type) and its type codes."""
        codes = [c for c in type_codes if c]
        explicit = [s for s in section_codes if s in self.sections]
        section = (
            explicit[0]
            if explicit
            else next((self.type_section[c] for c in codes if c in self.type_section), UNCLASSIFIED)
        )
        if section in self.sections and section not in self.wildcard_sections:
            # A closed section (occupational health) opens only by its own code, never
            # through a type code that other sections share.
            return [section]
        return [section, *codes]

    def structured_keys(self, rtype: str, resource: Mapping[str, Any]) -> list[str]:
        """The access keys of a structured resource, as of a document of its placement's type:
        a section coding in ``meta.tag`` or ``category`` overrides the section (occupational
        health, the patient's personal space)."""
        spec = self.structured[rtype]
        overrides = [
            str(c.get("code"))
            for c in [*_codings(resource.get("category")), *_codings({"coding": _meta_tags(resource)})]
            if c.get("system") == self.section_override_system
        ]
        placement = spec.placement(resource)
        types = [placement.document_type] if placement else []
        return self.document_keys(types, overrides or ([placement.section] if placement else []))

    # -- callers ------------------------------------------------------------------------

    def rule_for(self, profession: str | None, specialty: str | None) -> Rule | None:
        if profession is None:
            return None
        return self.rules.get((profession, specialty)) or self.rules.get((profession, None))

    def is_occupational(self, profession: str | None, specialty: str | None) -> bool:
        """The occupational physician reads only the occupational-health section, even when
        a patient names them as médecin traitant (law of 2 August 2021)."""
        wanted_profession, wanted_specialty = self.occupational
        return profession == wanted_profession and specialty == wanted_specialty

    def is_excluded(self, category: str | None, sector: str | None) -> bool:
        return (category is not None and category in self.excluded_categories) or (
            sector is not None and sector in self.excluded_sectors
        )

    def may_break_glass(self, profession: str | None, care_setting: str | None) -> bool:
        return (
            profession in self.break_glass_professions
            and care_setting is not None
            and care_setting in self.emergency_settings
        )


def _meta_tags(resource: Mapping[str, Any]) -> list[Any]:
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return tags if isinstance(tags, list) else []


def _placement(data: Mapping[str, Any]) -> Placement:
    return Placement(str(data["section"]), str(data["documentType"]))


def parse_structured(data: Mapping[str, Any]) -> dict[str, StructuredType]:
    out: dict[str, StructuredType] = {}
    for rtype, spec in (data.get("structuredData") or {}).get("types", {}).items():
        category = spec.get("category") or {}
        out[rtype] = StructuredType(
            patient=str(spec["patient"]),
            authors=tuple(spec.get("authors", ())),
            default=_placement(spec) if "section" in spec else None,
            category_element=category.get("element"),
            category_system=category.get("system"),
            by_category={code: _placement(p) for code, p in (category.get("map") or {}).items()},
        )
    return out


def expand(items: Iterable[str], wildcard: frozenset[str]) -> frozenset[str]:
    """Rule items ("*", section codes, type codes) → the access keys they grant."""
    keys: set[str] = set()
    for item in items:
        if item == "*":
            keys |= wildcard
            keys.add(UNCLASSIFIED)
        else:
            keys.add(item)
    return frozenset(keys)


def _codes(entries: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    return frozenset(str(e["code"]) for e in entries if "code" in e)


def parse_matrix(data: Mapping[str, Any]) -> AccessMatrix:
    sections = {code: frozenset(s.get("documentTypes", [])) for code, s in data["sections"].items()}
    wildcard = frozenset(c for c, s in data["sections"].items() if s.get("includedInWildcard"))
    type_section = {code: t["section"] for code, t in data["documentTypes"].items()}
    override_system = data["codeSystems"]["section"]
    rules = {
        (str(r["profession"]), r.get("specialty")): Rule(
            expand(r["read"], wildcard), expand(r["write"], wildcard)
        )
        for r in data["rules"]
    }
    sectors = {
        str(s["code"])
        for actor in data["excludedActors"]
        for s in actor.get("alsoMatchOrganizationSector", [])
    }
    return AccessMatrix(
        sections=sections,
        wildcard_sections=wildcard,
        type_section=type_section,
        section_override_system=override_system,
        rules=rules,
        gp_read=expand(data["treatingPhysician"]["read"], wildcard),
        patient_read=expand(data["patient"]["read"], wildcard),
        patient_write=expand(data["patient"]["write"], wildcard),
        excluded_categories=_codes(data["excludedActors"]),
        excluded_sectors=frozenset(sectors),
        emergency_settings=_codes(data["emergencySettings"]),
        break_glass_professions=frozenset(data["breakGlass"]["eligible"]["profession"]),
        occupational=(
            str(data["occupationalPhysician"]["profession"]),
            data["occupationalPhysician"].get("specialty"),
        ),
        structured=parse_structured(data),
    )


@cache
def load_matrix(path: Path = DEFAULT_MATRIX) -> AccessMatrix:
    return parse_matrix(json.loads(path.read_text(encoding="utf-8")))


def markdown_table(path: Path = DEFAULT_MATRIX) -> str:
    """The rules as the README's table (``python -m dmp_fhir.policy.matrix``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    lines = [
        "| profession | specialty | who | reads | writes |",
        "|---|---|---|---|---|",
    ]
    for rule in data["rules"]:
        lines.append(
            f"| {rule['profession']} | {rule.get('specialty') or 'any'} | {rule.get('display', '')} "
            f"| {', '.join(rule['read'])} | {', '.join(rule['write'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
