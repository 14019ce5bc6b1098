"""Query value → MongoDB condition (``dmp_fhir.search.filters``), every type, modifier and prefix.

Expected filters are written by hand. ``test_search_filters_engine.py`` proves on a real server that
these shapes select the right documents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from bson.regex import Regex

from dmp_fhir.search.dates import DATETIME_MAX, DATETIME_MIN
from dmp_fhir.search.filters import (
    SearchValueError,
    build_or_filter,
    build_param_filter,
    split_pipes,
    unescape,
)
from dmp_fhir.search.params import SearchParam, get_param

from .search_samples import BASE

NOW = datetime(2025, 3, 5, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    y, mo, d, h, mi, s, ms = (*parts, 0, 0, 0, 0, 0, 0)[:7]
    return datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=UTC)


def param(rtype: str, name: str) -> SearchParam:
    found = get_param(rtype, name)
    assert found is not None, f"{rtype}.{name}"
    return found


DR = "DocumentReference"
DAY_LO, DAY_HI = utc(2024, 3, 5), utc(2024, 3, 5, 23, 59, 59, 999)

CASES: list[tuple[str, str, str | None, str, dict[str, Any]]] = [
    # -- token --------------------------------------------------------------------------------
    (DR, "type", None, "http://loinc.org|11488-4", {"_s_type": "http://loinc.org|11488-4"}),
    (DR, "type", None, "11488-4", {"_s_type": "11488-4"}),
    (DR, "type", None, "|11488-4", {"_s_type": "|11488-4"}),
    (DR, "type", None, "http://loinc.org|", {"_s_type": "http://loinc.org|"}),
    (DR, "status", None, "current", {"_s_status": "current"}),
    ("Patient", "active", None, "true", {"_s_active": "true"}),
    ("Patient", "gender", None, "female", {"_s_gender": "female"}),
    ("Patient", "identifier", None, "urn:oid:1.2.250.1.213.1.4.8|248092B012345",
     {"_s_identifier": "urn:oid:1.2.250.1.213.1.4.8|248092B012345"}),
    ("Patient", "identifier", None, r"urn:x|a\|b", {"_s_identifier": "urn:x|a|b"}),
    ("Patient", "identifier", None, r"a\,b", {"_s_identifier": "a,b"}),
    (DR, "status", "not", "entered-in-error", {"_s_status": {"$nin": ["entered-in-error"]}}),
    (DR, "security-label", "not", "http://x|V", {"_s_security_label": {"$nin": ["http://x|V"]}}),
    (DR, "type", "text", "Compte-Rendu  d'Écho", {"_s_type_text": Regex(r"^compte\-rendu\ d'echo")}),
    ("Patient", "identifier", "of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|NH|123",
     {"_s_identifier_oftype": "http://terminology.hl7.org/CodeSystem/v2-0203|NH|123"}),
    (DR, "_id", None, "doc-1", {"_id": "doc-1"}),
    (DR, "_id", "not", "doc-1", {"_id": {"$nin": ["doc-1"]}}),
    (DR, "_security", None, "http://x|N", {"_s__security": "http://x|N"}),
    (DR, "_tag", None, "urn:t|a", {"_s__tag": "urn:t|a"}),
    (DR, "isArchived", None, "false", {"_s_isArchived": "false"}),
    # -- string -------------------------------------------------------------------------------
    ("Patient", "name", None, "Hélène", {"_s_name": "helene"}),
    ("Patient", "name", None, "HEL", {"_s_name": "hel"}),
    ("Patient", "name", None, "Hél", {"_s_name": "hel"}),
    ("Patient", "family", None, "  de   LA ", {"_s_family": "de la"}),
    ("Patient", "family", "exact", "Dupont", {"_s_family_exact": "Dupont"}),
    ("Patient", "family", "exact", "Hélène", {"_s_family_exact": "Hélène"}),
    ("Patient", "family", "contains", "pon", {"_s_family_norm": Regex("pon")}),
    ("Patient", "family", "contains", "A.(b)*", {"_s_family_norm": Regex(r"a\.\(b\)\*")}),
    ("Patient", "address-city", None, "Saint-Étienne", {"_s_address_city": "saint-etienne"}),
    ("Patient", "name", None, "x" * 70,
     {"_s_name": "x" * 64, "_s_name_norm": Regex("^" + "x" * 70)}),
    # -- uri ------------------------------------------------------------------------------------
    (DR, "_profile", None, "http://p/x", {"_s__profile": "http://p/x"}),
    (DR, "location", "below", "http://a.b/fhir", {"_s_location": Regex(r"^http:\/\/a\.b\/fhir")}),
    ("AuditEvent", "policy", None, "urn:p:1", {"_s_policy": "urn:p:1"}),
    # -- reference ------------------------------------------------------------------------------
    (DR, "patient", None, "pat-1", {"_s_patient": "Patient/pat-1"}),
    (DR, "patient", None, "Patient/pat-1", {"_s_patient": "Patient/pat-1"}),
    (DR, "patient", None, "Patient/pat-1/_history/3", {"_s_patient": "Patient/pat-1"}),
    (DR, "patient", None, f"{BASE}/Patient/pat-1", {"_s_patient": "Patient/pat-1"}),
    (DR, "subject", None, "pat-1", {"_s_subject": "pat-1"}),
    (DR, "subject", "Patient", "pat-1", {"_s_subject": "Patient/pat-1"}),
    (DR, "subject", "Patient", "Patient/pat-1", {"_s_subject": "Patient/pat-1"}),
    (DR, "subject", None, "http://other.org/fhir/Patient/9", {"_s_subject": "http://other.org/fhir/Patient/9"}),
    (DR, "subject", None, "urn:uuid:0c3f", {"_s_subject": "urn:uuid:0c3f"}),
    (DR, "patient", "identifier", "urn:oid:1.2.250.1.213.1.4.8|248092B012345",
     {"_s_patient_identifier": "urn:oid:1.2.250.1.213.1.4.8|248092B012345"}),
    (DR, "author", "identifier", "810002", {"_s_author_identifier": "810002"}),
    (DR, "related", None, "Encounter/e1", {"_s_related": "Encounter/e1"}),
    ("List", "item", None, "DocumentReference/doc-1", {"_s_item": "DocumentReference/doc-1"}),
    # -- date -----------------------------------------------------------------------------------
    (DR, "date", None, "2024-03-05", {"_s_date_lo": {"$gte": DAY_LO}, "_s_date_hi": {"$lte": DAY_HI}}),
    (DR, "date", None, "eq2024", {"_s_date_lo": {"$gte": utc(2024, 1, 1)},
                                  "_s_date_hi": {"$lte": utc(2024, 12, 31, 23, 59, 59, 999)}}),
    (DR, "date", None, "ne2024-03-05", {"$or": [{"_s_date_lo": {"$lt": DAY_LO}},
                                                {"_s_date_hi": {"$gt": DAY_HI}}]}),
    (DR, "date", None, "gt2024-03-05", {"_s_date_hi": {"$gt": DAY_HI}}),
    (DR, "date", None, "lt2024-03-05", {"_s_date_lo": {"$lt": DAY_LO}}),
    (DR, "date", None, "ge2024-03-05", {"$or": [{"_s_date_hi": {"$gt": DAY_HI}},
                                                {"_s_date_lo": {"$gte": DAY_LO}}]}),
    (DR, "date", None, "le2024-03-05", {"$or": [{"_s_date_lo": {"$lt": DAY_LO}},
                                                {"_s_date_hi": {"$lte": DAY_HI}}]}),
    (DR, "date", None, "sa2024-03-05", {"_s_date_lo": {"$gt": DAY_HI}}),
    (DR, "date", None, "eb2024-03-05", {"_s_date_hi": {"$lt": DAY_LO}}),
    # ap: a year before NOW, so ±36.5 days (10 % of 365 days) around the day
    (DR, "date", None, "ap2024-03-05", {"_s_date_lo": {"$lte": utc(2024, 4, 11, 11, 59, 59, 999)},
                                        "_s_date_hi": {"$gte": utc(2024, 1, 28, 12)}}),
    (DR, "period", None, "2024-03-05T10:00", {"_s_period_lo": {"$gte": utc(2024, 3, 5, 10)},
                                              "_s_period_hi": {"$lte": utc(2024, 3, 5, 10, 0, 59, 999)}}),
    (DR, "period-start", None, "ge2024-03-05T10:00:00+02:00",
     {"$or": [{"_s_period_start_hi": {"$gt": utc(2024, 3, 5, 8, 0, 0, 999)}},
              {"_s_period_start_lo": {"$gte": utc(2024, 3, 5, 8)}}]}),
    (DR, "creation", None, "2024-03-05T10:00:00.5Z",
     {"_s_creation_lo": {"$gte": utc(2024, 3, 5, 10, 0, 0, 500)},
      "_s_creation_hi": {"$lte": utc(2024, 3, 5, 10, 0, 0, 599)}}),
    (DR, "_lastUpdated", None, "2024-03-05", {"_lu": {"$gte": DAY_LO, "$lte": DAY_HI}}),
    (DR, "_lastUpdated", None, "gt2024-03-05", {"_lu": {"$gt": DAY_HI}}),
    (DR, "_lastUpdated", None, "ap2024-03-05", {"_lu": {"$lte": utc(2024, 4, 11, 11, 59, 59, 999),
                                                        "$gte": utc(2024, 1, 28, 12)}}),
    # -- missing (every type) -------------------------------------------------------------------
    (DR, "status", "missing", "true", {"_s_status": {"$exists": False},
                                       "_s_status_text": {"$exists": False}}),
    (DR, "type", "missing", "false", {"$or": [{"_s_type": {"$exists": True}},
                                              {"_s_type_text": {"$exists": True}}]}),
    (DR, "description", "missing", "true", {"_s_description": {"$exists": False}}),
    (DR, "date", "missing", "false", {"_s_date_lo": {"$exists": True}}),
    (DR, "author", "missing", "true", {"_s_author": {"$exists": False},
                                       "_s_author_identifier": {"$exists": False}}),
    (DR, "location", "missing", "true", {"_s_location": {"$exists": False}}),
    (DR, "_id", "missing", "false", {"_id": {"$exists": True}}),
    (DR, "_lastUpdated", "missing", "true", {"_lu": {"$exists": False}}),
]  # fmt: skip


@pytest.mark.parametrize(("rtype", "name", "modifier", "value", "expected"), CASES,
                         ids=[f"{c[1]}:{c[2]}={c[3][:30]}" for c in CASES])  # fmt: skip
def test_filter(rtype: str, name: str, modifier: str | None, value: str, expected: dict[str, Any]) -> None:
    got = build_param_filter(param(rtype, name), modifier, value, base_url=BASE, now=NOW)
    assert got == expected


def test_numbers() -> None:
    num = SearchParam("n", "number", "X", ("n",))
    assert build_param_filter(num, None, "100") == {"_s_n": {"$gte": 99.5, "$lt": 100.5}}
    assert build_param_filter(num, None, "100.0") == {"_s_n": {"$gte": 99.95, "$lt": 100.05}}
    assert build_param_filter(num, None, "1e2") == {"_s_n": {"$gte": 50, "$lt": 150}}
    assert build_param_filter(num, None, "ne0.5") == {
        "$or": [{"_s_n": {"$lt": 0.45}}, {"_s_n": {"$gte": 0.55}}]
    }
    assert build_param_filter(num, None, "gt-3") == {"_s_n": {"$gt": -3}}
    assert build_param_filter(num, None, "lt3") == {"_s_n": {"$lt": 3}}
    assert build_param_filter(num, None, "ge2.5") == {"_s_n": {"$gte": 2.5}}
    assert build_param_filter(num, None, "le2") == {"_s_n": {"$lte": 2}}
    assert build_param_filter(num, None, "ap100") == {"_s_n": {"$gte": 90, "$lte": 110}}


def test_quantities() -> None:
    q = SearchParam("value-quantity", "quantity", "Observation", ("valueQuantity",))
    assert build_param_filter(q, None, "5.4") == {"_s_value_quantity": {"$gte": 5.35, "$lt": 5.45}}
    # a UCUM unit of the conversion set: searched in its dimension's canonical unit
    assert build_param_filter(q, None, "gt5.1|http://unitsofmeasure.org|mmol/L") == {
        "_s_value_quantity_canon": {"$gt": 5.1},
        "_s_value_quantity_canon_unit": "mmol/L",
    }
    assert build_param_filter(q, None, "100|http://unitsofmeasure.org|mg/dL") == {
        "_s_value_quantity_canon": {"$gte": 0.995, "$lt": 1.005},
        "_s_value_quantity_canon_unit": "g/L",
    }
    assert build_param_filter(q, None, "ne5|http://unitsofmeasure.org|umol/L") == {
        "$or": [{"_s_value_quantity_canon": {"$lt": 0.0045}}, {"_s_value_quantity_canon": {"$gte": 0.0055}}],
        "_s_value_quantity_canon_unit": "mmol/L",
    }
    # any other unit (or a UCUM code outside the set, or no system) is matched as written
    assert build_param_filter(q, None, "gt5.1|http://unitsofmeasure.org|/min") == {
        "_s_value_quantity": {"$gt": 5.1},
        "_s_value_quantity_unit": "http://unitsofmeasure.org|/min",
    }
    assert build_param_filter(q, None, "139||mmol/L") == {
        "_s_value_quantity": {"$gte": 138.5, "$lt": 139.5},
        "_s_value_quantity_unit": "mmol/L",
    }
    assert build_param_filter(q, None, "ne5||mg") == {
        "$or": [{"_s_value_quantity": {"$lt": 4.5}}, {"_s_value_quantity": {"$gte": 5.5}}],
        "_s_value_quantity_unit": "mg",
    }
    for bad in ("|http://unitsofmeasure.org|mg", "5|mg", "5|s|", "abc||mg", "sa5"):
        with pytest.raises(SearchValueError):
            build_param_filter(q, None, bad)
    with pytest.raises(SearchValueError, match="not supported"):
        build_param_filter(q, "exact", "5")


# -- OR lists ------------------------------------------------------------------------------------


def test_or_lists() -> None:
    status = param(DR, "status")
    assert build_or_filter(status, None, ["current"]) == {"_s_status": "current"}
    assert build_or_filter(status, None, ["current", "superseded", "current"]) == {
        "_s_status": {"$in": ["current", "superseded"]}
    }
    assert build_or_filter(status, "not", ["current", "superseded"]) == {
        "_s_status": {"$nin": ["current", "superseded"]}
    }
    patient = param(DR, "patient")
    assert build_or_filter(patient, None, ["p1", f"{BASE}/Patient/p2"], base_url=BASE) == {
        "_s_patient": {"$in": ["Patient/p1", "Patient/p2"]}
    }
    name = param("Patient", "name")
    assert build_or_filter(name, "contains", ["a", "b"]) == {
        "$or": [{"_s_name_norm": Regex("a")}, {"_s_name_norm": Regex("b")}]
    }
    date = param(DR, "date")
    assert build_or_filter(date, None, ["sa2024", "eb2020"]) == {
        "$or": [{"_s_date_lo": {"$gt": utc(2024, 12, 31, 23, 59, 59, 999)}},
                {"_s_date_hi": {"$lt": utc(2020, 1, 1)}}]
    }  # fmt: skip
    with pytest.raises(SearchValueError):
        build_or_filter(status, None, [])


# -- user input stays data -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ['{"$gt": ""}', "$where", "$ne", "a|{$gt:1}", "'; db.drop()"])
def test_operators_in_values_are_plain_strings(value: str) -> None:
    got = build_param_filter(param(DR, "status"), None, value)
    ((field, cond),) = got.items()
    assert field == "_s_status" and isinstance(cond, str)
    got = build_param_filter(param("Patient", "name"), "contains", value)
    ((field, cond),) = got.items()
    assert field == "_s_name_norm" and isinstance(cond, Regex) and cond.flags == 0
    assert build_param_filter(param("Patient", "family"), "exact", value) == {"_s_family_exact": value}


def test_regexes_are_escaped() -> None:
    got = build_param_filter(param("Patient", "name"), "contains", "^a.*b$|[x]{2}\\")
    assert got == {"_s_name_norm": Regex(r"\^a\.\*b\$\|\[x\]\{2\}\\")}
    got = build_param_filter(param(DR, "location"), "below", "a\x00b")
    assert got == {"_s_location": Regex(r"^a\x00b")}


# -- errors --------------------------------------------------------------------------------------

ERRORS: list[tuple[str, str, str | None, str]] = [
    (DR, "date", None, "2024-13"),
    (DR, "date", None, "yesterday"),
    (DR, "date", None, "xx2024"),
    (DR, "date", None, "2024-03-05T10"),
    (DR, "date", "exact", "2024"),
    (DR, "date", None, ""),
    (DR, "status", "contains", "cur"),
    (DR, "status", "below", "cur"),
    (DR, "status", "missing", "yes"),
    (DR, "identifier", "of-type", "a|b"),
    (DR, "identifier", "of-type", "a||c"),
    (DR, "type", None, "a|b|c"),
    (DR, "type", None, "|"),
    (DR, "type", "text", "  "),
    (DR, "_id", "text", "x"),
    ("Patient", "name", None, "   "),
    ("Patient", "name", "text", "x"),
    (DR, "patient", None, "Practitioner/1"),
    (DR, "patient", "Practitioner", "1"),
    (DR, "subject", "Patient", "Group/1"),
    (DR, "subject", "Patient", "a/b"),
    (DR, "author", None, "#contained"),
    (DR, "author", "below", "x"),
    (DR, "location", "above", "x"),
]  # fmt: skip


@pytest.mark.parametrize(("rtype", "name", "modifier", "value"), ERRORS,
                         ids=[f"{e[1]}:{e[2]}={e[3]}" for e in ERRORS])  # fmt: skip
def test_bad_values_raise(rtype: str, name: str, modifier: str | None, value: str) -> None:
    with pytest.raises(SearchValueError) as caught:
        build_param_filter(param(rtype, name), modifier, value, base_url=BASE)
    assert isinstance(caught.value, ValueError) and str(caught.value)


def test_unsupported_types_and_number_prefixes_raise() -> None:
    with pytest.raises(SearchValueError, match="not supported"):
        build_param_filter(SearchParam("c", "composite", "X", ("c",)), None, "a$b")
    num = SearchParam("n", "number", "X", ("n",))
    for bad in ("sa5", "abc", "NaN", "Infinity", "zz5"):
        with pytest.raises(SearchValueError):
            build_param_filter(num, None, bad)


def test_escapes() -> None:
    assert unescape(r"a\,b\$c\|d\\e") == "a,b$c|d\\e"
    assert split_pipes(r"s|c") == ["s", "c"]
    assert split_pipes(r"s\|x|c") == ["s|x", "c"]
    assert split_pipes(r"s\\|c") == ["s\\", "c"]
    assert split_pipes("|c") == ["", "c"]
    assert split_pipes("a|b|c") == ["a", "b", "c"]


def test_date_bounds_stay_representable() -> None:
    got = build_param_filter(param(DR, "date"), None, "ap0001", now=NOW)
    assert got["_s_date_hi"] == {"$gte": DATETIME_MIN}
    got = build_param_filter(param(DR, "date"), None, "ap9999", now=NOW)
    assert got["_s_date_lo"] == {"$lte": DATETIME_MAX}
