"""The structured-data profiles are built on FR Core (issue 18): each DMP profile's parent is the
FR Core profile (a local statement of the constraints enforced, ``profiles/fr-core/``), the chain
resolves down to base R4, and a resource that breaks an FR Core constraint its DMP profile does
not restate is refused, the issue naming the FR Core profile and its rule. A chain the validator
cannot resolve refuses to load. (The REST side — 422 on write, ``$validate``, the
CapabilityStatement — is in test_structured_feeds.py.)"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dmp_fhir.profiles import ConformanceError, default_conformance, load_conformance
from dmp_fhir.profiles.structure import reference_type

from .test_profiles import FR_CORE_PARENTS, PROFILES, SAMPLES

CONF = default_conformance()
DMP = "https://dmp-fhir.example.org/fhir/StructureDefinition"
FR = "https://hl7.fr/ig/fhir/core/StructureDefinition"


@pytest.mark.parametrize(("child", "parent"), sorted(FR_CORE_PARENTS.items()))
def test_each_structured_profile_derives_from_its_fr_core_profile(child: str, parent: str) -> None:
    profile = CONF.profiles[f"{DMP}/{child}"]
    assert profile.parent == f"{FR}/{parent}"
    chain = CONF.chain(profile)
    assert [p.url for p in chain] == [f"{DMP}/{child}", f"{FR}/{parent}"]
    assert chain[-1].parent is None  # FR Core's own parent is the base R4 resource here
    sd = CONF.resources["StructureDefinition"][parent]
    assert sd["version"] == "2.2.0" and sd["baseDefinition"].startswith(
        "http://hl7.org/fhir/StructureDefinition/"
    )
    assert "Énoncé local" in sd["description"] and "PAS le profil du paquet FR Core" in sd["description"]
    # A parent is never a profile on its own: not listed, not chosen by meta.profile.
    assert f"{FR}/{parent}" not in CONF.profiles_of_type(profile.type)
    assert CONF.dmp_profile(f"{FR}/{parent}") is None


def test_lab_results_and_reports_stay_on_base_r4() -> None:
    """FR Core has no laboratory Observation nor DiagnosticReport profile."""
    for sd_id in ("dmp-observation", "dmp-diagnosticreport"):
        assert CONF.profiles[f"{DMP}/{sd_id}"].parent is None


def sample_of(rtype: str) -> dict[str, Any]:
    return copy.deepcopy(next(r for key, r in sorted(SAMPLES.items()) if key.startswith(f"{rtype}/")))


def without(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.pop(name, None)


def setting(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.__setitem__(name, value)


NOTE = {"text": "x"}
#: (type, change, the FR Core rule it breaks) — none of them is restated by the DMP profile.
VIOLATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("Condition", without("clinicalStatus"), "Condition.clinicalStatus"),
    ("Condition", setting("subject", {"reference": "Group/g-1"}), "Condition.subject"),
    ("Condition", setting("note", [NOTE, NOTE]), "Condition.note"),
    (
        "AllergyIntolerance",
        setting("reaction", [{"manifestation": [{"text": "x"}], "note": [NOTE, NOTE]}]),
        "AllergyIntolerance.reaction.note",
    ),
    (
        "Immunization",
        setting("reasonReference", [{"reference": "Observation/o-1"}]),
        "Immunization.reasonReference",
    ),
    (  # occurrence[x] only dateTime: a free-text date is refused
        "Immunization",
        lambda r: (r.pop("occurrenceDateTime", None), r.__setitem__("occurrenceString", "printemps 2024")),
        "Immunization.occurrenceString",
    ),
    ("MedicationDispense", without("quantity"), "MedicationDispense.quantity"),
    ("MedicationDispense", without("type"), "MedicationDispense.type"),  # complétude 1..1
    (
        "MedicationDispense",
        setting(
            "authorizingPrescription",
            [{"reference": "MedicationRequest/a"}, {"reference": "MedicationRequest/b"}],
        ),
        "MedicationDispense.authorizingPrescription",
    ),
    (
        "MedicationDispense",
        setting("supportingInformation", [{"reference": "Observation/o-1"}]),
        "MedicationDispense.supportingInformation",
    ),
    (
        "MedicationDispense",
        setting(
            "substitution",
            {
                "wasSubstituted": True,
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-substanceAdminSubstitution",
                            "code": "TE",
                        }
                    ]
                },
            },
        ),
        "MedicationDispense.substitution.type",
    ),
    (
        "MedicationDispense",
        setting("substitution", {"wasSubstituted": False}),
        "MedicationDispense.substitution.type",
    ),
    (
        "MedicationStatement",
        setting("reasonReference", [{"reference": "DiagnosticReport/d-1"}]),
        "MedicationStatement.reasonReference",
    ),
    (
        "MedicationStatement",
        setting("basedOn", [{"reference": "CarePlan/c-1"}]),
        "MedicationStatement.basedOn",
    ),
    (
        "MedicationStatement",
        setting("partOf", [{"type": "Procedure", "display": "x"}]),
        "MedicationStatement.partOf",
    ),
    ("MedicationStatement", setting("note", [NOTE, NOTE]), "MedicationStatement.note"),
    (  # effective[x] only Period: a date alone is refused
        "MedicationStatement",
        lambda r: (r.pop("effectivePeriod", None), r.__setitem__("effectiveDateTime", "2025-01-02")),
        "MedicationStatement.effectiveDateTime",
    ),
]


@pytest.mark.parametrize(("rtype", "change", "rule"), VIOLATIONS, ids=[f"{v[0]}-{v[2]}" for v in VIOLATIONS])
def test_an_fr_core_constraint_the_child_does_not_restate_is_enforced(
    rtype: str, change: Callable[[dict[str, Any]], None], rule: str
) -> None:
    resource = sample_of(rtype)
    profiles = CONF.profiles_for(resource, "all")
    assert CONF.validate(resource, profiles) == []
    child = profiles[0]
    change(resource)
    issues = CONF.validate(resource, profiles)
    parent = FR_CORE_PARENTS[child.url.rsplit("/", 1)[1]]
    assert any(f"profile {FR}/{parent}, rule {rule})" in i.diagnostics for i in issues), issues
    # only the FR Core parent states it: the DMP profile alone would let it through
    assert not any(child.url in i.diagnostics for i in issues), issues
    # declaring the FR Core profile in meta.profile neither escapes the DMP profile nor the chain
    resource["meta"] = {"profile": [f"{FR}/{parent}"]}
    declared = CONF.profiles_for(resource, "all")
    assert [p.url for p in declared] == [child.url]


def test_the_allowed_references_pass() -> None:
    condition = sample_of("Condition")
    condition["subject"] = {"reference": "http://example.org/fhir/Patient/p-1/_history/2"}
    statement = sample_of("MedicationStatement")
    statement["reasonReference"] = [{"reference": "Condition/c-1"}, {"reference": "Observation/o-1"}]
    statement["basedOn"] = [
        {"identifier": {"system": "urn:oid:1.2.3", "value": "rx-1"}}
    ]  # logical: no type known
    for resource in (condition, statement):
        assert CONF.validate(resource, CONF.profiles_for(resource, "all")) == []


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ({"reference": "Patient/p-1"}, "Patient"),
        ({"reference": "https://example.org/fhir/Group/g/_history/3"}, "Group"),
        ({"reference": "Patient?identifier=urn:oid:1.2|x"}, None),
        ({"reference": "#contained"}, None),
        ({"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}, None),
        ({"type": "Patient", "identifier": {"value": "x"}}, "Patient"),
        ("Patient/p-1", None),
    ],
)
def test_reference_type(reference: Any, expected: str | None) -> None:
    assert reference_type(reference) == expected


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "profiles"
    shutil.copytree(PROFILES, target)
    return target


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    sd = json.loads(path.read_text(encoding="utf-8"))
    change(sd)
    path.write_text(json.dumps(sd), encoding="utf-8")


def test_a_missing_parent_fails_loudly(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "fr-core" / "StructureDefinition-fr-core-condition.json").unlink()
    with pytest.raises(ConformanceError, match="fr-core-condition is not loaded"):
        load_conformance(directory)


def test_a_parent_of_another_type_fails_loudly(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    _edit(
        directory / "StructureDefinition" / "StructureDefinition-dmp-condition.json",
        lambda sd: sd.update(baseDefinition=f"{FR}/fr-core-immunization"),
    )
    with pytest.raises(ConformanceError, match="is a Immunization"):
        load_conformance(directory)


def test_a_looping_chain_fails_loudly(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    _edit(
        directory / "fr-core" / "StructureDefinition-fr-core-condition.json",
        lambda sd: sd.update(baseDefinition=f"{DMP}/dmp-condition"),
    )
    with pytest.raises(ConformanceError, match="loops"):
        load_conformance(directory)


def test_another_base_r4_type_fails_loudly(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    _edit(
        directory / "fr-core" / "StructureDefinition-fr-core-condition.json",
        lambda sd: sd.update(baseDefinition="http://hl7.org/fhir/StructureDefinition/Observation"),
    )
    with pytest.raises(ConformanceError, match="baseDefinition must be the base R4 Condition"):
        load_conformance(directory)


@pytest.mark.parametrize(
    ("types", "message"),
    [
        ([{"code": "Reference", "targetProfile": [f"{FR}/fr-core-patient"]}], "not a base R4 resource"),
        ([{"code": "CodeableConcept"}], "only a Reference's targetProfile"),
    ],
)
def test_an_unsupported_type_constraint_fails_loudly(tmp_path: Path, types: Any, message: str) -> None:
    directory = _copy(tmp_path)

    def change(sd: dict[str, Any]) -> None:
        for element in sd["differential"]["element"]:
            if element["id"] == "Condition.subject":
                element["type"] = types

    _edit(directory / "fr-core" / "StructureDefinition-fr-core-condition.json", change)
    with pytest.raises(ConformanceError, match=message):
        load_conformance(directory)
