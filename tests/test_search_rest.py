"""REST-level search catalogue: expected matches written by hand from FHIR R4 search rules.

Resources: ``search_rest_data.py`` (its docstring has the table of Patients the expectations are
read from). The references are http://hl7.org/fhir/R4/search.html and the IHE MHD ITI-67 / ANS
PDSm parameter lists; the server's own code is never used to compute an expectation.

Date rules applied by hand (R4 §3.1.1.4.7): a value is a *range* at its precision (``1980`` is the
whole year); ``eq`` = the search range contains the target range, ``ne`` = it does not, ``gt`` /
``lt`` = the target range overlaps the part above / below the search range, ``ge`` / ``le`` = gt /
lt or eq, ``sa`` / ``eb`` = the target starts after / ends before the search range (no overlap).
A resource without a value never matches a prefix search (only ``:missing``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlencode

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from . import search_rest_data as data
from .conftest import BASE

pytestmark = pytest.mark.asyncio(loop_scope="session")

JSON = {"Content-Type": "application/fhir+json"}

# Patients
H, LEA, LEA2, OE = "p-helene", "p-lea", "p-lea2", "p-oeuvray"
JEAN, JAC, MARC, ALEX = "p-jean", "p-jacques", "p-marc", "p-alex"
LAMB, NOSYS, LHOP = "p-lambert", "p-nosys", "p-lhopital"
ALL_PATIENTS = set(data.LIVE_PATIENTS)
WITH_BIRTHDATE = ALL_PATIENTS - {NOSYS, LHOP}

INS, RPPS, FINESS, LOCAL, IPP = data.INS, data.RPPS, data.FINESS, data.LOCAL, data.IPP
CLASS, CONF, FORMAT, FACILITY = data.CLASS, data.CONF, data.FORMAT, data.FACILITY
SETTING, CCAM, MHD_LIST = data.SETTING, data.CCAM, data.MHD_LIST
SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")


# Regression tests below once were server bugs: a NUL in a search value gave a 500; a chain to a
# parameter no target type defines silently matched nothing; _elements trimmed included resources.


# -- fixture and helpers -------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def loaded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for resource in data.RESOURCES:
        response = await client.put(
            f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=JSON
        )
        assert response.status_code in (200, 201), response.text
    for ref in data.DELETED:
        response = await client.delete(f"/{ref}")
        assert response.status_code in (200, 204), response.text
        assert (await client.get(f"/{ref}")).status_code == 410
    for resource in data.RECREATED:
        response = await client.put(
            f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=JSON
        )
        assert response.status_code in (200, 201), response.text
    return client


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def raw_client(app: FastAPI, loaded: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sees a crash as the 500 answer a real client would get."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


def parse(query: str) -> httpx.QueryParams:
    """``a=1&b=2`` → query parameters, values taken literally (httpx percent-encodes them on the wire) except
    ``%XX`` escapes, so that ``%26`` writes a literal ``&``."""
    pairs: list[tuple[str, str | int | float | bool | None]] = []
    for part in query.split("&") if query else []:
        key, _, value = part.partition("=")
        pairs.append((key, unquote(value)))
    return httpx.QueryParams(pairs)


def check_bundle(bundle: dict[str, Any], rtype: str) -> None:
    """What every searchset must have: type, self link, fullUrl and search.mode on entries."""
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    links = {link["relation"]: link["url"] for link in bundle.get("link", [])}
    assert "self" in links, bundle.get("link")
    assert links["self"].startswith(f"{BASE}/{rtype}"), links["self"]
    for entry in bundle.get("entry", []):
        mode = entry["search"]["mode"]
        assert mode in ("match", "include", "outcome"), entry
        res = entry["resource"]
        if mode == "outcome":
            assert res["resourceType"] == "OperationOutcome"
            continue
        assert entry["fullUrl"] == f"{BASE}/{res['resourceType']}/{res['id']}"
        if mode == "match":
            assert res["resourceType"] == rtype


async def get_bundle(
    client: httpx.AsyncClient,
    rtype: str,
    query: str,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    response = await client.get(f"/{rtype}", params=parse(query), headers=headers)
    assert response.status_code == 200, f"GET /{rtype}?{query} → {response.status_code} {response.text}"
    bundle: dict[str, Any] = response.json()
    check_bundle(bundle, rtype)
    return bundle


def entries(bundle: dict[str, Any], mode: str = "match") -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def match_ids(bundle: dict[str, Any]) -> list[str]:
    return [r["id"] for r in entries(bundle)]


def include_refs(bundle: dict[str, Any]) -> list[str]:
    return [f"{r['resourceType']}/{r['id']}" for r in entries(bundle, "include")]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    for item in bundle.get("link", []):
        if item["relation"] == relation:
            return str(item["url"])
    return None


def case(rtype: str, query: str, expected: set[str] | frozenset[str], note: str = "") -> Any:
    return pytest.param(
        rtype, query, frozenset(expected), id=f"{rtype}?{query}" + (f" [{note}]" if note else "")
    )


# -- the catalogue: (type, query, expected matching ids) -----------------------------------------

P = "Patient"
CATALOGUE = [
    # identifier (token): system|value, |value (no system), system| (any value), bare value
    case(P, f"identifier={INS}|279035121518989", {H}),
    case(P, "identifier=279035121518989", {H, LAMB}, "bare value: any system"),
    case(P, f"identifier={LOCAL}|279035121518989", {LAMB}),
    case(P, f"identifier={INS}|", {H, LEA, LEA2, OE, JEAN, JAC, MARC}, "system|: any value"),
    case(P, "identifier=|NOSYS-1", {NOSYS}, "|value: no system"),
    case(P, "identifier=NOSYS-1", {NOSYS}),
    case(P, "identifier=|279035121518989", set(), "both have a system"),
    case(P, f"identifier={INS}|27903512151898", set(), "a token never matches a prefix"),
    case(P, f"identifier={INS}|279035121599999", set(), "deleted patient"),
    case(P, f"identifier={INS}|279035121518989,{INS}|294016912345678", {H, LEA}, "comma = OR"),
    case(P, "identifier=279035121518989&identifier=1.2.3", {LAMB}, "repeat = AND"),
    case(P, f"identifier={INS}|279035121518989&identifier={LOCAL}|279035121518989", set()),
    case(P, "identifier=1.2.3", {LAMB}),
    case(P, f"identifier={IPP}|1.2.3", {LAMB}),
    case(P, "identifier=1x2x3", set(), "a dot is not a wildcard"),
    case(P, f"identifier={INS}|1.2.3", set()),
    case(P, f"identifier:of-type={data.V2_0203}|PI|1.2.3", {LAMB}),
    case(P, f"identifier:of-type={data.V2_0203}|PI|279035121518989", set(), "that one has no type"),
    case(P, "identifier:text=identifiant patient", {LAMB}, "Identifier.type.text"),
    case(P, "identifier:missing=true", {ALEX, LHOP}),
    case(P, "identifier:missing=false", ALL_PATIENTS - {ALEX, LHOP}),
    # family / given / name: starts-with, case- and accent-insensitive by default
    case(P, "family=martin", {H}, "not the deleted Martin"),
    case(P, "family=Martin", {H}),
    case(P, "family=MART", {H}),
    case(P, "family=artin", set(), "starts-with, not contains"),
    case(P, "family=bernard", {JEAN, JAC}),
    case(P, "family=lefevre", {LEA2}),
    case(P, "family=LEFÈVRE", {LEA2}),
    case(P, "family=lefè", {LEA2}),
    case(P, "family=dupont", {LEA}),
    case(P, "family=ancien", set(), "only the current version is searched"),
    case(P, "family=œuvray", {OE}),
    case(P, "family=ŒUV", {OE}),
    case(P, "family=l'hôp", {LHOP}),
    case(P, "family=L'HOPITAL", {LHOP}),
    case(P, "family=st. j", {NOSYS}),
    case(P, "family=john", set(), "the value starts with 'St.'"),
    case(P, "family=martin,dupont", {H, LEA}),
    case(P, "family:exact=Martin", {H}),
    case(P, "family:exact=martin", set(), ":exact is case-sensitive"),
    case(P, "family:exact=Mart", set(), ":exact is the whole string"),
    case(P, "family:exact=Lefèvre", {LEA2}),
    case(P, "family:exact=Lefevre", set(), ":exact is accent-sensitive"),
    case(P, "family:exact=Œuvray", {OE}),
    case(P, "family:exact=œuvray", set()),
    case(P, "family:contains=ar", {H, JEAN, JAC, ALEX}),
    case(P, "family:contains=EVR", {LEA2}),
    case(P, "family:contains=èvr", {LEA2}),
    case(P, "family:contains=tin", {H}),
    case(P, "family:contains=ôpi", {LHOP}),
    case(P, "family:contains=.", {NOSYS}, "a dot is literal"),
    case(P, "given=helene", {H}),
    case(P, "given=HEL", {H}),
    case(P, "given=hél", {H}),
    case(P, "given=Hélène", {H}),
    case(P, "given=HÉLÈNE", {H}),
    case(P, "given=marie", {H}, "second given name"),
    case(P, "given=lea", {LEA, LEA2}),
    case(P, "given=Léa", {LEA, LEA2}),
    case(P, "given=LÉA", {LEA, LEA2}),
    case(P, "given:exact=Léa", {LEA}),
    case(P, "given:exact=Lea", {LEA2}),
    case(P, "given:exact=léa", set()),
    case(P, "given=yves", {OE}),
    case(P, "given=ŸVES", {OE}),
    case(P, "given=ÿ", {OE}),
    case(P, "given=j", {JEAN, JAC}),
    case(P, "given=chloe", {LAMB}),
    case(P, "given:contains=ll", {LHOP}),
    case(P, "given:contains=LO", {LAMB}),
    case(P, "given=lea&given=léa", {LEA, LEA2}),
    case(P, "given=lea&active=true", {LEA}),
    case(P, "family=bernard&given=jean", {JEAN}),
    case(P, "name=martin", {H}),
    case(P, "name=marie", {H}),
    case(P, "name=ma", {H, MARC}, "Martin/Marie and Marc, each once"),
    case(P, "name=bern", {JEAN, JAC}),
    case(P, "name=paul", {NOSYS}),
    case(P, "name=pierre", set(), "a contact's name is not Patient.name"),
    case(P, "name=durand", set(), "a Practitioner's name"),
    case(P, "name:contains=ean", {JEAN}),
    case(P, "name:exact=Lea", {LEA2}),
    # birthdate: eq at year / month / day precision, partial targets 1980 (Jean), 1980-06 (Jacques)
    case(P, "birthdate=1979-03-05", {H}),
    case(P, "birthdate=eq1979-03-05", {H}),
    case(P, "birthdate=1979", {H}),
    case(P, "birthdate=1979-03", {H}),
    case(P, "birthdate=1980", {JEAN, JAC, MARC, ALEX}),
    case(P, "birthdate=1980-06", {JAC, MARC}, "1980 is not within June"),
    case(P, "birthdate=1980-06-15", {MARC}),
    case(P, "birthdate=1980-06-16", set()),
    case(P, "birthdate=1994-01", {LEA, LEA2}),
    case(P, "birthdate=1994-01-15,1994-01-16", {LEA, LEA2}),
    case(P, "birthdate=ne1980", {H, LEA, LEA2, OE, LAMB}),
    case(P, "birthdate=ne1980-06", {H, LEA, LEA2, OE, JEAN, ALEX, LAMB}),
    case(P, "birthdate=ne1980-06-15", {H, LEA, LEA2, OE, JEAN, JAC, ALEX, LAMB}),
    case(P, "birthdate=gt1980", {LEA, LEA2, LAMB}),
    case(P, "birthdate=gt1980-06", {JEAN, ALEX, LEA, LEA2, LAMB}),
    case(P, "birthdate=gt1980-06-15", {JEAN, JAC, ALEX, LEA, LEA2, LAMB}),
    case(P, "birthdate=lt1980", {H, OE}),
    case(P, "birthdate=lt1980-06", {H, OE, JEAN}),
    case(P, "birthdate=lt1980-06-15", {H, OE, JEAN, JAC}),
    case(P, "birthdate=ge1980", {JEAN, JAC, MARC, ALEX, LEA, LEA2, LAMB}),
    case(P, "birthdate=ge1980-06", {JEAN, JAC, MARC, ALEX, LEA, LEA2, LAMB}),
    case(P, "birthdate=ge1980-06-15", {JEAN, JAC, MARC, ALEX, LEA, LEA2, LAMB}),
    case(P, "birthdate=ge1980-07", {JEAN, ALEX, LEA, LEA2, LAMB}),
    case(P, "birthdate=ge1994-01-16", {LEA2, LAMB}),
    case(P, "birthdate=le1980", {H, OE, JEAN, JAC, MARC, ALEX}),
    case(P, "birthdate=le1980-06", {H, OE, JEAN, JAC, MARC}),
    case(P, "birthdate=le1980-06-15", {H, OE, JEAN, JAC, MARC}),
    case(P, "birthdate=le1980-06-14", {H, OE, JEAN, JAC}),
    case(P, "birthdate=sa1980", {LEA, LEA2, LAMB}),
    case(P, "birthdate=sa1980-06", {ALEX, LEA, LEA2, LAMB}),
    case(P, "birthdate=sa1980-06-15", {ALEX, LEA, LEA2, LAMB}, "June 1980 overlaps the 15th"),
    case(P, "birthdate=sa1980-05", {JAC, MARC, ALEX, LEA, LEA2, LAMB}),
    case(P, "birthdate=sa1979-12-31", {JEAN, JAC, MARC, ALEX, LEA, LEA2, LAMB}),
    case(P, "birthdate=eb1980", {H, OE}),
    case(P, "birthdate=eb1980-06", {H, OE}),
    case(P, "birthdate=eb1980-06-15", {H, OE}),
    case(P, "birthdate=eb1980-07", {H, OE, JAC, MARC}),
    case(P, "birthdate=eb1981", {H, OE, JEAN, JAC, MARC, ALEX}),
    case(P, "birthdate=1980-06-15T10:00:00Z", set(), "a day is not within one second"),
    case(P, "birthdate=gt1980-06-15T10:00:00Z", {MARC, JEAN, JAC, ALEX, LEA, LEA2, LAMB}),
    case(P, "birthdate=lt1980-06-15T10:00:00Z", {MARC, JEAN, JAC, H, OE}),
    case(P, "birthdate=ge1980-01-01&birthdate=le1980-12-31", {JEAN, JAC, MARC, ALEX}),
    case(P, "birthdate=gt1980-01-01&birthdate=lt1980-12-31", {JEAN, JAC, MARC}),
    case(P, "birthdate=sa1979-12-31&birthdate=eb1981-01-01", {JEAN, JAC, MARC, ALEX}),
    case(P, "birthdate:missing=true", {NOSYS, LHOP}),
    case(P, "birthdate:missing=false", WITH_BIRTHDATE),
    # gender, active
    case(P, "gender=female", {H, LEA, LEA2}),
    case(P, "gender=male", {OE, JEAN, JAC, MARC, LHOP}),
    case(P, "gender=other", {LAMB}),
    case(P, "gender=unknown", {NOSYS}),
    case(P, "gender=male,female", {H, LEA, LEA2, OE, JEAN, JAC, MARC, LHOP}),
    case(P, "gender:not=male", {H, LEA, LEA2, ALEX, LAMB, NOSYS}, ":not includes no gender"),
    case(P, "gender:not=male&gender:not=female", {ALEX, LAMB, NOSYS}),
    case(P, "gender:missing=true", {ALEX}),
    case(P, "gender:missing=false", ALL_PATIENTS - {ALEX}),
    case(P, "gender=female&active=false", {LEA2}),
    case(P, "gender=male&birthdate=1980", {JEAN, JAC, MARC}),
    case(P, "active=true", {H, LEA, OE, MARC, LAMB, LHOP}),
    case(P, "active=false", {LEA2, ALEX}),
    case(P, "active=true,false", ALL_PATIENTS - {JEAN, JAC, NOSYS}),
    case(P, "active:missing=true", {JEAN, JAC, NOSYS}),
    case(P, "active:missing=false", ALL_PATIENTS - {JEAN, JAC, NOSYS}),
    # general-practitioner (reference): Type/id, id, absolute URL, :Type, chains
    case(P, "general-practitioner=Practitioner/pr-durand", {H, MARC}),
    case(P, "general-practitioner=pr-durand", {H, MARC}),
    case(P, "general-practitioner=http://testserver/fhir/Practitioner/pr-durand", {H, MARC}),
    case(P, "general-practitioner:Practitioner=pr-durand", {H, MARC}),
    case(P, "general-practitioner=Practitioner/pr-petit", {LEA}, "stored as an absolute URL"),
    case(P, "general-practitioner=http://testserver/fhir/Practitioner/pr-petit", {LEA}),
    case(P, "general-practitioner:Practitioner=pr-petit", {LEA}),
    case(P, "general-practitioner=Organization/org-hcl", {LEA2}),
    case(P, "general-practitioner=Practitioner/pr-durand,Organization/org-hcl", {H, MARC, LEA2}),
    case(P, "general-practitioner=Practitioner/nobody", set()),
    case(P, "general-practitioner:missing=true", {OE, JEAN, JAC, ALEX, LAMB, NOSYS, LHOP}),
    case(P, f"general-practitioner.identifier={RPPS}|810000000001", {H, MARC}),
    case(P, f"general-practitioner:Practitioner.identifier={RPPS}|810000000002", {LEA}),
    case(P, "general-practitioner:Practitioner.family=petit", {LEA}),
    case(P, f"general-practitioner:Organization.identifier={FINESS}|690781810", {LEA2}),
    # address
    case(P, "address-postalcode=69003", {H, OE, LAMB}),
    case(P, "address-postalcode=690", {H, OE, LAMB}),
    case(P, "address-postalcode=75", {LEA, LEA2, LHOP}),
    case(P, "address-postalcode=75011", {LEA, LHOP}),
    case(P, "address-postalcode=13001", {JEAN, MARC}),
    case(P, "address-postalcode=003", set()),
    case(P, "address-postalcode:missing=true", {JAC, ALEX, NOSYS}),
    case(P, "address-city=lyon", {H, OE, LAMB}),
    case(P, "address-city=paris&address-postalcode=75012", {LEA2}),
    # _id, _lastUpdated
    case(P, "_id=p-helene", {H}),
    case(P, "_id=p-helene,p-lea", {H, LEA}),
    case(P, "_id=p-helene&_id=p-lea", set(), "repeat = AND"),
    case(P, "_id=p-deleted", set()),
    case(P, "_id=p-helene,p-deleted", {H}),
    case(P, "_id=nope", set()),
    case(P, "_id=P-HELENE", set(), "ids are case-sensitive"),
    case(P, "_has:DocumentReference:patient:_id=d1", {H}),
    case(P, "_lastUpdated=gt2020-01-01", ALL_PATIENTS),
    case(P, "_lastUpdated=lt2020", set()),
    case(P, "family=bernard&birthdate=1980-06", {JAC}),
    # reverse chain
    case(P, "_has:DocumentReference:patient:type=http://loinc.org|11488-4", {H, JEAN}),
    case(P, "_has:DocumentReference:subject:type=http://loinc.org|11488-4", {H, JEAN}),
    case(P, "_has:DocumentReference:patient:type=http://loinc.org|34133-9", {LEA}),
    case(P, "_has:DocumentReference:patient:type=http://loinc.org|11506-3", set(), "subject is a Group"),
    case(P, "_has:DocumentReference:patient:status=superseded", {H}),
    case(P, "_has:DocumentReference:patient:date=2024-02-01", set(), "only the deleted document"),
    case(P, "_has:Consent:patient:status=active", {H}),
    # injection attempts: plain strings that match nothing
    case(P, 'family={"$gt": ""}', set()),
    case(P, "family=$where", set()),
    case(P, "family=^a", set()),
    case(P, "family=.*", set()),
    case(P, "family:contains=.*", set()),
    case(P, "family:exact=.*", set()),
    case(P, "given=(j|h)", set()),
    case(P, 'name={"$regex": ".*"}', set()),
    case(P, "identifier=.*", set()),
    case(P, 'identifier={"$ne": null}', set()),
    # DocumentReference (MHD ITI-67)
    case("DocumentReference", "patient=Patient/p-helene", {"d1", "d2"}),
    case("DocumentReference", "patient=p-helene", {"d1", "d2"}),
    case("DocumentReference", "patient=http://testserver/fhir/Patient/p-helene", {"d1", "d2"}),
    case("DocumentReference", "patient=Patient/p-lea", {"d3"}, "not the deleted d-deleted"),
    case("DocumentReference", "patient=Patient/p-helene,Patient/p-jean", {"d1", "d2", "d4"}),
    case("DocumentReference", "patient:missing=true", {"d5"}),
    case("DocumentReference", "subject=Patient/p-helene", {"d1", "d2"}),
    case("DocumentReference", "subject:Patient=p-helene", {"d1", "d2"}),
    case("DocumentReference", "subject=Group/g-1", {"d5"}),
    case("DocumentReference", "status=current", {"d1", "d3", "d4"}),
    case("DocumentReference", "status=superseded", {"d2"}),
    case("DocumentReference", "status=entered-in-error", {"d5"}),
    case("DocumentReference", "status=current,superseded", {"d1", "d2", "d3", "d4"}),
    case("DocumentReference", "status:not=current", {"d2", "d5"}),
    case("DocumentReference", "type=http://loinc.org|11488-4", {"d1", "d2", "d4"}),
    case("DocumentReference", "type=11488-4", {"d1", "d2", "d4"}),
    case("DocumentReference", "type=http://loinc.org|34133-9", {"d3"}),
    case("DocumentReference", "type=http://snomed.info/sct|11488-4", set()),
    case("DocumentReference", "type=http://loinc.org|", {"d1", "d2", "d3", "d4", "d5"}),
    case("DocumentReference", "type:text=note de", {"d1"}, "Coding.display, as a string"),
    case("DocumentReference", "type:text=NOTE", {"d1"}),
    case("DocumentReference", f"_profile={data.PDSM_PROFILE}", {"d1"}),
    case("DocumentReference", f"_tag={data.TAG_SYSTEM}|urgent", {"d3"}),
    case("DocumentReference", "_tag=urgent", {"d3"}),
    case("DocumentReference", "_tag:missing=true", {"d1", "d2", "d4", "d5"}),
    case("DocumentReference", f"category={CLASS}|10", {"d1", "d3"}),
    case("DocumentReference", f"category={CLASS}|11", {"d2"}),
    case("DocumentReference", "category:missing=true", {"d4", "d5"}),
    case("DocumentReference", "date=2024", {"d1", "d3"}),
    case("DocumentReference", "date=2024-03", {"d1"}),
    case("DocumentReference", "date=2024-03-05", {"d1"}),
    case("DocumentReference", "date=2024-03-04", set()),
    case("DocumentReference", "date=2024-03-05T10:00:00+01:00", {"d1"}),
    case("DocumentReference", "date=2024-03-05T09:00:00Z", {"d1"}),
    case("DocumentReference", "date=2021,2022", {"d4", "d5"}),
    case("DocumentReference", "date=ge2024-01-01", {"d1", "d3"}),
    case("DocumentReference", "date=gt2023-11-20", {"d1", "d3"}),
    case("DocumentReference", "date=ge2023-11-20", {"d1", "d2", "d3"}),
    case("DocumentReference", "date=lt2024", {"d2", "d4", "d5"}),
    case("DocumentReference", "date=le2023-11-20", {"d2", "d4", "d5"}),
    case("DocumentReference", "date=lt2023-11-20", {"d4", "d5"}),
    case("DocumentReference", "date=ne2024", {"d2", "d4", "d5"}),
    case("DocumentReference", "date=sa2023-12-31", {"d1", "d3"}),
    case("DocumentReference", "date=eb2023", {"d4", "d5"}),
    case("DocumentReference", "date=eb2022-01-10T12:00:00Z", {"d5"}),
    case("DocumentReference", "date=gt2024-03-05T09:00:00Z", {"d3"}),
    case("DocumentReference", "date=ge2024-03-05T09:00:00Z", {"d1", "d3"}),
    case("DocumentReference", "date=ge2024-01-01&date=lt2024-04-01", {"d1"}),
    case("DocumentReference", "period=2024-03-05", {"d1"}),
    case("DocumentReference", "period=2023-11-19", {"d2"}),
    case("DocumentReference", "period=2024", {"d1"}, "an open-ended period is not within 2024"),
    case("DocumentReference", "period=ge2024-05-30", {"d3"}),
    case("DocumentReference", "period=gt2024-03-05", {"d3"}),
    case("DocumentReference", "period=lt2022-06-01", {"d4"}),
    case("DocumentReference", "period=le2023-11-19", {"d2", "d4"}),
    case("DocumentReference", "period=sa2024-01-01", {"d1", "d3"}),
    case("DocumentReference", "period=eb2024-01-01", {"d2", "d4"}),
    case("DocumentReference", "period=ne2024-03-05", {"d2", "d3", "d4"}),
    case("DocumentReference", "period:missing=true", {"d5"}),
    case("DocumentReference", "period-start=2024-05-30", {"d3"}),
    case("DocumentReference", "period-start=2024-03-05", {"d1"}),
    case("DocumentReference", "period-start=ge2024", {"d1", "d3"}),
    case("DocumentReference", "period-start=lt2024", {"d2"}),
    case("DocumentReference", "period-start:missing=true", {"d4", "d5"}),
    case("DocumentReference", "period-end=2022-01-09", {"d4"}),
    case("DocumentReference", "period-end=2024-03-05", {"d1"}),
    case("DocumentReference", "period-end=lt2024", {"d2", "d4"}),
    case("DocumentReference", "period-end:missing=true", {"d3", "d5"}),
    case("DocumentReference", "creation=2024", {"d1", "d3"}),
    case("DocumentReference", "creation=2024-03-05", {"d1"}),
    case("DocumentReference", "creation=lt2024-01-01", {"d2"}),
    case("DocumentReference", "creation=ge2024-06-01", {"d3"}),
    case("DocumentReference", "creation:missing=true", {"d4", "d5"}),
    case("DocumentReference", "author=Practitioner/pr-durand", {"d1"}),
    case("DocumentReference", "author=http://testserver/fhir/Practitioner/pr-durand", {"d1"}),
    case("DocumentReference", "author:Practitioner=pr-durand", {"d1"}),
    case("DocumentReference", "author=PractitionerRole/role-durand", {"d2"}),
    case("DocumentReference", "author=Practitioner/pr-petit", {"d3"}),
    case("DocumentReference", "author=pr-petit", {"d3"}),
    case("DocumentReference", "author=Organization/org-hcl", {"d4"}),
    case("DocumentReference", "author:missing=true", {"d5"}),
    case("DocumentReference", f"security-label={CONF}|N", {"d1", "d3"}),
    case("DocumentReference", "security-label=R", {"d2"}),
    case("DocumentReference", f"security-label={CONF}|N,{CONF}|R", {"d1", "d2", "d3"}),
    case("DocumentReference", "security-label:not=N", {"d2", "d4", "d5"}),
    case("DocumentReference", f"format={FORMAT}|urn:ihe:iti:xds:2017:mimeTypeSufficient", {"d1", "d3"}),
    case("DocumentReference", "format=urn:ihe:iti:xds:2017:mimeTypeSufficient", {"d1", "d3"}),
    case("DocumentReference", "contenttype=application/pdf", {"d1", "d3", "d4"}),
    case("DocumentReference", "contenttype=text/plain", {"d2", "d5"}),
    case("DocumentReference", "contenttype=application/pdf,text/plain", {"d1", "d2", "d3", "d4", "d5"}),
    case("DocumentReference", "relatesto=DocumentReference/d2", {"d1"}),
    case("DocumentReference", "relatesto=d2", {"d1"}),
    case("DocumentReference", "relatesto:missing=false", {"d1"}),
    case("DocumentReference", f"facility={FACILITY}|SA07", {"d1"}),
    case("DocumentReference", "facility=SA01", {"d2"}),
    case("DocumentReference", f"setting={SETTING}|ETABLISSEMENT", {"d1", "d3"}),
    case("DocumentReference", f"event={CCAM}|ZCQK002", {"d1"}),
    case("DocumentReference", "_id=d-deleted", set()),
    case("DocumentReference", "date=2024-02-01", set(), "only the deleted document"),
    # chains
    case("DocumentReference", f"patient.identifier={INS}|279035121518989", {"d1", "d2"}),
    case("DocumentReference", f"patient.identifier={INS}|294016912345678", {"d3"}),
    case("DocumentReference", f"patient.identifier={INS}|279035121599999", set(), "deleted patient"),
    case("DocumentReference", "patient.identifier=279035121518989", {"d1", "d2"}),
    case("DocumentReference", f"subject:Patient.identifier={INS}|279035121518989", {"d1", "d2"}),
    case("DocumentReference", "patient.family=bernard", {"d4"}),
    case("DocumentReference", "patient.gender=female", {"d1", "d2", "d3"}),
    case("DocumentReference", f"author.identifier={RPPS}|810000000001", {"d1"}),
    case("DocumentReference", f"author.identifier={RPPS}|810000000002", {"d3"}),
    case("DocumentReference", f"author:Practitioner.identifier={RPPS}|810000000002", {"d3"}),
    case("DocumentReference", "author:Practitioner.family=durand", {"d1"}),
    case("DocumentReference", "author:PractitionerRole.practitioner=Practitioner/pr-durand", {"d2"}),
    case(
        "DocumentReference", f"patient.identifier={INS}|279035121518989&type=11488-4&status=current", {"d1"}
    ),
    case("DocumentReference", f"patient.identifier={INS}|279035121518989&date=ge2024", {"d1"}),
    # Consent
    case("Consent", "patient=Patient/p-helene", {"c1", "c3"}),
    case("Consent", "patient=p-lea", {"c2"}),
    case("Consent", f"patient.identifier={INS}|294016912345678", {"c2"}),
    case("Consent", "status=active", {"c1"}),
    case("Consent", "status=active,inactive", {"c1", "c3"}),
    case("Consent", "status:not=active", {"c2", "c3"}),
    case("Consent", "actor=Practitioner/pr-durand", {"c1"}),
    case("Consent", "actor=Organization/org-hcl", {"c2"}),
    case("Consent", "actor=pr-petit", {"c3"}),
    case("Consent", "patient=p-helene&status=inactive", {"c3"}),
    # List (MHD submission sets and folders)
    case("List", f"code={MHD_LIST}|submissionset", {"l1", "l3"}),
    case("List", "code=submissionset", {"l1", "l3"}),
    case("List", "code=folder", {"l2"}),
    case("List", "patient=Patient/p-helene", {"l1", "l2"}),
    case("List", "status=current", {"l1", "l2"}),
    case("List", "status=retired", {"l3"}),
    case("List", "patient=p-helene&code=submissionset", {"l1"}),
    case("List", "item=DocumentReference/d1", {"l1"}),
    # Practitioner, PractitionerRole, Organization
    case("Practitioner", f"identifier={RPPS}|810000000001", {"pr-durand"}),
    case("Practitioner", "name=dr", {"pr-durand", "pr-petit"}, "HumanName.prefix"),
    case("Practitioner", "family=pet", {"pr-petit"}),
    case("PractitionerRole", "practitioner=Practitioner/pr-durand", {"role-durand"}),
    case("PractitionerRole", "organization=org-hcl", {"role-durand"}),
    case("PractitionerRole", "practitioner=Practitioner/pr-gone", {"role-gone"}, "the reference stays"),
    case("PractitionerRole", f"practitioner.identifier={RPPS}|810000000099", set(), "deleted target"),
    case("Practitioner", f"identifier={RPPS}|810000000099", set(), "deleted"),
    case(P, "given=He\u0301le\u0300ne", {H}, "decomposed (NFD) accents"),
    case(P, "family:exact=St. John", {NOSYS}),
    case("Organization", "name=hopital edouard", {"org-hcl"}),
    case("Organization", f"identifier={FINESS}|690781810", {"org-hcl"}),
    # escaping (R4 §3.1.1.1.7): \\, is a literal comma, \\| a literal bar; & and = travel encoded
    case("Organization", "name=laboratoire dupont\\, fils %26 cie", {"org-labo"}),
    case("Organization", "name=laboratoire dupont\\,", {"org-labo"}),
    case("Organization", "name=laboratoire dupont,hopital", {"org-labo", "org-hcl"}, "comma = OR"),
    case("Organization", "name:contains=\\, fils %26", {"org-labo"}),
    case("Organization", f"identifier={LOCAL}|A\\|B\\,C", {"org-labo"}),
    case("Organization", "identifier=A\\|B\\,C", {"org-labo"}),
    case("Organization", f"identifier={LOCAL}|A", set()),
    case("Organization", "name=phenix", {"org-phoenix"}, "deleted, then created again"),
    case("Organization", "name=cendres", set(), "the version before the deletion"),
    case(
        "Organization",
        "name=centre hospitalier universitaire de saint-etienne\\, hopital nord\\, serv",
        {"org-chu"},
        "a prefix longer than 64 characters",
    ),
    case(
        "Organization",
        "name=centre hospitalier universitaire de saint-etienne\\, hopital nord\\, servx",
        set(),
    ),
    case(
        "Organization",
        "name=centre hospitalier universitaire de saint-etienne\\, hopital nord\\, service de cardiologie",
        {"org-chu"},
        "the whole value",
    ),
    case(
        "Organization",
        "name:exact=Centre Hospitalier Universitaire de Saint-Étienne\\, Hôpital Nord\\, "
        "Service de Cardiologie",
        {"org-chu"},
    ),
    case(
        "Organization",
        "name:exact=Centre Hospitalier Universitaire de Saint-Étienne, Hôpital Nord, Service de Cardiologie",
        set(),
        "unescaped commas: an OR of three partial names",
    ),
    case("Organization", "name:contains=cardio", {"org-chu"}),
    case("Organization", "name=hopital", {"org-hcl"}, "starts-with the whole value, not a word"),
    # more Patient parameters
    case(P, "family=martin&_format=json&_pretty=true", {H}, "_format and _pretty are not criteria"),
    case(P, "_lastUpdated=gt2100-01-01", set()),
    case(P, "_has:DocumentReference:patient:type=11488-4&_has:Consent:patient:status=active", {H}),
    case(P, "_has:DocumentReference:patient:status=superseded,entered-in-error", {H}),
    case(
        "DocumentReference",
        f"patient.identifier={INS}|279035121518989,{INS}|294016912345678",
        {"d1", "d2", "d3"},
    ),
    case("DocumentReference", "patient.family=martin&patient.given=marie", {"d1", "d2"}),
    case("DocumentReference", "patient.family=martin&patient.given=lea", set()),
    case(P, "address=lyon", {H, OE, LAMB}),
    case(P, "address=750", {LEA, LEA2, LHOP}),
    case(P, "phone=+33600000001", {H}),
    case(P, "telecom=+33600000001", {H}),
    case(P, "deceased=true", set()),
    case(P, "deceased=false", ALL_PATIENTS, "R4: deceased.exists() and deceased != false"),
    case(P, "family:missing=true", set()),
    case(P, "_has:DocumentReference:patient:author.identifier=urn:oid:1.2.250.1.71.4.2.1|810000000001", {H}),
    case(
        "DocumentReference",
        f"patient:identifier={INS}|279035121518989",
        set(),
        ":identifier looks at Reference.identifier only",
    ),
]


@pytest.mark.parametrize(("rtype", "query", "expected"), CATALOGUE)
async def test_search_catalogue(
    loaded: httpx.AsyncClient, rtype: str, query: str, expected: frozenset[str]
) -> None:
    bundle = await get_bundle(loaded, rtype, query)
    found = match_ids(bundle)
    assert len(found) == len(set(found)), f"duplicate matches: {found}"
    assert set(found) == expected
    assert not entries(bundle, "outcome"), bundle["entry"]
    assert not entries(bundle, "include")


async def test_every_match_is_also_counted(loaded: httpx.AsyncClient) -> None:
    """``_total=accurate`` and ``_summary=count`` agree with the hand counts."""
    for rtype, query, expected in [
        (P, "", ALL_PATIENTS),
        (P, "gender=male", {OE, JEAN, JAC, MARC, LHOP}),
        (P, "birthdate=1980", {JEAN, JAC, MARC, ALEX}),
        ("DocumentReference", "", set(data.LIVE_DOCS)),
        ("DocumentReference", "type=11488-4", {"d1", "d2", "d4"}),
        ("Consent", "", {"c1", "c2", "c3"}),
        ("List", "", {"l1", "l2", "l3"}),
    ]:
        sep = "&" if query else ""
        bundle = await get_bundle(loaded, rtype, f"{query}{sep}_total=accurate")
        assert bundle["total"] == len(expected), (rtype, query)
        assert set(match_ids(bundle)) == expected
        counted = await get_bundle(loaded, rtype, f"{query}{sep}_summary=count")
        assert counted["total"] == len(expected), (rtype, query)
        assert not counted.get("entry"), counted


async def test_last_updated_at_millisecond_precision(loaded: httpx.AsyncClient) -> None:
    """A ``meta.lastUpdated`` instant, searched back: eq/ge/le match it, gt/lt/ne do not."""
    stamp = (await loaded.get("/Patient/p-helene")).json()["meta"]["lastUpdated"]
    for prefix, expected in [("", [H]), ("eq", [H]), ("ge", [H]), ("le", [H]), ("gt", []), ("lt", []),
                             ("ne", []), ("sa", []), ("eb", [])]:  # fmt: skip
        bundle = await get_bundle(loaded, P, f"_id=p-helene&_lastUpdated={prefix}{stamp}")
        assert match_ids(bundle) == expected, (prefix, stamp)


async def test_approximate_birthdate(loaded: httpx.AsyncClient) -> None:
    """``ap`` is server-defined (10 % of the gap to now is recommended): only loose checks."""
    found = set(match_ids(await get_bundle(loaded, P, "birthdate=ap1980-06-15")))
    assert MARC in found
    assert found <= WITH_BIRTHDATE
    assert not found & {LAMB, OE, LEA, LEA2}, found


async def test_audit_event_search_with_no_match_is_an_empty_bundle(loaded: httpx.AsyncClient) -> None:
    """Every interaction is audited, so only searches that match no event are empty: a proper
    searchset with no entry and a zero total. (Not ``patient=Patient/x``: a patient-scoped search of
    the trail is itself audited with that patient, so it finds its own earlier events.)"""
    for query in ("date=lt2000-01-01", "entity=DocumentReference/nope", "action=D&date=lt2000",
                  "action=D&patient=Patient/p-helene", "outcome=8"):  # fmt: skip
        bundle = await get_bundle(loaded, "AuditEvent", f"{query}&_total=accurate")
        assert not bundle.get("entry"), bundle
        assert bundle["total"] == 0
        assert link(bundle, "next") is None
        counted = await get_bundle(loaded, "AuditEvent", f"{query}&_summary=count")
        assert counted["total"] == 0 and not counted.get("entry")


async def test_audit_event_search_finds_the_deletions(loaded: httpx.AsyncClient) -> None:
    """The fixture deleted exactly two resources (and nothing else in this module deletes)."""
    bundle = await get_bundle(loaded, "AuditEvent", "action=D&_total=accurate")
    assert bundle["total"] == 2
    events = entries(bundle)
    assert [e["action"] for e in events] == ["D", "D"]
    what = [x.get("what", {}).get("reference", "") for e in events for x in e.get("entity", [])]
    assert any(w.startswith("Patient/p-deleted") for w in what), what
    assert any(w.startswith("DocumentReference/d-deleted") for w in what), what
    recent = await get_bundle(loaded, "AuditEvent", "date=ge2020&_count=5")
    assert len(entries(recent)) == 5
    assert all(e["resourceType"] == "AuditEvent" for e in entries(recent))


# -- POST /{type}/_search ------------------------------------------------------------------------


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def post_search(
    client: httpx.AsyncClient, rtype: str, form: list[tuple[str, str]], query: str = ""
) -> dict[str, Any]:
    response = await client.post(
        f"/{rtype}/_search", params=parse(query), content=urlencode(form), headers=FORM
    )
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    check_bundle(bundle, rtype)
    return bundle


@pytest.mark.parametrize(
    ("rtype", "form", "query", "expected"),
    [
        (P, [("family", "martin")], "", {H}),
        (P, [("given", "Hélène")], "", {H}),
        (P, [("birthdate", "ge1994")], "", {LEA, LEA2, LAMB}),
        (P, [("birthdate", "gt1980-06-15T10:00:00+00:00")], "", {MARC, JEAN, JAC, ALEX, LEA, LEA2, LAMB}),
        (P, [("family", "bernard")], "gender=male", {JEAN, JAC}),
        (P, [("gender", "male"), ("birthdate", "1980")], "", {JEAN, JAC, MARC}),
        (P, [("identifier", f"{INS}|279035121518989")], "", {H}),
        (P, [("_has:DocumentReference:patient:type", "http://loinc.org|11488-4")], "", {H, JEAN}),
        (
            "DocumentReference",
            [("patient.identifier", f"{INS}|279035121518989"), ("type", "http://loinc.org|11488-4")],
            "",
            {"d1", "d2"},
        ),
        ("DocumentReference", [("status", "current"), ("date", "ge2024")], "", {"d1", "d3"}),
        ("List", [("code", "submissionset"), ("patient", "p-lea")], "", {"l3"}),
    ],
)
async def test_post_search(
    loaded: httpx.AsyncClient, rtype: str, form: list[tuple[str, str]], query: str, expected: set[str]
) -> None:
    bundle = await post_search(loaded, rtype, form, query)
    assert sorted(match_ids(bundle)) == sorted(expected)


async def test_post_search_pages_through_next_links(loaded: httpx.AsyncClient) -> None:
    response = await loaded.post(
        "/Patient/_search", data={"gender": "male", "_count": "2", "_total": "accurate"}
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    seen: list[str] = []
    while True:
        assert bundle["total"] == 5
        seen += match_ids(bundle)
        nxt = link(bundle, "next")
        if nxt is None:
            break
        response = await loaded.get(nxt)
        assert response.status_code == 200, response.text
        bundle = response.json()
    assert sorted(seen) == sorted({OE, JEAN, JAC, MARC, LHOP})


async def test_post_search_with_a_charset(loaded: httpx.AsyncClient) -> None:
    response = await loaded.post(
        "/Patient/_search",
        content="given=L%C3%A9a&active=true",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert response.status_code == 200, response.text
    assert match_ids(response.json()) == [LEA]


async def test_post_search_requires_a_form(loaded: httpx.AsyncClient) -> None:
    response = await loaded.post("/Patient/_search", json={"family": "martin"})
    assert response.status_code == 415
    assert response.json()["resourceType"] == "OperationOutcome"


# -- _count, _total, paging links ---------------------------------------------------------------


async def test_count_and_total_while_paging(loaded: httpx.AsyncClient) -> None:
    bundle = await get_bundle(loaded, P, "gender=male&_count=2&_total=accurate")
    pages = []
    while True:
        assert bundle["total"] == 5
        assert len(match_ids(bundle)) <= 2
        pages.append(match_ids(bundle))
        nxt = link(bundle, "next")
        if nxt is None:
            break
        response = await loaded.get(nxt)
        assert response.status_code == 200
        bundle = response.json()
        check_bundle(bundle, P)
    assert [len(p) for p in pages] == [2, 2, 1]
    flat = [i for p in pages for i in p]
    assert sorted(flat) == sorted({OE, JEAN, JAC, MARC, LHOP})


async def test_count_zero_is_a_count(loaded: httpx.AsyncClient) -> None:
    """R4: ``_count=0`` is treated as ``_summary=count`` (total, no entries, no paging links)."""
    bundle = await get_bundle(loaded, P, "_count=0")
    assert bundle["total"] == len(ALL_PATIENTS)
    assert not bundle.get("entry")
    assert link(bundle, "next") is None and link(bundle, "previous") is None


async def test_default_order_is_newest_first(loaded: httpx.AsyncClient) -> None:
    """Load order: Hélène, Léa (v1), Lea, Œuvray, Jean, Jacques, Marc, Alex, Lambert, St. John,
    L'Hôpital, … and Léa's update (v2) last of all."""
    oldest_first = [H, LEA2, OE, JEAN, JAC, MARC, ALEX, LAMB, NOSYS, LHOP, LEA]
    assert match_ids(await get_bundle(loaded, P, "")) == oldest_first[::-1]
    assert match_ids(await get_bundle(loaded, P, "_sort=-_lastUpdated")) == oldest_first[::-1]
    assert match_ids(await get_bundle(loaded, P, "_sort=_lastUpdated")) == oldest_first
    assert match_ids(await get_bundle(loaded, "DocumentReference", "")) == ["d5", "d4", "d3", "d2", "d1"]


async def test_includes_follow_the_page(loaded: httpx.AsyncClient) -> None:
    """Includes are those of the matches of each page, not of the whole result."""
    bundle = await get_bundle(
        loaded, "DocumentReference", "patient=p-helene&_sort=date&_count=1&_include=DocumentReference:author"
    )
    assert match_ids(bundle) == ["d2"]
    assert include_refs(bundle) == ["PractitionerRole/role-durand"]
    nxt = link(bundle, "next")
    assert nxt is not None
    response = await loaded.get(nxt)
    assert response.status_code == 200
    bundle = response.json()
    assert match_ids(bundle) == ["d1"]
    assert include_refs(bundle) == ["Practitioner/pr-durand"]
    assert link(bundle, "next") is None


async def test_count_one_and_large(loaded: httpx.AsyncClient) -> None:
    one = await get_bundle(loaded, P, "_count=1")
    assert len(match_ids(one)) == 1
    assert link(one, "next") is not None
    every = await get_bundle(loaded, P, "_count=500")
    assert set(match_ids(every)) == ALL_PATIENTS
    assert link(every, "next") is None


# -- _sort --------------------------------------------------------------------------------------

SEVEN = "p-helene,p-lea,p-lea2,p-oeuvray,p-marc,p-alex,p-lambert"  # full birth dates, all distinct
BY_BIRTHDATE = [OE, H, MARC, ALEX, LEA, LEA2, LAMB]
EIGHT = "p-jean,p-jacques,p-marc,p-lea,p-alex,p-lambert,p-lea2,p-helene"  # plain ASCII families


@pytest.mark.parametrize(
    ("rtype", "query", "order"),
    [
        (P, f"_id={SEVEN}&_sort=birthdate", BY_BIRTHDATE),
        (P, f"_id={SEVEN}&_sort=-birthdate", BY_BIRTHDATE[::-1]),
        # Bernard Jacques < Bernard Jean < Dubois < Dupont < Garnier < Lambert < Lefèvre < Martin
        (P, f"_id={EIGHT}&_sort=family,given", [JAC, JEAN, MARC, LEA, ALEX, LAMB, LEA2, H]),
        (P, f"_id={EIGHT}&_sort=family,-given", [JEAN, JAC, MARC, LEA, ALEX, LAMB, LEA2, H]),
        (P, f"_id={EIGHT}&_sort=-family,given", [H, LEA2, LAMB, ALEX, LEA, MARC, JAC, JEAN]),
        (P, "_sort=_id", sorted(ALL_PATIENTS)),
        (P, "_sort=-_id", sorted(ALL_PATIENTS, reverse=True)),
        ("DocumentReference", "_sort=-date", ["d3", "d1", "d2", "d4", "d5"]),
        ("DocumentReference", "_sort=date", ["d5", "d4", "d2", "d1", "d3"]),
        ("DocumentReference", "patient=p-helene&_sort=date", ["d2", "d1"]),
    ],
)
async def test_sort(loaded: httpx.AsyncClient, rtype: str, query: str, order: list[str]) -> None:
    assert match_ids(await get_bundle(loaded, rtype, query)) == order


async def test_sort_with_partial_birthdates(loaded: httpx.AsyncClient) -> None:
    """1980 and 1980-06 are ranges: their place among the 1980 births is the server's choice,
    but all four 1980 births sit between 1979 and 1994."""
    found = match_ids(await get_bundle(loaded, P, "birthdate:missing=false&_sort=birthdate"))
    assert found[:2] == [OE, H]
    assert set(found[2:6]) == {JEAN, JAC, MARC, ALEX}
    assert found[6:] == [LEA, LEA2, LAMB]


async def test_sorted_paging_is_stable(loaded: httpx.AsyncClient) -> None:
    bundle = await get_bundle(loaded, P, f"_id={SEVEN}&_sort=birthdate&_count=3")
    pages = [match_ids(bundle)]
    forward = [bundle]
    while (nxt := link(bundle, "next")) is not None:
        response = await loaded.get(nxt)
        assert response.status_code == 200
        bundle = response.json()
        forward.append(bundle)
        pages.append(match_ids(bundle))
    assert pages == [BY_BIRTHDATE[0:3], BY_BIRTHDATE[3:6], BY_BIRTHDATE[6:]]
    # and back again with the previous links
    back = [match_ids(bundle)]
    while (prev := link(bundle, "previous")) is not None:
        response = await loaded.get(prev)
        assert response.status_code == 200
        bundle = response.json()
        back.append(match_ids(bundle))
    assert back[::-1] == pages


# -- _summary, _elements ------------------------------------------------------------------------


def has_subsetted(resource: dict[str, Any]) -> bool:
    return any((t.get("system"), t.get("code")) == SUBSETTED for t in resource.get("meta", {}).get("tag", []))


async def one_match(client: httpx.AsyncClient, rtype: str, query: str) -> dict[str, Any]:
    bundle = await get_bundle(client, rtype, query)
    found = entries(bundle)
    assert len(found) == 1, bundle
    return found[0]


async def test_summary_true(loaded: httpx.AsyncClient) -> None:
    res = await one_match(loaded, P, "_id=p-helene&_summary=true")
    # R4 Patient elements flagged Σ that Hélène has; text, extension, language, maritalStatus,
    # contact, communication and generalPractitioner are not summary elements.
    assert set(res) == {"resourceType", "id", "meta", "identifier", "active", "name", "telecom",
                        "gender", "birthDate", "address"}  # fmt: skip
    assert has_subsetted(res)
    assert res["name"] == data.HELENE["name"]
    assert res["meta"]["versionId"] == "1"


async def test_summary_text(loaded: httpx.AsyncClient) -> None:
    res = await one_match(loaded, P, "_id=p-helene&_summary=text")
    assert set(res) == {"resourceType", "id", "meta", "text"}
    assert res["text"] == data.HELENE["text"]
    assert has_subsetted(res)


async def test_summary_data(loaded: httpx.AsyncClient) -> None:
    res = await one_match(loaded, P, "_id=p-helene&_summary=data")
    assert set(res) == (set(data.HELENE) - {"text"}) | {"meta"}
    for key in set(data.HELENE) - {"text"}:
        assert res[key] == data.HELENE[key], key


async def test_summary_false_is_the_whole_resource(loaded: httpx.AsyncClient) -> None:
    res = await one_match(loaded, P, "_id=p-helene&_summary=false")
    assert not has_subsetted(res)
    assert {k: v for k, v in res.items() if k != "meta"} == data.HELENE


async def test_summary_count(loaded: httpx.AsyncClient) -> None:
    bundle = await get_bundle(loaded, P, "_summary=count")
    assert bundle["total"] == len(ALL_PATIENTS)
    assert not bundle.get("entry")
    bundle = await get_bundle(loaded, P, "gender=female&_summary=count")
    assert bundle["total"] == 3
    assert not bundle.get("entry")


async def test_elements(loaded: httpx.AsyncClient) -> None:
    bundle = await get_bundle(loaded, P, "_id=p-helene,p-nosys&_elements=identifier,birthDate")
    by_id = {r["id"]: r for r in entries(bundle)}
    assert set(by_id) == {H, NOSYS}
    assert set(by_id[H]) == {"resourceType", "id", "meta", "identifier", "birthDate"}
    assert by_id[H]["identifier"] == data.HELENE["identifier"]
    assert by_id[H]["birthDate"] == "1979-03-05"
    assert set(by_id[NOSYS]) == {"resourceType", "id", "meta", "identifier"}
    assert all(has_subsetted(r) for r in by_id.values())


async def test_elements_on_documents(loaded: httpx.AsyncClient) -> None:
    res = await one_match(loaded, "DocumentReference", "_id=d1&_elements=type,date")
    # status and content are mandatory (1..1, 1..*) in R4 DocumentReference: a server SHOULD keep them
    assert {"resourceType", "id", "meta", "type", "date"} <= set(res)
    assert set(res) <= {"resourceType", "id", "meta", "type", "date", "status", "content"}
    assert "subject" not in res and "author" not in res
    assert has_subsetted(res)


# -- _include, _revinclude -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rtype", "query", "matches", "included"),
    [
        ("DocumentReference", "_id=d1&_include=DocumentReference:subject", {"d1"}, ["Patient/p-helene"]),
        (
            "DocumentReference",
            "patient=p-helene&_include=DocumentReference:subject",
            {"d1", "d2"},
            ["Patient/p-helene"],
        ),
        ("DocumentReference", "_id=d1&_include=DocumentReference:patient", {"d1"}, ["Patient/p-helene"]),
        (
            "DocumentReference",
            "_id=d1,d2&_include=DocumentReference:author",
            {"d1", "d2"},
            ["Practitioner/pr-durand", "PractitionerRole/role-durand"],
        ),
        (
            "DocumentReference",
            "_id=d1,d2&_include=DocumentReference:author:Practitioner",
            {"d1", "d2"},
            ["Practitioner/pr-durand"],
        ),
        ("DocumentReference", "_id=d4&_include=DocumentReference:author", {"d4"}, ["Organization/org-hcl"]),
        (
            "DocumentReference",
            "_id=d2&_include=DocumentReference:author&_include=PractitionerRole:practitioner",
            {"d2"},
            ["PractitionerRole/role-durand"],
        ),
        (
            "DocumentReference",
            "_id=d2&_include=DocumentReference:author&_include:iterate=PractitionerRole:practitioner",
            {"d2"},
            ["Practitioner/pr-durand", "PractitionerRole/role-durand"],
        ),
        (
            "DocumentReference",
            "_id=d2&_include=DocumentReference:author&_include:iterate=PractitionerRole:practitioner"
            "&_include:iterate=PractitionerRole:organization",
            {"d2"},
            ["Organization/org-hcl", "Practitioner/pr-durand", "PractitionerRole/role-durand"],
        ),
        (
            "DocumentReference",
            "_id=d1&_include=*",
            {"d1"},
            ["DocumentReference/d2", "Patient/p-helene", "Practitioner/pr-durand"],
        ),
        ("DocumentReference", "_id=d5&_include=DocumentReference:subject", {"d5"}, []),
        (
            P,
            "_id=p-helene&_revinclude=DocumentReference:subject",
            {H},
            ["DocumentReference/d1", "DocumentReference/d2"],
        ),
        (P, "_id=p-lea&_revinclude=DocumentReference:subject", {LEA}, ["DocumentReference/d3"]),
        (
            P,
            "_id=p-helene&_revinclude=DocumentReference:patient&_revinclude=Consent:patient",
            {H},
            ["Consent/c1", "Consent/c3", "DocumentReference/d1", "DocumentReference/d2"],
        ),
        (
            P,
            "_id=p-helene,p-marc&_include=Patient:general-practitioner",
            {H, MARC},
            ["Practitioner/pr-durand"],
        ),
        (P, "_id=p-alex&_revinclude=DocumentReference:subject", {ALEX}, []),
        (
            "List",
            "_id=l1&_include=List:item&_include=List:subject",
            {"l1"},
            ["DocumentReference/d1", "Patient/p-helene"],
        ),
        ("Consent", "_id=c1&_include=Consent:actor", {"c1"}, ["Practitioner/pr-durand"]),
        ("DocumentReference", "_id=d1&_revinclude=List:item", {"d1"}, ["List/l1"]),
        (
            "DocumentReference",
            "_id=d1&_include=DocumentReference:relatesto",
            {"d1"},
            ["DocumentReference/d2"],
        ),
        (
            "DocumentReference",
            "_id=d2&_revinclude=DocumentReference:relatesto",
            {"d2"},
            ["DocumentReference/d1"],
        ),
        ("DocumentReference", "_id=d1,d2&_revinclude=DocumentReference:relatesto", {"d1", "d2"}, []),
        (P, "_id=p-lea&_include=Patient:general-practitioner", {LEA}, ["Practitioner/pr-petit"]),
        (
            P,
            "_id=p-helene&_revinclude=DocumentReference:patient&_include:iterate=DocumentReference:author",
            {H},
            [
                "DocumentReference/d1",
                "DocumentReference/d2",
                "Practitioner/pr-durand",
                "PractitionerRole/role-durand",
            ],
        ),
        ("PractitionerRole", "_id=role-gone&_include=PractitionerRole:practitioner", {"role-gone"}, []),
        (
            "PractitionerRole",
            "_id=role-gone,role-durand&_include=*",
            {"role-gone", "role-durand"},
            ["Organization/org-hcl", "Practitioner/pr-durand"],
        ),
    ],
)
async def test_include(
    loaded: httpx.AsyncClient, rtype: str, query: str, matches: set[str], included: list[str]
) -> None:
    bundle = await get_bundle(loaded, rtype, query)
    assert set(match_ids(bundle)) == matches
    assert len(match_ids(bundle)) == len(matches)
    assert sorted(include_refs(bundle)) == included  # each once, never a match again
    # matches come first, includes after
    modes = [e["search"]["mode"] for e in bundle.get("entry", [])]
    assert modes == sorted(modes, key=lambda m: m != "match")


# -- unknown parameters and errors -------------------------------------------------------------


async def test_unknown_parameter_is_ignored_with_an_outcome(loaded: httpx.AsyncClient) -> None:
    bundle = await get_bundle(loaded, P, "foo=bar&family=martin")
    assert match_ids(bundle) == [H]
    outcomes = entries(bundle, "outcome")
    assert len(outcomes) == 1
    assert "foo" in str(outcomes[0]["issue"])
    lenient = await get_bundle(loaded, P, "foo=bar", headers={"Prefer": "handling=lenient"})
    assert set(match_ids(lenient)) == ALL_PATIENTS
    assert len(entries(lenient, "outcome")) == 1
    # an operator-looking name is just an unknown parameter
    weird = await get_bundle(loaded, P, "family[$ne]=x")
    assert set(match_ids(weird)) == ALL_PATIENTS
    assert len(entries(weird, "outcome")) == 1


async def test_unknown_parameter_in_a_chain_or_has_is_ignored_too(loaded: httpx.AsyncClient) -> None:
    bundle = await get_bundle(loaded, "DocumentReference", "patient.nonexistent=x&status=current")
    assert set(match_ids(bundle)) == {"d1", "d3", "d4"}
    assert len(entries(bundle, "outcome")) == 1
    bundle = await get_bundle(loaded, P, "_has:DocumentReference:patient:nonexistent=x&gender=female")
    assert set(match_ids(bundle)) == {H, LEA, LEA2}
    assert len(entries(bundle, "outcome")) == 1
    for rtype, query in [("DocumentReference", {"patient.nonexistent": "x"}),
                         (P, {"_has:DocumentReference:patient:nonexistent": "x"})]:  # fmt: skip
        response = await loaded.get(f"/{rtype}", params=query, headers={"Prefer": "handling=strict"})
        assert response.status_code == 400, response.text


async def test_self_link_states_the_search(loaded: httpx.AsyncClient) -> None:
    from urllib.parse import parse_qsl, urlsplit

    bundle = await get_bundle(loaded, P, f"family=martin&identifier={INS}|279035121518989&_count=5")
    url = urlsplit(link(bundle, "self") or "")
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{BASE}/Patient"
    params = parse_qsl(url.query)
    for pair in [("family", "martin"), ("identifier", f"{INS}|279035121518989"), ("_count", "5")]:
        assert pair in params, params
    # following the self link gives the same answer
    again = await loaded.get(link(bundle, "self") or "")
    assert match_ids(again.json()) == match_ids(bundle) == [H]


async def test_unknown_parameter_strict_is_400(loaded: httpx.AsyncClient) -> None:
    response = await loaded.get("/Patient", params={"foo": "bar"}, headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    fine = await loaded.get("/Patient", params={"family": "martin"}, headers={"Prefer": "handling=strict"})
    assert fine.status_code == 200
    assert match_ids(fine.json()) == [H]


@pytest.mark.parametrize(
    ("rtype", "query"),
    [
        (P, "birthdate=19x0"),
        (P, "birthdate=zz2020"),
        (P, "birthdate=2020-13-01"),
        (P, "birthdate=2020-02-30"),
        (P, "birthdate=ge"),
        (P, "birthdate=1980-6-1"),
        ("DocumentReference", "date=2024-03-05T25:00:00Z"),
        ("DocumentReference", "period=xx2024"),
        (P, "_count=abc"),
        (P, "_count=-1"),
        (P, "_count=1.5"),
        (P, "_sort=nonexistent"),
        (P, "_sort=-nonexistent"),
        (P, "_summary=bogus"),
        (P, "_total=bogus"),
        (P, "family:nonsense=x"),
        (P, "gender:contains=male"),
        (P, "_include=Patient:nonexistent"),
        (P, "_include=Nonsense:subject"),
        ("DocumentReference", "_include=DocumentReference:subject:Nonsense"),
        ("DocumentReference", "_include:nonsense=DocumentReference:subject"),
        (P, "_has:DocumentReference:nonexistent:type=x"),
        ("DocumentReference", "patient=Practitioner/pr-durand"),
        (P, "_cursor=not-a-cursor"),
    ],
)
async def test_bad_requests_are_400_outcomes(loaded: httpx.AsyncClient, rtype: str, query: str) -> None:
    response = await loaded.get(f"/{rtype}", params=parse(query))
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"] and outcome["issue"][0]["severity"] in ("error", "fatal")


@pytest.mark.parametrize(
    "query",
    [
        'general-practitioner={"$gt": ""}',
        '_id={"$ne": null}',
        "_id=$where",
        'birthdate={"$gt": ""}',
        "gender=$ne",
        "active={}",
    ],
)
async def test_injection_never_matches_nor_fails(loaded: httpx.AsyncClient, query: str) -> None:
    """Operator-looking values: a 400 for a malformed value is fine, a match or a 500 is not."""
    response = await loaded.get("/Patient", params=parse(query))
    assert response.status_code in (200, 400), response.text
    body = response.json()
    if response.status_code == 200:
        assert match_ids(body) == []
    else:
        assert body["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "query",
    [
        q
        for q, _was_a_500 in [
            ("family=%00", True),
            ("family:exact=%00", True),
            ("given=a%00b", True),
            ("address-city=%00", True),
            ("identifier=%00", True),
            ("_id=%00", True),
            ("general-practitioner=Practitioner/a%00", True),
            ("family:contains=%00", False),
            ("family=%01", False),
        ]
    ],
)
async def test_control_characters_are_never_a_500(raw_client: httpx.AsyncClient, query: str) -> None:
    """A FHIR string cannot hold U+0000 (nor most controls): 400 or no match, never a 500."""
    response = await raw_client.get("/Patient", params=parse(query))
    assert response.status_code in (200, 400), f"{response.status_code} {response.text}"
    body = response.json()
    if response.status_code == 200:
        assert match_ids(body) == []
    else:
        assert body["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("rtype", "query", "everything"),
    [
        (P, "general-practitioner.nonexistent=x", ALL_PATIENTS),
        ("DocumentReference", "author.nonexistent=x", set(data.LIVE_DOCS)),
        ("DocumentReference", "subject.nonexistent=x", set(data.LIVE_DOCS)),
    ],
)
async def test_chain_to_an_unknown_parameter_on_a_multi_target_reference(
    loaded: httpx.AsyncClient, rtype: str, query: str, everything: set[str]
) -> None:
    """As for ``patient.nonexistent`` (one target type): ignored with an outcome, 400 when strict."""
    strict = await loaded.get(f"/{rtype}", params=parse(query), headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400, strict.text
    bundle = await get_bundle(loaded, rtype, query)
    assert set(match_ids(bundle)) == everything
    assert len(entries(bundle, "outcome")) == 1


async def test_elements_do_not_apply_to_included_resources(loaded: httpx.AsyncClient) -> None:
    """R4 search §_elements: "The list of elements does not apply to included resources"."""
    bundle = await get_bundle(
        loaded, P, "_id=p-helene&_elements=birthDate&_include=Patient:general-practitioner"
    )
    (match,) = entries(bundle)
    assert set(match) == {"resourceType", "id", "meta", "birthDate"}
    (included,) = entries(bundle, "include")
    assert {k: v for k, v in included.items() if k != "meta"} == data.PR_DURAND
    assert not has_subsetted(included)


# -- deleted resources --------------------------------------------------------------------------


async def test_deleted_resources_never_appear(loaded: httpx.AsyncClient) -> None:
    everyone = await get_bundle(loaded, P, "_count=100&_total=accurate")
    assert set(match_ids(everyone)) == ALL_PATIENTS
    assert everyone["total"] == len(ALL_PATIENTS)
    docs = await get_bundle(loaded, "DocumentReference", "_count=100&_total=accurate")
    assert set(match_ids(docs)) == set(data.LIVE_DOCS)
    assert docs["total"] == len(data.LIVE_DOCS)
    for rtype, query in [
        (P, "_id=p-deleted"),
        (P, "given=sophie"),
        (P, f"identifier={INS}|279035121599999"),
        ("DocumentReference", "_id=d-deleted"),
        ("DocumentReference", "date=2024-02-01"),
    ]:
        bundle = await get_bundle(loaded, rtype, f"{query}&_total=accurate")
        assert match_ids(bundle) == [] and bundle["total"] == 0, (rtype, query)
