"""The filter shapes run on a real MongoDB-compatible server (FerretDB here, MongoDB with MONGODB_URL).

Hand-written resources are stored the way the repository stores them (``_id``, ``_lu``, the resource
and the fields of ``extract_search_fields``), then every search below must return exactly the ids
written next to it. This is the proof that the shapes of ``filters.py`` work on FerretDB, whose
array, negation and regex semantics differ from MongoDB's in places (``docs/storage.md``).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.collection import Collection

from dmp_fhir.search.extract import extract_search_fields
from dmp_fhir.search.filters import build_or_filter
from dmp_fhir.search.params import get_param
from dmp_fhir.storage.disposable import disposable_name, drop_disposable_sync

from .search_samples import BASE, CONF, INS_NIR, IS_ARCHIVED, LOINC, V2_0203, document_reference, patient

VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument"
)
NOW = datetime(2025, 3, 5, tzinfo=UTC)
INS_1 = "248092B012345"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
PDSM_PROFILE = "http://esante.gouv.fr/ci-sis/fhir/StructureDefinition/PDSm_ComprehensiveDocumentReference"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


DOCUMENTS: list[tuple[dict[str, Any], str]] = [  # (resource, meta.lastUpdated)
    (document_reference(id="d1"), "2024-03-05T10:20:00Z"),
    ({"resourceType": "DocumentReference", "id": "d2",
      "meta": {"tag": [{"system": "urn:tag", "code": "t1"}]},
      "extension": [{"url": IS_ARCHIVED, "valueBoolean": True}],
      "status": "superseded",
      "type": {"coding": [{"system": LOINC, "code": "11502-2", "display": "Compte rendu de biologie"}]},
      "category": [{"text": "Biologie médicale"}],
      "subject": {"reference": f"{BASE}/Patient/pat-1"},
      "date": "2024",
      "author": [{"identifier": {"system": RPPS, "value": "810002"}}],
      "securityLabel": [{"coding": [{"system": CONF, "code": "N"}]},
                        {"coding": [{"system": VISIBILITY, "code": "MASQUE_PS"}]}],
      "description": "Compte-rendu Hélène",
      "content": [{"attachment": {"contentType": "text/plain", "creation": "2023-12-01T10:00:00Z"}}]},
     "2024-06-01T00:00:00Z"),
    ({"resourceType": "DocumentReference", "id": "d3", "status": "entered-in-error",
      "type": {"coding": [{"system": LOINC, "code": "11488-4"}, {"system": "urn:local", "code": "CR-CONS"}]},
      "subject": {"reference": "Patient/pat-2/_history/3"},
      "date": "2024-03-05",
      "context": {"period": {"start": "2024-03-01"}},
      "author": [{"reference": "urn:uuid:77"}],
      "description": "Hélène",
      "identifier": [{"value": "X1"}]},
     "2024-03-05T12:00:00Z"),
    ({"resourceType": "DocumentReference", "id": "d4", "status": "current",
      "subject": {"reference": "Group/g1"},
      "date": "2024-03-06T00:00:00+01:00",
      "description": "a" * 70,
      "relatesTo": [{"code": "appends", "target": {"reference": "DocumentReference/d1"}}],
      "content": [{"attachment": {"url": "http://a.b/fhir/Binary/9"}}]},
     "2025-01-01T00:00:00Z"),
    ({"resourceType": "DocumentReference", "id": "d5", "status": "current",
      "subject": {"identifier": {"system": INS_NIR, "value": INS_1}},
      "date": "2023-12-31T23:59:59.999Z",
      "context": {"period": {"end": "2023-01-31"}},
      "type": {"text": "Ordonnance"}},
     "2024-01-01T00:00:00Z"),
    ({"resourceType": "DocumentReference", "id": "d6",
      "subject": {"reference": "http://other.org/fhir/Patient/pat-1"},
      "date": "2025-02-20T10:00:00Z"},
     "2025-02-20T00:00:00Z"),
]  # fmt: skip

PATIENTS: list[tuple[dict[str, Any], str]] = [
    (patient(id="p1"), "2024-01-01T00:00:00Z"),
    ({"resourceType": "Patient", "id": "p2",
      "name": [{"family": "DUPONT-LAJOIE", "given": ["Jean  Pierre"]}],
      "active": False, "gender": "male", "birthDate": "1948-09-15", "deceasedDateTime": "2020",
      "telecom": [{"system": "email", "value": "jp@d.fr"}],
      "identifier": [{"system": INS_NIR, "value": "148097512345"}]},
     "2024-01-02T00:00:00Z"),
    ({"resourceType": "Patient", "id": "p3", "name": [{"family": "Élise", "given": ["Léa"]}],
      "birthDate": "1950", "deceasedBoolean": False, "identifier": [{"value": "X1"}],
      "address": [{"postalCode": "42100", "city": "Saint-Chamond"}]},
     "2024-01-03T00:00:00Z"),
    ({"resourceType": "Patient", "id": "p4", "meta": {"tag": [{"system": "urn:tag", "code": "t1"}]},
      "name": [{"text": "Marie Curie"}], "birthDate": "1948", "deceasedBoolean": True,
      "generalPractitioner": [{"reference": "Organization/org-1"}]},
     "2024-01-04T00:00:00Z"),
]  # fmt: skip


def stored(rtype: str, resource: dict[str, Any], last_updated: str) -> dict[str, Any]:
    """The stored document as docs/storage.md describes it."""
    rid = resource["id"]
    fields = extract_search_fields(rtype, resource, base_url=BASE)
    return {"_id": rid, "_rid": rid, "_v": 1, "_lu": at(last_updated), "_deleted": False,
            "resource": resource, **fields}  # fmt: skip


@pytest.fixture(scope="module")
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """MONGODB_URL, else the session's embedded FerretDB (conftest), else one of our own."""
    url = os.environ.get("MONGODB_URL")
    if url:
        yield url
        return
    with contextlib.ExitStack() as stack:
        try:
            url = request.getfixturevalue("mongodb_url")
        except pytest.FixtureLookupError:
            from dmp_fhir.devdb import EmbeddedDatabase

            try:
                url = stack.enter_context(EmbeddedDatabase()).url
            except (RuntimeError, OSError) as exc:
                pytest.skip(f"no MongoDB-compatible server: set MONGODB_URL, or install Go so that "
                            f"FerretDB can be built ({exc})")  # fmt: skip
        yield url


@pytest.fixture(scope="module")
def collections(server_url: str) -> Iterator[dict[str, Collection[dict[str, Any]]]]:
    """One uniquely named collection per resource type, loaded once, dropped at the end."""
    client: MongoClient[dict[str, Any]] = MongoClient(server_url, tz_aware=True,
                                                      serverSelectionTimeoutMS=10_000)  # fmt: skip
    db = client[disposable_name("test", "search_filters")]
    out: dict[str, Collection[dict[str, Any]]] = {}
    for rtype, rows in (("DocumentReference", DOCUMENTS), ("Patient", PATIENTS)):
        coll = db[f"{rtype}_{uuid.uuid4().hex[:6]}"]
        coll.insert_many([stored(rtype, resource, lu) for resource, lu in rows])
        out[rtype] = coll
    try:
        yield out
    finally:
        drop_disposable_sync(client, db.name)
        client.close()


def search(colls: dict[str, Collection[dict[str, Any]]], rtype: str, key: str, raw: str) -> set[str]:
    """Run ``key=raw`` (``name:modifier``, comma-separated values, no escaped commas here)."""
    name, _, modifier = key.partition(":")
    param = get_param(rtype, name)
    assert param is not None, key
    condition = build_or_filter(param, modifier or None, raw.split(","), base_url=BASE, now=NOW)
    return {doc["_id"] for doc in colls[rtype].find(condition, {"_id": 1})}


DR = "DocumentReference"
ALL_DOCS = {"d1", "d2", "d3", "d4", "d5", "d6"}

DOC_CASES: list[tuple[str, str, set[str]]] = [
    # tokens
    ("status", "current", {"d1", "d4", "d5"}),
    ("status", "current,superseded", {"d1", "d2", "d4", "d5"}),
    ("status:not", "current", {"d2", "d3", "d6"}),  # d6 has no status: :not keeps it
    ("status:not", "current,superseded", {"d3", "d6"}),
    ("status:missing", "true", {"d6"}),
    ("status:missing", "false", ALL_DOCS - {"d6"}),
    ("type", f"{LOINC}|11488-4", {"d1", "d3"}),
    ("type", "11488-4", {"d1", "d3"}),
    ("type", f"{LOINC}|", {"d1", "d2", "d3"}),
    ("type", "|11488-4", set()),
    ("type", "urn:local|CR-CONS", {"d3"}),
    ("type", "11502-2,CR-CONS", {"d2", "d3"}),
    ("type:text", "compte", {"d2"}),
    ("type:text", "NOTE", {"d1"}),
    ("type:text", "ordo", {"d5"}),
    ("type:missing", "true", {"d4", "d6"}),
    ("type:missing", "false", {"d1", "d2", "d3", "d5"}),
    ("category:text", "biolo", {"d2"}),
    ("security-label", "MASQUE_PS", {"d2"}),
    ("security-label:not", "MASQUE_PS", ALL_DOCS - {"d2"}),
    ("security-label:not", f"{VISIBILITY}|MASQUE_PS", ALL_DOCS - {"d2"}),
    ("isArchived", "true", {"d2"}),
    ("isArchived", "false", {"d1"}),
    ("isArchived:not", "true", ALL_DOCS - {"d2"}),
    ("identifier", "X1", {"d3"}),
    ("identifier", "|X1", {"d3"}),
    ("identifier", "urn:ietf:rfc:3986|urn:oid:1.2.3.4", {"d1"}),
    ("_tag", "urn:tag|t1", {"d2"}),
    ("_security", f"{CONF}|N", {"d1"}),
    ("_id", "d3", {"d3"}),
    ("_id", "d1,d3", {"d1", "d3"}),
    ("_id:not", "d1", ALL_DOCS - {"d1"}),
    # strings
    ("description", "helene", {"d3"}),
    ("description", "HÉL", {"d3"}),
    ("description", "compte", {"d2"}),
    ("description", "echo", {"d1"}),
    ("description", "a", {"d4"}),
    ("description", "a" * 70, {"d4"}),
    ("description", "a" * 65 + "b", set()),
    ("description:contains", "helene", {"d2", "d3"}),
    ("description:contains", "RENDU h", {"d2"}),
    ("description:exact", "Hélène", {"d3"}),
    ("description:exact", "helene", set()),
    ("description:missing", "true", {"d5", "d6"}),
    # dates: d1 09:15:00Z (1 s), d2 the year 2024, d3 the day 2024-03-05, d4 2024-03-05T23:00:00Z,
    # d5 2023-12-31T23:59:59.999Z, d6 2025-02-20T10:00:00Z
    ("date", "2024-03-05", {"d1", "d3", "d4"}),
    ("date", "eq2024", {"d1", "d2", "d3", "d4"}),
    ("date", "ne2024-03-05", {"d2", "d5", "d6"}),
    ("date", "gt2024-03-05", {"d2", "d6"}),
    ("date", "lt2024-03-05", {"d2", "d5"}),
    ("date", "ge2024-03-05", {"d1", "d2", "d3", "d4", "d6"}),
    ("date", "le2024-03-05", {"d1", "d2", "d3", "d4", "d5"}),
    ("date", "sa2024-03-05", {"d6"}),
    ("date", "eb2024-03-05", {"d5"}),
    ("date", "ap2024-03-05", {"d1", "d2", "d3", "d4"}),
    ("date", "ap2025-02-19", {"d6"}),
    ("date", "2024-03-05T10:15:00+01:00", {"d1"}),
    ("date", "2024-03-05T09:15Z", {"d1"}),
    ("date", "2024-03-05T23:00:00Z", {"d4"}),
    ("date", "2024-03-06", set()),
    ("date", "gt2023-12-31T23:59:59.998Z", ALL_DOCS),
    ("date", "eb2024", {"d5"}),
    ("date", "sa2024,eb2024", {"d5", "d6"}),
    ("date:missing", "true", set()),
    ("period", "2024-03-04", {"d1"}),
    ("period", "ge2024-03-04", {"d1", "d3"}),
    ("period", "lt2024", {"d5"}),
    ("period", "sa2023", {"d1", "d3"}),
    ("period:missing", "true", {"d2", "d4", "d6"}),
    ("period-start", "2024-03-04T08:00:00+01:00", {"d1"}),
    ("period-end", "le2023-06", {"d5"}),
    ("creation", "2024-03", {"d1"}),
    ("creation", "lt2024", {"d2"}),
    ("_lastUpdated", "2024-03-05", {"d1", "d3"}),
    ("_lastUpdated", "gt2024-06-01", {"d4", "d6"}),
    ("_lastUpdated", "ge2024-06-01", {"d2", "d4", "d6"}),
    ("_lastUpdated", "lt2024-03-05", {"d5"}),
    ("_lastUpdated", "le2024-03-05", {"d1", "d3", "d5"}),
    # references
    ("patient", "pat-1", {"d1", "d2"}),
    ("patient", "Patient/pat-2", {"d3"}),
    ("patient", "Patient/pat-2/_history/9", {"d3"}),
    ("patient", f"{BASE}/Patient/pat-1", {"d1", "d2"}),
    ("patient", "http://other.org/fhir/Patient/pat-1", {"d6"}),
    ("patient", "pat-1,pat-2", {"d1", "d2", "d3"}),
    ("patient:identifier", f"{INS_NIR}|{INS_1}", {"d5"}),
    ("patient:identifier", INS_1, {"d5"}),
    ("patient:missing", "true", {"d4"}),
    ("subject", "g1", {"d4"}),
    ("subject:Group", "g1", {"d4"}),
    ("subject:Patient", "pat-1", {"d1", "d2"}),
    ("author", "pr-1", {"d1"}),
    ("author", "Practitioner/pr-1", {"d1"}),
    ("author:identifier", f"{RPPS}|810002", {"d2"}),
    ("author", "urn:uuid:77", {"d3"}),
    ("author:missing", "true", {"d4", "d5", "d6"}),
    ("relatesto", "d1", {"d4"}),
    ("relatesto", "doc-0", {"d1"}),
    ("related:identifier", "ACC-9", {"d1"}),
    ("encounter", "enc-1", {"d1"}),
    # uris
    ("location", "Binary/bin-1", {"d1"}),
    ("location:below", "http://a.b/fhir", {"d4"}),
    ("location:below", "http://a.c", set()),
    ("_profile", PDSM_PROFILE, {"d1"}),
    # user input is data, never an operator or a live regex
    ("status", '{"$gt": ""}', set()),
    ("description:contains", ".*", set()),
    ("description", "$where", set()),
]  # fmt: skip


@pytest.mark.parametrize(("key", "raw", "expected"), DOC_CASES,
                         ids=[f"{k}={v[:40]}" for k, v, _ in DOC_CASES])  # fmt: skip
def test_document_reference_search(
    collections: dict[str, Collection[dict[str, Any]]], key: str, raw: str, expected: set[str]
) -> None:
    assert search(collections, DR, key, raw) == expected


PATIENT_CASES: list[tuple[str, str, set[str]]] = [
    ("name", "helene", {"p1"}),
    ("name", "HEL", {"p1"}),
    ("name", "Hél", {"p1"}),
    ("name", "dupont", {"p1", "p2"}),
    ("name", "marie", {"p1", "p4"}),
    ("name", "curie", set()),
    ("name:contains", "curie", {"p4"}),
    ("name:exact", "Marie", {"p1"}),
    ("name", "jean pierre", {"p2"}),
    ("name", "Jean  PIERRE", {"p2"}),
    ("name", "lea", {"p3"}),
    ("name", "elise", {"p3"}),
    ("family", "dupont", {"p1", "p2"}),
    ("family:exact", "Dupont", {"p1"}),
    ("family:exact", "DUPONT-LAJOIE", {"p2"}),
    ("family:contains", "lajoie", {"p2"}),
    ("family", "dupont,elise", {"p1", "p2", "p3"}),
    ("given", "marie", {"p1"}),
    ("active", "true", {"p1"}),
    ("active", "false", {"p2"}),
    ("active:missing", "true", {"p3", "p4"}),
    ("active:not", "true", {"p2", "p3", "p4"}),
    ("gender", "female", {"p1"}),
    ("gender:missing", "true", {"p3", "p4"}),
    ("deceased", "true", {"p2", "p4"}),
    ("deceased", "false", {"p1", "p3"}),
    ("birthdate", "1948", {"p1", "p2", "p4"}),
    ("birthdate", "eq1948-09", {"p1", "p2"}),
    ("birthdate", "1948-09-15", {"p2"}),
    ("birthdate", "lt1948-09", {"p4"}),
    ("birthdate", "ge1950", {"p3"}),
    ("birthdate", "sa1948", {"p3"}),
    ("birthdate", "eb1950", {"p1", "p2", "p4"}),
    ("identifier", f"{INS_NIR}|", {"p1", "p2"}),
    ("identifier", "X1", {"p3"}),
    ("identifier", "|X1", {"p3"}),
    ("identifier:of-type", f"{V2_0203}|NH|{INS_1}", {"p1"}),
    ("identifier:of-type", f"{V2_0203}|NH|X1", set()),
    ("identifier:text", "ins", {"p1"}),
    ("identifier:text", "NIR", {"p1"}),
    ("phone", "0612345678", {"p1"}),
    ("email", "jp@d.fr", {"p2"}),
    ("telecom", "email|", {"p1", "p2"}),
    ("email:missing", "true", {"p3", "p4"}),
    ("address-postalcode", "42", {"p1", "p3"}),
    ("address-postalcode", "421", {"p3"}),
    ("address-city", "saint", {"p1", "p3"}),
    ("address", "saint-etienne", {"p1"}),
    ("address:contains", "eglise", {"p1"}),
    ("general-practitioner", "pr-1", {"p1"}),
    ("general-practitioner", "Organization/org-1", {"p4"}),
    ("general-practitioner:Practitioner", "pr-1", {"p1"}),
    ("organization", "org-1", {"p1"}),
    ("link", "pat-0", {"p1"}),
    ("_tag", "urn:tag|t1", {"p4"}),
    ("_tag:not", "urn:tag|t1", {"p1", "p2", "p3"}),
]  # fmt: skip


@pytest.mark.parametrize(("key", "raw", "expected"), PATIENT_CASES,
                         ids=[f"{k}={v}" for k, v, _ in PATIENT_CASES])  # fmt: skip
def test_patient_search(
    collections: dict[str, Collection[dict[str, Any]]], key: str, raw: str, expected: set[str]
) -> None:
    assert search(collections, "Patient", key, raw) == expected


def test_equalities_are_pushed_down_on_ferretdb_postgresql(
    collections: dict[str, Collection[dict[str, Any]]],
) -> None:
    """On FerretDB/PostgreSQL the plain equality shapes run in SQL (``filterPushdown``)."""
    coll = collections[DR]
    db = coll.database
    if "ferretdbVersion" not in db.client.admin.command("buildInfo"):
        pytest.skip("not FerretDB: MongoDB uses indexes instead (explain shows the plan)")

    def pushed(condition: dict[str, Any]) -> bool:
        return bool(db.command("explain", {"find": coll.name, "filter": condition}).get("filterPushdown"))

    if not pushed({"_s_status": "current"}):
        pytest.skip("FerretDB on SQLite pushes down only _id equalities")
    status, patient_param = get_param(DR, "status"), get_param(DR, "patient")
    description = get_param(DR, "description")
    assert status is not None and patient_param is not None and description is not None
    for condition in (
        build_or_filter(status, None, ["current"]),
        build_or_filter(patient_param, None, ["pat-1"]),
        build_or_filter(description, None, ["Hél"]),
        {**build_or_filter(patient_param, None, ["pat-1"]), **build_or_filter(status, None, ["current"])},
    ):
        assert pushed(condition), condition
