"""The DMP profiles: every sample meets its profile, every rule catches a crafted bad resource
(with the element path), and a profile the validator cannot fully check refuses to load."""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from dmp_fhir.errors import Issue, Unprocessable
from dmp_fhir.profiles import ConformanceError, default_conformance, load_conformance
from dmp_fhir.profiles.catalogue import expand, search_definitions

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"
BASE = "https://dmp-fhir.example.org/fhir"
SD = f"{BASE}/StructureDefinition"

CONF = default_conformance()
FR_CORE = "https://hl7.fr/ig/fhir/core"
#: The DMP profiles built on an FR Core profile, and that parent (profiles/fr-core/).
FR_CORE_PARENTS = {
    "dmp-allergyintolerance": "fr-core-allergy-intolerance",
    "dmp-condition": "fr-core-condition",
    "dmp-immunization": "fr-core-immunization",
    "dmp-medicationdispense": "fr-core-medication-dispense",
    "dmp-medicationstatement": "fr-core-medication-statement",
}


def _samples() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((ROOT / "samples").glob("*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8"))["entry"]:
            res = entry["resource"]
            found[f"{res['resourceType']}/{res['id']}"] = res
    return found


SAMPLES = _samples()


def sample(key: str) -> dict[str, Any]:
    return copy.deepcopy(SAMPLES[key])


def issues_of(resource: dict[str, Any]) -> list[Issue]:
    return CONF.validate(resource, CONF.profiles_for(resource, "all"))


# --------------------------------------------------------------------------- loading
def test_the_shipped_conformance_resources_load_and_are_valid_r4() -> None:
    assert set(CONF.resources["StructureDefinition"]) == {
        "dmp-patient",
        "dmp-practitioner",
        "dmp-organization",
        "dmp-documentreference",
        "dmp-submissionset",
        "dmp-folder",
        "dmp-consent-access",
        "dmp-consent-creation",
        "dmp-auditevent",
        "dmp-observation",
        "dmp-diagnosticreport",
        "dmp-medicationdispense",
        "dmp-medicationstatement",
        "dmp-immunization",
        "dmp-allergyintolerance",
        "dmp-condition",
        *FR_CORE_PARENTS.values(),
    }
    for rtype, by_id in CONF.resources.items():
        for rid, resource in by_id.items():
            get_fhir_model_class(rtype).model_validate(resource)
            base = FR_CORE if rid in FR_CORE_PARENTS.values() else BASE
            assert resource["url"] == f"{base}/{rtype}/{rid}"


def test_every_value_set_expands_and_the_sections_include_occupational_health() -> None:
    for url in CONF.terminology.value_sets:
        assert CONF.terminology.expand(url), url
    sections = {c.code for c in CONF.terminology.expand(f"{BASE}/ValueSet/dmp-section")}
    assert len(sections) == 9 and "SANTE_TRAVAIL" in sections and "ESPACE_PERSONNEL" in sections
    labels = {c.code for c in CONF.terminology.expand(f"{BASE}/ValueSet/dmp-security-label")}
    assert {"N", "R", "V", "MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"} == labels


def test_the_document_type_value_set_matches_the_access_matrix() -> None:
    matrix = json.loads((PROFILES / "access-matrix.json").read_text(encoding="utf-8"))
    types = {(c.system, c.code) for c in CONF.terminology.expand(f"{BASE}/ValueSet/dmp-document-type")}
    assert {(t["system"], code) for code, t in matrix["documentTypes"].items()} == types


def _copy_profiles(tmp_path: Path) -> Path:
    target = tmp_path / "profiles"
    shutil.copytree(PROFILES, target)
    return target


def _edit_sd(directory: Path, sd_id: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / "StructureDefinition" / f"StructureDefinition-{sd_id}.json"
    sd = json.loads(path.read_text(encoding="utf-8"))
    change(sd)
    path.write_text(json.dumps(sd), encoding="utf-8")


def _add_element(element: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda sd: sd["differential"]["element"].append(element)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _add_element(
                {
                    "id": "Patient.name",
                    "path": "Patient.name",
                    "constraint": [{"key": "x-1", "severity": "error", "expression": "family.exists()"}],
                }
            ),
            "'constraint' is not supported",
        ),
        (_add_element({"id": "Patient.gender", "path": "Patient.gender", "maxLength": 3}), "'maxLength'"),
        (_add_element({"id": "Patient.deceased[x]", "path": "Patient.deceased[x]", "max": "0"}), "choice"),
        (
            _add_element(
                {
                    "id": "Patient.maritalStatus",
                    "path": "Patient.maritalStatus",
                    "binding": {"strength": "extensible", "valueSet": f"{BASE}/ValueSet/dmp-section"},
                }
            ),
            "only required bindings",
        ),
        (
            _add_element(
                {
                    "id": "Patient.maritalStatus",
                    "path": "Patient.maritalStatus",
                    "binding": {
                        "strength": "required",
                        "valueSet": "http://hl7.org/fhir/ValueSet/marital-status",
                    },
                }
            ),
            "is not loaded",
        ),
        (
            _add_element({"id": "Patient.identifier:nir", "path": "Patient.identifier", "sliceName": "nir"}),
            "needs",
        ),
        (lambda sd: sd["differential"]["element"][0].update(min=1), "root element"),
        (lambda sd: sd.update(derivation="specialization"), "derivation"),
        (lambda sd: sd.update(snapshot={"element": []}), "snapshot"),
    ],
)
def test_an_unsupported_construct_fails_loudly(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    directory = _copy_profiles(tmp_path)
    _edit_sd(directory, "dmp-patient", change)
    with pytest.raises(ConformanceError, match=message):
        load_conformance(directory)


def test_a_value_set_with_a_filter_fails_loudly(tmp_path: Path) -> None:
    directory = _copy_profiles(tmp_path)
    path = directory / "terminology" / "ValueSet-dmp-section.json"
    vs = json.loads(path.read_text(encoding="utf-8"))
    vs["compose"]["include"][0]["filter"] = [{"property": "concept", "op": "is-a", "value": "SYNTHESE"}]
    path.write_text(json.dumps(vs), encoding="utf-8")
    with pytest.raises(ConformanceError, match=r"include\.filter is not supported"):
        load_conformance(directory)


# --------------------------------------------------------------------------- samples
@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_every_sample_meets_its_profile(key: str) -> None:
    resource = SAMPLES[key]
    profiles = CONF.profiles_for(resource, "all")
    if resource["resourceType"] in (
        "Patient",
        "Practitioner",
        "Organization",
        "DocumentReference",
        "List",
        "Consent",
    ):
        assert profiles, key
    assert issues_of(resource) == [], key


def test_consents_get_the_creation_or_the_access_profile() -> None:
    (creation,) = CONF.profiles_for(SAMPLES["Consent/consent-001-creation"], "all")
    (access,) = CONF.profiles_for(SAMPLES["Consent/consent-001-permit-cardio"], "all")
    assert (creation.url, access.url) == (f"{SD}/dmp-consent-creation", f"{SD}/dmp-consent-access")


def test_declared_mode_checks_only_what_meta_profile_names() -> None:
    bare = {"resourceType": "Patient", "name": [{"family": "X"}]}
    assert CONF.profiles_for(bare, "declared") == []
    claimed = {**bare, "meta": {"profile": [f"{SD}/dmp-patient", "http://example.org/other"]}}
    assert [p.url for p in CONF.profiles_for(claimed, "declared")] == [f"{SD}/dmp-patient"]
    wrong = {**bare, "meta": {"profile": [f"{SD}/dmp-documentreference"]}}
    (issue,) = issues_of(wrong)
    assert issue.expression == ("Patient.meta.profile",)


# --------------------------------------------------------------------------- each rule
DOC = "DocumentReference/doc-002-kine-bilan"
VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument"
)


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(res: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = res
        for part in parents:
            node = node[part][0] if isinstance(node[part], list) else node[part]
        del node[last]

    return change


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(res: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = res
        for part in parents:
            node = node[part][0] if isinstance(node[part], list) else node[part]
        node[last] = value

    return change


CASES: list[tuple[Any, ...]] = [
    # (sample, label, change, issue code, expression[, rule id when not the expression without indices])
    ("Patient/pat-001", "no INS", _set("identifier", [{"system": "urn:oid:1.2.3", "value": "1"}]), "required",
     "Patient.identifier", "Patient.identifier:ins"),
    ("Patient/pat-001", "two INS", _set("identifier", [
        {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1"},
        {"system": "urn:oid:1.2.250.1.213.1.4.9", "value": "2"},
    ]), "structure", "Patient.identifier", "Patient.identifier:ins"),
    ("Patient/pat-001", "INS without value", _set("identifier", [{"system": "urn:oid:1.2.250.1.213.1.4.10"}]),
     "required", "Patient.identifier[0].value", "Patient.identifier:ins.value"),
    ("Patient/pat-001", "no birth date", _drop("birthDate"), "required", "Patient.birthDate"),
    ("Patient/pat-001", "no gender", _drop("gender"), "required", "Patient.gender"),
    ("Patient/pat-001", "no name", _drop("name"), "required", "Patient.name"),
    ("Patient/pat-001", "gender F", _set("gender", "F"), "code-invalid", "Patient.gender"),
    ("Practitioner/pra-gp-martin", "no IdNatPs", _set("identifier", [
        {"system": "https://rpps.esante.gouv.fr", "value": "19999990013"}]), "required",
     "Practitioner.identifier", "Practitioner.identifier:idNatPs"),
    ("Practitioner/pra-gp-martin", "two RPPS", _set("identifier", [
        {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "819999990013"},
        {"system": "https://rpps.esante.gouv.fr", "value": "19999990013"},
        {"system": "https://rpps.esante.gouv.fr", "value": "19999990014"},
    ]), "structure", "Practitioner.identifier", "Practitioner.identifier:rpps"),
    ("Organization/org-chu-bellerive", "two FINESS", _set("identifier", [
        {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1990010019"},
        {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1990010020"},
    ]), "structure", "Organization.identifier", "Organization.identifier:finess"),
    ("Organization/org-chu-bellerive", "no name", _drop("name"), "required", "Organization.name"),
    (DOC, "no masterIdentifier", _drop("masterIdentifier"), "required", "DocumentReference.masterIdentifier"),
    (DOC, "entered-in-error", _set("status", "entered-in-error"), "code-invalid", "DocumentReference.status"),
    (DOC, "no type", _drop("type"), "required", "DocumentReference.type"),
    (DOC, "unknown type", _set("type", {"coding": [{"system": "http://loinc.org", "code": "1-8"}]}),
     "code-invalid", "DocumentReference.type"),
    (DOC, "no category", _drop("category"), "required", "DocumentReference.category"),
    (DOC, "category outside the sections", _set("category", [{"coding": [{"system": "urn:x", "code": "1"}]}]),
     "code-invalid", "DocumentReference.category[0]"),
    (DOC, "two categories", _set("category", [
        {"coding": [{"system": f"{BASE}/CodeSystem/dmp-section", "code": "SYNTHESE"}]},
        {"coding": [{"system": f"{BASE}/CodeSystem/dmp-section", "code": "BIOLOGIE"}]},
    ]), "structure", "DocumentReference.category"),
    (DOC, "no subject", _drop("subject"), "required", "DocumentReference.subject"),
    (DOC, "no date", _drop("date"), "required", "DocumentReference.date"),
    (DOC, "no author", _drop("author"), "required", "DocumentReference.author"),
    (DOC, "no securityLabel", _drop("securityLabel"), "required", "DocumentReference.securityLabel"),
    (DOC, "unknown label", _set("securityLabel", [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]},
        {"coding": [{"system": VISIBILITY, "code": "SECRET_DEFENSE"}]},
    ]), "code-invalid", "DocumentReference.securityLabel[1]"),
    (DOC, "no size", _drop("content.attachment.size"), "required",
     "DocumentReference.content[0].attachment.size"),
    (DOC, "no hash", _drop("content.attachment.hash"), "required",
     "DocumentReference.content[0].attachment.hash"),
    (DOC, "no contentType", _drop("content.attachment.contentType"), "required",
     "DocumentReference.content[0].attachment.contentType"),
    (DOC, "no format", _drop("content.format"), "required", "DocumentReference.content[0].format"),
    (DOC, "unknown format", _set("content.format", {"system": "urn:x", "code": "pdf"}), "code-invalid",
     "DocumentReference.content[0].format"),
    (DOC, "unknown facility", _set("context.facilityType", {"coding": [{"system": "urn:x", "code": "SA99"}]}),
     "code-invalid", "DocumentReference.context.facilityType"),
    ("List/ss-002-kine", "mode snapshot", _set("mode", "snapshot"), "value", "List.mode"),
    ("List/ss-002-kine", "not a submission set", _set("code", {"coding": [{"system": "urn:x", "code": "f"}]}),
     "value", "List.code"),
    ("List/ss-002-kine", "no entry", _drop("entry"), "required", "List.entry"),
    ("List/ss-002-kine", "status draft", _set("status", "draft"), "code-invalid", "List.status"),
    ("Consent/consent-002-permit-kine", "status revoked", _set("status", "revoked"), "code-invalid",
     "Consent.status"),
    ("Consent/consent-002-permit-kine", "research scope", _set("scope", {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]}),
     "value", "Consent.scope"),
    ("Consent/consent-002-permit-kine", "no dateTime", _drop("dateTime"), "required", "Consent.dateTime"),
    ("Consent/consent-002-permit-kine", "unknown purpose", _set("provision.purpose", [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HMARKT"}]),
     "code-invalid", "Consent.provision.purpose[0]"),
    ("Consent/consent-002-permit-kine", "policy OPTOUTE", _set("policyRule", {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUTE"}]}),
     "code-invalid", "Consent.policyRule"),
    ("Consent/consent-001-creation", "creation that names an actor", _set("provision.actor", [
        {"reference": {"reference": "Practitioner/pra-gp-martin"}}]), "structure", "Consent.provision.actor"),
    ("Consent/consent-001-creation", "creation as a deny", _set("provision.type", "deny"), "value",
     "Consent.provision.type"),
    ("Consent/consent-001-creation", "creation without performer", _drop("performer"), "required",
     "Consent.performer"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_each_rule_rejects_a_crafted_resource(case: tuple[Any, ...]) -> None:
    key, label, change, code, expression = case[:5]
    rule = case[5] if len(case) > 5 else re.sub(r"\[\d+\]", "", expression)
    resource = sample(key)
    change(resource)
    found = issues_of(resource)
    assert found, label
    assert (code, (expression,)) in [(i.code, i.expression) for i in found], found
    issue = next(i for i in found if i.expression == (expression,) and i.code == code)
    assert f"rule {rule})" in issue.diagnostics and "/StructureDefinition/dmp-" in issue.diagnostics


def test_enforce_raises_422_with_every_issue() -> None:
    doc = sample(DOC)
    del doc["author"], doc["date"]
    with pytest.raises(Unprocessable) as caught:
        CONF.enforce(doc, "all")
    assert {i.expression for i in caught.value.issues} == {
        ("DocumentReference.author",),
        ("DocumentReference.date",),
    }


def test_unknown_extensions_are_not_a_profile_error() -> None:
    doc = sample(DOC)
    doc["extension"].append(
        {"url": "https://example.org/fhir/StructureDefinition/x-local", "valueString": "kept"}
    )
    doc["content"][0]["attachment"]["extension"] = [{"url": "urn:x-local", "valueBoolean": True}]
    assert issues_of(doc) == []


# --------------------------------------------------------------------------- catalogue
def test_search_by_url_name_and_id() -> None:
    def ids(rtype: str, params: list[tuple[str, str]]) -> list[str]:
        result = search_definitions(CONF, rtype, params, strict=True, default_count=50)
        return [r["id"] for r in result.matches]

    assert ids("StructureDefinition", [("url", f"{SD}/dmp-patient")]) == ["dmp-patient"]
    assert ids("StructureDefinition", [("name", "dmpconsent")]) == [
        "dmp-consent-access",
        "dmp-consent-creation",
    ]
    assert ids("StructureDefinition", [("name:exact", "DmpConsent")]) == []
    assert ids("StructureDefinition", [("type", "Consent,List")]) == [
        "dmp-consent-access",
        "dmp-consent-creation",
        "dmp-folder",
        "dmp-submissionset",
    ]
    assert ids("ValueSet", [("_id", "dmp-section,dmp-format")]) == ["dmp-format", "dmp-section"]
    assert ids("CodeSystem", [("title", "rubriques")]) == ["dmp-section"]
    assert ids("ValueSet", [("title:contains", "sécurité")]) == ["dmp-security-label"]


def test_expand_filters_on_code_or_display() -> None:
    vs = CONF.resources["ValueSet"]["dmp-section"]
    full = expand(CONF, vs, text_filter=None, offset=0, count=None)
    assert full["expansion"]["total"] == 9 and "compose" not in full
    found = expand(CONF, vs, text_filter="travail", offset=0, count=None)
    assert [c["code"] for c in found["expansion"]["contains"]] == ["SANTE_TRAVAIL"]
    accents = expand(
        CONF, CONF.resources["ValueSet"]["dmp-document-type"], text_filter="synthese", offset=0, count=3
    )
    assert accents["expansion"]["total"] > 3 and len(accents["expansion"]["contains"]) == 3
