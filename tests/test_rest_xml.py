"""XML beside JSON through HTTP: negotiation, XML bodies, XML answers, hostile XML."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from lxml import etree

from dmp_fhir.formats.xml import parse_fhir_xml, render_fhir_xml
from dmp_fhir.registry import any_model

from . import fixtures as fx

JSON = {"Content-Type": "application/fhir+json"}
XML = {"Content-Type": "application/fhir+xml"}
ACCEPT_XML = {"Accept": "application/fhir+xml"}
JAVA_ACCEPT = {"Accept": "application/fhir+xml;q=1.0, application/fhir+json;q=1.0"}
FHIR_NS = "{http://hl7.org/fhir}"


def parse_xml(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/fhir+xml"), response.text
    resource = parse_fhir_xml(response.content)
    model = any_model(resource["resourceType"])
    assert model is not None
    model.model_validate(resource)  # real FHIR, not just well-formed XML
    return resource


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


async def create_json(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/{resource['resourceType']}", json=resource, headers=JSON)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def every_type(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    pat = await create_json(client, fx.patient())
    prac = await create_json(client, fx.practitioner())
    org = await create_json(client, fx.organization())
    binary = await create_json(client, fx.binary())
    doc = await create_json(client, fx.document_reference(pat["id"], binary["id"]))
    return [
        pat,
        prac,
        org,
        binary,
        doc,
        await create_json(client, fx.practitioner_role(prac["id"], org["id"])),
        await create_json(client, fx.list_submission_set(pat["id"], doc["id"])),
        await create_json(client, fx.consent(pat["id"], prac["id"])),
    ]


async def test_created_in_json_read_in_xml(client: httpx.AsyncClient) -> None:
    for created in await every_type(client):
        path = f"/{created['resourceType']}/{created['id']}"
        as_xml = parse_xml(await client.get(path, headers=ACCEPT_XML))
        assert as_xml == created
        assert parse_xml(await client.get(path, params={"_format": "xml"})) == created


async def test_created_in_xml_read_in_json(client: httpx.AsyncClient) -> None:
    pat = await create_json(client, fx.patient())
    prac = await create_json(client, fx.practitioner())
    org = await create_json(client, fx.organization())
    binary = await create_json(client, fx.binary())
    originals = [
        fx.patient(family="Lefèvre"),
        fx.practitioner(),
        fx.organization(),
        fx.binary(),
        fx.document_reference(pat["id"], binary["id"]),
        fx.practitioner_role(prac["id"], org["id"]),
        fx.list_submission_set(pat["id"], "x"),
        fx.consent(pat["id"], prac["id"]),
    ]
    for original in originals:
        response = await client.post(
            f"/{original['resourceType']}", content=render_fhir_xml(original), headers={**XML, **ACCEPT_XML}
        )
        assert response.status_code == 201, response.text
        created = parse_xml(response)
        as_json = (await client.get(f"/{original['resourceType']}/{created['id']}")).json()
        assert without_meta(as_json) == {**original, "id": created["id"]}


async def test_update_in_xml(client: httpx.AsyncClient) -> None:
    pat = await create_json(client, fx.patient())
    changed = {**pat, "gender": "other"}
    del changed["meta"]
    response = await client.put(f"/Patient/{pat['id']}", content=render_fhir_xml(changed), headers=XML)
    assert response.status_code == 200, response.text
    assert response.json()["gender"] == "other"


async def test_searchset_history_and_outcome_in_xml(client: httpx.AsyncClient) -> None:
    pat = await create_json(client, fx.patient(family="Xmlsearch"))
    await client.put(f"/Patient/{pat['id']}", json={**pat, "active": True}, headers=JSON)
    bundle = parse_xml(await client.get("/Patient", params={"family": "xmlsearch"}, headers=JAVA_ACCEPT))
    assert bundle["type"] == "searchset" and bundle["entry"][0]["resource"]["id"] == pat["id"]
    summary = parse_xml(
        await client.get(
            "/Patient", params={"family": "xmlsearch", "_summary": "true", "_format": "application/fhir+xml"}
        )
    )
    assert summary["entry"][0]["resource"]["meta"]["tag"][-1]["code"] == "SUBSETTED"
    elements = await client.get(
        "/Patient", params={"family": "xmlsearch", "_elements": "name"}, headers=ACCEPT_XML
    )
    subset = parse_fhir_xml(elements.content)["entry"][0]["resource"]
    assert "gender" not in subset and subset["name"]
    history = parse_xml(await client.get(f"/Patient/{pat['id']}/_history", headers=ACCEPT_XML))
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    outcome = parse_xml(await client.get("/Patient/does-not-exist", headers=ACCEPT_XML))
    assert outcome["resourceType"] == "OperationOutcome"
    capability = parse_xml(await client.get("/metadata", headers=ACCEPT_XML))
    assert "xml" in capability["format"]


async def test_format_wins_over_accept_and_pretty(client: httpx.AsyncClient) -> None:
    response = await client.get("/metadata", params={"_format": "json"}, headers=ACCEPT_XML)
    assert response.headers["content-type"].startswith("application/fhir+json")
    pretty = await client.get("/metadata", params={"_format": "xml", "_pretty": "true"})
    assert pretty.text.count("\n") > 20
    for accept in ("application/xml", "text/xml", "application/json", "*/*", "application/fhir+json"):
        assert (await client.get("/metadata", headers={"Accept": accept})).status_code == 200
    json_preferred = await client.get(
        "/metadata", headers={"Accept": "application/fhir+xml;q=0.5, application/fhir+json"}
    )
    assert json_preferred.headers["content-type"].startswith("application/fhir+json")


async def test_unsupported_formats_are_406_and_415(client: httpx.AsyncClient) -> None:
    response = await client.get("/metadata", headers={"Accept": "text/html"})
    assert response.status_code == 406
    assert response.json()["resourceType"] == "OperationOutcome"
    response = await client.get("/metadata", params={"_format": "turtle"})
    assert response.status_code == 406
    response = await client.post("/Patient", content=b"name: x", headers={"Content-Type": "text/yaml"})
    assert response.status_code == 415
    xml_answer = await client.post(
        "/Patient", content=b"x", headers={"Content-Type": "text/yaml", "Accept": "application/fhir+xml"}
    )
    assert xml_answer.status_code == 415
    assert parse_fhir_xml(xml_answer.content)["resourceType"] == "OperationOutcome"


HOSTILE = {
    "xxe": b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&x;"/></name></Patient>',
    "billion-laughs": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(9))
    + b']><Patient xmlns="http://hl7.org/fhir"><name><family value="&j;"/></name></Patient>',
    "dtd": b'<?xml version="1.0"?><!DOCTYPE Patient SYSTEM "http://example.org/evil.dtd">'
    b'<Patient xmlns="http://hl7.org/fhir"/>',
    "wrong-namespace": b'<Patient xmlns="http://example.org/not-fhir"><gender value="male"/></Patient>',
    "no-namespace": b'<Patient><gender value="male"/></Patient>',
    "malformed": b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"></Patient>',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_xml_is_400_and_stores_nothing(client: httpx.AsyncClient, name: str) -> None:
    before = (await client.get("/Patient/_history", params={"_count": "1000"})).json().get("entry", [])
    started = time.perf_counter()
    response = await client.post("/Patient", content=HOSTILE[name], headers=XML)
    assert time.perf_counter() - started < 5, "no entity expansion"
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "root:" not in response.text, "nothing read from disk"
    after = (await client.get("/Patient/_history", params={"_count": "1000"})).json().get("entry", [])
    assert len(after) == len(before)


async def test_invalid_resource_in_xml_is_422_with_a_path(client: httpx.AsyncClient) -> None:
    body = b'<Patient xmlns="http://hl7.org/fhir"><birthDate value="05/03/1979"/></Patient>'
    response = await client.post("/Patient", content=body, headers=XML)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Patient.birthDate"]


async def test_binary_raw_bytes_or_resource(client: httpx.AsyncClient) -> None:
    content = b"%PDF-1.4 raw"
    binary = await create_json(client, fx.binary(content))
    raw = await client.get(f"/Binary/{binary['id']}", headers={"Accept": "application/pdf"})
    assert raw.status_code == 200
    assert raw.content == content
    assert raw.headers["content-type"].startswith("application/pdf")
    as_xml = parse_xml(await client.get(f"/Binary/{binary['id']}", headers=ACCEPT_XML))
    assert as_xml["data"] == binary["data"]
    as_json = await client.get(f"/Binary/{binary['id']}", headers={"Accept": "application/fhir+json"})
    assert as_json.json()["data"] == binary["data"]


async def test_xml_narrative_is_kept_not_executed(client: httpx.AsyncClient) -> None:
    body = (
        b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>'
        b'<div xmlns="http://www.w3.org/1999/xhtml"><p>Jeanne <b>DUPONT</b></p></div></text>'
        b'<gender value="female"/></Patient>'
    )
    response = await client.post("/Patient", content=body, headers={**XML, **ACCEPT_XML})
    assert response.status_code == 201, response.text
    tree = etree.fromstring(response.content)
    div = tree.find(f"{FHIR_NS}text/{{http://www.w3.org/1999/xhtml}}div")
    assert div is not None and "DUPONT" in etree.tostring(div).decode()
