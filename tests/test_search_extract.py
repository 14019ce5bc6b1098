"""Search-field extraction (``dmp_fhir.search.extract``) and the parameter registry.

Every expected value below is written by hand from docs/storage.md, not computed by the code under
test: a change of stored shape must show up here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from dmp_fhir.search.dates import DATETIME_MAX, DATETIME_MIN
from dmp_fhir.search.extract import compile_path, extract_search_fields
from dmp_fhir.search.params import RESOURCE_TYPES, field_name, get_param, params_for

from .search_samples import (
    BASE,
    CLASS,
    CONF,
    INS_NIR,
    IS_ARCHIVED,
    LOINC,
    V2_0203,
    document_reference,
    patient,
)


def utc(*parts: int) -> datetime:
    """A UTC datetime; the 7th part is milliseconds (what BSON keeps)."""
    y, mo, d, h, mi, s, ms = (*parts, 0, 0, 0, 0, 0, 0)[:7]
    return datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=UTC)


def prefixes_of(word: str) -> list[str]:
    return [word[:i] for i in range(1, len(word) + 1)]


# -- whole resources ---------------------------------------------------------------------------


def test_document_reference_all_fields() -> None:
    fmt = "http://ihe.net/fhir/ValueSet/IHE.FormatCode.codesystem"
    expected: dict[str, Any] = {
        "_s__profile": [
            "http://esante.gouv.fr/ci-sis/fhir/StructureDefinition/PDSm_ComprehensiveDocumentReference"
        ],
        "_s__security": [f"{CONF}|N", "N", f"{CONF}|"],
        "_s_patient": ["Patient/pat-1", "pat-1"],
        "_s_subject": ["Patient/pat-1", "pat-1"],
        "_s_status": ["|current", "current"],
        "_s_identifier": [
            "urn:ietf:rfc:3986|urn:oid:1.2.3.4",
            "urn:oid:1.2.3.4",
            "urn:ietf:rfc:3986|",
            "urn:ietf:rfc:3986|urn:uuid:5a1e",
            "urn:uuid:5a1e",
        ],
        "_s_type": [f"{LOINC}|11488-4", "11488-4", f"{LOINC}|"],
        "_s_type_text": ["note de consultation"],
        "_s_category": [f"{CLASS}|10", "10", f"{CLASS}|"],
        "_s_category_text": ["compte rendu"],
        "_s_date_lo": utc(2024, 3, 5, 9, 15, 0),
        "_s_date_hi": utc(2024, 3, 5, 9, 15, 0, 999),
        "_s_period_lo": utc(2024, 3, 4, 7),
        "_s_period_hi": utc(2024, 3, 4, 17, 0, 0, 999),
        "_s_author": ["Practitioner/pr-1", "pr-1"],  # "#author1" (contained) is not searchable
        "_s_custodian": ["Organization/org-1", "org-1"],
        "_s_facility": ["urn:fac|SA01", "SA01", "urn:fac|"],
        "_s_setting": ["urn:set|ETABLISSEMENT", "ETABLISSEMENT", "urn:set|"],
        "_s_event": ["urn:ccam|ZCQK002", "ZCQK002", "urn:ccam|"],
        "_s_security_label": [f"{CONF}|N", "N", f"{CONF}|"],
        "_s_security_label_text": ["normal"],
        "_s_format": [
            f"{fmt}|urn:ihe:iti:xds:2017:mimeTypeSufficient",
            "urn:ihe:iti:xds:2017:mimeTypeSufficient",
            f"{fmt}|",
        ],
        "_s_relatesto": ["DocumentReference/doc-0", "doc-0"],
        "_s_relation": ["|replaces", "replaces"],
        "_s_contenttype": ["|application/pdf", "application/pdf"],
        "_s_language": ["|fr-FR", "fr-FR"],
        "_s_location": ["Binary/bin-1"],
        "_s_description": ["e", "ec", "ech", "echo"],
        "_s_description_exact": ["Écho"],
        "_s_description_norm": ["echo"],
        "_s_encounter": ["Encounter/enc-1", "enc-1"],
        "_s_related_identifier": ["urn:acc|ACC-9", "ACC-9", "urn:acc|"],
        "_s_creation_lo": utc(2024, 3, 5),
        "_s_creation_hi": utc(2024, 3, 5, 23, 59, 59, 999),
        "_s_period_start_lo": utc(2024, 3, 4, 7),
        "_s_period_start_hi": utc(2024, 3, 4, 7, 0, 0, 999),
        "_s_period_end_lo": utc(2024, 3, 4, 17),
        "_s_period_end_hi": utc(2024, 3, 4, 17, 0, 0, 999),
        "_s_isArchived": ["|false", "false"],
    }
    assert extract_search_fields("DocumentReference", document_reference(), base_url=BASE) == expected


def test_patient_all_fields() -> None:
    out = extract_search_fields("Patient", patient(), base_url=BASE)
    nir = "248092B012345"
    name_prefixes = [*prefixes_of("dupont"), *prefixes_of("helene"), *prefixes_of("marie"), "mm", "mme"]
    expected: dict[str, Any] = {
        "_s_identifier": [f"{INS_NIR}|{nir}", nir, f"{INS_NIR}|"],
        "_s_identifier_text": ["ins", "nir"],
        "_s_identifier_oftype": [f"{V2_0203}|NH|{nir}"],
        "_s_family": prefixes_of("dupont"),
        "_s_family_exact": ["Dupont"],
        "_s_family_norm": ["dupont"],
        "_s_given": [*prefixes_of("helene"), *prefixes_of("marie")],
        "_s_given_exact": ["Hélène", "Marie"],
        "_s_given_norm": ["helene", "marie"],
        "_s_name": name_prefixes,
        "_s_name_exact": ["Dupont", "Hélène", "Marie", "Mme"],
        "_s_name_norm": ["dupont", "helene", "marie", "mme"],
        "_s_birthdate_lo": utc(1948, 9, 1),
        "_s_birthdate_hi": utc(1948, 9, 30, 23, 59, 59, 999),
        "_s_gender": ["|female", "female"],
        "_s_active": ["|true", "true"],
        "_s_general_practitioner": ["Practitioner/pr-1", "pr-1"],
        "_s_address_postalcode": ["4", "42", "420", "4200", "42000"],
        "_s_address_postalcode_exact": ["42000"],
        "_s_address_postalcode_norm": ["42000"],
        "_s_address": [
            *prefixes_of("3 rue de l'eglise"),
            *prefixes_of("saint-etienne"),
            *prefixes_of("42000"),
        ],
        "_s_address_exact": ["3 rue de l'Église", "Saint-Étienne", "42000"],
        "_s_address_norm": ["3 rue de l'eglise", "saint-etienne", "42000"],
        "_s_address_city": prefixes_of("saint-etienne"),
        "_s_address_city_exact": ["Saint-Étienne"],
        "_s_address_city_norm": ["saint-etienne"],
        "_s_telecom": ["phone|0612345678", "0612345678", "phone|", "email|h@d.fr", "h@d.fr", "email|"],
        "_s_phone": ["phone|0612345678", "0612345678", "phone|"],
        "_s_email": ["email|h@d.fr", "h@d.fr", "email|"],
        "_s_deceased": ["|false", "false"],  # nothing recorded: FHIRPath says false
        "_s_link": ["Patient/pat-0", "pat-0"],
        "_s_organization": ["Organization/org-1", "org-1"],
    }
    assert out == expected


def test_empty_resource_has_no_fields() -> None:
    assert extract_search_fields("DocumentReference", {"resourceType": "DocumentReference"}) == {}
    assert extract_search_fields("Binary", {"resourceType": "Binary", "data": "AA=="}) == {}


# -- dates -------------------------------------------------------------------------------------

DATES = [
    ("2024", utc(2024, 1, 1), utc(2024, 12, 31, 23, 59, 59, 999)),
    ("2024-02", utc(2024, 2, 1), utc(2024, 2, 29, 23, 59, 59, 999)),
    ("2023-02", utc(2023, 2, 1), utc(2023, 2, 28, 23, 59, 59, 999)),
    ("2024-12", utc(2024, 12, 1), utc(2024, 12, 31, 23, 59, 59, 999)),
    ("2024-03-05", utc(2024, 3, 5), utc(2024, 3, 5, 23, 59, 59, 999)),
    ("2024-03-05T10:00", utc(2024, 3, 5, 10), utc(2024, 3, 5, 10, 0, 59, 999)),
    ("2024-03-05T10:00:07", utc(2024, 3, 5, 10, 0, 7), utc(2024, 3, 5, 10, 0, 7, 999)),
    ("2024-03-05T10:00:07Z", utc(2024, 3, 5, 10, 0, 7), utc(2024, 3, 5, 10, 0, 7, 999)),
    ("2024-03-05T10:00:07.5Z", utc(2024, 3, 5, 10, 0, 7, 500), utc(2024, 3, 5, 10, 0, 7, 599)),
    ("2024-03-05T10:00:07.12Z", utc(2024, 3, 5, 10, 0, 7, 120), utc(2024, 3, 5, 10, 0, 7, 129)),
    ("2024-03-05T10:00:07.123Z", utc(2024, 3, 5, 10, 0, 7, 123), utc(2024, 3, 5, 10, 0, 7, 123)),
    ("2024-03-05T10:00:07.123456789+02:00", utc(2024, 3, 5, 8, 0, 7, 123),
     utc(2024, 3, 5, 8, 0, 7, 123)),
    ("2024-03-05T23:30:00-02:00", utc(2024, 3, 6, 1, 30), utc(2024, 3, 6, 1, 30, 0, 999)),
    ("2024-03-05T10:00+05:30", utc(2024, 3, 5, 4, 30), utc(2024, 3, 5, 4, 30, 59, 999)),
    ("2024-12-31T23:59:59.9999Z", utc(2024, 12, 31, 23, 59, 59, 999),
     utc(2024, 12, 31, 23, 59, 59, 999)),
    ("9999", utc(9999, 1, 1), DATETIME_MAX),
]  # fmt: skip


@pytest.mark.parametrize(("value", "lo", "hi"), DATES, ids=[d[0] for d in DATES])
def test_date_precisions(value: str, lo: datetime, hi: datetime) -> None:
    out = extract_search_fields("DocumentReference", {"date": value})
    assert out == {"_s_date_lo": lo, "_s_date_hi": hi}


@pytest.mark.parametrize("value", ["2024-02-30", "yesterday", "2024-3-5", "2024-03-05T25:00:00Z",
                                   "2024-03-05T10:00:00+15:00", "", "2024-03-05 10:00"])  # fmt: skip
def test_malformed_dates_are_not_indexed(value: str) -> None:
    assert extract_search_fields("DocumentReference", {"date": value}) == {}


PERIODS = [
    ({"start": "2024-03-04"}, utc(2024, 3, 4), DATETIME_MAX),
    ({"end": "2024-03-04"}, DATETIME_MIN, utc(2024, 3, 4, 23, 59, 59, 999)),
    ({"start": "2024", "end": "2025-06"}, utc(2024, 1, 1), utc(2025, 6, 30, 23, 59, 59, 999)),
    ({"start": "2024-03-04T08:00:00+01:00", "end": "2024-03-04T09:00:00+01:00"},
     utc(2024, 3, 4, 7), utc(2024, 3, 4, 8, 0, 0, 999)),
]  # fmt: skip


@pytest.mark.parametrize(("period", "lo", "hi"), PERIODS)
def test_periods(period: dict[str, str], lo: datetime, hi: datetime) -> None:
    out = extract_search_fields("DocumentReference", {"context": {"period": period}})
    assert out["_s_period_lo"] == lo
    assert out["_s_period_hi"] == hi


def test_empty_period_and_repeated_dates_envelope() -> None:
    assert extract_search_fields("DocumentReference", {"context": {"period": {}}}) == {}
    doc = {"content": [{"attachment": {"creation": "2024-01-05"}},
                       {"attachment": {"creation": "2023-12-01T10:00:00Z"}}]}  # fmt: skip
    out = extract_search_fields("DocumentReference", doc)
    assert out == {"_s_creation_lo": utc(2023, 12, 1, 10), "_s_creation_hi": utc(2024, 1, 5, 23, 59, 59, 999)}


# -- tokens ------------------------------------------------------------------------------------

TOKENS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("code", "DocumentReference", {"status": "current"},
     {"_s_status": ["|current", "current"]}),
    ("codeable concept", "DocumentReference",
     {"type": {"coding": [{"system": "s1", "code": "a", "display": "Alpha"}, {"code": "b"}],
               "text": "Free  Téxt"}},
     {"_s_type": ["s1|a", "a", "s1|", "|b", "b"], "_s_type_text": ["alpha", "free text"]}),
    ("text-only concept", "DocumentReference", {"type": {"text": "Only"}},
     {"_s_type_text": ["only"]}),
    ("coding (meta.tag)", "DocumentReference",
     {"meta": {"tag": [{"system": "s", "code": "c", "display": "D"}, {"code": "x"}]}},
     {"_s__tag": ["s|c", "c", "s|", "|x", "x"], "_s__tag_text": ["d"]}),
    ("boolean extension true", "DocumentReference",
     {"extension": [{"url": IS_ARCHIVED, "valueBoolean": True}, {"url": "other", "valueBoolean": False}]},
     {"_s_isArchived": ["|true", "true"]}),
    ("identifier without system", "List", {"identifier": [{"value": "X1"}]},
     {"_s_identifier": ["|X1", "X1"]}),
    ("identifier type without system", "Practitioner",
     {"identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810002",
                      "type": {"coding": [{"code": "IDNPS"}]}}]},
     {"_s_identifier": ["urn:oid:1.2.250.1.71.4.2.1|810002", "810002", "urn:oid:1.2.250.1.71.4.2.1|"],
      "_s_identifier_oftype": ["|IDNPS|810002"]}),
    ("contact point without system", "Practitioner", {"telecom": [{"value": "0102"}]},
     {"_s_telecom": ["|0102", "0102"]}),
    ("phone only", "Patient",
     {"telecom": [{"system": "email", "value": "a@b"}, {"system": "phone", "value": "01"}],
      "deceasedBoolean": True},
     {"_s_telecom": ["email|a@b", "a@b", "email|", "phone|01", "01", "phone|"],
      "_s_email": ["email|a@b", "a@b", "email|"], "_s_phone": ["phone|01", "01", "phone|"],
      "_s_deceased": ["|true", "true"]}),
    ("deceased false", "Patient", {"deceasedBoolean": False}, {"_s_deceased": ["|false", "false"]}),
    ("deceased date", "Patient", {"deceasedDateTime": "2020-01-02"},
     {"_s_deceased": ["|true", "true"]}),
    ("boolean active false", "Organization", {"active": False}, {"_s_active": ["|false", "false"]}),
    ("audit codes and strings", "AuditEvent",
     {"type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
      "action": "R", "outcome": "0", "source": {"site": "Cabinet A", "observer": {"display": "x"}},
      "agent": [{"altId": "u42", "role": [{"text": "Médecin"}], "policy": ["urn:p:1"],
                 "purposeOfUse": [{"coding": [{"system": "v3", "code": "TREAT"}]}]}]},
     {"_s_type": ["http://dicom.nema.org/resources/ontology/DCM|110110", "110110",
                  "http://dicom.nema.org/resources/ontology/DCM|"],
      "_s_action": ["|R", "R"], "_s_outcome": ["|0", "0"], "_s_site": ["|Cabinet A", "Cabinet A"],
      "_s_altid": ["|u42", "u42"], "_s_agent_role_text": ["medecin"], "_s_policy": ["urn:p:1"],
      "_s_purpose": ["v3|TREAT", "TREAT", "v3|"]}),
    ("MHD list extensions (http and https)", "List",
     {"extension": [
         {"url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType",
          "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "34133-9"}]}},
         {"url": "http://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
          "valueIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3"}},
         {"url": IS_ARCHIVED, "valueBoolean": True}]},
     {"_s_designationType": [f"{LOINC}|34133-9", "34133-9", f"{LOINC}|"],
      "_s_sourceId": ["urn:ietf:rfc:3986|urn:oid:1.2.3", "urn:oid:1.2.3", "urn:ietf:rfc:3986|"],
      "_s_isArchived": ["|true", "true"]}),
    ("consent provisions", "Consent",
     {"scope": {"coding": [{"system": "cs", "code": "patient-privacy"}]},
      "provision": {"action": [{"coding": [{"system": "ca", "code": "access"}]}],
                    "purpose": [{"system": "v3", "code": "TREAT"}]}},
     {"_s_scope": ["cs|patient-privacy", "patient-privacy", "cs|"],
      "_s_action": ["ca|access", "access", "ca|"], "_s_purpose": ["v3|TREAT", "TREAT", "v3|"]}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "rtype", "resource", "expected"), TOKENS, ids=[t[0] for t in TOKENS])
def test_tokens(case: str, rtype: str, resource: dict[str, Any], expected: dict[str, Any]) -> None:
    assert extract_search_fields(rtype, resource) == expected


# -- strings -----------------------------------------------------------------------------------


def test_string_folding_and_prefix_cap() -> None:
    long_name = "A" * 70
    out = extract_search_fields("Organization", {"name": "  Centre   Hospitalier ", "alias": [
        "ﬁlle Œuvre", "Straße", long_name]})  # fmt: skip
    assert out["_s_name_exact"] == ["  Centre   Hospitalier ", "ﬁlle Œuvre", "Straße", long_name]
    assert out["_s_name_norm"] == ["centre hospitalier", "fille oeuvre", "strasse", "a" * 70]
    assert "centre hospitalier" in out["_s_name"]
    assert "fille oeuv" in out["_s_name"]
    assert "a" * 64 in out["_s_name"]
    assert "a" * 65 not in out["_s_name"]
    assert len(out["_s_name"]) == 18 + 12 + 7 + 64  # every prefix once, none over 64 characters
    assert not any(len(p) > 64 for p in out["_s_name"])


def test_blank_strings_are_not_indexed() -> None:
    assert extract_search_fields("List", {"title": "   "}) == {}


# -- references --------------------------------------------------------------------------------

REFERENCES: list[tuple[str, dict[str, Any], str | None, dict[str, Any]]] = [
    ("relative", {"reference": "Practitioner/pr-1"}, BASE, {"_s_author": ["Practitioner/pr-1", "pr-1"]}),
    ("versioned", {"reference": "Practitioner/pr-1/_history/3"}, BASE,
     {"_s_author": ["Practitioner/pr-1", "pr-1"]}),
    ("absolute on our base", {"reference": f"{BASE}/Practitioner/pr-1"}, BASE,
     {"_s_author": ["Practitioner/pr-1", "pr-1"]}),
    ("absolute on our base, trailing slash", {"reference": f"{BASE}/Practitioner/pr-1/_history/3"},
     BASE + "/", {"_s_author": ["Practitioner/pr-1", "pr-1"]}),
    ("absolute elsewhere", {"reference": "http://other.org/fhir/Practitioner/pr-1"}, BASE,
     {"_s_author": ["http://other.org/fhir/Practitioner/pr-1"]}),
    ("absolute without base_url", {"reference": f"{BASE}/Practitioner/pr-1"}, None,
     {"_s_author": [f"{BASE}/Practitioner/pr-1"]}),
    ("urn:uuid", {"reference": "urn:uuid:0c3f"}, BASE, {"_s_author": ["urn:uuid:0c3f"]}),
    ("contained", {"reference": "#a1"}, BASE, {}),
    ("logical", {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810002"}}, BASE,
     {"_s_author_identifier": ["urn:oid:1.2.250.1.71.4.2.1|810002", "810002",
                               "urn:oid:1.2.250.1.71.4.2.1|"]}),
    ("both", {"reference": "Practitioner/p", "identifier": {"value": "9"}}, BASE,
     {"_s_author": ["Practitioner/p", "p"], "_s_author_identifier": ["|9", "9"]}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "ref", "base", "expected"), REFERENCES, ids=[r[0] for r in REFERENCES])
def test_references(case: str, ref: dict[str, Any], base: str | None, expected: dict[str, Any]) -> None:
    assert extract_search_fields("DocumentReference", {"author": [ref]}, base_url=base) == expected


SUBJECTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("group is not a patient", {"reference": "Group/g1"}, {"_s_subject": ["Group/g1", "g1"]}),
    ("typed urn", {"reference": "urn:uuid:9", "type": "Patient"},
     {"_s_subject": ["urn:uuid:9"], "_s_patient": ["urn:uuid:9"]}),
    ("untyped urn", {"reference": "urn:uuid:9"}, {"_s_subject": ["urn:uuid:9"]}),
    ("external patient URL", {"reference": "http://other/fhir/Patient/7"},
     {"_s_subject": ["http://other/fhir/Patient/7"], "_s_patient": ["http://other/fhir/Patient/7"]}),
    ("logical patient", {"identifier": {"system": INS_NIR, "value": "1"}},
     {"_s_subject_identifier": [f"{INS_NIR}|1", "1", f"{INS_NIR}|"],
      "_s_patient_identifier": [f"{INS_NIR}|1", "1", f"{INS_NIR}|"]}),
    ("logical device", {"identifier": {"value": "1"}, "type": "Device"},
     {"_s_subject_identifier": ["|1", "1"]}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "subject", "expected"), SUBJECTS, ids=[s[0] for s in SUBJECTS])
def test_typed_reference_paths(case: str, subject: dict[str, Any], expected: dict[str, Any]) -> None:
    assert extract_search_fields("DocumentReference", {"subject": subject}, base_url=BASE) == expected


def test_audit_event_patient_from_agents_and_entities() -> None:
    audit = {
        "agent": [{"who": {"reference": "Patient/p1"}}, {"who": {"reference": "Practitioner/d"}}],
        "entity": [{"what": {"reference": "Patient/p2"}}, {"what": {"reference": "DocumentReference/d1"}}],
    }  # fmt: skip
    out = extract_search_fields("AuditEvent", audit)
    assert out["_s_patient"] == ["Patient/p1", "p1", "Patient/p2", "p2"]
    assert out["_s_agent"] == ["Patient/p1", "p1", "Practitioner/d", "d"]
    assert out["_s_entity"] == ["Patient/p2", "p2", "DocumentReference/d1", "d1"]


# -- registry ----------------------------------------------------------------------------------


def test_registry_shape() -> None:
    assert set(RESOURCE_TYPES) == {
        "Patient", "Practitioner", "PractitionerRole", "Organization", "DocumentReference", "List",
        "Consent", "AuditEvent", "Binary", "RelatedPerson",
        "Observation", "DiagnosticReport", "MedicationDispense", "MedicationStatement", "Immunization",
        "AllergyIntolerance", "Condition",
    }  # fmt: skip
    assert set(params_for("Binary")) == {"_id", "_lastUpdated", "_tag", "_security", "_profile"}
    assert set(params_for("Encounter")) == set(params_for("Binary"))
    assert get_param("Encounter", "_tag") is not None
    assert get_param("Patient", "nope") is None
    pat = get_param("DocumentReference", "patient")
    assert pat is not None and pat.targets == ("Patient",) and pat.resource_type == "DocumentReference"
    assert pat.url == "http://hl7.org/fhir/SearchParameter/clinical-patient"
    assert field_name("address-postalcode") == "_s_address_postalcode"
    assert field_name("_id") == "_id" and field_name("_lastUpdated") == "_lu"


@pytest.mark.parametrize("rtype", RESOURCE_TYPES)
def test_every_path_compiles_and_fields_never_collide(rtype: str) -> None:
    suffixes = {"token": ("", "_text", "_oftype"), "string": ("", "_exact", "_norm"),
                "date": ("_lo", "_hi"), "reference": ("", "_identifier"), "uri": ("",),
                "number": ("",), "quantity": ("", "_unit", "_canon", "_canon_unit")}  # fmt: skip
    seen: dict[str, str] = {}
    for name, param in params_for(rtype).items():
        assert param.name == name and param.resource_type == rtype
        assert param.url.startswith("http") or (rtype, name) == ("AuditEvent", "purpose")
        assert not param.targets or param.type == "reference"
        for path in param.paths:
            compile_path(path)
        for suffix in suffixes[param.type]:
            stored = param.field + suffix
            assert stored not in seen, f"{rtype}: {name} and {seen.get(stored)} both write {stored}"
            seen[stored] = name


def test_bad_paths_are_refused() -> None:
    with pytest.raises(ValueError):
        compile_path("name..family")
    with pytest.raises(ValueError):
        compile_path("subject[patient]")


# -- speed -------------------------------------------------------------------------------------


def test_extraction_speed() -> None:
    """A PDSm DocumentReference is extracted in well under a millisecond (prints the figure)."""
    doc = document_reference()
    extract_search_fields("DocumentReference", doc, base_url=BASE)  # warm the caches
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        extract_search_fields("DocumentReference", doc, base_url=BASE)
    micros = (time.perf_counter() - started) / rounds * 1e6
    print(f"\nextract_search_fields(DocumentReference): {micros:.0f} µs per resource")
    assert micros < 2000


def test_french_ligatures_fold_like_their_letters() -> None:
    from dmp_fhir.search.text import normalize

    assert normalize("Œuvray") == "oeuvray"
    assert normalize("Lætitia") == "laetitia"
    assert normalize("CŒUR") == normalize("coeur")


def test_a_quantity_is_stored_as_its_number_and_its_unit_tokens() -> None:
    obs = {
        "resourceType": "Observation",
        "valueQuantity": {
            "value": 5.3,
            "unit": "mmol/l",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }
    out = extract_search_fields("Observation", obs)
    assert out["_s_value_quantity"] == [5.3]
    assert out["_s_value_quantity_unit"] == ["mmol/L", "http://unitsofmeasure.org|mmol/L", "mmol/l"]
    assert out["_s_value_quantity_canon"] == [5.3] and out["_s_value_quantity_canon_unit"] == ["mmol/L"]
    no_value = extract_search_fields("Observation", {"valueQuantity": {"unit": "mmol/L"}})
    assert "_s_value_quantity" not in no_value and "_s_value_quantity_unit" not in no_value


@pytest.mark.parametrize(
    ("value", "code", "canonical", "unit"),
    [
        (95, "mg/dL", 0.95, "g/L"),
        (1.2, "g/L", 1.2, "g/L"),
        (13.5, "g/dL", 135.0, "g/L"),
        (4, "mg/L", 0.004, "g/L"),
        (80, "umol/L", 0.08, "mmol/L"),
        (5.3, "mol/m3", 5.3, "mmol/L"),
    ],
)
def test_a_ucum_quantity_of_the_set_is_also_stored_in_its_canonical_unit(
    value: float, code: str, canonical: float, unit: str
) -> None:
    obs = {"valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": code}}
    out = extract_search_fields("Observation", obs)
    assert out["_s_value_quantity_canon"] == [canonical] and out["_s_value_quantity_canon_unit"] == [unit]


def test_other_units_get_no_canonical_value() -> None:
    for quantity in (
        {"value": 72, "system": "http://unitsofmeasure.org", "code": "/min"},  # not in the set
        {"value": 95, "code": "mg/dL"},  # no system: not known to be UCUM
        {"value": 95, "system": "urn:oid:1.2.3", "code": "mg/dL"},
    ):
        out = extract_search_fields("Observation", {"valueQuantity": quantity})
        assert "_s_value_quantity_canon" not in out and "_s_value_quantity_canon_unit" not in out
