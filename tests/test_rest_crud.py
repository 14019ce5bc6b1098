"""The FHIR REST core: create, read, update, delete, vread, history, conditional create."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from . import fixtures as fx
from .conftest import new_id

JSON = {"Content-Type": "application/fhir+json"}


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/{resource['resourceType']}", json=resource, headers=JSON)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_assigns_id_version_and_headers(client: httpx.AsyncClient) -> None:
    response = await client.post("/Patient", json={**fx.patient(), "id": "client-chosen"}, headers=JSON)
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert body["name"] == fx.patient()["name"]


async def test_every_type_can_be_created_and_read(client: httpx.AsyncClient) -> None:
    pat = await create(client, fx.patient())
    prac = await create(client, fx.practitioner())
    org = await create(client, fx.organization())
    role = await create(client, fx.practitioner_role(prac["id"], org["id"]))
    binary = await create(client, fx.binary())
    doc = await create(client, fx.document_reference(pat["id"], binary["id"]))
    lst = await create(client, fx.list_submission_set(pat["id"], doc["id"]))
    cons = await create(client, fx.consent(pat["id"], prac["id"]))
    for created in (pat, prac, org, role, binary, doc, lst, cons):
        response = await client.get(f"/{created['resourceType']}/{created['id']}")
        assert response.status_code == 200, response.text
        assert response.json() == created
        assert response.headers["etag"] == 'W/"1"'


async def test_audit_event_is_not_writable_by_clients(client: httpx.AsyncClient) -> None:
    event = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "recorded": "2024-01-01T00:00:00Z",
        "agent": [{"requestor": True}],
        "source": {"observer": {"display": "x"}},
    }
    assert (await client.post("/AuditEvent", json=event, headers=JSON)).status_code == 405
    assert (await client.put("/AuditEvent/x", json={**event, "id": "x"}, headers=JSON)).status_code == 405
    response = await client.delete("/AuditEvent/x")
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_read_unknown_and_bad_ids(client: httpx.AsyncClient) -> None:
    response = await client.get("/Patient/does-not-exist")
    assert response.status_code == 404
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "not-found"
    assert (await client.get("/Patient/bad$id")).status_code == 400
    assert (await client.get("/Unknown/1")).status_code == 404
    assert (await client.get("/Patient/x/_history/abc")).status_code == 404


async def test_update_versions_vread_and_history(client: httpx.AsyncClient) -> None:
    pat = await create(client, fx.patient())
    pid = pat["id"]
    changed = {**pat, "gender": "other"}
    response = await client.put(f"/Patient/{pid}", json=changed, headers=JSON)
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert response.headers["etag"] == 'W/"2"'
    v1 = (await client.get(f"/Patient/{pid}/_history/1")).json()
    v2 = (await client.get(f"/Patient/{pid}/_history/2")).json()
    assert v1["gender"] == "female" and v2["gender"] == "other"
    history = (await client.get(f"/Patient/{pid}/_history")).json()
    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert history["entry"][1]["request"]["method"] == "POST"
    assert history["entry"][0]["request"] == {"method": "PUT", "url": f"Patient/{pid}"}
    type_history = (await client.get("/Patient/_history", params={"_count": "1000"})).json()
    ids = {(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in type_history["entry"]}
    assert {(pid, "1"), (pid, "2")} <= ids


async def test_history_pages_with_next_links(client: httpx.AsyncClient) -> None:
    pat = await create(client, fx.patient())
    pid = pat["id"]
    for gender in ("male", "other", "unknown", "female"):
        await client.put(f"/Patient/{pid}", json={**pat, "gender": gender}, headers=JSON)
    seen: list[str] = []
    url: str | None = f"/Patient/{pid}/_history?_count=2"
    while url:
        page = (await client.get(url)).json()
        seen += [e["resource"]["meta"]["versionId"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert seen == ["5", "4", "3", "2", "1"]


async def test_if_match_optimistic_locking(client: httpx.AsyncClient) -> None:
    pat = await create(client, fx.patient())
    pid = pat["id"]
    stale = await client.put(f"/Patient/{pid}", json=pat, headers={**JSON, "If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"
    ok = await client.put(
        f"/Patient/{pid}", json={**pat, "active": True}, headers={**JSON, "If-Match": 'W/"1"'}
    )
    assert ok.status_code == 200
    assert ok.json()["meta"]["versionId"] == "2"
    garbage = await client.put(f"/Patient/{pid}", json=pat, headers={**JSON, "If-Match": "nonsense"})
    assert garbage.status_code == 412


async def test_update_creates_with_client_id(client: httpx.AsyncClient) -> None:
    pid = new_id()
    response = await client.put(f"/Patient/{pid}", json={**fx.patient(), "id": pid}, headers=JSON)
    assert response.status_code == 201
    assert response.json()["id"] == pid
    assert response.json()["meta"]["versionId"] == "1"


async def test_delete_then_gone_then_recreate(client: httpx.AsyncClient) -> None:
    pat = await create(client, fx.patient())
    pid = pat["id"]
    response = await client.delete(f"/Patient/{pid}")
    assert response.status_code == 200
    gone = await client.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    history = (await client.get(f"/Patient/{pid}/_history")).json()
    assert history["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in history["entry"][0]
    assert (await client.get(f"/Patient/{pid}/_history/2")).status_code == 410
    assert (await client.get(f"/Patient/{pid}/_history/1")).status_code == 200
    again = await client.delete(f"/Patient/{pid}")
    assert again.status_code == 200
    revived = await client.put(f"/Patient/{pid}", json=pat, headers=JSON)
    assert revived.status_code == 200
    assert revived.json()["meta"]["versionId"] == "3"
    search = (await client.get("/Patient", params={"_id": pid})).json()
    assert len(search["entry"]) == 1


async def test_deleted_resource_is_not_found_by_search(client: httpx.AsyncClient) -> None:
    pat = await create(client, fx.patient())
    await client.delete(f"/Patient/{pat['id']}")
    bundle = (await client.get("/Patient", params={"_id": pat["id"]})).json()
    assert bundle.get("entry", []) == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{not json", JSON, 400, "structure"),
        (b"", JSON, 400, "structure"),
        (b"[1, 2]", JSON, 400, "structure"),
        (b'{"resourceType": "Practitioner"}', JSON, 400, "invalid"),
        (b'{"resourceType": "Patient"}', {"Content-Type": "text/plain"}, 415, "not-supported"),
        (b'{"resourceType": "Patient", "birthDate": "05/03/1979"}', JSON, 422, "value"),
        (b'{"resourceType": "Patient", "colour": "blue"}', JSON, 422, "structure"),
        (b'{"resourceType": "Patient", "gender": null}', JSON, 422, "invalid"),
        (b'{"resourceType": "Patient", "name": []}', JSON, 422, "invalid"),
        (b'{"resourceType": "Patient", "name": [{"family": {"$ne": null}}]}', JSON, 422, "structure"),
        (b'{"resourceType": "Patient", "\\u0024where": "1"}', JSON, 422, "structure"),
    ],
)
async def test_bad_input_gets_an_operation_outcome(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    before = (await client.get("/Patient/_history", params={"_count": "1000"})).json().get("entry", [])
    response = await client.post("/Patient", content=body, headers=headers)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == code
    after = (await client.get("/Patient/_history", params={"_count": "1000"})).json().get("entry", [])
    assert len(after) == len(before), "a refused request must store nothing"


async def test_validation_error_names_the_path(client: httpx.AsyncClient) -> None:
    bad = {**fx.patient(), "birthDate": "1979-13-45"}
    response = await client.post("/Patient", json=bad, headers=JSON)
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Patient.birthDate"]


async def test_update_id_mismatch_and_missing_id(client: httpx.AsyncClient) -> None:
    response = await client.put("/Patient/abc", json={**fx.patient(), "id": "xyz"}, headers=JSON)
    assert response.status_code == 400
    response = await client.put("/Patient/abc", json=fx.patient(), headers=JSON)
    assert response.status_code == 400


async def test_conditional_create(client: httpx.AsyncClient) -> None:
    ins = "1" + new_id()[:12]
    body = fx.patient(ins=ins)
    header = {**JSON, "If-None-Exist": f"identifier={fx.INS_NIR}|{ins}"}
    first = await client.post("/Patient", json=body, headers=header)
    assert first.status_code == 201
    second = await client.post("/Patient", json=body, headers=header)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    await client.post("/Patient", json=body, headers=JSON)  # a duplicate without condition
    third = await client.post("/Patient", json=body, headers=header)
    assert third.status_code == 412


async def test_prefer_return(client: httpx.AsyncClient) -> None:
    minimal = await client.post("/Patient", json=fx.patient(), headers={**JSON, "Prefer": "return=minimal"})
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert minimal.headers["location"]
    outcome = await client.post(
        "/Patient", json=fx.patient(), headers={**JSON, "Prefer": "return=OperationOutcome"}
    )
    assert outcome.json()["resourceType"] == "OperationOutcome"


async def test_body_id_ignored_on_create_and_meta_kept(client: httpx.AsyncClient) -> None:
    body = {**fx.patient(), "meta": {"profile": ["https://example.org/p"], "versionId": "99"}}
    created = await create(client, body)
    assert created["meta"]["profile"] == ["https://example.org/p"]
    assert created["meta"]["versionId"] == "1"


async def test_unknown_endpoint_is_an_operation_outcome(client: httpx.AsyncClient) -> None:
    response = await client.get("/Patient/a/b/c/d")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_batch_runs_each_entry_independently(client: httpx.AsyncClient) -> None:
    pat = await create(client, fx.patient())
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": fx.practitioner(), "request": {"method": "POST", "url": "Practitioner"}},
            {"request": {"method": "GET", "url": f"Patient/{pat['id']}"}},
            {"request": {"method": "GET", "url": f"Patient?_id={pat['id']}"}},
            {
                "resource": {**pat, "gender": "other"},
                "request": {"method": "PUT", "url": f"Patient/{pat['id']}"},
            },
            {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
            {
                "resource": {"resourceType": "Patient", "birthDate": "bad"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "DELETE", "url": f"Patient/{pat['id']}"}},
        ],
    }
    response = await client.post("", json=bundle, headers=JSON)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == [
        "201 Created",
        "200 OK",
        "200 OK",
        "200 OK",
        "404 Not Found",
        "422 Unprocessable Entity",
        "204 No Content",
    ]
    assert result["entry"][2]["resource"]["entry"][0]["resource"]["id"] == pat["id"]
    assert result["entry"][3]["resource"]["meta"]["versionId"] == "2"
    assert result["entry"][4]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert (await client.get(f"/Patient/{pat['id']}")).status_code == 410


async def test_transaction_is_answered_with_a_transaction_response(client: httpx.AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": fx.patient(), "request": {"method": "POST", "url": "Patient"}}],
    }
    response = await client.post("", json=bundle, headers=JSON)
    assert response.status_code == 200
    assert response.json()["type"] == "transaction-response"
    assert response.json()["entry"][0]["response"]["status"] == "201 Created"
    assert (await client.post("", json=fx.patient(), headers=JSON)).status_code == 400
