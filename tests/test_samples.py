"""The sample data set and the access-matrix data are consistent and valid FHIR R4(B)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
PROFILES = ROOT / "profiles"
MATRIX = json.loads((PROFILES / "access-matrix.json").read_text(encoding="utf-8"))

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
TRE_A07 = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument"
)
V3_CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
TRE_A03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"


def _bundle_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.json"))


BUNDLE_FILES = _bundle_files()


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


BUNDLES = {p.relative_to(SAMPLES).as_posix(): _load(p) for p in BUNDLE_FILES}
RESOURCES: dict[str, dict[str, Any]] = {}
for _bundle in BUNDLES.values():
    for _entry in _bundle["entry"]:
        _res = _entry["resource"]
        RESOURCES[f"{_res['resourceType']}/{_res['id']}"] = _res


def _of_type(type_: str) -> list[dict[str, Any]]:
    return [r for k, r in RESOURCES.items() if k.startswith(type_ + "/")]


def _references(node: Any) -> list[str]:
    """Every Reference.reference string found anywhere in a resource."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_references(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_references(item))
    return found


# --------------------------------------------------------------------------- bundles
def test_there_are_sample_bundles() -> None:
    assert len(BUNDLE_FILES) >= 10


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_bundle_is_an_idempotent_transaction(name: str) -> None:
    bundle = BUNDLES[name]
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        res = entry["resource"]
        assert entry["request"] == {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}
        assert entry["fullUrl"].endswith(f"/{res['resourceType']}/{res['id']}")


@pytest.mark.parametrize("key", sorted(RESOURCES))
def test_every_resource_validates_with_its_r4b_model(key: str) -> None:
    res = RESOURCES[key]
    get_fhir_model_class(res["resourceType"]).model_validate(res)


def test_ids_are_unique_across_the_data_set() -> None:
    keys = [
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for b in BUNDLES.values() for e in b["entry"]
    ]
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicates


def test_every_reference_resolves_inside_the_samples() -> None:
    missing = []
    for key, res in RESOURCES.items():
        for reference in _references(res):
            assert re.fullmatch(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}", reference), reference
            if reference not in RESOURCES:
                missing.append((key, reference))
    assert not missing


def test_binary_urls_resolve() -> None:
    for doc in _of_type("DocumentReference"):
        for content in doc["content"]:
            assert content["attachment"]["url"] in RESOURCES


def test_loader_folder_has_only_supported_types() -> None:
    from dmp_fhir.registry import RESOURCE_TYPES

    for path in SAMPLES.glob("*.json"):
        types = {e["resource"]["resourceType"] for e in _load(path)["entry"]}
        assert types <= set(RESOURCE_TYPES), path.name


# --------------------------------------------------------------------------- documents
@pytest.mark.parametrize("doc", _of_type("DocumentReference"), ids=lambda d: d["id"])
def test_attachment_size_and_hash_match_the_binary(doc: dict[str, Any]) -> None:
    attachment = doc["content"][0]["attachment"]
    binary = RESOURCES[attachment["url"]]
    data = base64.b64decode(binary["data"], validate=True)
    assert attachment["size"] == len(data)
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(data).digest()).decode()
    assert attachment["contentType"] == binary["contentType"]
    assert binary["securityContext"]["reference"] == f"DocumentReference/{doc['id']}"


@pytest.mark.parametrize("doc", _of_type("DocumentReference"), ids=lambda d: d["id"])
def test_binary_content_is_a_real_file(doc: dict[str, Any]) -> None:
    attachment = doc["content"][0]["attachment"]
    data = base64.b64decode(RESOURCES[attachment["url"]]["data"])
    if attachment["contentType"] == "application/pdf":
        assert data.startswith(b"%PDF-1.")
        assert data.rstrip().endswith(b"%%EOF")
        startxref = int(data.rsplit(b"startxref", 1)[1].split()[0])
        assert data[startxref:].startswith(b"xref")
        count = int(data[startxref:].split(b"\n")[1].split()[1])
        rows = data[startxref:].split(b"\n")[3 : 2 + count]
        for number, row in enumerate(rows, start=1):
            offset = int(row.split()[0])
            assert data[offset:].startswith(f"{number} 0 obj".encode())
    elif attachment["contentType"] == "application/xml":
        root = etree.fromstring(data)
        assert root.tag == "{urn:hl7-org:v3}ClinicalDocument"
        ns = {"h": "urn:hl7-org:v3"}
        assert root.find("h:code", ns).get("code") == doc["type"]["coding"][0]["code"]
        patient = RESOURCES[doc["subject"]["reference"]]
        ins = next(i["value"] for i in patient["identifier"] if i["system"] == INS_SYSTEM)
        assert root.find("h:recordTarget/h:patientRole/h:id", ns).get("extension") == ins
    else:
        assert attachment["contentType"] == "text/plain"
        data.decode("utf-8")


@pytest.mark.parametrize("doc", _of_type("DocumentReference"), ids=lambda d: d["id"])
def test_document_metadata_is_pdsm_shaped(doc: dict[str, Any]) -> None:
    assert doc["status"] == "current"
    assert doc["masterIdentifier"]["value"].startswith("urn:oid:")
    type_code = doc["type"]["coding"][0]["code"]
    assert type_code in MATRIX["documentTypes"], type_code
    expected = MATRIX["documentTypes"][type_code]
    assert doc["type"]["coding"][0]["system"] == expected["system"]
    assert doc["type"]["coding"][0]["display"] == expected["display"]
    (category,) = doc["category"]
    assert category["coding"][0] == {
        "system": TRE_A03,
        "code": expected["class"],
        "display": category["coding"][0]["display"],
    }
    conf = [c["coding"][0]["code"] for c in doc["securityLabel"] if c["coding"][0]["system"] == V3_CONF]
    assert len(conf) == 1 and conf[0] in {"N", "R", "V"}
    attachment = doc["content"][0]["attachment"]
    for element in ("contentType", "language", "url", "size", "hash", "title", "creation"):
        assert element in attachment, element
    assert doc["content"][0]["format"]["code"]
    for element in ("period", "facilityType", "practiceSetting", "sourcePatientInfo"):
        assert element in doc["context"], element
    assert doc["author"] and doc["custodian"]


def test_every_section_has_at_least_one_document() -> None:
    override = {o["when"]["code"]: o["section"] for o in MATRIX["sectionOverrides"]}
    seen = set()
    for doc in _of_type("DocumentReference"):
        section = MATRIX["documentTypes"][doc["type"]["coding"][0]["code"]]["section"]
        for c in doc["category"][0]["coding"]:
            section = (
                override.get(c["code"], section)
                if c["system"] == MATRIX["codeSystems"]["section"]
                else section
            )
        seen.add(section)
    assert seen == set(MATRIX["sections"])


def _labels(doc_id: str) -> set[str]:
    doc = RESOURCES[f"DocumentReference/{doc_id}"]
    return {c["coding"][0]["code"] for c in doc["securityLabel"] if c["coding"][0]["system"] == TRE_A07}


def test_key_documents_carry_their_visibility_labels() -> None:
    assert "MASQUE_PS" in _labels("doc-002-psy")
    assert RESOURCES["DocumentReference/doc-002-psy"]["type"]["coding"][0]["code"] == "68599-0"
    assert "INVISIBLE_PATIENT" in _labels("doc-003-rcp")
    assert "INVISIBLE_REPRESENTANTS_LEGAUX" in _labels("doc-020-contraception")


@pytest.mark.parametrize("ss", _of_type("List"), ids=lambda r: r["id"])
def test_submission_sets_follow_mhd(ss: dict[str, Any]) -> None:
    assert ss["code"]["coding"][0]["code"] == "submissionset"
    assert ss["mode"] == "working" and ss["status"] == "current"
    uses = sorted(i["use"] for i in ss["identifier"])
    assert uses == ["official", "usual"]
    urls = {e["url"].rsplit("/", 1)[1] for e in ss["extension"]}
    assert {"ihe-sourceId", "ihe-designationType"} <= urls
    assert ss["subject"] and ss["date"] and ss["entry"]
    for entry in ss["entry"]:
        doc = RESOURCES[entry["item"]["reference"]]
        assert doc["subject"] == ss["subject"]


# --------------------------------------------------------------------------- people
def _ins_key_ok(value: str) -> bool:
    matricule, key = value[:13], value[13:]
    digits = matricule.upper().replace("2A", "19").replace("2B", "18")
    return len(value) == 15 and int(key) == 97 - int(digits) % 97


def test_every_patient_has_a_valid_ins_and_a_gp() -> None:
    patients = _of_type("Patient")
    assert len(patients) >= 20
    for patient in patients:
        values = [i["value"] for i in patient["identifier"] if i["system"] == INS_SYSTEM]
        assert len(values) == 1 and _ins_key_ok(values[0]), patient["id"]
        (gp,) = patient["generalPractitioner"]
        role = RESOURCES[gp["reference"]]
        assert role["specialty"][0]["coding"][0]["code"] in {"SM54", "SM53", "SM26"}


def test_population_covers_the_required_cases() -> None:
    patients = _of_type("Patient")
    assert any("deceasedDateTime" in p for p in patients)
    minors = [p for p in patients if p["birthDate"] > "2008"]
    assert len(minors) == 1
    parents = [
        r for r in _of_type("RelatedPerson") if r["patient"]["reference"] == f"Patient/{minors[0]['id']}"
    ]
    assert len(parents) == 2


def _luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def test_practitioner_and_organization_identifiers() -> None:
    for prac in _of_type("Practitioner"):
        idnps = next(i["value"] for i in prac["identifier"] if i["system"] == "urn:oid:1.2.250.1.71.4.2.1")
        assert re.fullmatch(r"8\d{11}", idnps) and _luhn_ok(idnps[1:])
    for org in _of_type("Organization"):
        for ident in org.get("identifier", []):
            if ident["system"] == "https://finess.esante.gouv.fr":
                assert re.fullmatch(r"\d{9}", ident["value"]) and _luhn_ok(ident["value"])


# --------------------------------------------------------------------------- consents
def test_consents_cover_permit_block_and_emergency_opposition() -> None:
    consents = _of_type("Consent")
    kinds = set()
    for c in consents:
        assert c["scope"]["coding"][0]["code"] == "patient-privacy"
        assert c["category"][0]["coding"][0]["code"] == "59284-0"
        provision = c["provision"]
        purposes = {p["code"] for p in provision.get("purpose", [])}
        if provision["type"] == "permit":
            kinds.add("permit")
        elif purposes & {"ETREAT", "BTG"}:
            kinds.add("emergency-opposition")
        elif provision.get("actor"):
            kinds.add("block")
    assert kinds == {"permit", "block", "emergency-opposition"}


# --------------------------------------------------------------------------- matrix and terminology
def test_terminology_resources_validate() -> None:
    files = sorted((PROFILES / "terminology").glob("*.json"))
    assert files
    urls = set()
    for path in files:
        res = _load(path)
        get_fhir_model_class(res["resourceType"]).model_validate(res)
        assert path.name == f"{res['resourceType']}-{res['id']}.json"
        urls.add(res["url"])
    assert MATRIX["codeSystems"]["section"] in urls


def test_matrix_sections_and_document_types_agree() -> None:
    for code, section in MATRIX["sections"].items():
        for type_code in section["documentTypes"]:
            assert MATRIX["documentTypes"][type_code]["section"] == code
    for type_code, info in MATRIX["documentTypes"].items():
        assert type_code in MATRIX["sections"][info["section"]]["documentTypes"]
    section_cs = _load(PROFILES / "terminology" / "CodeSystem-dmp-section.json")
    assert {c["code"] for c in section_cs["concept"]} == set(MATRIX["sections"])
    vs = _load(PROFILES / "terminology" / "ValueSet-dmp-document-type.json")
    in_vs = {c["code"] for inc in vs["compose"]["include"] for c in inc["concept"]}
    assert in_vs == set(MATRIX["documentTypes"])


def _readable(profession: str, specialty: str | None) -> set[str]:
    """Document types a matching professional may read, per the matrix rules."""
    rules = [r for r in MATRIX["rules"] if r["profession"] == profession]
    rule = next((r for r in rules if r["specialty"] == specialty), None) or next(
        (r for r in rules if r["specialty"] is None), None
    )
    if rule is None:
        return set()
    readable: set[str] = set()
    for item in rule["read"]:
        if item == "*":
            for section in MATRIX["sections"].values():
                if section["includedInWildcard"]:
                    readable |= set(section["documentTypes"])
        elif item in MATRIX["sections"]:
            readable |= set(MATRIX["sections"][item]["documentTypes"])
        else:
            assert item in MATRIX["documentTypes"], item
            readable.add(item)
    return readable


def test_matrix_rule_entries_are_known_codes() -> None:
    for rule in MATRIX["rules"]:
        for item in rule["read"] + rule["write"]:
            assert item == "*" or item in MATRIX["sections"] or item in MATRIX["documentTypes"], item


def test_matrix_examples_hold() -> None:
    physio = _readable("70", None)
    assert "11506-3" in physio and "PRESC-KINE" in physio
    assert "68599-0" not in physio and "11502-2" not in physio and "18748-4" not in physio
    pharmacist = _readable("21", None)
    assert {"57833-6", "60593-1"} <= pharmacist and "18748-4" not in pharmacist
    physician = _readable("10", "SM54")
    assert {"68599-0", "18748-4", "11502-2", "11490-0"} <= physician
    for profession in {r["profession"] for r in MATRIX["rules"]} - {"10"}:
        assert "68599-0" not in _readable(profession, None), profession
    occupational = _readable("10", "SM25")
    assert occupational == set(MATRIX["sections"]["SANTE_TRAVAIL"]["documentTypes"])
    occ = MATRIX["occupationalPhysician"]
    rule = next(r for r in MATRIX["rules"] if r["specialty"] == "SM25")
    assert (occ["read"], occ["write"]) == (rule["read"], rule["write"]) == (["SANTE_TRAVAIL"],) * 2


# --------------------------------------------------------------------------- generator
def test_generator_is_deterministic_and_matches_committed_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(SAMPLES / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    produced = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert produced == sorted(BUNDLES)
    for name in produced:
        assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), name
